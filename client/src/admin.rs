//! [`Admin`]: cluster initialisation, membership and status, over the same connections and
//! retry loop as the data calls.
//!
//! Membership changes must be made by the leader, so they are routed like writes: to the
//! leader guess, following `islab-leader` hints. Listing members and reading status may be
//! answered by any node. `init` and `status_of` go to one named node only, because the
//! answer is about that node.
//!
//! A membership change can take a while (a new learner must catch up before `member_add`
//! returns), so an attempt of a change is bounded only by the handle's deadline, not by the
//! per-attempt `request_timeout`; raise the deadline with [`Admin::with_deadline`] for big
//! catch-ups. A change resent after a lost answer reaches the server twice, so the server
//! must treat a repeat of a change it already made as success (adding a learner that is
//! already there, removing a node that is gone).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use islab_proto::v1 as proto;
use islab_proto::v1::admin_client::AdminClient;
use islab_proto::v1::{Member, MemberListResponse, ShardListResponse, StatusResponse};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::error::Result;
use crate::retry::{CallSpec, Route, timed};
use crate::router::Router;

/// Administration handle, from [`Client::admin`](crate::Client::admin).
#[derive(Clone)]
pub struct Admin {
    router: Arc<Router>,
    deadline: Duration,
}

/// Whether an RPC may be cut off by the per-attempt timeout.
#[derive(Clone, Copy)]
enum Kind {
    /// A quick call (a read, or a change the server answers at once): bounded by
    /// `request_timeout` per attempt.
    Quick,
    /// A change that may take long: bounded only by the deadline.
    Change,
}

impl Admin {
    pub(crate) fn new(router: Arc<Router>) -> Self {
        let deadline = router.config.deadline;
        Admin { router, deadline }
    }

    /// The same handle with another bound on each whole call (default: the client's
    /// `deadline`).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Initialises a new cluster with these voters, asking the first configured endpoint
    /// (which must be one of them). Returns the new cluster id. Fails with
    /// [`Error::Rejected`](crate::Error::Rejected) if that node already belongs to a cluster.
    pub async fn init(&self, members: impl IntoIterator<Item = Member>) -> Result<String> {
        let first = self.router.config.endpoints[0].clone();
        self.init_at(&first, members).await
    }

    /// Like [`Admin::init`], asking the node at `endpoint`.
    pub async fn init_at(
        &self,
        endpoint: &str,
        members: impl IntoIterator<Item = Member>,
    ) -> Result<String> {
        self.init_sharded(endpoint, members, 0, 0).await
    }

    /// Like [`Admin::init_at`], with `shards` shards of `replication` replicas each (0: the
    /// server's defaults, 8 shards of 3 replicas; replication is capped by the node count).
    pub async fn init_sharded(
        &self,
        endpoint: &str,
        members: impl IntoIterator<Item = Member>,
        shards: u32,
        replication: u32,
    ) -> Result<String> {
        let route = Route::Pinned(self.router.endpoints.index_of(endpoint)?);
        let message = proto::InitRequest {
            members: members.into_iter().collect(),
            shards,
            replication,
        };
        let response = self
            .call(
                "Init",
                route,
                Kind::Change,
                message,
                |mut c, r| async move { c.init(r).await },
            )
            .await?;
        Ok(response.cluster_id)
    }

    /// The cluster's members and the id of its leader (0: none known).
    pub async fn member_list(&self) -> Result<MemberListResponse> {
        let message = proto::MemberListRequest {};
        self.call(
            "MemberList",
            Route::AnyNode,
            Kind::Quick,
            message,
            |mut c, r| async move { c.member_list(r).await },
        )
        .await
    }

    /// Adds node `id`, reachable at `addr`, as a learner; returns once it has caught up with
    /// the leader's log. Returns the members afterwards.
    pub async fn member_add(&self, id: u64, addr: impl Into<String>) -> Result<Vec<Member>> {
        let message = proto::MemberAddRequest {
            id,
            addr: addr.into(),
        };
        let response = self
            .call(
                "MemberAdd",
                Route::Leader,
                Kind::Change,
                message,
                |mut c, r| async move { c.member_add(r).await },
            )
            .await?;
        Ok(response.members)
    }

