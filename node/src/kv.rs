//! The data API, `islab.v1.Kv`: requests routed to the shard that holds their keys, checked
//! against the limits, and turned into commands of the storage engine.
//!
//! - `service` — [`KvService`](service::KvService): the gRPC methods.
//! - `route` — which local replica serves a key, or which node to send the client to.
//! - `convert` — wire messages to commands and back (expiry, write ids, batch ops).
//! - `validate` — the request limits, each refusal naming the limit it broke.

pub(crate) mod convert;
pub(crate) mod route;
pub(crate) mod service;
pub(crate) mod validate;
