//! openraft stays behind `islab-raft`: no other crate of the workspace depends on it.
//!
//! An openraft upgrade (it is a 0.10 alpha) must be a change to this crate only; the node
//! reaches Raft through `Group`, `GroupMetrics` and the transport types exported here. This
//! test reads the workspace's manifests (`cargo metadata --no-deps`, offline) and fails naming
//! any other member that declares openraft as a dependency.

use std::process::Command;

#[test]
fn only_islab_raft_depends_on_openraft() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .args(["--manifest-path", manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("a package list");
    assert!(
        packages.iter().any(|p| p["name"] == "islab-node"),
        "the workspace has islab-node: the metadata read is the right one"
    );
    let mut offenders = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default();
        let uses_openraft = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["name"] == "openraft");
        if uses_openraft && name != "islab-raft" {
            offenders.push(name.to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "only islab-raft may depend on openraft; these do too: {offenders:?} \
         (reach Raft through islab_raft::Group instead)"
    );
}
