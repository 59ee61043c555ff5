//! Three real node processes: writes and linearizable reads, every node agreeing on the
//! leader and the applied index; a stopped node that catches up from the WAL tail; a
//! graceful restart of the whole cluster that loses nothing.

use std::time::Duration;

use islab_client::{BatchOp, ReadConsistency};
use islab_cluster_tests::{Cluster, data_group, entry_index, init_tracing, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_a_stopped_node_catches_up() {
    init_tracing();
    tracing::info!("--- start 3 nodes and initialise");
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();

    tracing::info!("--- 200 writes, each read back linearizably");
    let mut versions = Vec::new();
    for i in 0..200 {
        let v = client
            .put(format!("key-{i:03}"), format!("v{i}"))
            .await
            .unwrap();
        versions.push(v);
        let got = client
            .get(format!("key-{i:03}"))
            .await
            .unwrap()
            .expect("just written");
        assert_eq!(got.value, format!("v{i}"));
        assert_eq!(got.version, v);
    }
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "versions grow");

    tracing::info!("--- every node reports the same leader and applied index");
    let leader = cluster.leader().await;
    let applied = cluster
        .converged(entry_index(*versions.last().unwrap()))
        .await;
    for addr in cluster.endpoints() {
        let s = cluster.status(&addr).await.unwrap();
        let g = &data_group(&s).unwrap();
        assert_eq!(
            (g.leader_id, g.applied_index),
            (leader, applied),
            "node {}",
            s.node_id
        );
        assert_eq!(s.durability, "sync");
        assert!(s.wal_fsyncs > 0);
    }

    tracing::info!("--- stop a follower (SIGTERM), write 300 more, restart it");
    let follower = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap();
    assert!(cluster.node(follower).stop(), "orderly stop exits 0");
    for i in 200..500 {
        client
            .put(format!("key-{i:03}"), format!("v{i}"))
            .await
            .unwrap();
    }
    cluster.node(follower).start();
    let applied = cluster.converged(applied + 300).await;
    tracing::info!(applied, "--- the follower caught up from the WAL tail");
    let follower_addr = cluster.node(follower).addr();
    let only_follower = islab_client::Client::connect([follower_addr])
        .await
        .unwrap();
    for i in (0..500).step_by(37) {
        let got = only_follower
            .get_with(format!("key-{i:03}"), ReadConsistency::Serializable)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("key-{i:03} missing on the restarted follower"));
        assert_eq!(got.value, format!("v{i}"));
    }

    tracing::info!("--- stop every node, start them again: every key is back");
    for n in &mut cluster.nodes {
        assert!(n.stop());
    }
    for n in &mut cluster.nodes {
        n.start();
    }
    cluster.leader().await;
    let client = cluster.client();
    let keys = wait_for("a scan after restart", Duration::from_secs(30), || async {
        client
            .scan(islab_client::Scan::prefix("key-"))
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(keys.len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_budget_checkpoints_quiet_groups_so_old_segments_go() {
    init_tracing();
    // 1 MiB segments, a 4 MiB budget, and no checkpoint by entry count: only the budget can
    // purge a log, and the meta group (written at init, quiet since) pins the first segment.
    const BUDGET: u64 = 4 << 20;
    let mut cluster = Cluster::start_with(
        3,
        &[
            "--wal-segment-bytes",
            "1048576",
            "--wal-budget-bytes",
            "4194304",
            "--snapshot-after-entries",
            "1000000",
        ],
    )
    .await;
    let client = cluster.client();

    tracing::info!("--- 24 MiB through the data shard: 48 batches of 64 values of 8 KiB");
    let mut last = std::collections::BTreeMap::new();
    for round in 0..48u32 {
        let ops: Vec<BatchOp> = (0..64u32)
            .map(|i| {
                let key = format!("w{:03}", (round * 64 + i) % 256);
                let value = format!("{round:02}-{i:02}-").repeat(1365);
                last.insert(key.clone(), value.clone());
                BatchOp::put(key, value)
            })
            .collect();
        client.batch(ops).await.unwrap();
    }

    tracing::info!("--- every node's WAL comes back near the budget; the meta group was purged");
    for addr in cluster.endpoints() {
        wait_for(
            &format!("{addr}: WAL within budget"),
            Duration::from_secs(120),
            || async {
                let s = cluster.status(&addr).await?;
                let meta = s.groups.iter().find(|g| g.group_id == 0).ok_or("no meta")?;
                if s.wal_bytes <= BUDGET + (2 << 20) && meta.purged_index > 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "WAL {} bytes in {} segments, meta purged up to {}",
                        s.wal_bytes, s.wal_segments, meta.purged_index
                    ))
                }
            },
        )
        .await;
    }

    tracing::info!("--- kill -9 every node, restart: recovery from checkpoints and the kept log");
    for id in 1..=3 {
        cluster.node(id).kill();
    }
    for id in 1..=3 {
        cluster.node(id).start();
    }
    cluster.leader().await;
    for (key, value) in &last {
        let got = client.get(key.clone()).await.unwrap().expect(key);
        assert_eq!(&got.value[..], value.as_bytes(), "{key}");
    }
}
