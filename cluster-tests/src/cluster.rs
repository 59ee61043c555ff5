//! A cluster of real node processes.

use std::path::Path;
use std::time::Duration;

use islab_client::{Client, ClientConfig, Member, StatusResponse};

use crate::process::NodeProcess;
use crate::wait_for;

/// N `islab server` processes in one temporary directory, initialised as one cluster.
pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n), initialises the cluster and waits for a leader.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], with extra `islab server` flags for every node.
    pub async fn start_with(n: u64, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes: Vec<NodeProcess> = (1..=n)
            .map(|id| NodeProcess::new(id, dir.path(), extra_args))
            .collect();
        for node in &mut nodes {
            node.start();
        }
        let cluster = Cluster { nodes, dir };
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
            .init_at(&cluster.nodes[0].addr(), members)
            .await
            .expect("cluster init");
        cluster.leader().await;
        cluster
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

    /// Waits (30 s) until the running nodes agree on one leader; returns its id.
    pub async fn leader(&self) -> u64 {
        let addrs: Vec<String> = self.endpoints();
        wait_for(
            "one leader that every running node agrees on",
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
                        let g = s.groups.first().ok_or("no group")?;
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

    /// Waits (60 s) until every running node has applied the same index, at least `min`;
    /// returns it.
    pub async fn converged(&self, min: u64) -> u64 {
        let addrs = self.endpoints();
        wait_for(
            "every node applied the same index",
            Duration::from_secs(60),
            || {
                let addrs = addrs.clone();
                async move {
                    let mut applied = Vec::new();
                    for addr in &addrs {
                        if let Ok(s) = self.status(addr).await {
                            applied.push(s.groups.first().ok_or("no group")?.applied_index);
                        }
                    }
                    let first = *applied.first().ok_or("no node answers")?;
                    if first >= min && applied.iter().all(|a| *a == first) {
                        Ok(first)
                    } else {
                        Err(format!("applied indexes {applied:?}, want >= {min}"))
                    }
                }
            },
        )
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
