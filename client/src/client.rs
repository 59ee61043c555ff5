//! [`Client`]: the data API of IsLabDB, with leader discovery and safe retries built in.
//!
//! A `Client` is a cheap handle (`Clone` shares everything): one [`Router`] (routing cache
//! with one HTTP/2 channel per node, write-id source, configuration) and the two coalescers
//! of its writes and gets. Every call goes through the router and its retry loop (`router.rs`,
//! `retry.rs`); this file only shapes requests and responses, and hands puts, deletes and gets
//! to the coalescers (`write_coalesce.rs`, `read_coalesce.rs`).
//!
//! The client fetches the shard map once (from any node) and routes every key to its shard:
//! writes (put, delete, cas, batch) and linearizable reads to the shard's leader,
//! serializable reads to any of its replicas. Every request carries the map's epoch; a node
//! with a newer map answers with it, and the retry loop installs it and goes on. Scans ask
//! every shard and merge. Each write takes its `WriteId` once, before the first attempt, so
//! resending it after a lost answer cannot apply it twice.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use islab_proto::v1 as proto;
use islab_shardmap::ShardMap;

use crate::admin::Admin;
use crate::batch::{self, BatchOp, OpResult};
use crate::coalescer::{Entered, TurnGuard};
use crate::config::ClientConfig;
use crate::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::kv::{CasOutcome, KeyValue, ReadConsistency, check_key, found, ttl_ms};
use crate::read_coalesce::{ReadBatches, ReadCoalescer};
use crate::retry::Route;
use crate::router::Router;
use crate::scan::{self, Scan, ScanPage};
use crate::write_coalesce::{self, WriteBatches, WriteCoalescer};

/// A connection to an IsLabDB cluster. Clone it freely: clones share connections, the
/// leader guess and the write-id sequence.
#[derive(Clone)]
pub struct Client {
    /// Configuration, nodes, shard map and write ids, shared with [`Admin`] handles.
    router: Arc<Router>,
    /// Concurrent writes waiting to travel together, per shard.
    writes: Arc<WriteCoalescer>,
    /// Concurrent gets waiting to travel together, per shard and consistency.
    reads: Arc<ReadCoalescer>,
}

impl Client {
    /// A client for the cluster these `host:port` endpoints belong to, with the default
    /// [`ClientConfig`]. No connection is opened yet: the first call dials, so this fails
    /// only on an unusable endpoint.
    pub async fn connect<I, S>(endpoints: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Client::with_config(ClientConfig::new(endpoints))
    }

    /// A client with these settings; validates them and parses every endpoint.
    pub fn with_config(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let endpoints = Endpoints::new(
            &config.endpoints,
            config.connect_timeout,
            &config.address_map,
        )?;
        let max_in_flight = config.max_in_flight_per_shard;
        let router = Arc::new(Router::new(config, endpoints));
        Ok(Client {
            writes: Arc::new(WriteCoalescer::new(
                WriteBatches::new(router.clone()),
                max_in_flight,
            )),
            reads: Arc::new(ReadCoalescer::new(
                ReadBatches::new(router.clone()),
                max_in_flight,
            )),
            router,
        })
    }

