//! `islab cluster init | status`, and the cluster-wide checks the playground shares:
//! asking every endpoint for its status at once, and waiting until a new cluster has formed.
//!
//! Init must reach one member carrying every member's id and address, so `init` first asks
//! each endpoint who it is (`Status`: node id, advertised address, cluster id) and refuses
//! before anything changes if a node is unreachable, already in a cluster, or listed twice
//! under two names. Followers learn the cluster id from the leader's first message and refuse
//! data requests until then, so `init` waits for every node to know the cluster and agree on a
//! leader before it reports success: a script may use the cluster as soon as it returns.
//! `init --if-needed` (a one-shot init job that runs on every start) reports the cluster the
//! nodes already belong to instead of refusing, then waits the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use islab_client::{Client, Member, StatusResponse};
use serde_json::Map;
use tokio::time::Instant;

use crate::Outcome;
use crate::cli::{ClusterCommand, GlobalArgs, InitArgs, WriteOut};
use crate::commands::{cluster_status, member};
use crate::connect::{self, DEFAULT_TIMEOUT};

/// Pause between two rounds of status requests while waiting for a cluster to form.
const POLL: Duration = Duration::from_millis(100);

pub fn run(
    command: &ClusterCommand,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    match command {
        ClusterCommand::Init(args) => init(args, global, format, out),
        ClusterCommand::Status => cluster_status::run(global, format, out),
    }
}

/// The status of every endpoint, asked concurrently, in the order of `endpoints`.
pub async fn statuses(
    client: &Client,
    endpoints: &[String],
) -> Vec<(String, islab_client::Result<StatusResponse>)> {
    let tasks: Vec<_> = endpoints
        .iter()
        .map(|e| {
            let (admin, e) = (client.admin(), e.clone());
            tokio::spawn(async move { admin.status_of(&e).await })
        })
        .collect();
    let mut all = Vec::with_capacity(tasks.len());
    for (endpoint, task) in endpoints.iter().zip(tasks) {
        let status = match task.await {
            Ok(status) => status,
            Err(e) => Err(islab_client::Error::Protocol(format!("status task: {e}"))),
        };
        all.push((endpoint.clone(), status));
    }
    all
}

/// Who is in the cluster according to `status`: the members of its first group (the meta
/// group, whose membership is the node list).
pub fn members_of(status: &StatusResponse) -> Vec<Member> {
    status
        .groups
        .first()
        .map(|g| g.members.clone())
        .unwrap_or_default()
}

