//! Single-client put latency through the SDK against a real 3-node cluster on loopback.
//!
//! `cargo run --release -p islab-cluster-tests --example put_latency [-- <puts>]`
//!
//! One put in flight at a time (the CLI's path), 16-byte keys, 128-byte values, durability
//! `sync`; prints the settings and the latency percentiles. `islab bench` (a later issue) is
//! the general tool; this measures the one figure the replicated-cluster issue asks for.

use std::time::Instant;

use hdrhistogram::Histogram;
use islab_cluster_tests::Cluster;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let puts: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000);
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let value = vec![b'v'; 128];
    // Warm up the connection and the leader guess.
    for i in 0..200u64 {
        client
            .put(format!("warm{i:012}"), value.clone())
            .await
            .unwrap();
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let started = Instant::now();
    for i in 0..puts {
        let key = format!("key-{i:012}"); // 16 bytes
        let t = Instant::now();
        client.put(key, value.clone()).await.unwrap();
        hist.record(t.elapsed().as_micros() as u64).unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "settings: 3 nodes on loopback, durability sync, 1 client, 1 put in flight, \
         key 16 B, value 128 B, {puts} puts, machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "put latency: p50 {} us, p99 {} us, p99.9 {} us, max {} us; {:.0} puts/s",
        hist.value_at_quantile(0.50),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
        puts as f64 / elapsed.as_secs_f64()
    );
}
