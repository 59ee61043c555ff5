//! Write identities: what lets the client resend a write without it being applied twice.
//!
//! Every write a client sends carries `WriteId { client_id, seq }`. `client_id` is random and
//! non-zero (zero means "no deduplication" on the wire) and shared by all clones of one
//! [`Client`](crate::Client); `seq` is taken once per write call, before the first attempt,
//! and every retry and redirect of that call resends the same pair. Concurrent calls take
//! sequence numbers in call order but may reach the server in any order, so the server must
//! remember pairs, not a high-water mark.

use std::sync::atomic::{AtomicU64, Ordering};

use islab_proto::v1::WriteId;

/// The id source of one client.
#[derive(Debug)]
pub(crate) struct WriteIds {
    client_id: u64,
    next_seq: AtomicU64,
}

impl WriteIds {
    pub(crate) fn new() -> Self {
        let client_id = loop {
            let id = rand::random::<u64>();
            if id != 0 {
                break id;
            }
        };
        WriteIds {
            client_id,
            next_seq: AtomicU64::new(1),
        }
    }

    pub(crate) fn client_id(&self) -> u64 {
        self.client_id
    }

    /// A fresh id for one write call.
    pub(crate) fn next(&self) -> WriteId {
        WriteId {
            client_id: self.client_id,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_nonzero_and_never_repeat() {
        let ids = WriteIds::new();
        assert_ne!(ids.client_id(), 0);
        let a = ids.next();
        let b = ids.next();
        assert_eq!(a.client_id, ids.client_id());
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_ne!(WriteIds::new().client_id(), ids.client_id());
    }
}
