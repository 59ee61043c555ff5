//! The client commands against real clusters started by `islab playground` (real node
//! processes on free loopback ports): data round trip, cluster status and members, refusals of
//! bad input with the limit named, a restarted playground keeping its cluster, and stopping
//! cleanly on SIGTERM. Each test is a sequence of phases; every wait is on a condition.

mod common;

use std::net::TcpListener;
use std::process::Output;
use std::time::{Duration, Instant};

use common::playground::{Playground, process_exists};
use common::{islab, ok, stderr, stdout};
use serde_json::Value;

/// How long a stopped playground may take to exit (its nodes get 10 s before SIGKILL).
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// Asserts the command failed with exit status 1 and returns its stderr.
fn fails(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}; stderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

fn stop(playground: &mut Playground) {
    let (status, rest) = playground.terminate(EXIT_WITHIN);
    assert!(
        status.success(),
        "{status}; stderr: {}",
        playground.stderr()
    );
    assert!(rest.iter().any(|l| l.starts_with("stopped")), "{rest:?}");
    for pid in &playground.node_pids {
        assert!(!process_exists(*pid), "node process {pid} still exists");
    }
}

#[test]
fn a_three_node_playground_serves_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    eprintln!("--- start a 3-node playground");
    let mut pg = Playground::start(tmp.path(), 3, &[]);
    let banner = pg.banner.join("\n");
    assert!(banner.contains("new cluster"), "{banner}");
    assert!(
        banner.contains(&format!("--endpoints {} put hello world", pg.endpoints)),
        "{banner}"
    );

    eprintln!("--- put, get");
    let put = ok(&pg.islab(&["put", "hello", "world"]));
    assert!(put.starts_with("OK version="), "{put}");
    assert_eq!(ok(&pg.islab(&["get", "hello"])), "world\n");

    eprintln!("--- cluster status: one leader, every node applied the same index");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let doc: Value = serde_json::from_str(&ok(&pg.islab(&["cluster", "status", "-w", "json"])))
            .expect("cluster status -w json parses");
        let nodes = doc["endpoints"].as_array().unwrap();
        assert_eq!(nodes.len(), 3, "{doc}");
        assert!(nodes.iter().all(|n| n["reachable"] == true), "{doc}");
        let groups: Vec<&Value> = nodes.iter().map(|n| &n["groups"][0]).collect();
        let leaders = groups.iter().filter(|g| g["role"] == "leader").count();
        let applied: Vec<u64> = groups
            .iter()
            .map(|g| g["applied_index"].as_u64().unwrap())
            .collect();
        let cluster = &nodes[0]["cluster_id"];
        assert!(nodes.iter().all(|n| &n["cluster_id"] == cluster), "{doc}");
        if leaders == 1 && applied.iter().all(|a| *a == applied[0] && *a > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no single leader and common applied index: {doc}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let table = ok(&pg.islab(&["cluster", "status", "-w", "table"]));
    assert!(table.starts_with("ENDPOINT"), "{table}");
    // A row per node and group: the meta group and 8 shards of 3 replicas on each node.
    let rows = table.lines().filter(|l| l.starts_with("127.0.0.1")).count();
    assert_eq!(rows, 3 * 9, "{table}");
    assert!(
        table
            .lines()
            .last()
            .unwrap()
            .starts_with("entropy shard_keys="),
        "{table}"
    );

    eprintln!("--- shard list: 8 shards, each with a leader, covering every slot");
    let shards = ok(&pg.islab(&["shard", "list"]));
    assert!(shards.starts_with("epoch="), "{shards}");
    assert_eq!(
        shards.lines().filter(|l| l.starts_with("shard=")).count(),
        8,
        "{shards}"
    );
    assert!(!shards.contains("leader=-"), "{shards}");

    eprintln!("--- member list: three voters");
    let members = ok(&pg.islab(&["member", "list"]));
    let voters = members.lines().filter(|l| l.contains("role=voter")).count();
    assert_eq!(voters, 3, "{members}");
    assert_eq!(
        members
            .lines()
            .filter(|l| l.ends_with("leader=true"))
            .count(),
        1,
        "{members}"
    );

    eprintln!("--- SIGTERM: the playground and its nodes exit");
    stop(&mut pg);
}

#[test]
fn bad_input_is_refused_and_a_restarted_playground_keeps_its_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    eprintln!("--- start a 1-node playground with a 1 KiB value limit");
    let mut pg = Playground::start(tmp.path(), 1, &["--max-value-bytes", "1024"]);

    eprintln!("--- bad keys and values: exit 1, the problem named");
    let e = fails(&pg.islab(&["put", "", "v"]));
    assert!(e.contains("key must not be empty"), "{e}");
    let long_key = "k".repeat(5000);
    let e = fails(&pg.islab(&["put", &long_key, "v"]));
    assert!(
        e.contains("the key is 5000 bytes, above the limit of 4096"),
        "{e}"
    );
    let e = fails(&pg.islab(&["get", &long_key]));
    assert!(e.contains("above the limit of 4096"), "{e}");
    let e = fails(&pg.islab(&["put", "k", &"v".repeat(2000)]));
    assert!(
        e.contains("the value is 2000 bytes, above the limit of 1024"),
        "{e}"
    );
    let e = fails(&pg.islab(&["put", "k", "v", "--ttl", "soon"]));
    assert!(e.contains("invalid duration"), "{e}");

    eprintln!("--- a value at the limit is stored; an absent key prints nothing");
    let at_limit = "v".repeat(1024);
    ok(&pg.islab(&["put", "k", &at_limit]));
    assert_eq!(ok(&pg.islab(&["get", "k"])), format!("{at_limit}\n"));
    assert_eq!(ok(&pg.islab(&["get", "absent"])), "");
    let doc: Value =
        serde_json::from_str(&ok(&pg.islab(&["-w", "json", "get", "absent"]))).unwrap();
    assert_eq!(doc["found"], false);

    eprintln!("--- init of an initialised cluster, and an unreachable endpoint");
    let e = fails(&pg.islab(&["cluster", "init"]));
    assert!(e.contains("already belongs to cluster"), "{e}");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let both = format!("{},{closed}", pg.endpoints);
    let o = islab(&["--endpoints", &both, "cluster", "status"]);
    let e = fails(&o);
    assert!(
        e.contains(&format!("1 of 2 endpoints unreachable: {closed}")),
        "{e}"
    );
    let text = stdout(&o);
    assert!(text.contains("role=leader"), "{text}");
    assert!(text.contains(&format!("{closed}: unreachable: ")), "{text}");

    let cluster_id = pg
        .banner
        .iter()
        .find_map(|l| l.split("new cluster ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .expect("the banner names the new cluster")
        .to_string();
    stop(&mut pg);

    eprintln!("--- restart on the same directory: same cluster, same data");
    let mut pg = Playground::start_on(tmp.path(), 1, pg.base_port, &[]).unwrap_or_else(|e| {
        panic!("restart failed: {e}");
    });
    let banner = pg.banner.join("\n");
    assert!(
        banner.contains(&format!("existing cluster {cluster_id}")),
        "{banner}"
    );
    assert_eq!(ok(&pg.islab(&["get", "k"])), format!("{at_limit}\n"));
    stop(&mut pg);
}

#[test]
fn a_taken_port_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = Playground::start_on(tmp.path(), 1, port, &[])
        .err()
        .expect("the playground refuses a taken port");
    assert!(e.contains("exit status: 1"), "{e}");
    assert!(
        e.contains(&format!("cannot use 127.0.0.1:{port} for node 1")),
        "{e}"
    );
}
