//! Which cluster this node belongs to.
//!
//! The id is made once, by the node that initialises the cluster, and persisted in the
//! catalog. Every Raft message carries the sender's; a node adopts the first one it hears (it
//! was just added to that cluster) and from then on refuses any other, so a node started on
//! another cluster's data directory is refused instead of mixing two histories.

use std::sync::{Arc, RwLock};

use islab_storage::Catalog;

use crate::error::{Error, Result};

/// This node's cluster id, shared by the services.
///
/// Reads are a lock away. Changes are rare (once per node, or an init that failed) and
/// persist in the catalog first — a sled write and flush, run off the async workers — one at a
/// time under `changing`.
#[derive(Clone)]
pub(crate) struct ClusterId {
    catalog: Catalog,
    id: Arc<RwLock<Option<String>>>,
    changing: Arc<tokio::sync::Mutex<()>>,
}

impl ClusterId {
    /// Reads the id from the catalog (blocking: call it where blocking is fine).
    pub fn load(catalog: Catalog) -> Result<ClusterId> {
        let id = catalog.cluster_id()?;
        Ok(ClusterId {
            catalog,
            id: Arc::new(RwLock::new(id)),
            changing: Arc::default(),
        })
    }

    pub fn get(&self) -> Option<String> {
        self.id.read().unwrap().clone()
    }

    /// Writes `id` (or clears it) in the catalog, on a blocking thread.
    async fn persist(&self, id: Option<String>) -> Result<()> {
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || match id {
            Some(id) => catalog.set_cluster_id(&id),
            None => catalog.clear_cluster_id(),
        })
        .await
        .map_err(|e| Error::Internal(format!("writing the cluster id: {e}")))??;
        Ok(())
    }

    /// Sets a fresh id for a cluster this node initialises.
    pub async fn create(&self) -> Result<String> {
        let _changing = self.changing.lock().await;
        if let Some(existing) = self.get() {
            return Err(Error::Rejected(format!(
                "this node already belongs to cluster {existing}"
            )));
        }
        let new = format!("{:032x}", rand::random::<u128>());
        self.persist(Some(new.clone())).await?;
        *self.id.write().unwrap() = Some(new.clone());
        Ok(new)
    }

    /// Forgets an id made by [`ClusterId::create`] whose cluster could not be initialised.
    pub async fn abandon(&self, id: &str) -> Result<()> {
        let _changing = self.changing.lock().await;
        if self.get().as_deref() == Some(id) {
            self.persist(None).await?;
            *self.id.write().unwrap() = None;
        }
        Ok(())
    }

    /// Accepts a message from cluster `theirs`: adopts it if this node has none yet.
    pub async fn accept(&self, theirs: &str) -> Result<()> {
        if theirs.is_empty() {
            return Err(Error::Rejected("the sender names no cluster".into()));
        }
        if let Some(ours) = self.get() {
            return same(&ours, theirs);
        }
        let _changing = self.changing.lock().await;
        if let Some(ours) = self.get() {
            return same(&ours, theirs);
        }
        self.persist(Some(theirs.to_string())).await?;
        tracing::info!(cluster = theirs, "joined cluster");
        *self.id.write().unwrap() = Some(theirs.to_string());
        Ok(())
    }
}

fn same(ours: &str, theirs: &str) -> Result<()> {
    if ours == theirs {
        Ok(())
    } else {
        Err(Error::WrongCluster {
            ours: ours.to_string(),
            theirs: theirs.to_string(),
        })
    }
}
