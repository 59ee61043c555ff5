//! The Rust SDK of IsLabDB: connect to a cluster, read and write keys, administer members.
//!
//! The SDK speaks only the public gRPC API (`islab-proto`); it never links the server's
//! consensus or storage crates. What it adds over raw gRPC is what every client of a
//! replicated store needs and should not have to write:
//!
//! - **Leader discovery.** Give it any nodes. A node that is not the leader answers
//!   UNAVAILABLE with the leader's address in the `islab-leader` metadata; the client
//!   switches there at once (learning the node if it was not configured) and remembers it.
//!   Nodes name each other by their advertised address; a client outside their network
//!   (e.g. the host of a docker compose cluster) gives [`ClientConfig::address_map`] to say
//!   where such a name is reached from where it runs.
//! - **Safe retries.** UNAVAILABLE without a hint, a refused or broken connection, or no
//!   answer within `request_timeout` moves the call to the next node after an exponential,
//!   jittered pause, until the call's `deadline`. Writes carry a `WriteId` taken once per
//!   call, so a write resent after a lost answer is applied once.
//! - **Typed errors.** Status codes become [`Error`] variants; requests the server refuses
//!   (bad key, too large, rejected) are never retried.
//! - **One connection per node**, opened on first use and shared by every clone of the
//!   client and every concurrent call.
//! - **Coalescing.** Concurrent puts and deletes of one shard travel together as one `Batch`
//!   while one of that shard's writes is in flight, and concurrent gets as one `GetMany`;
//!   each call keeps its own answer and meaning, and a lone call is sent at once.
//!   [`Client::get_many`] reads many keys in one call per shard.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use islab_client::{BatchOp, Client, ReadConsistency, Scan};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), islab_client::Error> {
//! let client = Client::connect(["127.0.0.1:7379", "127.0.0.1:7380"]).await?;
//!
//! let version = client.put("user/1", "ada").await?;
//! client.put_with_ttl("session/9", "token", Duration::from_secs(60)).await?;
//!
//! let kv = client.get("user/1").await?.expect("just written");
//! assert_eq!(kv.version, version);
//! let maybe_stale = client.get_with("user/1", ReadConsistency::Serializable).await?;
//! let several = client
//!     .get_many(["user/1", "user/2"], ReadConsistency::Linearizable)
//!     .await?;
//! assert_eq!(several.len(), 2);
//!
//! // Optimistic update: only if nobody wrote the key since we read it.
//! let outcome = client.cas("user/1", Some(kv.version), "ada lovelace").await?;
//! if !outcome.succeeded {
//!     println!("lost the race; the key is now at {:?}", outcome.current_version);
//! }
//!
//! // All or nothing, at one log index.
//! let results = client
//!     .batch(vec![
//!         BatchOp::put("user/2", "grace"),
//!         BatchOp::delete("session/9"),
//!         BatchOp::cas("counter", None, "1"),
//!     ])
//!     .await?;
//! assert_eq!(results.len(), 3);
//!
//! for kv in client.scan(Scan::prefix("user/").limit(100)).await? {
//!     println!("{:?} = {:?} @ {}", kv.key, kv.value, kv.version);
//! }
//! let existed = client.delete("user/2").await?;
//!
//! let status = client.admin().status().await?;
//! println!("node {} in cluster {:?}, {existed}", status.node_id, status.cluster_id);
//! # let _ = maybe_stale;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`Client`] (`client.rs`) — the data calls: put, get, get_many, delete, cas, scan, batch.
//! - [`Admin`] (`admin.rs`) — init, members, shards, leader transfer, status.
//! - [`ClientConfig`] (`config.rs`) — endpoints, timeouts, backoff, coalescing switches.
//! - [`Error`] (`error.rs`) — the one error type and the gRPC status mapping.
//! - [`Scan`], [`ScanPage`] (`scan.rs`) — scans, their continuation, pages merged across shards.
//! - [`BatchOp`], [`OpResult`] (`batch.rs`) — atomic batches and how one is sent.
//! - [`KeyValue`], [`CasOutcome`], [`ReadConsistency`] (`kv.rs`) — values of data calls.
//! - `router.rs` — `Router`, shared by a client and its admin handles: config, endpoints,
//!   shard map, write ids; routes and sends every RPC.
//! - `coalescer.rs` — the generic `Coalescer<C: Combine>`: per-place turns and queues.
//! - `write_coalesce.rs` — its write side: concurrent puts and deletes into one `Batch`.
//! - `read_coalesce.rs` — its read side: concurrent gets into one `GetMany`.
//! - `retry.rs` — the call loop: leader hints, failover, backoff, deadline.
//! - `endpoints.rs` — known nodes, their channels, the leader guess, the shard map.
//! - `backoff.rs` — jittered exponential pauses between attempts.
//! - `write_id.rs` — write ids for exactly-once retries.

mod admin;
mod backoff;
mod batch;
mod client;
mod coalescer;
mod config;
mod endpoints;
mod error;
mod kv;
mod read_coalesce;
mod retry;
mod router;
mod scan;
mod write_coalesce;
mod write_id;

pub use admin::Admin;
pub use batch::{BatchOp, OpResult};
pub use client::Client;
pub use config::ClientConfig;
pub use error::{Error, Result};
pub use kv::{CasOutcome, KeyValue, ReadConsistency};
pub use scan::{Scan, ScanPage};

/// Admin messages returned as they come off the wire.
pub use islab_proto::v1::{
    Entropy, GroupStatus, Member, MemberListResponse, ShardListResponse, ShardRow, StatusResponse,
};
pub use islab_shardmap::{ShardInfo, ShardMap, hash_tag, slot_of};
/// The gRPC status code carried by [`Error::Server`].
pub use tonic::Code;
