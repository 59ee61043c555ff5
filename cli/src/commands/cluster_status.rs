//! `islab cluster status`: every endpoint's node and the Raft groups on it, one node per
//! endpoint and one group per Raft group, asked concurrently; an unreachable node is a row
//! saying so, not an error.
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

use std::io::Write;

use anyhow::{Result, bail};
use islab_client::{GroupStatus, StatusResponse};
use serde_json::{Value, json};

use crate::Outcome;
use crate::cli::{GlobalArgs, WriteOut};
use crate::commands::cluster::statuses;
use crate::commands::shard;
use crate::connect::{self, DEFAULT_TIMEOUT};
use crate::table::Table;

pub fn run(global: &GlobalArgs, format: WriteOut, out: &mut impl Write) -> Result<Outcome> {
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
        crate::commands::cluster::test_status(id, cluster)
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