    /// The settings this client runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.router.config
    }

    /// The random, non-zero id this client's writes carry.
    pub fn client_id(&self) -> u64 {
        self.router.client_id()
    }

    /// The node the client currently takes for the leader of the meta group (which answers
    /// membership changes), if it knows one.
    pub fn leader(&self) -> Option<String> {
        self.router.endpoints.leader(0)
    }

    /// The node the client takes for the leader of the shard holding `key`, if it knows one.
    pub fn leader_of(&self, key: &[u8]) -> Option<String> {
        let map = self.router.endpoints.map()?;
        self.router.endpoints.leader(map.shard_of_key(key).id)
    }

    /// The shard map the client routes with, once it has fetched one.
    pub fn shard_map(&self) -> Option<Arc<ShardMap>> {
        self.router.endpoints.map()
    }

    /// Fetches the shard map now if the client has none (calls do this by themselves).
    pub async fn refresh_shard_map(&self) -> Result<Option<Arc<ShardMap>>> {
        self.router.ensure_map().await?;
        Ok(self.shard_map())
    }

    /// How many times a node told this client its map was stale and sent the newer one.
    pub fn stale_map_corrections(&self) -> u64 {
        self.router.endpoints.corrections()
    }

    /// Every node the client knows: the configured ones, then any it learnt from leader hints.
    pub fn endpoints(&self) -> Vec<String> {
        self.router.endpoints.addrs()
    }

    /// A handle for cluster administration sharing this client's connections.
    pub fn admin(&self) -> Admin {
        Admin::new(self.router.clone())
    }

    /// Stores `value` under `key`; returns the new version (versions grow with every write of
    /// a key; see docs/any-language.md).
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<u64> {
        self.put_ms(key.into(), value.into(), 0).await
    }

    /// Stores `value` under `key` until `ttl` has passed; returns the new version.
    pub async fn put_with_ttl(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Result<u64> {
        self.put_ms(key.into(), value.into(), ttl_ms(ttl)?).await
    }

    async fn put_ms(&self, key: Bytes, value: Bytes, ttl_ms: u64) -> Result<u64> {
        check_key(&key)?;
        let group = self.router.group_of(&key).await?;
        let op = proto::BatchOp {
            op: Some(proto::batch_op::Op::Put(proto::PutOp {
                key: key.clone(),
                value: value.clone(),
                ttl_ms,
            })),
        };
        // Held while this write is sent alone: dropping it sends what gathered meanwhile.
        let _turn = match self.turn(group, op).await? {
            Entered::Done(r) => return Ok(r.version),
            Entered::Alone(turn) => turn,
        };
        let message = proto::PutRequest {
            id: Some(self.router.next_write_id()),
            key,
            value,
            ttl_ms,
        };
        let response = self
            .router
            .kv(
                "Put",
                Route::Leader,
                group,
                message,
                |mut c, r| async move { c.put(r).await },
            )
            .await?;
        Ok(response.version)
    }

    /// Hands a write to the write coalescer (see `write_coalesce.rs`).
    async fn turn(&self, group: u64, op: proto::BatchOp) -> Result<Entered<WriteBatches>> {
        // Group 0: no map yet, so the keys' shards are unknown and cannot share a batch.
        if !self.router.config.coalesce_writes || group == 0 || !write_coalesce::coalescable(&op) {
            return Ok(Entered::Alone(None));
        }
        self.writes.enter(group, op).await
    }

    /// The current value of `key` (linearizable), or `None` if it does not exist.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>> {
        self.get_with(key, ReadConsistency::Linearizable).await
    }

    /// The value of `key` read with the given consistency, or `None` if it does not exist.
    pub async fn get_with(
        &self,
        key: impl Into<Bytes>,
        consistency: ReadConsistency,
    ) -> Result<Option<KeyValue>> {
        let key = key.into();
        check_key(&key)?;
        let group = self.router.group_of(&key).await?;
        // Group 0: no map yet, so the keys' shards are unknown and cannot share a GetMany.
        let coalesce = self.router.config.coalesce_reads && group != 0;
        // Held while this get is sent alone: dropping it sends what gathered meanwhile.
        let _turn: Option<TurnGuard<ReadBatches>> = if coalesce {
            match self.reads.enter((group, consistency), key.clone()).await? {
                Entered::Done(r) => return Ok(found(key, r)),
                Entered::Alone(turn) => turn,
            }
        } else {
            None
        };
        let response = self.router.get_one(group, consistency, key.clone()).await?;
        Ok(found(key, response))
    }

    /// The values of many keys read with one consistency, in the order given (`None` where a
    /// key does not exist). The keys are split by shard and each shard's share is read in one
    /// `GetMany` call (a linearizable one with one read-index round), the shards in parallel;
    /// a share whose answer would be over the server's size limit is read key by key.
    /// Each key's read has the meaning of [`Client::get_with`]; reads of different shards
    /// are not one snapshot.
    pub async fn get_many<I, K>(
        &self,
        keys: I,
        consistency: ReadConsistency,
    ) -> Result<Vec<Option<KeyValue>>>
    where
        I: IntoIterator<Item = K>,
        K: Into<Bytes>,
    {
        let keys: Vec<Bytes> = keys.into_iter().map(Into::into).collect();
        for key in &keys {
            check_key(key)?;
        }
        self.router.ensure_map().await?;
        let Some(map) = self.router.endpoints.map() else {
            // No map (cluster not initialised): the shards are unknown, read key by key.
            let gets = keys.iter().map(|k| self.get_with(k.clone(), consistency));
            return futures::future::try_join_all(gets).await;
        };
        // Positions of the keys of each shard, in chunks the server accepts.
        let mut by_shard: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
        for (i, key) in keys.iter().enumerate() {
            by_shard
                .entry(map.shard_of_key(key).id)
                .or_default()
                .push(i);
        }
        let calls = by_shard.into_iter().flat_map(|(group, positions)| {
            positions
                .chunks(GET_MANY_CHUNK)
                .map(|chunk| (group, chunk.to_vec()))
                .collect::<Vec<_>>()
        });
        let keys = &keys;
        let reads = calls.map(|(group, positions)| {
            let chunk: Vec<Bytes> = positions.iter().map(|&i| keys[i].clone()).collect();
            async move {
                let items = match self.router.get_many(group, consistency, chunk).await {
                    // The answer would be over the server's limit (large values): key by key.
                    Err(Error::TooLarge(_)) => {
                        let gets = positions
                            .iter()
                            .map(|&i| self.router.get_one(group, consistency, keys[i].clone()));
                        futures::future::try_join_all(gets).await?
                    }
                    other => other?,
                };
                if items.len() != positions.len() {
                    return Err(Error::Protocol(format!(
                        "a GetMany of {} keys answered with {} items",
                        positions.len(),
                        items.len()
                    )));
                }
                Ok((positions, items))
            }
        });
        let mut out: Vec<Option<KeyValue>> = vec![None; keys.len()];
        for (positions, items) in futures::future::try_join_all(reads).await? {
            for (i, item) in positions.into_iter().zip(items) {
                out[i] = found(keys[i].clone(), item);
            }
        }
        Ok(out)
    }

    /// Removes `key`; returns whether it existed.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<bool> {
        let key = key.into();
        check_key(&key)?;
        let group = self.router.group_of(&key).await?;
        let op = proto::BatchOp {
            op: Some(proto::batch_op::Op::Delete(proto::DeleteOp {
                key: key.clone(),
            })),
        };
        let _turn = match self.turn(group, op).await? {
            Entered::Done(r) => return Ok(r.existed),
            Entered::Alone(turn) => turn,
        };
        let message = proto::DeleteRequest {
            id: Some(self.router.next_write_id()),
            key,
        };
        let response = self
            .router
            .kv(
                "Delete",
                Route::Leader,
                group,
                message,
                |mut c, r| async move { c.delete(r).await },
            )
            .await?;
        Ok(response.existed)
    }

    /// Stores `value` under `key` only if the key's version is `expected` (`None`: only if
    /// the key does not exist). A mismatch is not an error: see [`CasOutcome::succeeded`].
    pub async fn cas(
        &self,
        key: impl Into<Bytes>,
        expected: Option<u64>,
        value: impl Into<Bytes>,
    ) -> Result<CasOutcome> {
        self.cas_ms(key.into(), expected, value.into(), 0).await
    }

    /// Like [`Client::cas`], and the new value expires after `ttl`.
    pub async fn cas_with_ttl(
        &self,
        key: impl Into<Bytes>,
        expected: Option<u64>,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Result<CasOutcome> {
        self.cas_ms(key.into(), expected, value.into(), ttl_ms(ttl)?)
            .await
    }

    async fn cas_ms(
        &self,
        key: Bytes,
        expected: Option<u64>,
        value: Bytes,
        ttl_ms: u64,
    ) -> Result<CasOutcome> {
        check_key(&key)?;
        let group = self.router.group_of(&key).await?;
        let message = proto::CompareAndSwapRequest {
            id: Some(self.router.next_write_id()),
            key,
            expected_version: expected,
            value,
            ttl_ms,
        };
        let response = self
            .router
            .kv(
                "CompareAndSwap",
                Route::Leader,
                group,
                message,
                |mut c, r| async move { c.compare_and_swap(r).await },
            )
            .await?;
        Ok(response.into())
    }

    /// Every item of the scan, following the server's pages until the scan's limit is met or
    /// the range ends. Without a limit this reads the whole range into memory; use
    /// [`Client::scan_page`] to stream it.
    pub async fn scan(&self, scan: Scan) -> Result<Vec<KeyValue>> {
        let mut items = Vec::new();
        let mut next = Some(scan);
        while let Some(scan) = next {
            let page = self.scan_page(&scan).await?;
            items.extend(page.items);
            next = page.next;
        }
        Ok(items)
    }

    /// One page of the scan, and the scan of the rest (`None` when done). Keys are spread
    /// over shards by hash, so a page asks every shard for its next keys and merges them; it
    /// keeps only keys below the first point where a shard still has more, so the page is
    /// exactly the next keys in order.
    pub async fn scan_page(&self, scan: &Scan) -> Result<ScanPage> {
        scan::scan_page(&self.router, scan).await
    }

    /// Applies the ops atomically, at one version; returns one result per op, in order.
    /// If a [`BatchOp::Cas`] does not match, nothing is applied and the call fails with
    /// [`Error::Rejected`].
    pub async fn batch(&self, ops: impl IntoIterator<Item = BatchOp>) -> Result<Vec<OpResult>> {
        let ops = ops
            .into_iter()
            .map(|op| op.to_proto())
            .collect::<Result<Vec<_>>>()?;
        batch::apply(&self.router, ops).await
    }
}

