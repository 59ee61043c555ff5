//! The container deployment (issue 5), for real: the top-level docker-compose.yml brought up as
//! a project of its own from the image `islab:local`, used from the host through the SDK (with
//! the address map from `nodeN:7379` to the published ports), and hurt with Docker itself:
//! `docker kill`, `docker network disconnect`, `docker pause`, `docker compose down`.
//!
//! Every test is a sequence of phases and waits on conditions, never on luck; each cluster is
//! removed with its volumes when the test ends, pass or fail (`ComposeCluster`'s drop). These
//! tests need Docker: without it they fail, they do not skip.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use islab_client::{ReadConsistency, Scan};
use islab_cluster_tests::compose::{ComposeCluster, NODES};
use islab_cluster_tests::{Load, entry_index, init_tracing};

/// Every key of node `id`'s own replica (serializable scan sent to that node alone), as
/// key → (value, version).
async fn replica(cluster: &ComposeCluster, id: u64) -> BTreeMap<Bytes, (Bytes, u64)> {
    let client = cluster.client_of(vec![cluster.addr(id)]);
    client
        .scan(Scan::all().consistency(ReadConsistency::Serializable))
        .await
        .unwrap_or_else(|e| panic!("scan of node {id}: {e}"))
        .into_iter()
        .map(|kv| (kv.key, (kv.value, kv.version)))
        .collect()
}

