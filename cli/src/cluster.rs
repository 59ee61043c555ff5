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
//!
//! `status` output, one node per endpoint and one group per Raft group on it:
//!
//! ```text
//! simple  127.0.0.1:7379: node=1 addr=… cluster=… durability=sync wal_bytes=… …
//!           group=1 role=leader leader=1 term=2 last_log=7 commit=7 applied=7 …
//!         127.0.0.1:7381: unreachable: …
//! table   ENDPOINT NODE ADDR CLUSTER DURABILITY WAL-BYTES … GROUP ROLE LEADER TERM … BYTES
//! json    {"endpoints":[{"endpoint":"…","reachable":true,"node_id":1,…,"groups":[…]}]}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use islab_client::{Client, GroupStatus, Member, StatusResponse};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::Outcome;
use crate::cli::{ClusterCommand, GlobalArgs, InitArgs, WriteOut};
use crate::connect::{self, DEFAULT_TIMEOUT};
use crate::table::Table;
use crate::{member, shard};

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
        ClusterCommand::Status => status(global, format, out),
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

fn status(global: &GlobalArgs, format: WriteOut, out: &mut impl Write) -> Result<Outcome> {
    let endpoints = connect::endpoints(global);
    let timeout = global.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let (all, shards) = connect::block_on(async {
        let probe = connect::probe_client(&endpoints, connect::address_map(global), timeout)?;
        let all = statuses(&probe, &endpoints).await;
        // Cluster-wide spread, when some node can tell (not before init).
        let shards = probe.admin().shard_list().await.ok();
        anyhow::Ok((all, shards))
    })??;
    let entropy = shards.and_then(|s| s.entropy);
    match format {
        WriteOut::Simple | WriteOut::Table => {
            if format == WriteOut::Simple {
                status_simple(out, &all)?;
            } else {
                status_table(out, &all)?;
            }
            if let Some(e) = &entropy {
                writeln!(out, "{}", shard::entropy_line(e))?;
            }
        }
        WriteOut::Json => {
            let list: Vec<Value> = all.iter().map(|(e, s)| status_json(e, s)).collect();
            let mut doc = json!({ "endpoints": list });
            if let Some(e) = &entropy {
                doc["entropy"] = shard::entropy_json(e);
            }
            serde_json::to_writer(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    let down: Vec<&str> = all
        .iter()
        .filter(|(_, s)| s.is_err())
        .map(|(e, _)| e.as_str())
        .collect();
    if !down.is_empty() {
        bail!(
            "{} of {} endpoints unreachable: {}",
            down.len(),
            all.len(),
            down.join(", ")
        );
    }
    Ok(Outcome::Clean)
}

fn or_dash(id: u64) -> String {
    if id == 0 { "-".into() } else { id.to_string() }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

fn status_simple(
    out: &mut impl Write,
    all: &[(String, islab_client::Result<StatusResponse>)],
) -> Result<()> {
    for (endpoint, status) in all {
        let s = match status {
            Ok(s) => s,
            Err(e) => {
                writeln!(out, "{endpoint}: unreachable: {e}")?;
                continue;
            }
        };
        writeln!(
            out,
            "{endpoint}: node={} addr={} cluster={} durability={} wal_bytes={} wal_segments={} wal_fsyncs={} version={}",
            s.node_id,
            s.addr,
            or_none(&s.cluster_id),
            s.durability,
            s.wal_bytes,
            s.wal_segments,
            s.wal_fsyncs,
            s.version
        )?;
        for g in &s.groups {
            writeln!(
                out,
                "  group={} role={} leader={} term={} last_log={} commit={} applied={} checkpoint={} purged={} keys={} bytes={}",
                g.group_id,
                g.role,
                or_dash(g.leader_id),
                g.term,
                g.last_log_index,
                g.commit_index,
                g.applied_index,
                g.checkpoint_index,
                g.purged_index,
                g.keys,
                g.bytes
            )?;
        }
    }
    Ok(())
}

fn status_table(
    out: &mut impl Write,
    all: &[(String, islab_client::Result<StatusResponse>)],
) -> Result<()> {
    let mut t = Table::new(&[
        "ENDPOINT",
        "NODE>",
        "ADDR",
        "CLUSTER",
        "DURABILITY",
        "WAL-BYTES>",
        "SEGMENTS>",
        "FSYNCS>",
        "GROUP>",
        "ROLE",
        "LEADER>",
        "TERM>",
        "LAST-LOG>",
        "COMMIT>",
        "APPLIED>",
        "CHECKPOINT>",
        "PURGED>",
        "KEYS>",
        "BYTES>",
    ]);
    for (endpoint, status) in all {
        let s = match status {
            Ok(s) => s,
            Err(e) => {
                t.row(vec![endpoint.clone(), format!("unreachable: {e}")]);
                continue;
            }
        };
        let node = vec![
            endpoint.clone(),
            s.node_id.to_string(),
            s.addr.clone(),
            or_none(&s.cluster_id).to_string(),
            s.durability.clone(),
            s.wal_bytes.to_string(),
            s.wal_segments.to_string(),
            s.wal_fsyncs.to_string(),
        ];
        if s.groups.is_empty() {
            t.row(node.clone());
        }
        for g in &s.groups {
            let mut row = node.clone();
            row.extend([
                g.group_id.to_string(),
                g.role.clone(),
                or_dash(g.leader_id),
                g.term.to_string(),
                g.last_log_index.to_string(),
                g.commit_index.to_string(),
                g.applied_index.to_string(),
                g.checkpoint_index.to_string(),
                g.purged_index.to_string(),
                g.keys.to_string(),
                g.bytes.to_string(),
            ]);
            t.row(row);
        }
    }
    t.write(out)?;
    Ok(())
}

fn status_json(endpoint: &str, status: &islab_client::Result<StatusResponse>) -> Value {
    let s = match status {
        Ok(s) => s,
        Err(e) => {
            return json!({"endpoint": endpoint, "reachable": false, "error": e.to_string()});
        }
    };
    let groups: Vec<Value> = s.groups.iter().map(group_json).collect();
    json!({
        "endpoint": endpoint,
        "reachable": true,
        "node_id": s.node_id,
        "addr": s.addr,
        "cluster_id": s.cluster_id,
        "durability": s.durability,
        "version": s.version,
        "wal_bytes": s.wal_bytes,
        "wal_segments": s.wal_segments,
        "wal_fsyncs": s.wal_fsyncs,
        "groups": groups,
    })
}

fn group_json(g: &GroupStatus) -> Value {
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| json!({"id": m.id, "addr": m.addr, "voter": m.voter}))
        .collect();
    json!({
        "group_id": g.group_id,
        "role": g.role,
        "leader_id": g.leader_id,
        "leader_addr": g.leader_addr,
        "term": g.term,
        "last_log_index": g.last_log_index,
        "commit_index": g.commit_index,
        "applied_index": g.applied_index,
        "checkpoint_index": g.checkpoint_index,
        "purged_index": g.purged_index,
        "keys": g.keys,
        "bytes": g.bytes,
        "members": members,
        "read_requests": g.read_requests,
        "keys_read": g.keys_read,
        "read_rounds": g.read_rounds,
        "write_entries": g.write_entries,
        "write_requests": g.write_requests,
        "quiesced": g.quiesced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, cluster: &str) -> islab_client::Result<StatusResponse> {
        Ok(StatusResponse {
            node_id: id,
            addr: format!("10.0.0.{id}:7379"),
            cluster_id: cluster.into(),
            ..Default::default()
        })
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

    #[test]
    fn status_shows_unreachable_nodes_as_rows() {
        let mut s = node(1, "abc").unwrap();
        s.groups.push(GroupStatus {
            group_id: 1,
            role: "leader".into(),
            leader_id: 1,
            applied_index: 7,
            ..Default::default()
        });
        let all = vec![
            ("a:1".to_string(), Ok(s)),
            (
                "b:2".to_string(),
                Err(islab_client::Error::InvalidArgument("down".into())),
            ),
        ];
        let mut out = Vec::new();
        status_table(&mut out, &all).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ENDPOINT  NODE  ADDR"), "{text}");
        assert!(
            lines[1].contains(" leader ") && lines[1].ends_with(" 0"),
            "{text}"
        );
        assert!(lines[2].starts_with("b:2       unreachable: "), "{text}");

        let mut out = Vec::new();
        status_simple(&mut out, &all).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("a:1: node=1 addr=10.0.0.1:7379 cluster=abc"),
            "{text}"
        );
        assert!(
            text.contains("\n  group=1 role=leader leader=1 term=0"),
            "{text}"
        );
        assert!(
            text.contains("b:2: unreachable: invalid argument: down"),
            "{text}"
        );

        let v = status_json("b:2", &all[1].1);
        assert_eq!(v["reachable"], false);
    }
}
