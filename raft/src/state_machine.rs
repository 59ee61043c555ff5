//! One shard's state machine: committed commands applied to its memory store.
//!
//! The state lives only in memory ([`MemStore`], behind a [`StoreSlot`] readers share);
//! durability comes from the WAL plus checkpoints. On restart the state machine starts empty,
//! openraft installs the current checkpoint (`get_current_snapshot` → `install_snapshot`) and
//! replays the committed WAL tail — which is why the log store persists the committed log id.
//!
//! Snapshots are checkpoint files. Building one must not stall writes, so it is split:
//!
//! ```text
//! SM worker (serial with apply)           spawned builder task
//! try_create_snapshot_builder
//!   memstore.begin_checkpoint(last version) ► build_snapshot
//!   (a view fixed at `applied`)             spawn_blocking: Checkpoint::write, rename, fsync
//! apply, apply, ... (not blocked)           becomes current unless overtaken
//! ```
//!
//! Every entry's responder is answered — blank and membership entries too — or the
//! `client_write` waiting on it would never return.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use islab_storage::{Checkpoint, GroupId, MemStore, Response};
use openraft::OptionalSend;
use openraft::storage::{EntryResponder, RaftStateMachine};

use crate::checkpoint_dir::{self, CheckpointDir};
use crate::error::{Error, io_error};
use crate::snapshot_builder::SnapshotBuilder;
use crate::store_slot::StoreSlot;
use crate::type_config::{
    EntryPayload, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig,
};

/// The openraft state machine of one shard.
pub struct StateMachine {
    group: GroupId,
    store: StoreSlot,
    applied: Option<LogId>,
    membership: StoredMembership,
    checkpoints: Arc<CheckpointDir>,
}

impl StateMachine {
    /// The state machine of `group`, applying to `store`, keeping its checkpoints in
    /// `checkpoint_dir` (created if missing; one directory per group).
    ///
    /// Blocks briefly: it lists the directory and reads checkpoint headers to find the
    /// current snapshot. The snapshot itself is loaded later, when openraft installs it.
    pub fn new(
        group: GroupId,
        store: Arc<MemStore>,
        checkpoint_dir: impl Into<PathBuf>,
    ) -> Result<StateMachine, Error> {
        Ok(StateMachine {
            group,
            store: StoreSlot::new(store),
            applied: None,
            membership: StoredMembership::default(),
            checkpoints: Arc::new(CheckpointDir::open(group, checkpoint_dir.into())?),
        })
    }

    /// The group this state machine belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// A handle readers use to reach the shard's current memory store.
    pub fn store(&self) -> StoreSlot {
        self.store.clone()
    }

    /// The directory holding this group's checkpoints.
    pub fn checkpoint_dir(&self) -> &Path {
        self.checkpoints.path()
    }

    /// A builder for a checkpoint of the state as of the last applied entry, or the reason
    /// none can start now (another checkpoint of this store is still being written).
    fn snapshot_builder(&self) -> Result<SnapshotBuilder, islab_storage::Error> {
        // The cut is in version space, not log indexes: see `MemStore::last_version`.
        let store = self.store.current();
        let scan = store.begin_checkpoint(store.last_version())?;
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
        };
        Ok(SnapshotBuilder::new(
            self.group,
            meta,
            scan,
            Arc::clone(&self.checkpoints),
        ))
    }

    /// Checks that `checkpoint` holds what `meta` says: this group, at that log id, with that
    /// membership. A snapshot is trusted with a whole shard's state; a mix-up must not be
    /// installed silently.
    fn verify(&self, meta: &SnapshotMeta, checkpoint: &Checkpoint) -> Result<(), Error> {
        let mismatch = |reason: String| Error::SnapshotMismatch {
            group: self.group,
            file: checkpoint.path().to_path_buf(),
            reason,
        };
        let header = checkpoint.meta();
        if header.group != self.group {
            return Err(mismatch(format!("it belongs to group {}", header.group)));
        }
        let described = checkpoint_dir::snapshot_meta(header)?;
        if described != *meta {
            return Err(mismatch(format!(
                "it holds {described} but the snapshot is {meta}"
            )));
        }
        Ok(())
    }

    async fn install(&mut self, meta: &SnapshotMeta, checkpoint: Checkpoint) -> Result<(), Error> {
        self.verify(meta, &checkpoint)?;
        let checkpoints = Arc::clone(&self.checkpoints);
        let installed_meta = meta.clone();
        let store = tokio::task::spawn_blocking(move || -> Result<MemStore, Error> {
            let store = checkpoint.load()?;
            checkpoints.install(installed_meta, checkpoint)?;
            Ok(store)
        })
        .await
        .map_err(|e| Error::TaskFailed {
            group: self.group,
            what: "snapshot install",
            reason: e.to_string(),
        })??;
        let old = self.store.replace(Arc::new(store));
        // Freeing a large store is real work; keep it off the async workers.
        tokio::task::spawn_blocking(move || drop(old));
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(group = self.group, snapshot = %meta, "installed snapshot");
        Ok(())
    }
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("group", &self.group)
            .field("applied", &self.applied)
            .field("membership", &self.membership)
            .finish_non_exhaustive()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Checkpoint;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let store = self.store.current();
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id;
            islab_storage::failpoint!("apply::before", |_| Err(
                islab_storage::failpoints::injected_error("apply::before")
            ));
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Normal(request) => store.apply_entry(log_id.index, &request),
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(log_id), membership);
                    Response::None
                }
            };
            self.applied = Some(log_id);
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<SnapshotBuilder> {
        match self.snapshot_builder() {
            Ok(builder) => Some(builder),
            Err(e) if !force => {
                tracing::info!(group = self.group, error = %e, "deferring snapshot");
                None
            }
            // Forced (startup, or a follower needs it): hand back a builder that reports why.
            Err(e) => Some(SnapshotBuilder::failed(self.group, e)),
        }
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        match self.snapshot_builder() {
            Ok(builder) => builder,
            Err(e) => SnapshotBuilder::failed(self.group, e),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Checkpoint,
    ) -> Result<(), io::Error> {
        self.install(meta, snapshot).await.map_err(io_error)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self.checkpoints.current())
    }
}