/// Every node holds the same keys, values and versions, and every acknowledged write is among
/// them with the version it was acknowledged with. Returns the common image.
async fn one_history(
    cluster: &ComposeCluster,
    acked: &[(String, String, u64)],
) -> BTreeMap<Bytes, (Bytes, u64)> {
    let image = replica(cluster, 1).await;
    for id in [2, 3] {
        let other = replica(cluster, id).await;
        assert!(
            other == image,
            "node {id} differs from node 1: {} vs {} keys",
            other.len(),
            image.len()
        );
    }
    for (key, value, version) in acked {
        let got = image
            .get(key.as_bytes())
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(
            (got.0.as_ref(), got.1),
            (value.as_bytes(), *version),
            "{key}"
        );
    }
    image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_cluster_serves_the_host_through_the_sdk() {
    init_tracing();
    tracing::info!("--- docker compose up: three nodes healthy, the init job done");
    let cluster = ComposeCluster::up("sdk").await;
    for id in NODES {
        let health = islab_cluster_tests::compose::docker(&[
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            cluster.container(id),
        ])
        .await;
        assert_eq!(health, "healthy", "node {id}");
    }

    tracing::info!("--- write and read from the host through the SDK");
    let client = cluster.client();
    let mut versions = Vec::new();
    for i in 0..100 {
        versions.push(
            client
                .put(format!("k{i:03}"), format!("v{i}"))
                .await
                .unwrap(),
        );
    }
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "versions grow");
    for i in (0..100).step_by(7) {
        let kv = client
            .get(format!("k{i:03}"))
            .await
            .unwrap()
            .expect("written");
        assert_eq!(
            (kv.value, kv.version),
            (Bytes::from(format!("v{i}")), versions[i])
        );
    }
    assert_eq!(client.scan(Scan::prefix("k")).await.unwrap().len(), 100);
    assert!(client.delete("k000").await.unwrap());

    tracing::info!("--- a follower's hint names nodeN:7379; the SDK dials the mapped host port");
    let leader = cluster.leader().await;
    let follower = NODES.into_iter().find(|id| *id != leader).unwrap();
    let via_follower = cluster.client_of(vec![cluster.addr(follower)]);
    via_follower.put("via-follower", "ok").await.unwrap();
    assert_eq!(
        via_follower.leader_of(b"via-follower"),
        Some(cluster.addr(leader))
    );
    // The client learnt every node (from the leader hint and the shard map), each by the host
    // address the map gives its advertised name, never by the name itself.
    let mut known = via_follower.endpoints();
    known.sort();
    let mut mapped: Vec<String> = NODES.into_iter().map(|id| cluster.addr(id)).collect();
    mapped.sort();
    assert_eq!(
        known, mapped,
        "the advertised names were mapped, not dialled"
    );

    tracing::info!("--- every node applied everything; the image's own CLI answers inside");
    cluster
        .converged(entry_index(*versions.last().unwrap()))
        .await;
    let (ok, out) = cluster
        .exec_islab(
            follower,
            &["--endpoints", "127.0.0.1:7379", "get", "via-follower"],
            Duration::from_secs(30),
        )
        .await;
    assert!(ok && out == "ok\n", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_kill_of_the_leader_loses_no_acknowledged_write() {
    init_tracing();
    tracing::info!("--- up, and four writers from the host");
    let cluster = ComposeCluster::up("kill").await;
    let load = Load::start(&cluster.client(), "w", 4);
    load.wait_more(0, 200, "200 acknowledged writes").await;

    let old = cluster.leader().await;
    tracing::info!(old, "--- docker kill the leader's container under load");
    cluster.docker_node("kill", old).await;
    let killed_at = Instant::now();
    let others: Vec<u64> = NODES.into_iter().filter(|id| *id != old).collect();
    let new = cluster.leader_among(&others).await;
    tracing::info!(new, after = ?killed_at.elapsed(), "--- a new leader");
    assert_ne!(new, old);
    let before = load.count();
    load.wait_more(before, 200, "200 more writes under the new leader")
        .await;
    let (acked, failures) = load.stop().await;
    assert!(
        failures <= 4,
        "{failures} writes failed outright; the SDK should ride out a failover"
    );

    tracing::info!("--- docker start it: it catches up to the same applied index");
    cluster.docker_node("start", old).await;
    let last = acked.iter().map(|(_, _, v)| *v).max().unwrap();
    let applied = cluster.converged(entry_index(last)).await;
    tracing::info!(applied, "converged");

    tracing::info!("--- one history: every acknowledged write on every node, with its version");
    one_history(&cluster, &acked).await;
    tracing::info!(checked = acked.len(), "all acknowledged writes present");
}

/// `islab put <key> <value>` run inside node `id`'s container against that node alone.
async fn put_inside(cluster: &ComposeCluster, id: u64, key: &str) -> (bool, String) {
    let args = [
        "--endpoints",
        "127.0.0.1:7379",
        "--timeout",
        "5s",
        "put",
        key,
        "never-acknowledged",
    ];
    cluster.exec_islab(id, &args, Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_the_network_acknowledges_nothing_and_its_writes_vanish() {
    init_tracing();
    tracing::info!("--- up, and writes from the host before the cut");
    let cluster = ComposeCluster::up("partition").await;
    let load = Load::start(&cluster.client(), "before-", 2);
    load.wait_more(0, 100, "100 acknowledged writes").await;
    let (mut acked, failures) = load.stop().await;
    assert_eq!(failures, 0);

    // The writes below reach the old leader only after it is cut off, so none can have been
    // replicated: each must go unacknowledged and must never appear. Those that arrive while
    // its leader lease (election timeout max) still runs are appended to its log, and must be
    // truncated away when it rejoins; later ones it refuses outright.
    let old = cluster.leader().await;
    tracing::info!(
        old,
        "--- docker network disconnect the leader (the minority side)"
    );
    cluster.disconnect(old).await;
    tracing::info!("--- unique writes sent straight to it (docker exec): none acknowledged");
    let lost: Vec<String> = (0..6).map(|i| format!("lost-{i}")).collect();
    let answers =
        futures::future::join_all(lost.iter().map(|key| put_inside(&cluster, old, key))).await;
    for (key, (ok, out)) in lost.iter().zip(answers) {
        assert!(!ok, "the cut-off leader acknowledged {key}: {out}");
        tracing::info!(%key, answer = %out.trim(), "not acknowledged");
    }
    let (_, dump) = cluster
        .exec_islab(old, &["wal", "dump", "/data"], Duration::from_secs(60))
        .await;
    let in_log = lost.iter().filter(|k| dump.contains(k.as_str())).count();
    tracing::info!(
        in_log,
        "unacknowledged writes appended to the old leader's log"
    );

    tracing::info!("--- the majority elects a leader and keeps serving the host");
    let others: Vec<u64> = NODES.into_iter().filter(|id| *id != old).collect();
    let new = cluster.leader_among(&others).await;
    assert_ne!(new, old);
    let load = Load::start(&cluster.client(), "during-", 2);
    load.wait_more(0, 100, "100 writes on the majority side")
        .await;
    let (ok, out) = put_inside(&cluster, old, "lost-late").await;
    assert!(!ok, "the cut-off node acknowledged a write: {out}");
    let (during, failures) = load.stop().await;
    assert!(failures <= 4, "{failures} writes failed outright");
    acked.extend(during);

    tracing::info!("--- reconnect: one leader, one applied index");
    cluster.reconnect(old).await;
    cluster.leader().await;
    let last = acked.iter().map(|(_, _, v)| *v).max().unwrap();
    cluster.converged(entry_index(last)).await;

    tracing::info!("--- one history: every acknowledged write, none of the old leader's");
    let image = one_history(&cluster, &acked).await;
    for key in lost.iter().map(String::as_str).chain(["lost-late"]) {
        assert!(
            !image.contains_key(key.as_bytes()),
            "{key} was never acknowledged, yet it is in the history"
        );
        let read = cluster.client().get(key.to_string()).await.unwrap();
        assert!(read.is_none(), "{key} readable: {read:?}");
    }
    let (_, dump) = cluster
        .exec_islab(old, &["wal", "dump", "/data"], Duration::from_secs(60))
        .await;
    if in_log > 0 {
        assert!(
            dump.contains("truncate group=1 "),
            "the old leader's unacknowledged entries were never truncated:\n{dump}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_follower_rejoins() {
    init_tracing();
    let cluster = ComposeCluster::up("pause").await;
    let client = cluster.client();
    client.put("before", "pause").await.unwrap();
    let leader = cluster.leader().await;
    let follower = NODES.into_iter().find(|id| *id != leader).unwrap();

    // Longer than the election timeout (800-1600 ms by default) several times over.
    let pause = Duration::from_secs(6);
    tracing::info!(follower, ?pause, "--- docker pause a follower");
    cluster.docker_node("pause", follower).await;
    let paused_at = Instant::now();
    let mut last = 0;
    for i in 0..50 {
        last = client.put(format!("during-{i:02}"), "x").await.unwrap();
    }
    let frozen = cluster.status(follower).await;
    assert!(frozen.is_err(), "a paused node answered: {frozen:?}");
    // The fault's length is the scenario itself, not a wait for a condition.
    tokio::time::sleep(pause.saturating_sub(paused_at.elapsed())).await;

    tracing::info!("--- unpause: it rejoins and applies everything");
    cluster.docker_node("unpause", follower).await;
    last = last.max(client.put("after", "pause").await.unwrap());
    cluster.converged(entry_index(last)).await;
    cluster.leader().await;
    let only_it = cluster.client_of(vec![cluster.addr(follower)]);
    let kv = only_it
        .get_with("after", ReadConsistency::Serializable)
        .await
        .unwrap()
        .expect("the rejoined follower has the last write");
    assert_eq!(kv.value, Bytes::from("pause"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_down_then_up_brings_every_key_back() {
    init_tracing();
    let mut cluster = ComposeCluster::up("restart").await;
    tracing::info!("--- 300 keys, written from the host");
    let client = cluster.client();
    let mut written = Vec::new();
    for i in 0..300 {
        let (key, value) = (format!("key-{i:03}"), format!("value-{i}"));
        let version = client.put(key.clone(), value.clone()).await.unwrap();
        written.push((key, value, version));
    }
    let last = written.last().unwrap().2;
    cluster.converged(entry_index(last)).await;
    drop(client);

    tracing::info!("--- docker compose down (volumes kept), then up again");
    cluster.down_and_up().await;
    let init = cluster.logs("init").await;
    assert!(init.contains("already_initialised=true"), "{init}");

    tracing::info!("--- every key is back, on every node, with its version");
    cluster.leader().await;
    cluster.converged(entry_index(last)).await;
    one_history(&cluster, &written).await;
    let client = cluster.client();
    client.put("after-restart", "ok").await.unwrap();
    assert_eq!(
        client.scan(Scan::prefix("key-")).await.unwrap().len(),
        written.len()
    );
}
