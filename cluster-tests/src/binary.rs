//! The `islab` binary under test.
//!
//! `cargo test --workspace` builds it alongside these tests; run alone (`cargo test -p
//! islab-cluster-tests`) the harness builds it once with cargo. `ISLAB_BIN` overrides both.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Path of the `islab` binary of this build profile.
pub fn islab_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("ISLAB_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test binary> → target/<profile>/islab
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test binary in target/<profile>/deps")
            .to_path_buf();
        let bin = profile_dir.join("islab");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cmd.args(["build", "-p", "islab-cli", "--bin", "islab"]);
        if profile == "release" {
            cmd.arg("--release");
        }
        // Cheap when up to date; makes `cargo test -p islab-cluster-tests` work on its own.
        let status = cmd
            .status()
            .expect("running cargo build for the islab binary");
        assert!(status.success(), "building the islab binary failed");
        assert!(bin.exists(), "{} missing after cargo build", bin.display());
        bin
    })
    .clone()
}

/// Path of the `islab-failpoints` binary: `islab` built with `--features failpoints` (see
/// `islab_storage::failpoints`), a bin target of its own so it never replaces the plain one and
/// shares the dependencies' build; built once per test process with cargo (cheap when up to
/// date). `ISLAB_FAILPOINTS_BIN` overrides it.
pub fn islab_failpoints_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("ISLAB_FAILPOINTS_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test binary> → target/<profile>/islab-failpoints
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test binary in target/<profile>/deps");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let bin = profile_dir.join("islab-failpoints");
        let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cmd.args([
            "build",
            "-p",
            "islab-cli",
            "--bin",
            "islab-failpoints",
            "--features",
            "failpoints",
        ]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("running cargo build for the failpoints islab binary");
        assert!(
            status.success(),
            "building the failpoints islab binary failed"
        );
        assert!(bin.exists(), "{} missing after cargo build", bin.display());
        bin
    })
    .clone()
}
