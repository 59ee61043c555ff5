//! The monitoring listener of real `islab server` processes (`--metrics-listen`): `/metrics`
//! parsed by the Prometheus project's own OpenMetrics parser (`cluster-tests/python/
//! scrape.py`, strict about types, names and the final `# EOF`) moves with load, `/livez`
//! answers, `/readyz` tells a formed cluster's nodes from one that belongs to none, and the
//! alert rules in deploy/prometheus pass promtool and name only metrics a node serves.
//!
//! Needs python3 with prometheus-client (`cluster-tests/python/requirements.txt`) and promtool
//! (Debian package prometheus); `scripts/test` installs both. Missing, the test fails saying
//! so: it is never skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use islab_cluster_tests::{Cluster, init_tracing, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sample name → labels (`k=v,…`) → value, as scrape.py prints them.
type Samples = BTreeMap<String, BTreeMap<String, f64>>;

const SHARDS: u32 = 4;
const PUTS: u64 = 200;

/// `GET path` over plain HTTP/1.1: the status code and the body.
async fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))?;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((code, body))
}

/// One scrape of `addr`'s `/metrics`, parsed.
async fn scrape(addr: &str) -> Result<Samples, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/scrape.py");
    let url = format!("http://{addr}/metrics");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(&script).arg(&url).output()
    })
    .await
    .unwrap()
    .map_err(|e| {
        format!("python3 must be installed (scripts/test installs what the test needs): {e}")
    })?;
    if !out.status.success() {
        return Err(format!(
            "scrape.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("scrape.py printed no JSON: {e}"))
}

/// The value of an unlabelled sample.
fn value(s: &Samples, name: &str) -> f64 {
    *s.get(name)
        .and_then(|series| series.get(""))
        .unwrap_or_else(|| panic!("no {name} in {s:?}"))
}

/// The sum of a labelled sample over its series, leaving out the meta group (group 0).
fn data_sum(s: &Samples, name: &str) -> f64 {
    s.get(name)
        .unwrap_or_else(|| panic!("no {name} in {s:?}"))
        .iter()
        .filter(|(labels, _)| labels.as_str() != "group=0")
        .map(|(_, v)| v)
        .sum()
}

/// `deploy/prometheus/islab-rules.yml` passes `promtool check rules`, its unit tests
/// (`islab-rules.test.yml`) pass `promtool test rules`, and every `islab_*` metric it names is
/// one a real node serves (`scrape`).
fn alert_rules_name_what_a_node_serves(scrape: &Samples) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in [
        ["check", "rules", "islab-rules.yml"],
        ["test", "rules", "islab-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect(
                "promtool must be installed (Debian package prometheus; scripts/test installs it)",
            );
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(dir.join("islab-rules.yml")).unwrap();
    let mut named = std::collections::BTreeSet::new();
    for (at, _) in rules.match_indices("islab_") {
        let name: String = rules[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        named.insert(name);
    }
    assert!(named.len() >= 5, "the rules name {named:?}");
    for name in &named {
        assert!(
            scrape.contains_key(name),
            "the rules use {name}, which no node serves"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_load_and_probes_tell_ready_from_not() {
    init_tracing();
    let mut cluster = Cluster::start_sharded(
        3,
        SHARDS,
        3,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--max-value-bytes",
            "1000",
        ],
    )
    .await;
    let addrs: Vec<String> = (1..=3)
        .map(|id| {
            cluster
                .node(id)
                .metrics_addr()
                .unwrap_or_else(|| panic!("node {id} printed no metrics address"))
        })
        .collect();

    tracing::info!("--- /livez, and /readyz once the cluster has formed");
    for addr in &addrs {
        assert_eq!(http_get(addr, "/livez").await.unwrap().0, 200, "{addr}");
    }
    wait_for("every node ready", Duration::from_secs(60), || async {
        for addr in &addrs {
            let (code, body) = http_get(addr, "/readyz").await?;
            if code != 200 {
                return Err(format!("{addr}: {code} {body}"));
            }
        }
        Ok(())
    })
    .await;

    tracing::info!("--- a scrape of every node, before any write");
    let mut before = Vec::new();
    for addr in &addrs {
        let s = scrape(addr).await.unwrap();
        assert_eq!(
            s["islab_build_info"].keys().collect::<Vec<_>>(),
            [&format!("version={}", env!("CARGO_PKG_VERSION"))]
        );
        // The meta group and every shard (3 replicas on 3 nodes: all of them here).
        assert_eq!(
            value(&s, "islab_server_groups"),
            f64::from(SHARDS + 1),
            "{addr}"
        );
        assert_eq!(
            value(&s, "islab_server_groups_without_leader"),
            0.0,
            "{addr}"
        );
        assert_eq!(value(&s, "islab_writes_refused"), 0.0, "{addr}");
        assert!(value(&s, "islab_disk_free_bytes") > 0.0, "{addr}");
        assert!(value(&s, "islab_cluster_map_epoch") >= 1.0, "{addr}");
        // Every node saw a leader come in each of its groups (the first one counts).
        assert!(
            value(&s, "islab_server_leader_changes_seen_total") >= f64::from(SHARDS + 1),
            "{addr}"
        );
        assert!(
            s["islab_group_leader_changes_total"]
                .values()
                .all(|n| *n >= 1.0),
            "{addr}"
        );
        before.push(s);
    }
    alert_rules_name_what_a_node_serves(&before[0]);
    let leading: f64 = before
        .iter()
        .map(|s| value(s, "islab_server_groups_leading"))
        .sum();
    assert_eq!(leading, f64::from(SHARDS + 1), "one leader per group");

    tracing::info!("--- {PUTS} puts through the SDK, then the counters and gauges follow");
    let client = cluster.client();
    for i in 0..PUTS {
        client
            .put(format!("metrics-key-{i}"), "value")
            .await
            .unwrap();
    }
    // One the servers refuse (the value is over --max-value-bytes): counted with its code.
    let refused = client.put("metrics-too-big", vec![b'x'; 2000]).await;
    assert!(refused.is_err(), "{refused:?}");
    let (before, addrs_ref) = (&before, &addrs);
    wait_for(
        "every replica holds every key, and the counters moved",
        Duration::from_secs(60),
        || async move {
            let mut keys = 0.0;
            let mut requests = 0.0;
            let mut scrapes = Vec::new();
            for (i, addr) in addrs_ref.iter().enumerate() {
                let s = scrape(addr).await?;
                keys += data_sum(&s, "islab_group_keys");
                requests += data_sum(&s, "islab_group_write_requests_total")
                    - data_sum(&before[i], "islab_group_write_requests_total");
                let fsyncs = value(&s, "islab_wal_fsyncs_total");
                if fsyncs <= value(&before[i], "islab_wal_fsyncs_total") {
                    return Err(format!("{addr}: no fsync counted ({fsyncs})"));
                }
                // The histogram counts the same fsyncs (read a moment apart from the counter).
                let timed = value(&s, "islab_wal_fsync_duration_seconds_count");
                let inf = s["islab_wal_fsync_duration_seconds_bucket"]["le=+Inf"];
                if timed < value(&before[i], "islab_wal_fsyncs_total") || inf != timed {
                    return Err(format!(
                        "{addr}: {timed} fsyncs timed, +Inf bucket {inf}, {fsyncs} counted"
                    ));
                }
                if value(&s, "islab_wal_bytes_written_total")
                    <= value(&before[i], "islab_wal_bytes_written_total")
                {
                    return Err(format!("{addr}: no WAL bytes written"));
                }
                scrapes.push(s);
            }
            // Every put was answered by some node's Kv service, each call timed once.
            let (mut ok, mut refused, mut timed) = (0.0, 0.0, 0.0);
            for s in &scrapes {
                for (labels, n) in &s["grpc_server_handled_total"] {
                    if labels.contains("grpc_method=Put") && labels.contains("grpc_service=islab.v1.Kv") {
                        if labels.contains("grpc_code=OK") {
                            ok += n;
                        } else {
                            refused += n;
                        }
                    }
                }
                for (labels, n) in &s["grpc_server_handling_seconds_count"] {
                    if labels.contains("grpc_method=Put") && labels.contains("grpc_service=islab.v1.Kv") {
                        timed += n;
                    }
                }
            }
            if ok < PUTS as f64 || refused < 1.0 || timed != ok + refused {
                return Err(format!(
                    "Kv/Put calls: {ok} OK (want >= {PUTS}), {refused} refused (want >= 1), {timed} timed"
                ));
            }
            // Every put is proposed once by its shard's leader (a retried one may be proposed
            // again, never less), and lands on all 3 replicas.
            if keys != (3 * PUTS) as f64 || requests < PUTS as f64 {
                return Err(format!(
                    "keys over all replicas {keys} (want {}), write requests {requests} (want >= {PUTS})",
                    3 * PUTS
                ));
            }
            Ok(())
        },
    )
    .await;

    tracing::info!("--- a node that belongs to no cluster is live, not ready");
    let stranger = cluster.add_process(4, &["--metrics-listen", "127.0.0.1:0"]);
    stranger.start();
    let addr = stranger
        .metrics_addr()
        .expect("node 4 printed no metrics address");
    assert_eq!(http_get(&addr, "/livez").await.unwrap().0, 200);
    let (code, body) = http_get(&addr, "/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not in a cluster"), "{body}");
    let s = scrape(&addr).await.unwrap();
    assert_eq!(value(&s, "islab_cluster_map_epoch"), 0.0);
}

/// A metrics address another process holds stops the node's start with an error naming it
/// (rather than a node that serves gRPC and silently no metrics).
#[test]
fn a_taken_metrics_port_fails_the_start_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(islab_cluster_tests::islab_binary())
        .args([
            "server",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &addr,
        ])
        .arg("--data-dir")
        .arg(dir.path().join("node1"))
        .env("ISLAB_MIN_FREE_DISK_BYTES", (32u64 << 20).to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A node that started anyway would serve until killed: bound the wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the node started although its metrics address {addr} is taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&addr), "the error names {addr}: {stderr}");
    drop(taken);
}
