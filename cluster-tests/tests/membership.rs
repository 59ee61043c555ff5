//! Membership: a 4th node added after the leader has purged its log catches up from a
//! checkpoint snapshot, is promoted, and serves serializable reads with the same data; then a
//! node is removed and the cluster keeps serving.

use std::time::Duration;

use islab_client::{Client, ReadConsistency};
use islab_cluster_tests::{Cluster, init_tracing, wait_for};

/// Checkpoint often and keep little log behind it, so the log gets purged quickly.
const SNAPSHOT_ARGS: &[&str] = &[
    "--snapshot-after-entries",
    "300",
    "--keep-entries-after-snapshot",
    "50",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_catches_up_from_a_snapshot_then_a_node_is_removed() {
    init_tracing();
    let mut cluster = Cluster::start_with(3, SNAPSHOT_ARGS).await;
    let client = cluster.client();

    tracing::info!("--- write 1500 keys so the leader checkpoints and purges its log");
    for i in 0..1500 {
        client
            .put(format!("k{i:05}"), format!("value {i}"))
            .await
            .unwrap();
    }
    let leader = cluster.leader().await;
    let leader_addr = cluster.node(leader).addr();
    wait_for(
        "the leader to purge its log",
        Duration::from_secs(60),
        || async {
            let s = cluster.status(&leader_addr).await?;
            let g = &s.groups[0];
            if g.purged_index > 100 && g.checkpoint_index > 0 {
                Ok(())
            } else {
                Err(format!(
                    "purged {} checkpoint {}",
                    g.purged_index, g.checkpoint_index
                ))
            }
        },
    )
    .await;

    tracing::info!("--- start node 4 and add it: it needs the purged entries, so a snapshot");
    cluster.add_process(4, SNAPSHOT_ARGS).start();
    let addr4 = cluster.node(4).addr();
    let members = client.admin().member_add(4, addr4.clone()).await.unwrap();
    assert!(members.iter().any(|m| m.id == 4 && !m.voter), "{members:?}");
    // Status is reported from openraft's metrics, which trail the install by a moment.
    let s4 = wait_for(
        "node 4 to report the installed snapshot",
        Duration::from_secs(30),
        || async {
            let s = cluster.status(&addr4).await?;
            if s.groups[0].checkpoint_index > 0 && s.groups[0].applied_index >= 1400 {
                Ok(s)
            } else {
                Err(format!("{:?}", s.groups[0]))
            }
        },
    )
    .await;
    assert!(!s4.cluster_id.is_empty(), "node 4 adopted the cluster id");

    tracing::info!("--- promote node 4; it serves serializable reads with the same data");
    let members = client.admin().member_promote(4).await.unwrap();
    assert_eq!(members.iter().filter(|m| m.voter).count(), 4);
    client.put("after-promote", "yes").await.unwrap();
    cluster.converged(0).await;
    let only4 = Client::connect([addr4.clone()]).await.unwrap();
    for i in (0..1500).step_by(97) {
        let kv = only4
            .get_with(format!("k{i:05}"), ReadConsistency::Serializable)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("k{i:05} missing on node 4"));
        assert_eq!(kv.value, format!("value {i}"));
    }
    let kv = only4
        .get_with("after-promote", ReadConsistency::Serializable)
        .await
        .unwrap();
    assert!(kv.is_some());

    tracing::info!("--- remove a follower that is not node 4");
    let leader = cluster.leader().await;
    let victim = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let members = client.admin().member_remove(victim).await.unwrap();
    assert!(!members.iter().any(|m| m.id == victim), "{members:?}");
    assert_eq!(members.len(), 3);
    let listed = client.admin().member_list().await.unwrap();
    assert_eq!(listed.members.len(), 3);
    cluster.node(victim).stop();

    tracing::info!("--- the cluster keeps serving without it");
    for i in 0..50 {
        client.put(format!("late{i}"), "x").await.unwrap();
    }
    assert_eq!(
        client.get("k00042").await.unwrap().unwrap().value,
        "value 42"
    );
}
