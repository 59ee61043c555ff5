//! The client's routing cache: the nodes it knows, one lazily created gRPC channel per node,
//! and which node it believes leads.
//!
//! A tonic `Channel` is one HTTP/2 connection that multiplexes any number of concurrent
//! calls and reconnects by itself, so the cache creates each channel once (on first use, so
//! that building a client does no I/O) and hands out clones. Indices into the node list are
//! stable: nodes are only ever appended (when a server names a leader the client did not
//! know), never removed, so a call can hold an index across awaits.
//!
//! Addresses pass through the client's address map before they are dialled or compared, so a
//! leader hint naming `node2:7379` lands on the configured endpoint `127.0.0.1:7380` when the
//! map says so, instead of adding a node the client cannot resolve.
//!
//! The lock is a std `Mutex`: it is held for a few field reads, never across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Every known node, its channel, and the leader guess.
pub(crate) struct Endpoints {
    state: Mutex<State>,
    connect_timeout: Duration,
    /// Canonical advertised `host:port` → canonical `host:port` to dial.
    address_map: BTreeMap<String, String>,
}

struct State {
    nodes: Vec<Node>,
    /// The node that last served a leader-only call or was named leader by a server.
    leader: Option<usize>,
    /// Where calls start when no leader is known; moves past nodes that fail.
    cursor: usize,
}

struct Node {
    /// Canonical `host:port` the client dials: as servers name it in the leader hint, or
    /// what the address map turns that name into.
    addr: String,
    endpoint: Endpoint,
    channel: Option<Channel>,
}

