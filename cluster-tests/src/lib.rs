//! Harness for multi-process tests: real `islab server` processes on free loopback ports,
//! started, stopped (SIGTERM), killed (SIGKILL) and restarted on the same data directory;
//! and the container deployment (docker compose), with Docker killing, pausing and cutting off
//! containers.
//!
//! Tests wait on conditions with generous deadlines ([`wait_for`]), never sleep-and-hope: on a
//! loaded 2-core machine a flaky test is a bug.
//!
//! # Layout
//!
//! - `binary` — finding (or building) the `islab` binary, and one built with failpoints.
//! - [`Load`] (`load.rs`) — writers that record what was acknowledged.
//! - `process` — [`NodeProcess`]: one `islab server`.
//! - [`Cluster`] (`cluster.rs`) — N nodes, initialised, with a client and status helpers.
//! - [`proxy`] — a fault-injecting TCP proxy on every link between nodes: partitions,
//!   delay and loss on loopback.
//! - `wait` — [`wait_for`].
//! - [`history`] — a Jepsen-style record of concurrent clients' operations (invoke, complete,
//!   outcome), savable as JSON.
//! - [`checker`] — a per-key linearizability checker of such histories (a versioned register
//!   model, porcupine-style search).
//! - [`ComposeCluster`] (`compose.rs`) — the top-level docker-compose.yml as a compose project
//!   of its own, torn down with its volumes on drop; Docker as the fault injector.

mod binary;
pub mod checker;
mod cluster;
pub mod compose;
pub mod history;
mod load;
mod process;
pub mod proxy;
mod wait;

pub use binary::{islab_binary, islab_failpoints_binary};
pub use cluster::{Cluster, DATA_SHARD, data_group};
pub use compose::ComposeCluster;
pub use load::Load;
pub use process::NodeProcess;
pub use wait::wait_for;

/// The log index of the entry that wrote `version` (a version is the entry's index × 4096 plus
/// the request's position in it: `islab_storage::version`), for waiting until replicas have
/// applied a write.
pub fn entry_index(version: u64) -> u64 {
    version >> POSITION_BITS
}

/// `islab_storage::POSITION_BITS` (a dev-dependency only: the tests drive the binary).
const POSITION_BITS: u32 = 12;

#[cfg(test)]
#[test]
fn position_bits_match_the_store() {
    assert_eq!(POSITION_BITS, islab_storage::POSITION_BITS);
    assert_eq!(entry_index(islab_storage::version(77, 5)), 77);
}

/// Logs for tests: `RUST_LOG` or info.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A free TCP port on 127.0.0.1 (bound, read, released: another process could take it before
/// the node binds it, which [`NodeProcess::start`] reports with the node's log).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