/// Waits until every endpoint reports `cluster_id` and has the shard map, every group each
/// node holds has a leader, nodes holding the same group agree on it, and every shard of the
/// map has a leader (a node may not have started a shard's group yet when it first answers,
/// so the groups it reports are not the whole map); returns the leader
/// of the meta group (group 0). `check` runs each round and may end the wait early (the
/// playground checks that its node processes are alive).
pub async fn wait_formed(
    probe: &Client,
    endpoints: &[String],
    cluster_id: &str,
    deadline: Instant,
    mut check: impl FnMut() -> Result<()>,
) -> Result<u64> {
    loop {
        check()?;
        let mut pending = Vec::new();
        let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for (endpoint, status) in statuses(probe, endpoints).await {
            match status {
                Err(e) => pending.push(format!("{endpoint} does not answer ({e})")),
                Ok(s) if s.cluster_id != cluster_id => pending.push(format!(
                    "node {} at {endpoint} does not know the cluster yet",
                    s.node_id
                )),
                Ok(s) if s.epoch == 0 => pending.push(format!(
                    "node {} at {endpoint} has no shard map yet",
                    s.node_id
                )),
                Ok(s) => {
                    for g in &s.groups {
                        if g.leader_id == 0 {
                            pending.push(format!(
                                "node {} at {endpoint} knows no leader of group {}",
                                s.node_id, g.group_id
                            ));
                        }
                        leaders.entry(g.group_id).or_default().insert(g.leader_id);
                    }
                }
            }
        }
        if pending.is_empty() {
            match probe.admin().shard_list().await {
                Ok(list) => pending.extend(
                    list.shards
                        .iter()
                        .filter(|s| s.leader_id == 0)
                        .map(|s| format!("shard {} has no leader yet", s.shard)),
                ),
                Err(e) => pending.push(format!("cannot list the shards yet: {e}")),
            }
        }
        if pending.is_empty() {
            match leaders.iter().find(|(_, l)| l.len() > 1) {
                None => {
                    if let Some(meta) = leaders.get(&0).and_then(|l| l.first()) {
                        return Ok(*meta);
                    }
                    pending.push("no node holds the meta group".into());
                }
                Some((group, _)) => pending.push(format!(
                    "the nodes do not agree on the leader of group {group} yet"
                )),
            }
        }
        if Instant::now() >= deadline {
            bail!("{}", pending.join("; "));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn init(
    args: &InitArgs,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    let endpoints = connect::endpoints(global);
    let timeout = global.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let (cluster_id, members, leader, already) = connect::block_on(async {
        let started = Instant::now();
        let probe = connect::probe_client(&endpoints, connect::address_map(global), timeout)?;
        let all = statuses(&probe, &endpoints).await;
        let existing = if args.if_needed {
            existing(&all)?
        } else {
            None
        };
        let already = existing.is_some();
        let (cluster_id, members) = match existing {
            Some(found) => found,
            None => {
                let members = voters(all)?;
                let client = connect::client(global, DEFAULT_TIMEOUT)?;
                let first = &endpoints[0];
                let cluster_id = client
                    .admin()
                    .init_sharded(first, members.clone(), args.shards, args.replication)
                    .await
                    .with_context(|| format!("cannot initialise the cluster at {first}"))?;
                (cluster_id, members)
            }
        };
        let leader = match wait_formed(
            &probe,
            &endpoints,
            &cluster_id,
            started + timeout,
            || Ok(()),
        )
        .await
        {
            Ok(leader) => Some(leader),
            Err(e) => {
                eprintln!(
                    "islab: warning: cluster {cluster_id} initialised, but not formed within {timeout:?}: {e}"
                );
                None
            }
        };
        anyhow::Ok((cluster_id, members, leader, already))
    })??;
    if format != WriteOut::Json {
        if already {
            writeln!(out, "cluster_id={cluster_id} already_initialised=true")?;
        } else {
            writeln!(out, "cluster_id={cluster_id}")?;
        }
    }
    let mut head = Map::new();
    head.insert("cluster_id".into(), cluster_id.into());
    if already {
        head.insert("already_initialised".into(), true.into());
    }
    member::write_members(out, format, head, &members, leader)?;
    Ok(Outcome::Clean)
}

/// For `init --if-needed`: the cluster the reachable endpoints already belong to, and its
/// members as the first such node reports them; `None` if none belongs to a cluster. Nodes
/// of two different clusters are an error: there is no one cluster to report.
fn existing(
    statuses: &[(String, islab_client::Result<StatusResponse>)],
) -> Result<Option<(String, Vec<Member>)>> {
    let known: Vec<&StatusResponse> = statuses
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .filter(|s| !s.cluster_id.is_empty())
        .collect();
    let clusters: BTreeSet<&str> = known.iter().map(|s| s.cluster_id.as_str()).collect();
    match (known.first(), clusters.len()) {
        (None, _) => Ok(None),
        (Some(s), 1) => Ok(Some((s.cluster_id.clone(), members_of(s)))),
        (Some(_), _) => bail!(
            "cannot initialise the cluster: the nodes belong to different clusters ({})",
            clusters.into_iter().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The voters of a new cluster: every endpoint's node. Every problem is reported at once.
fn voters(statuses: Vec<(String, islab_client::Result<StatusResponse>)>) -> Result<Vec<Member>> {
    let mut problems = Vec::new();
    let mut initialised: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut members = Vec::new();
    for (endpoint, status) in statuses {
        let s = match status {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{endpoint} is unreachable ({e})"));
                continue;
            }
        };
        if !s.cluster_id.is_empty() {
            initialised.push((
                format!("node {} at {endpoint}", s.node_id),
                s.cluster_id.clone(),
            ));
        }
        if let Some((_, other)) = seen.iter().find(|(id, _)| *id == s.node_id) {
            problems.push(format!(
                "{other} and {endpoint} are both node {}: every node needs its own --id",
                s.node_id
            ));
            continue;
        }
        seen.push((s.node_id, endpoint));
        members.push(Member {
            id: s.node_id,
            addr: s.addr,
            voter: true,
        });
    }
    let clusters: BTreeSet<&str> = initialised.iter().map(|(_, c)| c.as_str()).collect();
    if !initialised.is_empty() {
        let nodes: Vec<&str> = initialised.iter().map(|(n, _)| n.as_str()).collect();
        problems.push(format!(
            "{} already {} to cluster {} (`islab cluster status` shows it)",
            nodes.join(", "),
            if nodes.len() == 1 {
                "belongs"
            } else {
                "belong"
            },
            clusters.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(anyhow!(
            "cannot initialise the cluster: {}",
            problems.join("; ")
        ));
    }
    Ok(members)
}

/// A node's status as a test's fake answer (shared with `cluster_status`'s tests).
#[cfg(test)]
pub(crate) fn test_status(id: u64, cluster: &str) -> islab_client::Result<StatusResponse> {
    Ok(StatusResponse {
        node_id: id,
        addr: format!("10.0.0.{id}:7379"),
        cluster_id: cluster.into(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use islab_client::GroupStatus;

    use super::*;

    fn node(id: u64, cluster: &str) -> islab_client::Result<StatusResponse> {
        test_status(id, cluster)
    }

    #[test]
    fn init_refuses_what_cannot_form_a_cluster() {
        let ok = voters(vec![
            ("a:1".into(), node(1, "")),
            ("b:2".into(), node(2, "")),
        ])
        .unwrap();
        assert_eq!(
            ok.iter()
                .map(|m| (m.id, m.addr.as_str(), m.voter))
                .collect::<Vec<_>>(),
            [(1, "10.0.0.1:7379", true), (2, "10.0.0.2:7379", true)],
            "members are named by their advertised address"
        );
        let e = voters(vec![
            ("a:1".into(), node(1, "")),
            ("b:2".into(), node(1, "")),
            ("c:3".into(), node(3, "abc")),
            (
                "d:4".into(),
                Err(islab_client::Error::InvalidArgument("x".into())),
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("a:1 and b:2 are both node 1"), "{e}");
        assert!(
            e.contains("node 3 at c:3 already belongs to cluster abc"),
            "{e}"
        );
        assert!(e.contains("d:4 is unreachable"), "{e}");
    }

    #[test]
    fn init_if_needed_finds_the_one_existing_cluster() {
        let fresh = vec![("a:1".into(), node(1, "")), ("b:2".into(), node(2, ""))];
        assert!(
            existing(&fresh).unwrap().is_none(),
            "a new cluster is needed"
        );

        let mut s = node(2, "abc").unwrap();
        s.groups.push(GroupStatus {
            members: vec![Member {
                id: 2,
                addr: "10.0.0.2:7379".into(),
                voter: true,
            }],
            ..Default::default()
        });
        let partly = vec![
            ("a:1".into(), node(1, "")),
            ("b:2".into(), Ok(s)),
            (
                "c:3".into(),
                Err(islab_client::Error::InvalidArgument("down".into())),
            ),
        ];
        let (cluster, members) = existing(&partly).unwrap().unwrap();
        assert_eq!(cluster, "abc");
        assert_eq!(members.len(), 1);

        let split = vec![
            ("a:1".into(), node(1, "abc")),
            ("b:2".into(), node(2, "xyz")),
        ];
        let e = existing(&split).unwrap_err().to_string();
        assert!(e.contains("different clusters (abc, xyz)"), "{e}");
    }
}
