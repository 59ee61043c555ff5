//! The commands the container deployment relies on (issue 5), against a real playground:
//! `islab health` as the healthcheck, `cluster init --if-needed` as the one-shot init job that
//! runs on every start, and `--address-map` for a host that reaches nodes by other addresses.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::playground::Playground;
use common::{islab, ok, stderr};
use serde_json::Value;

#[test]
fn health_init_if_needed_and_the_address_map() {
    let tmp = tempfile::tempdir().unwrap();
    eprintln!("--- start a 1-node playground (initialised by it)");
    let mut pg = Playground::start(tmp.path(), 1, &[]);
    let node = pg.endpoints.clone();

    eprintln!("--- health: SERVING, exit 0; JSON names the endpoint");
    assert_eq!(ok(&islab(&["health", "--endpoint", &node])), "SERVING\n");
    assert_eq!(ok(&islab(&["--endpoints", &node, "health"])), "SERVING\n");
    let doc: Value =
        serde_json::from_str(&ok(&islab(&["health", "--endpoint", &node, "-w", "json"]))).unwrap();
    assert_eq!(
        (&doc["endpoint"], &doc["status"]),
        (&node.as_str().into(), &"SERVING".into())
    );
    let kv = ok(&islab(&[
        "health",
        "--endpoint",
        &node,
        "--service",
        "islab.v1.Kv",
    ]));
    assert_eq!(kv, "SERVING\n");

    eprintln!("--- health of a closed port or an unknown service: exit 1, the cause named");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let o = islab(&["health", "--endpoint", &closed, "--timeout", "2s"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("health check of {closed}")),
        "{}",
        stderr(&o)
    );
    let o = islab(&[
        "health",
        "--endpoint",
        &node,
        "--service",
        "no.such.Service",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("NotFound"), "{}", stderr(&o));

    eprintln!("--- init --if-needed on a cluster that exists: exit 0, nothing changed");
    let status: Value =
        serde_json::from_str(&ok(&pg.islab(&["cluster", "status", "-w", "json"]))).unwrap();
    let cluster = status["endpoints"][0]["cluster_id"]
        .as_str()
        .unwrap()
        .to_string();
    let again = ok(&pg.islab(&["cluster", "init", "--if-needed"]));
    assert!(
        again.starts_with(&format!("cluster_id={cluster} already_initialised=true\n")),
        "{again}"
    );
    assert!(again.contains("node=1 "), "{again}");
    let doc: Value = serde_json::from_str(&ok(&pg.islab(&[
        "cluster",
        "init",
        "--if-needed",
        "-w",
        "json",
    ])))
    .unwrap();
    assert_eq!(doc["already_initialised"], true, "{doc}");
    assert_eq!(doc["cluster_id"], cluster.as_str(), "{doc}");

    eprintln!("--- an endpoint named by an address only the map knows");
    let port = node.rsplit(':').next().unwrap();
    let name = format!("node1.islab.invalid:{port}");
    let map = format!("{name}={node}");
    let put = ok(&islab(&[
        "--endpoints",
        &name,
        "--address-map",
        &map,
        "put",
        "mapped",
        "yes",
    ]));
    assert!(put.starts_with("OK version="), "{put}");
    assert_eq!(ok(&pg.islab(&["get", "mapped"])), "yes\n");

    let (status, _) = pg.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}; stderr: {}", pg.stderr());
}