impl Client {
    /// Applies the ops split by shard: atomically within each shard (each part at one log
    /// index of its shard), but not across shards — a part may fail while others apply.
    /// Results come back in the order of `ops`. Use [`Client::batch`] when all or nothing
    /// matters, with keys sharing a hash tag.
    pub async fn batch_per_shard(
        &self,
        ops: impl IntoIterator<Item = BatchOp>,
    ) -> Result<Vec<OpResult>> {
        let ops: Vec<BatchOp> = ops.into_iter().collect();
        self.router.ensure_map().await?;
        let Some(map) = self.router.endpoints.map() else {
            return self.batch(ops).await;
        };
        let mut parts: std::collections::BTreeMap<u64, Vec<(usize, BatchOp)>> =
            std::collections::BTreeMap::new();
        for (i, op) in ops.into_iter().enumerate() {
            let shard = map.shard_of_key(op.key()).id;
            parts.entry(shard).or_default().push((i, op));
        }
        let count = parts.values().map(Vec::len).sum();
        let runs = parts.into_values().map(|part| async move {
            let (at, ops): (Vec<usize>, Vec<BatchOp>) = part.into_iter().unzip();
            let results = self.batch(ops).await?;
            Ok::<_, Error>(at.into_iter().zip(results).collect::<Vec<_>>())
        });
        let mut results: Vec<Option<OpResult>> = vec![None; count];
        for part in futures::future::try_join_all(runs).await? {
            for (i, r) in part {
                results[i] = Some(r);
            }
        }
        Ok(results.into_iter().flatten().collect())
    }
}

