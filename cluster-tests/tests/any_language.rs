//! IsLabDB from any language: a plain gRPC client in Python (`cluster-tests/python/
//! plain_client.py`, stubs generated from the .proto files at run time, no routing metadata)
//! puts, gets, scans, batches and compares-and-swaps against a real 3-node, 8-shard cluster,
//! also on shards idle past the quiescence delay, following at most one `islab-leader` hint
//! per request, and lists the services through gRPC reflection (regression test for issue
//! 14: the first write to a quiet shard failed with a hintless "not the leader").
//!
//! Needs python3 with grpcio, grpcio-tools and grpcio-reflection
//! (`cluster-tests/python/requirements.txt`; `scripts/test` installs them). Missing, the test
//! fails saying so: it is never skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use islab_cluster_tests::{Cluster, init_tracing, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_python_grpc_client_is_served_on_busy_and_quiet_shards() {
    init_tracing();
    let cluster = Cluster::start_sharded(3, 8, 3, &[]).await;
    tracing::info!("--- wait until the controller has spread the leaders (no more transfers)");
    wait_for(
        "leaders spread, at most 3 per node",
        Duration::from_secs(90),
        || async {
            let leaders = cluster.shard_leaders(8).await;
            let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
            for node in leaders.values() {
                *per_node.entry(*node).or_default() += 1;
            }
            if per_node.values().all(|n| *n <= 3) {
                Ok(())
            } else {
                Err(format!("leaders per node {per_node:?}"))
            }
        },
    )
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/plain_client.py");
    let endpoints = cluster.endpoints();
    tracing::info!("--- python3 plain_client.py {endpoints:?}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .args(&endpoints)
            .output()
            .expect("python3 must be installed (scripts/test installs what the test needs)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the Python client failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("ok: "), "{stdout}");
}
