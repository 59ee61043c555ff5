//! What a [`Client`](crate::Client) needs to know: where the cluster is and how long to try.
//!
//! Plain data with a `Default` line on every field, validated once by
//! [`ClientConfig::validate`] when the client is built; tests and callers write
//! `ClientConfig { endpoints, deadline, ..Default::default() }`.
//!
//! Three clocks bound every call:
//!
//! ```text
//! |<-------------------------- deadline (whole call) --------------------------->|
//! |<- request_timeout ->| backoff |<- request_timeout ->| backoff |<- ... ->|
//!   (connect_timeout is the part of an attempt spent opening a TCP connection)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};

/// Settings of a [`Client`](crate::Client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Nodes to talk to, as `host:port` (`http://` is implied; `http://host:port` is accepted
    /// too). Any node will do: the client finds the leader from there.
    ///
    /// Default: empty, which [`validate`](Self::validate) rejects.
    pub endpoints: Vec<String>,
    /// Time allowed to open a connection to one endpoint.
    ///
    /// Default: 2 s.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt (one request to one endpoint) before the client gives up
    /// on it and tries the next endpoint. Also sent to the server as the gRPC timeout.
    ///
    /// Default: 5 s.
    pub request_timeout: Duration,
    /// Time allowed for a whole call, retries and redirects included. When it passes the call
    /// fails with [`Error::Timeout`] naming the last error.
    ///
    /// Default: 15 s.
    pub deadline: Duration,
    /// Pause after the first failed attempt; doubled after each further one, with jitter.
    ///
    /// Default: 10 ms.
    pub initial_backoff: Duration,
    /// Longest pause between attempts.
    ///
    /// Default: 500 ms.
    pub max_backoff: Duration,
    /// Give up after this many attempts even if the deadline has not passed
    /// ([`Error::Unavailable`]). `None`: only the deadline bounds a call.
    ///
    /// Default: `None`.
    pub max_attempts: Option<u32>,
    /// Largest gRPC message the client sends or accepts (a big scan page or batch).
    ///
    /// Default: 64 MiB.
    pub max_message_bytes: usize,
    /// Where to dial a node that is known by another address: `advertised host:port →
    /// host:port to dial`. Nodes name each other (in leader hints and member lists) by the
    /// address they advertise, which is the one *other nodes* use; a client outside their
    /// network (the host of a docker compose cluster whose nodes advertise `node2:7379`,
    /// published on `127.0.0.1:7380`) reaches them elsewhere. Every address the client dials
    /// — configured endpoints and leader hints alike — is looked up here first (one lookup,
    /// not chained); an address not in the map is dialled as it is.
    ///
    /// Default: empty.
    pub address_map: BTreeMap<String, String>,

    /// Whether concurrent puts and deletes to one shard travel together as one `Batch` RPC
    /// while a request of that shard is in flight (see the crate docs: each write keeps its
    /// own answer; a lone write is sent at once, as itself). Default: true.
    pub coalesce_writes: bool,

    /// Whether concurrent gets of one shard and consistency travel together as one `GetMany`
    /// RPC while a get of that shard is in flight (each keeps its own answer and meaning; a
    /// lone get is sent at once, as itself). Default: true.
    pub coalesce_reads: bool,

    /// With coalescing, how many requests of one shard (writes; gets of one consistency) a
    /// client keeps in flight before further calls gather into the next batch. One gives the
    /// biggest batches, which is what a CPU-bound cluster wants (measured: 256 puts in flight
    /// on 8 shards, 25–26k puts/s at 1 against 22–24k at 4, docs/benchmarks.md); more keep a
    /// shard's log busy while a batch waits for slow fsyncs. At least 1. Default: 1.
    pub max_in_flight_per_shard: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            max_attempts: None,
            max_message_bytes: 64 << 20,
            address_map: BTreeMap::new(),
            coalesce_writes: true,
            coalesce_reads: true,
            max_in_flight_per_shard: 1,
        }
    }
}

impl ClientConfig {
    /// The default settings with these endpoints.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Checks that the settings can work. Endpoint syntax is checked when the client parses
    /// them ([`Error::InvalidEndpoint`]).
    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::InvalidConfig(why.to_owned()));
        if self.endpoints.is_empty() {
            return bad("at least one endpoint is needed");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout must be positive");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout must be positive");
        }
        if self.deadline.is_zero() {
            return bad("deadline must be positive");
        }
        if self.initial_backoff.is_zero() {
            return bad("initial_backoff must be positive");
        }
        if self.max_backoff < self.initial_backoff {
            return bad("max_backoff must be at least initial_backoff");
        }
        if self.max_attempts == Some(0) {
            return bad("max_attempts must be at least 1 (or None)");
        }
        if self.max_message_bytes == 0 {
            return bad("max_message_bytes must be positive");
        }
        if self.max_in_flight_per_shard == 0 {
            return bad("max_in_flight_per_shard must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = ClientConfig::new(["127.0.0.1:7379"]);
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.deadline, Duration::from_secs(15));
        assert_eq!(c.initial_backoff, Duration::from_millis(10));
        assert_eq!(c.max_backoff, Duration::from_millis(500));
        assert_eq!(c.max_attempts, None);
        assert!(c.address_map.is_empty());
        c.validate().unwrap();
    }

    #[test]
    fn nonsense_is_refused() {
        let ok = ClientConfig::new(["a:1"]);
        let cases = [
            ClientConfig::default(),
            ClientConfig {
                deadline: Duration::ZERO,
                ..ok.clone()
            },
            ClientConfig {
                request_timeout: Duration::ZERO,
                ..ok.clone()
            },
            ClientConfig {
                connect_timeout: Duration::ZERO,
                ..ok.clone()
            },
            ClientConfig {
                initial_backoff: Duration::ZERO,
                ..ok.clone()
            },
            ClientConfig {
                max_backoff: Duration::from_millis(1),
                ..ok.clone()
            },
            ClientConfig {
                max_attempts: Some(0),
                ..ok.clone()
            },
            ClientConfig {
                max_message_bytes: 0,
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(
                matches!(c.validate(), Err(Error::InvalidConfig(_))),
                "{c:?}"
            );
        }
    }
}
