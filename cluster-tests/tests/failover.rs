//! `kill -9` of the leader while clients write: a new leader within 5 s, the clients carry on
//! through the SDK's retries, and every acknowledged write is still readable afterwards, with
//! the version it was acknowledged with. Then the killed node returns and catches up.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use islab_cluster_tests::{Cluster, init_tracing, wait_for};
use tokio::sync::watch;

/// Writes unique keys until told to stop; returns what was acknowledged: (key, value, version).
async fn writer(
    client: islab_client::Client,
    id: usize,
    stop: watch::Receiver<bool>,
    acked: Arc<Mutex<Vec<(String, String, u64)>>>,
) -> usize {
    let mut failures = 0;
    for i in 0.. {
        if *stop.borrow() {
            break;
        }
        let key = format!("w{id}-{i:06}");
        let value = format!("value-{id}-{i}");
        match client.put(key.clone(), value.clone()).await {
            Ok(version) => acked.lock().unwrap().push((key, value, version)),
            Err(e) => {
                // Unknown outcome: allowed, but must be rare (the SDK retries through failover).
                tracing::warn!(%key, error = %e, "write failed");
                failures += 1;
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    init_tracing();
    let mut cluster = Cluster::start(3).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let writers: Vec<_> = (0..4)
        .map(|id| tokio::spawn(writer(cluster.client(), id, stop_rx.clone(), acked.clone())))
        .collect();
    let count = |acked: &Arc<Mutex<Vec<_>>>| acked.lock().unwrap().len();

    tracing::info!("--- let the writers get going");
    wait_for(
        "200 acknowledged writes",
        Duration::from_secs(60),
        || async {
            let n = count(&acked);
            if n >= 200 {
                Ok(())
            } else {
                Err(format!("{n} so far"))
            }
        },
    )
    .await;

    let old_leader = cluster.leader().await;
    tracing::info!(old_leader, "--- kill -9 the leader under load");
    cluster.node(old_leader).kill();
    let killed_at = Instant::now();
    let new_leader = wait_for("a new leader", Duration::from_secs(30), || async {
        for addr in cluster.endpoints() {
            if let Ok(s) = cluster.status(&addr).await
                && s.groups[0].role == "leader"
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

    let before = count(&acked);
    wait_for(
        "200 more writes after the failover",
        Duration::from_secs(60),
        || async {
            let n = count(&acked);
            if n >= before + 200 {
                Ok(())
            } else {
                Err(format!("{} since failover", n - before))
            }
        },
    )
    .await;
    stop_tx.send(true).unwrap();
    let mut failures = 0;
    for w in writers {
        failures += w.await.unwrap();
    }
    assert!(
        failures <= 4,
        "{failures} writes failed outright; the SDK should ride out a failover"
    );

    tracing::info!("--- bring the old leader back; it catches up");
    cluster.node(old_leader).start();
    cluster.converged(0).await;

    tracing::info!("--- every acknowledged write is readable, with its version");
    let client = cluster.client();
    let acked = acked.lock().unwrap().clone();
    for (key, value, version) in &acked {
        let got = client
            .get(key.clone())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(&got.value, value, "{key}");
        assert_eq!(got.version, *version, "{key}");
    }
    tracing::info!(checked = acked.len(), "all acknowledged writes present");
}
