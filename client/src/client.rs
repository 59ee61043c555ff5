//! [`Client`]: the data API of IsLabDB, with leader discovery and safe retries built in.
//!
//! A `Client` is a cheap handle (`Clone` shares everything): one routing cache with one
//! HTTP/2 channel per node, one write-id source, one configuration. Every call goes through
//! the retry loop in `retry.rs`; this file only shapes requests and responses.
//!
//! Writes (put, delete, cas, batch) and linearizable reads go to the leader; serializable
//! reads go to whichever node the client is talking to. Each write takes its `WriteId` once,
//! before the first attempt, so resending it after a lost answer cannot apply it twice.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use islab_proto::v1 as proto;
use islab_proto::v1::kv_client::KvClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::admin::Admin;
use crate::batch::{BatchOp, OpResult};
use crate::config::ClientConfig;
use crate::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::kv::{CasOutcome, KeyValue, ReadConsistency, check_key, ttl_ms};
use crate::retry::{self, CallSpec, Route, timed};
use crate::scan::{Scan, ScanPage};
use crate::write_id::WriteIds;

/// A connection to an IsLabDB cluster. Clone it freely: clones share connections, the
/// leader guess and the write-id sequence.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

/// What every clone of a client (and its [`Admin`] handles) shares.
pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    pub(crate) endpoints: Endpoints,
    ids: WriteIds,
}

impl Shared {
    /// Runs one RPC through the retry loop.
    pub(crate) async fn call<T, F, Fut>(&self, spec: CallSpec, attempt: F) -> Result<T>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        retry::call(&self.endpoints, &self.config, spec, attempt).await
    }

    /// Runs one `Kv` RPC: `rpc` gets a client on the chosen channel and the request, rebuilt
    /// from `message` for every attempt.
    async fn kv<M, T, F, Fut>(
        &self,
        name: &'static str,
        route: Route,
        message: M,
        rpc: F,
    ) -> Result<T>
    where
        M: Clone,
        F: Fn(KvClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let limit = self.config.max_message_bytes;
        let spec = CallSpec::new(name, route, &self.config);
        self.call(spec, |channel, timeout| {
            let client = KvClient::new(channel)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit);
            rpc(client, timed(message.clone(), timeout))
        })
        .await
    }
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
        Ok(Client {
            shared: Arc::new(Shared {
                config,
                endpoints,
                ids: WriteIds::new(),
            }),
        })
    }

    /// The settings this client runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// The random, non-zero id this client's writes carry.
    pub fn client_id(&self) -> u64 {
        self.shared.ids.client_id()
    }

    /// The node the client currently takes for the leader, if it knows one.
    pub fn leader(&self) -> Option<String> {
        self.shared.endpoints.leader()
    }

    /// Every node the client knows: the configured ones, then any it learnt from leader hints.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared.endpoints.addrs()
    }

    /// A handle for cluster administration sharing this client's connections.
    pub fn admin(&self) -> Admin {
        Admin::new(self.shared.clone())
    }

    /// Stores `value` under `key`; returns the new version (the write's log index).
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
        let message = proto::PutRequest {
            id: Some(self.shared.ids.next()),
            key,
            value,
            ttl_ms,
        };
        let response = self
            .shared
            .kv("Put", Route::Leader, message, |mut c, r| async move {
                c.put(r).await
            })
            .await?;
        Ok(response.version)
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
        let message = proto::GetRequest {
            key: key.clone(),
            consistency: consistency.to_proto(),
        };
        let response = self
            .shared
            .kv(
                "Get",
                read_route(consistency),
                message,
                |mut c, r| async move { c.get(r).await },
            )
            .await?;
        Ok(response.found.then(|| KeyValue {
            key,
            value: response.value,
            version: response.version,
        }))
    }

    /// Removes `key`; returns whether it existed.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<bool> {
        let key = key.into();
        check_key(&key)?;
        let message = proto::DeleteRequest {
            id: Some(self.shared.ids.next()),
            key,
        };
        let response = self
            .shared
            .kv("Delete", Route::Leader, message, |mut c, r| async move {
                c.delete(r).await
            })
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
        let message = proto::CompareAndSwapRequest {
            id: Some(self.shared.ids.next()),
            key,
            expected_version: expected,
            value,
            ttl_ms,
        };
        let response = self
            .shared
            .kv(
                "CompareAndSwap",
                Route::Leader,
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

    /// One page of the scan, and the scan of the rest (`None` when done).
    pub async fn scan_page(&self, scan: &Scan) -> Result<ScanPage> {
        let route = read_route(scan.read_consistency());
        let response = self
            .shared
            .kv("Scan", route, scan.request(), |mut c, r| async move {
                c.scan(r).await
            })
            .await?;
        scan.page(response)
    }

    /// Applies the ops atomically, at one log index; returns one result per op, in order.
    /// If a [`BatchOp::Cas`] does not match, nothing is applied and the call fails with
    /// [`Error::Rejected`].
    pub async fn batch(&self, ops: impl IntoIterator<Item = BatchOp>) -> Result<Vec<OpResult>> {
        let ops = ops
            .into_iter()
            .map(|op| op.to_proto())
            .collect::<Result<Vec<_>>>()?;
        let count = ops.len();
        let message = proto::BatchRequest {
            id: Some(self.shared.ids.next()),
            ops,
        };
        let response = self
            .shared
            .kv("Batch", Route::Leader, message, |mut c, r| async move {
                c.batch(r).await
            })
            .await?;
        if response.results.len() != count {
            return Err(Error::Protocol(format!(
                "batch of {count} ops answered with {} results",
                response.results.len()
            )));
        }
        Ok(response.results.into_iter().map(Into::into).collect())
    }
}

/// Linearizable reads need the leader; serializable ones are served by any node.
fn read_route(consistency: ReadConsistency) -> Route {
    match consistency {
        ReadConsistency::Linearizable => Route::Leader,
        ReadConsistency::Serializable => Route::AnyNode,
    }
}

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
