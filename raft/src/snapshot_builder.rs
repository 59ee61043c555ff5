//! Writes one checkpoint from a view of the memory store fixed when the builder was made.
//!
//! The state machine creates a [`SnapshotBuilder`] between two applies, so its
//! [`CheckpointScan`] sees the store exactly at the last applied index; openraft then runs
//! `build_snapshot` on its own task while applies continue. The file is written on a blocking
//! thread (compression and fsync) and published through the group's checkpoint directory.

use std::io;
use std::sync::Arc;

use islab_storage::{CheckpointScan, GroupId};
use openraft::RaftSnapshotBuilder;

use crate::checkpoint_dir::CheckpointDir;
use crate::error::{Error, io_error};
use crate::type_config::{Snapshot, SnapshotMeta, TypeConfig};

/// Builds one snapshot of a shard.
pub struct SnapshotBuilder {
    group: GroupId,
    /// The view to write, or why none could be taken; taken by the one build.
    plan: Option<Result<Planned, islab_storage::Error>>,
}

/// What a build will write and where.
struct Planned {
    meta: SnapshotMeta,
    scan: CheckpointScan,
    checkpoints: Arc<CheckpointDir>,
}

impl SnapshotBuilder {
    pub(crate) fn new(
        group: GroupId,
        meta: SnapshotMeta,
        scan: CheckpointScan,
        checkpoints: Arc<CheckpointDir>,
    ) -> SnapshotBuilder {
        let planned = Planned {
            meta,
            scan,
            checkpoints,
        };
        SnapshotBuilder {
            group,
            plan: Some(Ok(planned)),
        }
    }

    /// A builder that could not take its view; building reports `reason`.
    pub(crate) fn failed(group: GroupId, reason: islab_storage::Error) -> SnapshotBuilder {
        SnapshotBuilder {
            group,
            plan: Some(Err(reason)),
        }
    }

    async fn build(&mut self) -> Result<Snapshot, Error> {
        let group = self.group;
        let planned = self.plan.take().ok_or(Error::TaskFailed {
            group,
            what: "checkpoint write",
            reason: "this builder already built its snapshot".into(),
        })??;
        tokio::task::spawn_blocking(move || {
            let Planned {
                meta,
                scan,
                checkpoints,
            } = planned;
            let snapshot = checkpoints.build(meta, scan)?;
            tracing::info!(group, snapshot = %snapshot.meta,
                file = %snapshot.snapshot.path().display(), bytes = snapshot.snapshot.size(),
                "checkpoint written");
            Ok(snapshot)
        })
        .await
        .map_err(|e| Error::TaskFailed {
            group,
            what: "checkpoint write",
            reason: e.to_string(),
        })?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = islab_storage::Checkpoint;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        self.build().await.map_err(io_error)
    }
}