/// Most keys per `GetMany` call of [`Client::get_many`] (the server's default limit is 10,000).
const GET_MANY_CHUNK: usize = 1000;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id())
            .field("endpoints", &self.endpoints())
            .field("leader", &self.leader())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn building_a_client_checks_config_and_endpoints_without_io() {
        let client = Client::connect(["127.0.0.1:1", "http://127.0.0.1:2"])
            .await
            .unwrap();
        assert_eq!(client.endpoints(), ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(client.leader(), None);
        assert_ne!(client.client_id(), 0);
        assert_eq!(
            client.clone().client_id(),
            client.client_id(),
            "clones share the id"
        );

        let bad = Client::connect(["127.0.0.1"]).await.unwrap_err();
        assert!(matches!(bad, Error::InvalidEndpoint(_)), "{bad}");
        let none = Client::connect(Vec::<String>::new()).await.unwrap_err();
        assert!(matches!(none, Error::InvalidConfig(_)), "{none}");
    }

    #[tokio::test]
    async fn bad_requests_fail_before_any_io() {
        // Port 1 on loopback is closed: reaching the network would time out, not fail fast.
        let client = Client::connect(["127.0.0.1:1"]).await.unwrap();
        assert!(matches!(
            client.put("", "v").await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            client.get("").await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            client.delete("").await,
            Err(Error::InvalidArgument(_))
        ));
        let zero = client.put_with_ttl("k", "v", Duration::ZERO).await;
        assert!(matches!(zero, Err(Error::InvalidArgument(_))));
        let batch = client
            .batch([BatchOp::put("k", "v"), BatchOp::delete("")])
            .await;
        assert!(matches!(batch, Err(Error::InvalidArgument(_))));
    }
}
