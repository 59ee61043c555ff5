//! A shard's whole life on real storage, with openraft driving the adapters: writes answered
//! with their versions, a checkpoint that becomes the snapshot and lets the log be purged, a
//! new replica brought up by installing that checkpoint, and a restart that recovers from
//! checkpoint plus WAL tail.
//!
//! The nodes run in one process and talk through an in-memory router that hands requests
//! straight to the target's `Raft`; a snapshot travels as the `Checkpoint` handle itself, so
//! the receiving state machine links the leader's file into its own directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use islab_raft::{LogStore, Node, NodeId, Snapshot, StateMachine, StoreSlot, TypeConfig, Vote};
use islab_storage::{Checkpoint, Command, MemStore, Request, Response, Wal, WalConfig};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Config, OptionalSend, ServerState, SnapshotPolicy};

/// The raw openraft handle: this test drives groups without `islab_raft::Group`.
type Raft = openraft::Raft<TypeConfig, StateMachine>;

const GROUP: u64 = 3;
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

/// Delivers RPCs to the `Raft` of the target node, if it is running.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
}

impl Router {
    fn raft(&self, id: NodeId) -> Result<Raft, Unreachable<TypeConfig>> {
        self.nodes
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or_else(|| Unreachable::from_string(format!("node {id} is down")))
    }
}

struct Peer {
    target: NodeId,
    router: Router,
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Peer {
        Peer {
            target,
            router: self.clone(),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Checkpoint;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self.router.raft(self.target)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| Unreachable::new(&e).into())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let raft = self.router.raft(self.target)?;
        raft.vote(rpc)
            .await
            .map_err(|e| Unreachable::new(&e).into())
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let raft = self.router.raft(self.target)?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| Unreachable::new(&e).into())
    }
}

/// One running node of the shard.
struct TestNode {
    raft: Raft,
    wal: Wal,
    store: StoreSlot,
}

async fn start(id: NodeId, dir: &Path, router: &Router) -> TestNode {
    let (wal, _report) = Wal::open(dir.join("wal"), WalConfig::default()).expect("open WAL");
    let log_store = LogStore::new(GROUP, wal.clone());
    let state_machine = StateMachine::new(
        GROUP,
        Arc::new(MemStore::new()),
        dir.join("checkpoints").join(GROUP.to_string()),
    )
    .expect("open state machine");
    let store = state_machine.store();
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    }
    .validate()
    .expect("valid config");
    let raft = Raft::new(
        id,
        Arc::new(config),
        router.clone(),
        log_store,
        state_machine,
    )
    .await
    .expect("start raft");
    router.nodes.lock().unwrap().insert(id, raft.clone());
    TestNode { raft, wal, store }
}

async fn stop(id: NodeId, node: TestNode, router: &Router) {
    router.nodes.lock().unwrap().remove(&id);
    node.raft.shutdown().await.expect("shutdown raft");
    drop(node.raft);
    node.wal.shutdown().expect("shutdown WAL");
}

fn put(i: u64) -> Request {
    Request::new(Command::Put {
        key: Bytes::from(format!("key-{i:03}")),
        value: Bytes::from(format!("value-{i}")),
        expires_at: None,
    })
}

fn assert_holds_keys(store: &StoreSlot, n: u64) {
    let store = store.current();
    assert_eq!(store.len() as u64, n);
    for i in 0..n {
        let got = store
            .get(format!("key-{i:03}").as_bytes())
            .expect("key present");
        assert_eq!(got.value, Bytes::from(format!("value-{i}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_snapshot_catch_up_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let router = Router::default();

    tracing::info!("--- start node 1 and make it the only voter");
    let n1 = start(1, &dir.path().join("n1"), &router).await;
    n1.raft
        .initialize(BTreeMap::from([(1, Node::new("n1"))]))
        .await
        .expect("initialize");
    n1.raft
        .wait(TIMEOUT)
        .state(ServerState::Leader, "node 1 leads")
        .await
        .expect("leader");

    tracing::info!("--- every write is answered with its version, the entry's log index");
    let mut last = None;
    for i in 0..20 {
        let resp = n1.raft.client_write(put(i)).await.expect("write");
        assert_eq!(
            resp.data,
            Response::Put {
                version: resp.log_id.index
            }
        );
        last = Some(resp.log_id);
    }
    let last = last.unwrap();
    assert_holds_keys(&n1.store, 20);

    tracing::info!("--- a checkpoint becomes the snapshot and the log is purged up to it");
    n1.raft
        .trigger()
        .snapshot()
        .await
        .expect("trigger snapshot");
    n1.raft
        .wait(TIMEOUT)
        .snapshot(last, "snapshot built")
        .await
        .expect("snapshot");
    n1.raft
        .wait(TIMEOUT)
        .purged(Some(last), "log purged")
        .await
        .expect("purged");
    let snapshot = n1.raft.get_snapshot().await.unwrap().expect("a snapshot");
    assert_eq!(snapshot.meta.last_log_id, Some(last));
    assert!(!snapshot.snapshot.meta().snapshot_id.is_empty());
    let state = n1.wal.log_state(GROUP);
    assert_eq!(state.purged.map(|p| p.index), Some(last.index));

    tracing::info!("--- a new replica can only catch up by installing the checkpoint");
    let n2 = start(2, &dir.path().join("n2"), &router).await;
    n1.raft
        .add_learner(2, Node::new("n2"), true)
        .await
        .expect("add learner");
    n2.raft
        .wait(TIMEOUT)
        .applied_index_at_least(Some(last.index), "learner caught up")
        .await
        .expect("learner applied");
    assert_holds_keys(&n2.store, 20);
    let installed = n2
        .raft
        .get_snapshot()
        .await
        .unwrap()
        .expect("installed snapshot");
    assert_eq!(installed.meta, snapshot.meta);
    assert!(installed.snapshot.path().starts_with(dir.path().join("n2")));

    tracing::info!("--- writes after the snapshot reach the learner through the log");
    let resp = n1.raft.client_write(put(20)).await.expect("write");
    n2.raft
        .wait(TIMEOUT)
        .applied_index_at_least(Some(resp.log_id.index), "learner applied the tail")
        .await
        .expect("learner applied");
    assert_holds_keys(&n2.store, 21);

    tracing::info!("--- restart node 1: checkpoint plus WAL tail restore every key");
    stop(1, n1, &router).await;
    let n1 = start(1, &dir.path().join("n1"), &router).await;
    n1.raft
        .wait(TIMEOUT)
        .state(ServerState::Leader, "node 1 leads again")
        .await
        .expect("leader after restart");
    n1.raft
        .wait(TIMEOUT)
        .applied_index_at_least(Some(resp.log_id.index), "replayed")
        .await
        .expect("replayed");
    assert_holds_keys(&n1.store, 21);
    let resp = n1
        .raft
        .client_write(put(21))
        .await
        .expect("write after restart");
    assert!(matches!(resp.data, Response::Put { .. }));
    n2.raft
        .wait(TIMEOUT)
        .applied_index_at_least(
            Some(resp.log_id.index),
            "learner follows the restarted leader",
        )
        .await
        .expect("learner applied");
    assert_holds_keys(&n2.store, 22);

    stop(2, n2, &router).await;
    stop(1, n1, &router).await;
}
