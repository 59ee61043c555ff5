//! openraft's storage conformance suite, run against [`LogStore`] and [`StateMachine`] on a
//! real WAL and checkpoint directory in a temp dir.
//!
//! Every case gets a fresh node directory. The suite covers log state, reads, purge and
//! truncate, vote and committed persistence, membership recovery, apply, and building a
//! snapshot on one store and installing it on another.

use std::sync::Arc;

use islab_raft::{LogStore, StateMachine, TypeConfig};
use islab_storage::{MemStore, Wal, WalConfig};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use tempfile::TempDir;

const GROUP: u64 = 7;

/// Keeps a case's directory alive until the case is over, and lets the WAL finish its
/// in-flight writes before the directory is removed.
struct NodeDir {
    wal: Wal,
    _dir: TempDir,
}

impl Drop for NodeDir {
    fn drop(&mut self) {
        let _ = self.wal.flush();
    }
}

struct WalStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, NodeDir> for WalStoreBuilder {
    async fn build(&self) -> Result<(NodeDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, _report) =
            Wal::open(dir.path().join("wal"), WalConfig::default()).expect("open WAL");
        let log_store = LogStore::new(GROUP, wal.clone());
        let state_machine = StateMachine::new(
            GROUP,
            Arc::new(MemStore::new()),
            dir.path().join("checkpoints").join(GROUP.to_string()),
        )
        .expect("open state machine");
        Ok((NodeDir { wal, _dir: dir }, log_store, state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(WalStoreBuilder)
        .await
        .expect("conformance suite");
}