    /// Makes the caught-up learner `id` a voter. Returns the members afterwards.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>> {
        let message = proto::MemberPromoteRequest { id };
        let response = self
            .call(
                "MemberPromote",
                Route::Leader,
                Kind::Change,
                message,
                |mut c, r| async move { c.member_promote(r).await },
            )
            .await?;
        Ok(response.members)
    }

    /// Removes node `id` (voter or learner). Its shard replicas move to other nodes first;
    /// the server answers "retry" until they have, so this returns when the node is gone or
    /// the deadline passes (raise it with [`Admin::with_deadline`] for a node holding much
    /// data). Returns the members afterwards.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>> {
        let message = proto::MemberRemoveRequest { id };
        let response = self
            .call(
                "MemberRemove",
                Route::Leader,
                // Each attempt is quick (the server answers "draining, retry" at once, or
                // makes one membership change), so one that hangs is cut off and retried.
                Kind::Quick,
                message,
                |mut c, r| async move { c.member_remove(r).await },
            )
            .await?;
        Ok(response.members)
    }

    /// Every shard with its slots, replicas, leader and figures, and how evenly things spread.
    pub async fn shard_list(&self) -> Result<ShardListResponse> {
        self.call(
            "ShardList",
            Route::AnyNode,
            Kind::Quick,
            proto::ShardListRequest {},
            |mut c, r| async move { c.shard_list(r).await },
        )
        .await
    }

    /// Makes node `to` the leader of `shard`; returns once it leads.
    pub async fn transfer_leader(&self, shard: u64, to: u64) -> Result<u64> {
        self.router.ensure_map().await?;
        let response = self
            .call_group(
                "TransferLeader",
                Route::Leader,
                shard,
                Kind::Change,
                proto::TransferLeaderRequest { shard, to },
                |mut c, r| async move { c.transfer_leader(r).await },
            )
            .await?;
        Ok(response.leader_id)
    }

    /// The status of whichever node answers (the leader if the client knows it).
    pub async fn status(&self) -> Result<StatusResponse> {
        self.status_on(Route::AnyNode).await
    }

    /// The status of the node at `endpoint`.
    pub async fn status_of(&self, endpoint: &str) -> Result<StatusResponse> {
        let route = Route::Pinned(self.router.endpoints.index_of(endpoint)?);
        self.status_on(route).await
    }

    async fn status_on(&self, route: Route) -> Result<StatusResponse> {
        let message = proto::StatusRequest {};
        self.call(
            "Status",
            route,
            Kind::Quick,
            message,
            |mut c, r| async move { c.status(r).await },
        )
        .await
    }

    /// Runs one `Admin` RPC of the meta group through the retry loop.
    async fn call<M, T, F, Fut>(
        &self,
        name: &'static str,
        route: Route,
        kind: Kind,
        message: M,
        rpc: F,
    ) -> Result<T>
    where
        M: Clone,
        F: Fn(AdminClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        self.call_group(name, route, 0, kind, message, rpc).await
    }

    /// Runs one `Admin` RPC about `group` through the retry loop.
    async fn call_group<M, T, F, Fut>(
        &self,
        name: &'static str,
        route: Route,
        group: u64,
        kind: Kind,
        message: M,
        rpc: F,
    ) -> Result<T>
    where
        M: Clone,
        F: Fn(AdminClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let config = &self.router.config;
        let spec = CallSpec {
            name,
            route,
            group,
            deadline: self.deadline,
            attempt_timeout: match kind {
                Kind::Quick => Some(config.request_timeout),
                Kind::Change => None,
            },
        };
        let limit = config.max_message_bytes;
        self.router
            .call(spec, |channel, timeout| {
                let client = AdminClient::new(channel)
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit);
                rpc(client, timed(message.clone(), timeout))
            })
            .await
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("endpoints", &self.router.endpoints.addrs())
            .field("deadline", &self.deadline)
            .finish()
    }
}
