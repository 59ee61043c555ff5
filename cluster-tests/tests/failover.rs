//! `kill -9` of the leader while clients write: a new leader within 5 s, the clients carry on
//! through the SDK's retries, and every acknowledged write is still readable afterwards, with
//! the version it was acknowledged with. Then the killed node returns and catches up.

use std::time::{Duration, Instant};

use islab_cluster_tests::{Cluster, Load, data_group, init_tracing, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    init_tracing();
    let mut cluster = Cluster::start(3).await;

    tracing::info!("--- four writers get going");
    let load = Load::start(&cluster.client(), "w", 4);
    load.wait_more(0, 200, "200 acknowledged writes").await;

    let old_leader = cluster.leader().await;
    tracing::info!(old_leader, "--- kill -9 the leader under load");
    cluster.node(old_leader).kill();
    let killed_at = Instant::now();
    let new_leader = wait_for("a new leader", Duration::from_secs(30), || async {
        for addr in cluster.endpoints() {
            if let Ok(s) = cluster.status(&addr).await
                && data_group(&s).unwrap().role == "leader"
                && s.node_id != old_leader
            {
                return Ok(s.node_id);
            }
        }
        Err("no new leader yet".to_string())
    })
    .await;
    let failover = killed_at.elapsed();
    tracing::info!(new_leader, ?failover, "--- new leader elected");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );

    load.wait_more(load.count(), 200, "200 more writes after the failover")
        .await;
    let (acked, failures) = load.stop().await;
    assert!(
        failures <= 4,
        "{failures} writes failed outright; the SDK should ride out a failover"
    );

    tracing::info!("--- bring the old leader back; it catches up");
    cluster.node(old_leader).start();
    cluster.converged(0).await;

    tracing::info!("--- every acknowledged write is readable, with its version");
    cluster.assert_acked(&acked).await;
}
