//! `islab bench --target etcd`: the same load generator against an etcd cluster, through the
//! `etcd-client` crate (feature `etcd`), for the side-by-side comparison in
//! `bench/compare-etcd.sh`.
//!
//! The mapping, operation for operation:
//!
//! ```text
//! put                    KV.Put (no lease, no prev_kv)
//! put with --batch N     KV.Txn with N puts and no compares (one atomic write, like a Batch)
//! get, linearizable      KV.Range of one key (etcd's default: a ReadIndex round)
//! get, serializable      KV.Range of one key with serializable = true (the member's own state)
//! get with --batch N     KV.Txn with N ranges of one key (serializable ones when asked: etcd then
//!                        serves the whole Txn from the member's own state)
//! scan                   KV.Range from the key to the end, limit --scan-limit
//! prefill                KV.Txn of 100 puts at a time
//! ```
//!
//! etcd has no durability switch short of `--unsafe-no-fsync`: the report says "fsync"
//! (every write is in the WAL and fsynced on a quorum before it is acknowledged).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use etcd_client::{Client, ConnectOptions, GetOptions, KvClient, Txn, TxnOp};

/// A connection to an etcd cluster: one HTTP/2 connection per endpoint, requests spread over
/// them by etcd-client's balanced channel (a follower forwards a write to its leader).
#[derive(Clone)]
pub struct Etcd {
    /// For status and members (the whole client is ~4 KB; workers share it).
    client: Arc<Client>,
    kv: KvClient,
}

impl Etcd {
    /// Connects to `endpoints` (`host:port`, plain HTTP); every call gives up after `timeout`.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Etcd> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(timeout);
        let client = Client::connect(endpoints, Some(options))
            .await
            .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
        let kv = client.kv_client();
        Ok(Etcd {
            client: Arc::new(client),
            kv,
        })
    }

    /// "etcd <version>", "fsync", and how many voting members the cluster has.
    pub async fn describe(&self) -> Result<(String, String, usize)> {
        let status = self
            .client
            .maintenance_client()
            .status()
            .await
            .context("asking etcd for its status")?;
        let members = self
            .client
            .cluster_client()
            .member_list()
            .await
            .context("asking etcd for its members")?;
        let voters = members.members().iter().filter(|m| !m.is_learner()).count();
        Ok((
            format!("etcd {}", status.version()),
            "fsync".to_string(),
            voters,
        ))
    }

    pub async fn put(&self, key: Bytes, value: Bytes) -> Result<u64, String> {
        self.kv
            .clone()
            .put(key, value, None)
            .await
            .map(|_| 1)
            .map_err(|e| e.to_string())
    }

    /// Puts all of `items` in one transaction.
    pub async fn put_all(&self, items: Vec<(Bytes, Bytes)>) -> Result<u64, String> {
        let n = items.len() as u64;
        let ops: Vec<TxnOp> = items
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, v, None))
            .collect();
        self.kv
            .clone()
            .txn(Txn::new().and_then(ops))
            .await
            .map(|_| n)
            .map_err(|e| e.to_string())
    }

    pub async fn get(&self, key: Bytes, serializable: bool) -> Result<u64, String> {
        let options = serializable.then(|| GetOptions::new().with_serializable());
        self.kv
            .clone()
            .get(key, options)
            .await
            .map(|_| 1)
            .map_err(|e| e.to_string())
    }

    pub async fn get_all(&self, keys: Vec<Bytes>, serializable: bool) -> Result<u64, String> {
        let n = keys.len() as u64;
        let ops: Vec<TxnOp> = keys
            .into_iter()
            .map(|k| {
                TxnOp::get(
                    k,
                    serializable.then(|| GetOptions::new().with_serializable()),
                )
            })
            .collect();
        self.kv
            .clone()
            .txn(Txn::new().and_then(ops))
            .await
            .map(|_| n)
            .map_err(|e| e.to_string())
    }

    pub async fn scan(&self, from: Bytes, limit: u32, serializable: bool) -> Result<u64, String> {
        let mut options = GetOptions::new()
            .with_from_key()
            .with_limit(i64::from(limit));
        if serializable {
            options = options.with_serializable();
        }
        self.kv
            .clone()
            .get(from, Some(options))
            .await
            .map(|r| r.kvs().len() as u64)
            .map_err(|e| e.to_string())
    }
}
