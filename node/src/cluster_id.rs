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
#[derive(Clone)]
pub(crate) struct ClusterId {
    catalog: Catalog,
    id: Arc<RwLock<Option<String>>>,
}

impl ClusterId {
    pub fn load(catalog: Catalog) -> Result<ClusterId> {
        let id = catalog.cluster_id()?;
        Ok(ClusterId {
            catalog,
            id: Arc::new(RwLock::new(id)),
        })
    }

    pub fn get(&self) -> Option<String> {
        self.id.read().unwrap().clone()
    }

    /// Sets a fresh id for a cluster this node initialises.
    pub fn create(&self) -> Result<String> {
        let mut id = self.id.write().unwrap();
        if let Some(existing) = id.as_ref() {
            return Err(Error::Rejected(format!(
                "this node already belongs to cluster {existing}"
            )));
        }
        let new = format!("{:032x}", rand::random::<u128>());
        self.catalog.set_cluster_id(&new)?;
        *id = Some(new.clone());
        Ok(new)
    }

    /// Forgets an id made by [`ClusterId::create`] whose cluster could not be initialised.
    pub fn abandon(&self, id: &str) -> Result<()> {
        let mut current = self.id.write().unwrap();
        if current.as_deref() == Some(id) {
            self.catalog.clear_cluster_id()?;
            *current = None;
        }
        Ok(())
    }

    /// Accepts a message from cluster `theirs`: adopts it if this node has none yet.
    pub fn accept(&self, theirs: &str) -> Result<()> {
        if theirs.is_empty() {
            return Err(Error::Rejected("the sender names no cluster".into()));
        }
        if let Some(ours) = self.id.read().unwrap().as_ref() {
            return if ours == theirs {
                Ok(())
            } else {
                Err(Error::WrongCluster {
                    ours: ours.clone(),
                    theirs: theirs.to_string(),
                })
            };
        }
        let mut id = self.id.write().unwrap();
        match id.as_ref() {
            Some(ours) if ours != theirs => Err(Error::WrongCluster {
                ours: ours.clone(),
                theirs: theirs.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                self.catalog.set_cluster_id(theirs)?;
                tracing::info!(cluster = theirs, "joined cluster");
                *id = Some(theirs.to_string());
                Ok(())
            }
        }
    }
}
