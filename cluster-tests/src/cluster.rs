//! A cluster of real node processes.

use std::path::Path;
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use islab_client::{Client, ClientConfig, GroupStatus, Member, StatusResponse};

use crate::process::NodeProcess;
use crate::proxy::Net;
use crate::wait_for;

/// The data shard of a cluster made by [`Cluster::start`]: its one shard.
pub const DATA_SHARD: u64 = 1;

/// The data shard's group in a node's status.
pub fn data_group(s: &StatusResponse) -> Result<&GroupStatus, String> {
    s.groups
        .iter()
        .find(|g| g.group_id == DATA_SHARD)
        .ok_or_else(|| format!("node {} holds no replica of shard {DATA_SHARD}", s.node_id))
}

/// N `islab server` processes in one temporary directory, initialised as one cluster.
pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
    /// The proxies between the nodes, for a cluster made by [`Cluster::start_proxied`].
    net: Option<Net>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n), initialises the cluster and waits for a leader.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], with extra `islab server` flags for every node. The cluster
    /// has one data shard (group [`DATA_SHARD`]) on every node (up to 3), so "the leader" is
    /// that shard's; [`Cluster::start_sharded`] makes more.
    pub async fn start_with(n: u64, extra_args: &[&str]) -> Cluster {
        let cluster = Cluster::launch(n, extra_args, 1, 3).await;
        cluster.leader().await;
        cluster
    }

    /// Starts `n` nodes initialised with `shards` shards of `replication` replicas; waits
    /// until every shard has a leader.
    pub async fn start_sharded(
        n: u64,
        shards: u32,
        replication: u32,
        extra_args: &[&str],
    ) -> Cluster {
        let cluster = Cluster::launch(n, extra_args, shards, replication).await;
        cluster.shard_leaders(shards as usize).await;
        cluster
    }

    /// Like [`Cluster::start_with`], every node running the `islab` built with failpoints
    /// ([`islab_failpoints_binary`](crate::islab_failpoints_binary)); none is set yet.
    pub async fn start_failpoints(n: u64, extra_args: &[&str]) -> Cluster {
        let binary = crate::islab_failpoints_binary();
        let cluster = Cluster::launch_with(n, extra_args, 1, 3, Some(binary)).await;
        cluster.leader().await;
        cluster
    }

    /// Like [`Cluster::start_sharded`], every node dialling every other through a proxy of
    /// that link ([`Cluster::net`]), which can cut, slow down or lose what it carries. Clients
    /// reach the nodes directly.
    pub async fn start_proxied(
        n: u64,
        shards: u32,
        replication: u32,
        extra_args: &[&str],
    ) -> Cluster {
        let cluster =
            Cluster::launch_inner(n, extra_args, shards, replication, None, true, None).await;
        cluster.shard_leaders(shards as usize).await;
        cluster
    }

    /// Like [`Cluster::start_with`], with every node's data directory under `base` (a small
    /// file system, say); the logs stay in the cluster's temporary directory.
    pub async fn start_in(base: &Path, n: u64, extra_args: &[&str]) -> Cluster {
        let cluster = Cluster::launch_inner(n, extra_args, 1, 3, None, false, Some(base)).await;
        cluster.leader().await;
        cluster
    }

    /// [`Cluster::start_failpoints`] and [`Cluster::start_proxied`] at once: a failpoints
    /// build behind the link proxies, one data shard.
    pub async fn start_failpoints_proxied(n: u64, extra_args: &[&str]) -> Cluster {
        let binary = crate::islab_failpoints_binary();
        let cluster = Cluster::launch_inner(n, extra_args, 1, 3, Some(binary), true, None).await;
        cluster.leader().await;
        cluster
    }

    /// The proxies between the nodes of a cluster made by [`Cluster::start_proxied`].
    pub fn net(&self) -> &Net {
        self.net
            .as_ref()
            .expect("a cluster made by Cluster::start_proxied")
    }

    async fn launch(n: u64, extra_args: &[&str], shards: u32, replication: u32) -> Cluster {
        Cluster::launch_with(n, extra_args, shards, replication, None).await
    }

    async fn launch_with(
        n: u64,
        extra_args: &[&str],
        shards: u32,
        replication: u32,
        binary: Option<std::path::PathBuf>,
    ) -> Cluster {
        Cluster::launch_inner(n, extra_args, shards, replication, binary, false, None).await
    }

    async fn launch_inner(
        n: u64,
        extra_args: &[&str],
        shards: u32,
        replication: u32,
        binary: Option<std::path::PathBuf>,
        proxied: bool,
        base: Option<&Path>,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes: Vec<NodeProcess> = (1..=n)
            .map(|id| {
                let mut node = NodeProcess::new(id, dir.path(), extra_args);
                if let Some(b) = &binary {
                    node.set_binary(b.clone());
                }
                if let Some(base) = base {
                    node.set_data_dir_in(base);
                }
                node
            })
            .collect();
        let net = if proxied {
            let addrs: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr())).collect();
            let net = Net::start(&addrs);
            for node in &mut nodes {
                let map = net.peer_map(node.id, |id| {
                    addrs.iter().find(|(i, _)| *i == id).unwrap().1.clone()
                });
                node.push_args(&["--peer-address-map", &map]);
            }
            Some(net)
        } else {
            None
        };
        for node in &mut nodes {
            node.start();
        }
        let cluster = Cluster { nodes, net, dir };
        let members: Vec<Member> = cluster
            .nodes
            .iter()
            .map(|n| Member {
                id: n.id,
                addr: n.addr(),
                voter: true,
            })
            .collect();
        let admin = cluster.client().admin();
        admin
            .init_sharded(&cluster.nodes[0].addr(), members, shards, replication)
            .await
            .expect("cluster init");
        cluster
    }

    /// Asserts that every acknowledged write (key, value, version), as `Load` records them,
    /// is readable — linearizably, through the current leaders — with the version it was
    /// acknowledged with.
    pub async fn assert_acked(&self, acked: &[(String, String, u64)]) {
        let client = self.client();
        for (key, value, version) in acked {
            let got = client
                .get(key.clone())
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged {key} lost"));
            assert_eq!(&got.value, value, "{key}");
            assert_eq!(got.version, *version, "{key}");
        }
        tracing::info!(checked = acked.len(), "all acknowledged writes present");
    }

    /// Waits (60 s) until each of the `shards` shards has a leader that every running node
    /// holding the shard agrees on; returns shard → leader node.
    pub async fn shard_leaders(&self, shards: usize) -> BTreeMap<u64, u64> {
        self.shard_leaders_within(shards, Duration::from_secs(60))
            .await
    }

    /// [`Cluster::shard_leaders`], failing after `timeout` (at least one look is taken).
    pub async fn shard_leaders_within(
        &self,
        shards: usize,
        timeout: Duration,
    ) -> BTreeMap<u64, u64> {
        let addrs: Vec<String> = self.endpoints();
        wait_for(
            &format!("a leader for each of {shards} shards"),
            timeout,
            || {
                let addrs = addrs.clone();
                async move {
                    let mut seen: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
                    let mut claimed: BTreeMap<u64, u64> = BTreeMap::new();
                    for addr in &addrs {
                        let Ok(s) = self.status(addr).await else {
                            continue; // a stopped node
                        };
                        for g in s.groups.iter().filter(|g| g.group_id != 0) {
                            seen.entry(g.group_id).or_default().insert(g.leader_id);
                            if g.role == "leader" {
                                claimed.insert(g.group_id, s.node_id);
                            }
                        }
                    }
                    if claimed.len() < shards {
                        return Err(format!(
                            "{} of {shards} shards have a leader",
                            claimed.len()
                        ));
                    }
                    for (group, leaders) in &seen {
                        if leaders.len() != 1 || !leaders.contains(&claimed[group]) {
                            return Err(format!("shard {group}: leaders seen {leaders:?}"));
                        }
                    }
                    Ok(claimed)
                }
            },
        )
        .await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn node(&mut self, id: u64) -> &mut NodeProcess {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Adds a node process (not yet started, not yet a member).
    pub fn add_process(&mut self, id: u64, extra_args: &[&str]) -> &mut NodeProcess {
        let node = NodeProcess::new(id, self.dir.path(), extra_args);
        self.nodes.push(node);
        self.nodes.last_mut().unwrap()
    }

    /// Every node's address.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr()).collect()
    }

    /// A client of every node, with a deadline long enough to ride out an election.
    pub fn client(&self) -> Client {
        let mut config = ClientConfig::new(self.endpoints());
        config.deadline = Duration::from_secs(30);
        config.request_timeout = Duration::from_secs(3);
        Client::with_config(config).expect("client")
    }

    /// The status of the node at `addr`: one attempt, so a stopped node answers at once.
    pub async fn status(&self, addr: &str) -> Result<StatusResponse, String> {
        let mut config = ClientConfig::new([addr]);
        config.max_attempts = Some(1);
        config.request_timeout = Duration::from_secs(2);
        config.connect_timeout = Duration::from_secs(1);
        Client::with_config(config)
            .map_err(|e| e.to_string())?
            .admin()
            .with_deadline(Duration::from_secs(2))
            .status_of(addr)
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits (30 s) until the running nodes agree on one leader of the data shard (group
    /// [`DATA_SHARD`]); returns its id.
    pub async fn leader(&self) -> u64 {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        self.leader_among(&ids).await
    }

    /// The address of the data shard's leader ([`Cluster::leader`]).
    pub async fn leader_addr(&self) -> String {
        let leader = self.leader().await;
        let node = self.nodes.iter().find(|n| n.id == leader);
        node.expect("the leader is one of the nodes").addr()
    }

    /// The data shard's status as its leader reports it (applied index, what it proposed).
    pub async fn leader_group(&self) -> GroupStatus {
        let status = self.status(&self.leader_addr().await).await.unwrap();
        data_group(&status).unwrap().clone()
    }

    /// Like [`Cluster::leader`], asking only nodes `ids`: the leader is one of them, and those
    /// of them that answer agree on it. A node left out (one just paused, say) is not asked,
    /// so it cannot be the answer even if it still runs for a moment.
    pub async fn leader_among(&self, ids: &[u64]) -> u64 {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| ids.contains(&n.id))
            .map(|n| n.addr())
            .collect();
        wait_for(
            &format!("one leader that the running nodes of {ids:?} agree on"),
            Duration::from_secs(30),
            || {
                let addrs = addrs.clone();
                async move {
                    let mut leaders = Vec::new();
                    let mut claimed = None;
                    for addr in &addrs {
                        let Ok(s) = self.status(addr).await else {
                            continue; // a stopped node
                        };
                        let g = data_group(&s)?;
                        leaders.push(g.leader_id);
                        if g.role == "leader" {
                            claimed = Some(s.node_id);
                        }
                    }
                    let leader = claimed.ok_or("nobody claims leadership")?;
                    if leaders.iter().all(|l| *l == leader) {
                        Ok(leader)
                    } else {
                        Err(format!("leaders seen: {leaders:?}, claimed by {leader}"))
                    }
                }
            },
        )
        .await
    }

    /// Waits (60 s) until node `id` has applied everything the leader had applied when this
    /// was called (a restarted node caught up, even while writes go on); returns that index.
    pub async fn caught_up(&self, id: u64) -> u64 {
        let leader = self.leader().await;
        let addr_of = |id: u64| {
            self.nodes
                .iter()
                .find(|n| n.id == id)
                .unwrap_or_else(|| panic!("no node {id}"))
                .addr()
        };
        let (leader_addr, addr) = (addr_of(leader), addr_of(id));
        let target = wait_for(
            "the leader's applied index",
            Duration::from_secs(30),
            || async {
                let s = self.status(&leader_addr).await?;
                Ok(data_group(&s)?.applied_index)
            },
        )
        .await;
        wait_for(
            &format!("node {id} applied index {target}"),
            Duration::from_secs(60),
            || async {
                let s = self.status(&addr).await?;
                let applied = data_group(&s)?.applied_index;
                if applied >= target {
                    Ok(target)
                } else {
                    Err(format!("applied {applied}"))
                }
            },
        )
        .await
    }

    /// Waits (60 s) until, in every group (the meta group and every shard), the running nodes
    /// holding it have applied the same index, and the data shard (group [`DATA_SHARD`]) at
    /// least `min`; returns the data shard's applied index.
    pub async fn converged(&self, min: u64) -> u64 {
        self.converged_within(min, Duration::from_secs(60)).await
    }

    /// [`Cluster::converged`], failing after `timeout`.
    pub async fn converged_within(&self, min: u64, timeout: Duration) -> u64 {
        let addrs = self.endpoints();
        wait_for("every replica applied the same index", timeout, || {
            let addrs = addrs.clone();
            async move {
                // group → (node, applied index) of every replica that answers
                let mut groups: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
                for addr in &addrs {
                    if let Ok(s) = self.status(addr).await {
                        for g in &s.groups {
                            groups
                                .entry(g.group_id)
                                .or_default()
                                .push((s.node_id, g.applied_index));
                        }
                    }
                }
                for (group, applied) in &groups {
                    if applied.iter().any(|(_, a)| *a != applied[0].1) {
                        return Err(format!("group {group}: (node, applied) {applied:?}"));
                    }
                }
                let data = groups
                    .get(&DATA_SHARD)
                    .and_then(|a| a.first())
                    .map(|(_, a)| *a)
                    .ok_or("no node answers for the data shard")?;
                if data >= min {
                    Ok(data)
                } else {
                    Err(format!("data shard applied {data}, want >= {min}"))
                }
            }
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!("--- log of node {}:\n{}", n.id, n.log_tail());
            }
        }
    }
}
