//! The client's routing cache: the nodes it knows, one lazily created gRPC channel per node,
//! the shard map, and which node it believes leads each group.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use islab_proto::v1 as proto;
use islab_shardmap::ShardMap;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Every known node, its channel, the shard map, and a leader guess per group.
///
/// Group 0 is the meta group (administration, and every call before the client has a map);
/// data shards are groups 1 and up, each with its own leader.
pub(crate) struct Endpoints {
    state: Mutex<State>,
    connect_timeout: Duration,
    /// Canonical advertised `host:port` → canonical `host:port` to dial.
    address_map: BTreeMap<String, String>,
}

struct State {
    nodes: Vec<Node>,
    /// Per group: the node that last served a leader-only call or was named leader.
    leaders: HashMap<u64, usize>,
    /// Where calls start when no leader is known; moves past nodes that fail.
    cursor: usize,
    /// The shard map, once fetched, and each shard's replicas as node indexes.
    map: Option<Arc<ShardMap>>,
    replicas: HashMap<u64, Vec<usize>>,
    /// How many times a server's newer map replaced ours.
    corrections: u64,
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
                leaders: HashMap::new(),
                cursor: 0,
                map: None,
                replicas: HashMap::new(),
                corrections: 0,
            }),
            connect_timeout,
            address_map: map,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where a call for `group` should start: its leader if known, else one of its replicas
    /// (by the rotating cursor), else the cursor.
    pub(crate) fn preferred(&self, group: u64) -> usize {
        let s = self.lock();
        if let Some(&leader) = s.leaders.get(&group) {
            return leader;
        }
        match s.replicas.get(&group) {
            Some(replicas) if !replicas.is_empty() => replicas[s.cursor % replicas.len()],
            _ => s.cursor % s.nodes.len(),
        }
    }

    /// The `host:port` of node `i`.
    pub(crate) fn addr(&self, i: usize) -> String {
        self.lock().nodes[i].addr.clone()
    }

    /// Every known node, configured ones first.
    pub(crate) fn addrs(&self) -> Vec<String> {
        self.lock().nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// The leader guess for `group`, if any.
    pub(crate) fn leader(&self, group: u64) -> Option<String> {
        let s = self.lock();
        s.leaders.get(&group).map(|i| s.nodes[*i].addr.clone())
    }

    /// The shard map, if the client has one.
    pub(crate) fn map(&self) -> Option<Arc<ShardMap>> {
        self.lock().map.clone()
    }

    /// How many times a server corrected a stale map.
    pub(crate) fn corrections(&self) -> u64 {
        self.lock().corrections
    }

    /// Installs the map a server sent if it is newer than the one held; `corrected` counts
    /// it as a correction of a stale map. Returns whether it was installed.
    pub(crate) fn install_map(&self, wire: &proto::ShardMap, corrected: bool) -> Result<bool> {
        let (map, nodes) = wire
            .to_map()
            .map_err(|e| Error::Protocol(format!("the server sent a bad shard map: {e}")))?;
        if self
            .lock()
            .map
            .as_ref()
            .is_some_and(|m| m.epoch >= map.epoch)
        {
            return Ok(false);
        }
        // Register every node first (index_of takes the lock itself).
        let mut index = HashMap::new();
        for (id, addr) in &nodes {
            match self.index_of(addr) {
                Ok(i) => {
                    index.insert(*id, i);
                }
                Err(e) => tracing::warn!(node = id, addr, error = %e, "unusable node address"),
            }
        }
        let replicas: HashMap<u64, Vec<usize>> = map
            .shards
            .iter()
            .map(|s| {
                let idx = s.replicas.iter().filter_map(|r| index.get(r).copied());
                (s.id, idx.collect())
            })
            .collect();
        let mut s = self.lock();
        if s.map.as_ref().is_some_and(|m| m.epoch >= map.epoch) {
            return Ok(false);
        }
        tracing::debug!(epoch = map.epoch, "shard map installed");
        // A leader guess for a node that no longer holds the shard is worthless.
        let held = &replicas;
        s.leaders
            .retain(|g, i| *g == 0 || held.get(g).is_some_and(|r| r.contains(i)));
        s.replicas = replicas;
        s.map = Some(Arc::new(map));
        if corrected {
            s.corrections += 1;
        }
        Ok(true)
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

    /// Records that node `i` served a leader-only call of `group`.
    pub(crate) fn set_leader(&self, group: u64, i: usize) {
        let mut s = self.lock();
        if s.leaders.get(&group) != Some(&i) {
            tracing::debug!(group, leader = %s.nodes[i].addr, "leader found");
            s.leaders.insert(group, i);
        }
    }

    /// Follows a leader hint given by node `from`: records the named node (adding it if
    /// unknown) as the leader and returns its index. `None` if the hint is not a usable
    /// address or names `from` itself (a node that calls itself leader while refusing to act
    /// as one is in transition: treat it as giving no hint).
    pub(crate) fn redirect(&self, group: u64, hint: &str, from: usize) -> Option<usize> {
        match self.index_of(hint) {
            Ok(i) if i == from => None,
            Ok(i) => {
                self.set_leader(group, i);
                Some(i)
            }
            Err(e) => {
                tracing::warn!(hint, error = %e, "ignoring unusable leader hint");
                None
            }
        }
    }

    /// Node `failed` did not serve a call of `group`: forget it as the group's leader and
    /// return the node to try next, which later calls will also start from.
    pub(crate) fn advance(&self, group: u64, failed: usize) -> usize {
        let mut s = self.lock();
        if s.leaders.get(&group) == Some(&failed) {
            tracing::debug!(group, node = %s.nodes[failed].addr, "leader lost");
            s.leaders.remove(&group);
        }
        s.cursor = s.cursor.wrapping_add(1);
        match s.replicas.get(&group).filter(|r| !r.is_empty()).cloned() {
            Some(replicas) => {
                let next = replicas[s.cursor % replicas.len()];
                if next != failed {
                    return next;
                }
                s.cursor = s.cursor.wrapping_add(1);
                replicas[s.cursor % replicas.len()]
            }
            _ => {
                let next = (failed + 1) % s.nodes.len();
                s.cursor = next;
                next
            }
        }
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
        assert_eq!(e.preferred(0), 0);
        assert_eq!(e.leader(0), None);

        // A hint naming an unknown node adds it and makes it the leader.
        let c = e.redirect(0, "c:3", 0).unwrap();
        assert_eq!(c, 2);
        assert_eq!(e.leader(0).as_deref(), Some("c:3"));
        assert_eq!(e.preferred(0), 2);
        assert_eq!(e.leader(5), None, "leaders are per group");
        assert_eq!(
            e.redirect(0, "http://c:3/", 1),
            Some(2),
            "known nodes are not added twice"
        );
        assert_eq!(
            e.redirect(0, "c:3", 2),
            None,
            "a node naming itself is no hint"
        );
        assert_eq!(e.redirect(0, "not an address", 0), None);

        // The leader failing drops the guess and moves on, wrapping around.
        assert_eq!(e.advance(0, 2), 0);
        assert_eq!(e.leader(0), None);
        assert_eq!(e.preferred(0), 0);
        assert_eq!(e.advance(0, 0), 1);
        assert_eq!(e.preferred(0), 1);
    }

    #[test]
    fn a_map_routes_each_shard_to_its_replicas() {
        let e = Endpoints::new(&["a:1".into()], CT, &BTreeMap::new()).unwrap();
        let map = islab_shardmap::ShardMap::new(2, 2, &[1, 2, 3]).unwrap();
        let nodes = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".into()), (3, "c:3".into())]);
        let wire = proto::ShardMap::from_map(&map, &nodes);
        assert!(e.install_map(&wire, false).unwrap());
        assert!(!e.install_map(&wire, true).unwrap(), "not newer: ignored");
        assert_eq!(e.corrections(), 0);
        assert_eq!(e.addrs(), ["a:1", "b:2", "c:3"]);
        // Shard 2 lives on nodes 2 and 3: calls start there, and fail over between them.
        let first = e.preferred(2);
        assert!([1, 2].contains(&first), "{first}");
        let second = e.advance(2, first);
        assert!([1, 2].contains(&second) && second != first);
        e.set_leader(2, 2);
        assert_eq!(e.preferred(2), 2);

        // A newer map without node 3 in shard 2 drops that leader guess.
        let mut next = map.next_epoch();
        next.shards[1].replicas = vec![2, 1];
        assert!(
            e.install_map(&proto::ShardMap::from_map(&next, &nodes), true)
                .unwrap()
        );
        assert_eq!(e.corrections(), 1);
        assert_eq!(e.leader(2), None);
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
            e.redirect(0, "node2:7379", 0),
            Some(1),
            "a hint lands on the mapped node"
        );
        assert_eq!(e.leader(0).as_deref(), Some("127.0.0.1:7380"));
        assert_eq!(
            e.redirect(0, "node1:7379", 0),
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
