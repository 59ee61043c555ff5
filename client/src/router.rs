//! [`Router`]: what every clone of a [`Client`](crate::Client) and its
//! [`Admin`](crate::Admin) handles share to reach the cluster — the configuration, the known
//! nodes with their channels and leader guesses, the shard map, and the write-id source.
//!
//! It exists so that the data calls, the admin calls and the coalescers can all send RPCs
//! without depending on each other: each of them depends on the router, the router on none
//! of them. Every RPC goes through the retry loop (`retry.rs`); the router adds routing (the
//! key's shard, the map's epoch on each attempt) and fetches the shard map once.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use islab_proto::EPOCH_METADATA;
use islab_proto::v1 as proto;
use islab_proto::v1::kv_client::KvClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::config::ClientConfig;
use crate::endpoints::Endpoints;
use crate::error::Result;
use crate::kv::ReadConsistency;
use crate::retry::{self, CallSpec, Route, timed};
use crate::write_id::WriteIds;

/// How long a client that found no shard map waits before asking again.
const NO_MAP_RETRY: Duration = Duration::from_secs(1);

/// Routes and sends RPCs for one client: configuration, nodes, shard map, write ids.
pub(crate) struct Router {
    pub(crate) config: ClientConfig,
    pub(crate) endpoints: Endpoints,
    ids: WriteIds,
    /// One map fetch at a time; holds when the last fetch found no map (cluster not
    /// initialised), so calls do not ask again on every request.
    map_fetch: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Router {
    /// A router with these (validated) settings over these endpoints.
    pub(crate) fn new(config: ClientConfig, endpoints: Endpoints) -> Router {
        Router {
            config,
            endpoints,
            ids: WriteIds::new(),
            map_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// Fetches the shard map if the client has none yet. A cluster that has no map yet (not
    /// initialised) is not an error: calls then go unrouted, and the servers route them.
    pub(crate) async fn ensure_map(&self) -> Result<()> {
        if self.endpoints.map().is_some() {
            return Ok(());
        }
        let mut last_miss = self.map_fetch.lock().await;
        if self.endpoints.map().is_some() || last_miss.is_some_and(|at| at.elapsed() < NO_MAP_RETRY)
        {
            return Ok(());
        }
        let limit = self.config.max_message_bytes;
        let spec = CallSpec::new("GetShardMap", Route::AnyNode, &self.config);
        let response = self
            .call(spec, |channel, timeout| {
                let mut client = KvClient::new(channel).max_decoding_message_size(limit);
                let request = timed(proto::GetShardMapRequest {}, timeout);
                async move { client.get_shard_map(request).await }
            })
            .await?;
        match response.map {
            Some(map) => {
                self.endpoints.install_map(&map, false)?;
                *last_miss = None;
            }
            None => *last_miss = Some(tokio::time::Instant::now()),
        }
        Ok(())
    }

    /// The random, non-zero id this client's writes carry.
    pub(crate) fn client_id(&self) -> u64 {
        self.ids.client_id()
    }

    /// The next write id of this client.
    pub(crate) fn next_write_id(&self) -> proto::WriteId {
        self.ids.next()
    }

    /// The shard (group) holding `key`, or 0 when the client has no map.
    pub(crate) async fn group_of(&self, key: &[u8]) -> Result<u64> {
        self.ensure_map().await?;
        Ok(self
            .endpoints
            .map()
            .map_or(0, |map| map.shard_of_key(key).id))
    }

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
    pub(crate) async fn kv<M, T, F, Fut>(
        &self,
        name: &'static str,
        route: Route,
        group: u64,
        message: M,
        rpc: F,
    ) -> Result<T>
    where
        M: Clone,
        F: Fn(KvClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let limit = self.config.max_message_bytes;
        let mut spec = CallSpec::new(name, route, &self.config);
        spec.group = group;
        self.call(spec, |channel, timeout| {
            let client = KvClient::new(channel)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit);
            let mut request = timed(message.clone(), timeout);
            // The map as of this attempt: a retry after a correction carries the new epoch.
            if let Some(map) = self.endpoints.map() {
                request
                    .metadata_mut()
                    .insert(EPOCH_METADATA, MetadataValue::from(map.epoch));
            }
            rpc(client, request)
        })
        .await
    }

    /// One plain `Get` of `key`, in shard `group`.
    pub(crate) async fn get_one(
        &self,
        group: u64,
        consistency: ReadConsistency,
        key: Bytes,
    ) -> Result<proto::GetResponse> {
        let message = proto::GetRequest {
            key,
            consistency: consistency.to_proto(),
        };
        self.kv(
            "Get",
            read_route(consistency),
            group,
            message,
            |mut c, r| async move { c.get(r).await },
        )
        .await
    }

    /// One `GetMany` of `keys`, all in shard `group`: an answer per key, in order.
    pub(crate) async fn get_many(
        &self,
        group: u64,
        consistency: ReadConsistency,
        keys: Vec<Bytes>,
    ) -> Result<Vec<proto::GetResponse>> {
        let message = proto::GetManyRequest {
            keys,
            consistency: consistency.to_proto(),
        };
        let response = self
            .kv(
                "GetMany",
                read_route(consistency),
                group,
                message,
                |mut c, r| async move { c.get_many(r).await },
            )
            .await?;
        Ok(response.items)
    }
}

/// Linearizable reads need the leader; serializable ones are served by any node.
pub(crate) fn read_route(consistency: ReadConsistency) -> Route {
    match consistency {
        ReadConsistency::Linearizable => Route::Leader,
        ReadConsistency::Serializable => Route::AnyNode,
    }
}
