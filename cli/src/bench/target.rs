//! The systems `islab bench` can load: an IsLabDB cluster through the SDK, or (feature `etcd`,
//! `--target etcd`) an etcd cluster through `etcd`. `bench.rs` only sees [`Target`]: the
//! loops, keys, histograms and report are the same for both.

use std::time::Duration;

#[cfg(not(feature = "etcd"))]
use anyhow::bail;
use anyhow::{Context, Result};
use bytes::Bytes;
use islab_client::{BatchOp, Client, ReadConsistency, Scan};

use crate::cli::{BenchArgs, BenchTarget, GlobalArgs};
use crate::connect;

/// The system under load. Every operation returns how many keys it touched, or the error as
/// text.
#[derive(Clone)]
pub(crate) enum Target {
    Islab(Client),
    #[cfg(feature = "etcd")]
    Etcd(Box<super::etcd::Etcd>),
}

/// What a target says about itself for the report.
pub(crate) struct TargetInfo {
    pub system: String,
    pub durability: String,
    pub voters: usize,
}

impl Target {
    pub async fn connect(args: &BenchArgs, global: &GlobalArgs) -> Result<Target> {
        match args.target {
            BenchTarget::Islab => Ok(Target::Islab(connect::client_with(
                global,
                Duration::from_secs(30),
                |c| c.max_in_flight_per_shard = args.in_flight_per_shard,
            )?)),
            #[cfg(feature = "etcd")]
            BenchTarget::Etcd => {
                let timeout = global.timeout.unwrap_or(Duration::from_secs(30));
                let etcd = super::etcd::Etcd::connect(&connect::endpoints(global), timeout).await?;
                Ok(Target::Etcd(Box::new(etcd)))
            }
            #[cfg(not(feature = "etcd"))]
            BenchTarget::Etcd => bail!(
                "this islab was built without etcd support: \
                 cargo build --release -p islab-cli --features etcd"
            ),
        }
    }

    pub async fn info(&self) -> Result<TargetInfo> {
        match self {
            Target::Islab(client) => {
                let status = client
                    .admin()
                    .status()
                    .await
                    .context("asking the cluster for its status")?;
                let voters = status
                    .groups
                    .first()
                    .map_or(0, |g| g.members.iter().filter(|m| m.voter).count());
                Ok(TargetInfo {
                    system: "islab".to_string(),
                    durability: status.durability.clone(),
                    voters,
                })
            }
            #[cfg(feature = "etcd")]
            Target::Etcd(etcd) => {
                let (system, durability, voters) = etcd.describe().await?;
                Ok(TargetInfo {
                    system,
                    durability,
                    voters,
                })
            }
        }
    }

    pub async fn put(&self, key: Bytes, value: Bytes) -> Result<u64, String> {
        match self {
            Target::Islab(client) => client
                .put(key, value)
                .await
                .map(|_| 1)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Target::Etcd(etcd) => etcd.put(key, value).await,
        }
    }

    /// Several puts in one request: IsLabDB's Batch per shard, etcd's Txn.
    pub async fn put_all(&self, items: Vec<(Bytes, Bytes)>) -> Result<u64, String> {
        match self {
            Target::Islab(client) => {
                let ops: Vec<BatchOp> =
                    items.into_iter().map(|(k, v)| BatchOp::put(k, v)).collect();
                client
                    .batch_per_shard(ops)
                    .await
                    .map(|r| r.len() as u64)
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "etcd")]
            Target::Etcd(etcd) => etcd.put_all(items).await,
        }
    }

    pub async fn get(&self, key: Bytes, consistency: ReadConsistency) -> Result<u64, String> {
        match self {
            Target::Islab(client) => client
                .get_with(key, consistency)
                .await
                .map(|_| 1)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Target::Etcd(etcd) => {
                etcd.get(key, consistency == ReadConsistency::Serializable)
                    .await
            }
        }
    }

    /// Several gets in one request: IsLabDB's GetMany per shard, etcd's Txn of ranges.
    pub async fn get_all(
        &self,
        keys: Vec<Bytes>,
        consistency: ReadConsistency,
    ) -> Result<u64, String> {
        match self {
            Target::Islab(client) => client
                .get_many(keys, consistency)
                .await
                .map(|r| r.len() as u64)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Target::Etcd(etcd) => {
                etcd.get_all(keys, consistency == ReadConsistency::Serializable)
                    .await
            }
        }
    }

    pub async fn scan(
        &self,
        from: Bytes,
        limit: u32,
        consistency: ReadConsistency,
    ) -> Result<u64, String> {
        match self {
            Target::Islab(client) => {
                let scan = Scan::from_key(from)
                    .limit(limit as usize)
                    .consistency(consistency);
                client
                    .scan_page(&scan)
                    .await
                    .map(|p| p.items.len() as u64)
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "etcd")]
            Target::Etcd(etcd) => {
                etcd.scan(from, limit, consistency == ReadConsistency::Serializable)
                    .await
            }
        }
    }
}