impl Endpoints {
    /// Parses every endpoint and address-map entry (duplicates collapse); fails on the first
    /// unusable one.
    pub(crate) fn new(
        addrs: &[String],
        connect_timeout: Duration,
        address_map: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (from, to) in address_map {
            let (from, _) = parse(from, connect_timeout)?;
            let (to, _) = parse(to, connect_timeout)?;
            map.insert(from, to);
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(addrs.len());
        for raw in addrs {
            let (addr, endpoint) = resolve(&map, raw, connect_timeout)?;
            if !nodes.iter().any(|n| n.addr == addr) {
                nodes.push(Node {
                    addr,
                    endpoint,
                    channel: None,
                });
            }
        }
        if nodes.is_empty() {
            return Err(Error::InvalidConfig(
                "at least one endpoint is needed".into(),
            ));
        }
        Ok(Endpoints {
            state: Mutex::new(State {
                nodes,
                leader: None,
                cursor: 0,
            }),
            connect_timeout,
            address_map: map,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where a call should start: the leader if known, else the rotating cursor.
    pub(crate) fn preferred(&self) -> usize {
        let s = self.lock();
        s.leader.unwrap_or(s.cursor)
    }

    /// The `host:port` of node `i`.
    pub(crate) fn addr(&self, i: usize) -> String {
        self.lock().nodes[i].addr.clone()
    }

    /// Every known node, configured ones first.
    pub(crate) fn addrs(&self) -> Vec<String> {
        self.lock().nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// The leader guess, if any.
    pub(crate) fn leader(&self) -> Option<String> {
        let s = self.lock();
        s.leader.map(|i| s.nodes[i].addr.clone())
    }

    /// The channel to node `i`, created on first use. Creating it does no I/O: the connection
    /// is opened by the first request (and reopened after it breaks).
    pub(crate) fn channel(&self, i: usize) -> Channel {
        let mut s = self.lock();
        let node = &mut s.nodes[i];
        node.channel
            .get_or_insert_with(|| node.endpoint.connect_lazy())
            .clone()
    }

    /// The index of `raw` (after the address map), adding it to the known nodes if it is new.
    pub(crate) fn index_of(&self, raw: &str) -> Result<usize> {
        let (addr, endpoint) = resolve(&self.address_map, raw, self.connect_timeout)?;
        let mut s = self.lock();
        if let Some(i) = s.nodes.iter().position(|n| n.addr == addr) {
            return Ok(i);
        }
        s.nodes.push(Node {
            addr,
            endpoint,
            channel: None,
        });
        Ok(s.nodes.len() - 1)
    }

    /// Records that node `i` served a leader-only call.
    pub(crate) fn set_leader(&self, i: usize) {
        let mut s = self.lock();
        if s.leader != Some(i) {
            tracing::debug!(leader = %s.nodes[i].addr, "leader found");
            s.leader = Some(i);
        }
    }

    /// Follows a leader hint given by node `from`: records the named node (adding it if
    /// unknown) as the leader and returns its index. `None` if the hint is not a usable
    /// address or names `from` itself (a node that calls itself leader while refusing to act
    /// as one is in transition: treat it as giving no hint).
    pub(crate) fn redirect(&self, hint: &str, from: usize) -> Option<usize> {
        match self.index_of(hint) {
            Ok(i) if i == from => None,
            Ok(i) => {
                self.set_leader(i);
                Some(i)
            }
            Err(e) => {
                tracing::warn!(hint, error = %e, "ignoring unusable leader hint");
                None
            }
        }
    }

    /// Node `failed` did not serve a call: forget it as leader and return the node to try
    /// next, which later calls will also start from.
    pub(crate) fn advance(&self, failed: usize) -> usize {
        let mut s = self.lock();
        if s.leader == Some(failed) {
            tracing::debug!(node = %s.nodes[failed].addr, "leader lost");
            s.leader = None;
        }
        let next = (failed + 1) % s.nodes.len();
        s.cursor = next;
        next
    }
}

/// Like [`parse`], then dials the mapped address instead if `map` names this one.
fn resolve(
    map: &BTreeMap<String, String>,
    raw: &str,
    connect_timeout: Duration,
) -> Result<(String, Endpoint)> {
    let parsed = parse(raw, connect_timeout)?;
    match map.get(&parsed.0) {
        Some(to) => parse(to, connect_timeout),
        None => Ok(parsed),
    }
}

/// Canonical `host:port` and the tonic endpoint for a user- or server-supplied address.
pub(crate) fn parse(raw: &str, connect_timeout: Duration) -> Result<(String, Endpoint)> {
    let invalid = |why: &str| Error::InvalidEndpoint(format!("{raw:?}: {why}"));
    let trimmed = raw.trim();
    let addr = trimmed
        .strip_prefix("http://")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    if addr.contains("://") {
        return Err(invalid("only plain http:// endpoints are supported"));
    }
    if addr.is_empty() {
        return Err(invalid("empty address"));
    }
    let endpoint =
        Endpoint::from_shared(format!("http://{addr}")).map_err(|e| invalid(&e.to_string()))?;
    let uri = endpoint.uri();
    if uri.port().is_none() {
        return Err(invalid("expected host:port"));
    }
    if uri.authority().map(|a| a.as_str()) != Some(addr) {
        return Err(invalid("expected host:port without a path"));
    }
    let endpoint = endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // Notice a dead connection (a node that vanished without closing it) while calls are
        // in flight, so the next call reconnects instead of waiting out its timeout.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10));
    Ok((addr.to_owned(), endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: Duration = Duration::from_secs(1);

    #[test]
    fn endpoints_are_canonical_host_port() {
        for (raw, want) in [
            ("127.0.0.1:7379", "127.0.0.1:7379"),
            ("http://127.0.0.1:7379", "127.0.0.1:7379"),
            (" node-1.local:7380/ ", "node-1.local:7380"),
            ("[::1]:7379", "[::1]:7379"),
        ] {
            assert_eq!(parse(raw, CT).unwrap().0, want, "{raw}");
        }
    }

    #[test]
    fn unusable_endpoints_are_refused() {
        for raw in [
            "",
            "127.0.0.1",
            "https://a:1",
            "a:1/path",
            "a b:1",
            "grpc://a:1",
        ] {
            assert!(
                matches!(parse(raw, CT), Err(Error::InvalidEndpoint(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn leader_guess_follows_hints_and_failures() {
        let e = Endpoints::new(
            &["a:1".into(), "http://a:1".into(), "b:2".into()],
            CT,
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(e.addrs(), ["a:1", "b:2"], "duplicates collapse");
        assert_eq!(e.preferred(), 0);
        assert_eq!(e.leader(), None);

        // A hint naming an unknown node adds it and makes it the leader.
        let c = e.redirect("c:3", 0).unwrap();
        assert_eq!(c, 2);
        assert_eq!(e.leader().as_deref(), Some("c:3"));
        assert_eq!(e.preferred(), 2);
        assert_eq!(
            e.redirect("http://c:3/", 1),
            Some(2),
            "known nodes are not added twice"
        );
        assert_eq!(
            e.redirect("c:3", 2),
            None,
            "a node naming itself is no hint"
        );
        assert_eq!(e.redirect("not an address", 0), None);

        // The leader failing drops the guess and moves on, wrapping around.
        assert_eq!(e.advance(2), 0);
        assert_eq!(e.leader(), None);
        assert_eq!(e.preferred(), 0);
        assert_eq!(e.advance(0), 1);
        assert_eq!(e.preferred(), 1);
    }

    #[test]
    fn the_address_map_turns_advertised_names_into_dialled_ones() {
        let map = BTreeMap::from([
            ("node1:7379".to_string(), "127.0.0.1:7379".to_string()),
            (
                "http://node2:7379".to_string(),
                "127.0.0.1:7380".to_string(),
            ),
            ("node3:7379".to_string(), "127.0.0.1:7381".to_string()),
        ]);
        let e = Endpoints::new(
            &[
                "127.0.0.1:7379".into(),
                "127.0.0.1:7380".into(),
                "node3:7379".into(),
            ],
            CT,
            &map,
        )
        .unwrap();
        assert_eq!(
            e.addrs(),
            ["127.0.0.1:7379", "127.0.0.1:7380", "127.0.0.1:7381"],
            "configured endpoints are mapped too"
        );
        assert_eq!(
            e.redirect("node2:7379", 0),
            Some(1),
            "a hint lands on the mapped node"
        );
        assert_eq!(e.leader().as_deref(), Some("127.0.0.1:7380"));
        assert_eq!(
            e.redirect("node1:7379", 0),
            None,
            "a mapped hint naming the asker"
        );
        assert_eq!(
            e.index_of("node4:7379").unwrap(),
            3,
            "unmapped names are dialled as they are"
        );
        assert_eq!(e.addrs().len(), 4);

        let bad = BTreeMap::from([("node1:7379".to_string(), "127.0.0.1".to_string())]);
        let err = Endpoints::new(&["a:1".into()], CT, &bad).err().unwrap();
        assert!(matches!(err, Error::InvalidEndpoint(_)), "{err}");
    }
}
