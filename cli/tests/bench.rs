//! `islab bench` against a real one-node cluster (a playground): each workload runs, reports
//! the settings it ran with (durability included) and latency percentiles, and a bad setting
//! is refused with its name.

mod common;

use std::time::Duration;

use common::playground::Playground;
use common::{stderr, stdout};
use serde_json::Value;

fn bench(pg: &Playground, args: &[&str]) -> Value {
    let mut all = vec!["-w", "json", "bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--quiet"]);
    let o = pg.islab(&all);
    assert!(
        o.status.success(),
        "stdout: {}; stderr: {}",
        stdout(&o),
        stderr(&o)
    );
    serde_json::from_str(stdout(&o).trim()).expect("one JSON document")
}

#[test]
fn every_workload_runs_and_reports_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = Playground::start(dir.path(), 1, &[]);

    let put = bench(&pg, &["put", "--duration", "1s", "--clients", "4"]);
    assert_eq!(put["settings"]["durability"], "sync");
    assert_eq!(put["settings"]["workload"], "put");
    assert_eq!(put["settings"]["key_size"], 16);
    assert_eq!(put["errors"], 0);
    assert!(put["requests"].as_u64().unwrap() > 0);
    let p = &put["latency"]["put"];
    assert!(p["p50_us"].as_u64().unwrap() > 0);
    assert!(p["p50_us"].as_u64() <= p["p99_us"].as_u64());
    assert!(p["p99_us"].as_u64() <= p["max_us"].as_u64());

    let mixed = bench(
        &pg,
        &[
            "mixed",
            "--duration",
            "1s",
            "--keyspace",
            "500",
            "--distribution",
            "zipf",
            "--read-consistency",
            "serializable",
        ],
    );
    assert_eq!(mixed["settings"]["prefilled"], 500);
    assert!(mixed["latency"]["get"]["count"].as_u64().unwrap() > 0);
    assert!(mixed["latency"]["put"]["count"].as_u64().unwrap() > 0);

    let batch = bench(
        &pg,
        &["put", "--duration", "1s", "--batch", "20", "--clients", "2"],
    );
    assert_eq!(
        batch["keys"].as_u64().unwrap(),
        batch["requests"].as_u64().unwrap() * 20,
        "every batch request writes 20 keys"
    );
    assert_eq!(batch["settings"]["in_flight_per_shard"], 1);

    let get_many = bench(
        &pg,
        &[
            "get",
            "--duration",
            "1s",
            "--batch",
            "30",
            "--keyspace",
            "300",
            "--in-flight-per-shard",
            "2",
        ],
    );
    assert_eq!(get_many["errors"], 0);
    assert_eq!(get_many["settings"]["in_flight_per_shard"], 2);
    assert!(get_many["requests"].as_u64().unwrap() > 0);
    assert_eq!(
        get_many["keys"].as_u64().unwrap(),
        get_many["requests"].as_u64().unwrap() * 30,
        "every batch request reads 30 keys"
    );

    let open = bench(
        &pg,
        &[
            "get",
            "--duration",
            "1s",
            "--rate",
            "200",
            "--keyspace",
            "100",
        ],
    );
    let n = open["requests"].as_u64().unwrap();
    assert!(
        (100..=200).contains(&n),
        "open loop at 200/s for 1 s sent {n}"
    );

    let scan = bench(
        &pg,
        &[
            "scan",
            "--duration",
            "1s",
            "--keyspace",
            "300",
            "--scan-limit",
            "10",
        ],
    );
    assert!(scan["keys"].as_u64().unwrap() >= scan["requests"].as_u64().unwrap());

    let o = pg.islab(&["bench", "put", "--key-size", "4"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--key-size"), "{}", stderr(&o));

    let (status, _) = pg.terminate(Duration::from_secs(30));
    assert!(status.success());
}
