//! Read coalescing: concurrent gets from one [`Client`](crate::Client) to the same shard, with
//! the same consistency, travel together as one `GetMany` RPC, so a busy client costs the
//! cluster one request (and, for linearizable reads, one read-index round) per batch instead
//! of one per key.
//!
//! ```text
//! get(k1) ──► shard idle?  yes ─► sent at once, alone, as a plain Get (no delay)
//! get(k2) ──►        busy ─► queued ┐
//! get(k3) ──►        busy ─► queued ┴─► when the first answer is back: one GetMany [k2, k3]
//! ```
//!
//! The queueing and turns are the generic [`Coalescer`](crate::coalescer::Coalescer)'s, as for
//! writes (`write_coalesce.rs`); this module says what a read batch is. Nothing waits for
//! company (a get goes at once while fewer than `max_in_flight_per_shard` gets of its shard
//! and consistency are in flight), and each get keeps its own meaning. A queued get's
//! `GetMany` leaves after the get was called, so a linearizable one still sees every write
//! acknowledged before the call. A `GetMany` refused as a whole (an invalid key, or a server
//! that does not know the RPC) sends each get again alone, so only a bad key fails; any other
//! failure is every waiting get's failure.

use std::sync::Arc;

use bytes::Bytes;
use islab_proto::v1 as proto;

use crate::coalescer::{Coalescer, Combine};
use crate::error::{Error, Result};
use crate::kv::ReadConsistency;
use crate::router::Router;

/// Most keys in one coalesced `GetMany` (the server's default limit is 10,000).
const MAX_KEYS: usize = 1024;

/// Gets of one client gathered per shard and consistency into `GetMany` RPCs.
pub(crate) type ReadCoalescer = Coalescer<ReadBatches>;

/// The read side of coalescing: per shard and consistency, keys into one `GetMany`.
pub(crate) struct ReadBatches {
    router: Arc<Router>,
}

impl ReadBatches {
    pub(crate) fn new(router: Arc<Router>) -> Self {
        ReadBatches { router }
    }
}

impl Combine for ReadBatches {
    type At = (u64, ReadConsistency);
    type Request = Bytes;
    type Answer = proto::GetResponse;
    type Load = ();
    const WHAT: &'static str = "get";

    fn admit(&self, _: &mut (), waiting: usize, _: &Bytes) -> bool {
        waiting < MAX_KEYS
    }

    /// Sends `keys` as one `GetMany`.
    async fn send(
        &self,
        (group, consistency): (u64, ReadConsistency),
        keys: Vec<Bytes>,
    ) -> Result<Vec<proto::GetResponse>> {
        let count = keys.len();
        let items = self.router.get_many(group, consistency, keys).await?;
        if items.len() != count {
            return Err(Error::Protocol(format!(
                "a GetMany of {count} keys answered with {} items",
                items.len()
            )));
        }
        Ok(items)
    }

    /// Refused as a whole: one key spoiled it for all, or the server predates `GetMany`.
    fn refused_as_whole(error: &Error) -> bool {
        matches!(
            error,
            Error::InvalidArgument(_)
                | Error::TooLarge(_)
                | Error::Server {
                    code: tonic::Code::Unimplemented,
                    ..
                }
        )
    }
}
