//! `islab shard list | transfer-leader`.
//!
//! ```text
//! simple  epoch=7 shards=8 replication=3
//!         shard=1 slots=0..512 replicas=1,2,3 leader=1 keys=… bytes=… ops/s=… applied=…
//!         entropy shard_keys=0.998 … node_leaders=1.000
//! table   SHARD  SLOTS  REPLICAS  LEADER  KEYS  BYTES  OPS/S  APPLIED
//! json    {"epoch":7,"shards":[…],"entropy":{…}}
//! ```

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use islab_client::{Entropy, ShardListResponse};
use serde_json::{Value, json};

use crate::Outcome;
use crate::cli::{GlobalArgs, ShardCommand, WriteOut};
use crate::connect::{self, DEFAULT_TIMEOUT};
use crate::table::Table;

pub fn run(
    command: &ShardCommand,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    match command {
        ShardCommand::List => {
            let list = connect::block_on(async {
                let client = connect::client(global, DEFAULT_TIMEOUT)?;
                client.admin().shard_list().await.context("shard list")
            })??;
            write_list(out, format, &list)?;
        }
        ShardCommand::TransferLeader { shard, node } => {
            let leader = connect::block_on(async {
                let client = connect::client(global, Duration::from_secs(30))?;
                client
                    .admin()
                    .transfer_leader(*shard, *node)
                    .await
                    .with_context(|| format!("shard transfer-leader {shard} {node}"))
            })??;
            match format {
                WriteOut::Json => {
                    writeln!(out, "{}", json!({"shard": shard, "leader_id": leader}))?
                }
                _ => writeln!(out, "OK shard {shard} is led by node {leader}")?,
            }
        }
    }
    Ok(Outcome::Clean)
}

fn list_of(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// `entropy shard_keys=… node_leaders=…`: how evenly things spread, 1 = perfectly even.
pub fn entropy_line(e: &Entropy) -> String {
    format!(
        "entropy shard_keys={:.3} shard_bytes={:.3} shard_ops={:.3} node_keys={:.3} node_bytes={:.3} node_ops={:.3} node_leaders={:.3}",
        e.shard_keys,
        e.shard_bytes,
        e.shard_ops,
        e.node_keys,
        e.node_bytes,
        e.node_ops,
        e.node_leaders
    )
}

pub fn entropy_json(e: &Entropy) -> Value {
    json!({
        "shard_keys": e.shard_keys,
        "shard_bytes": e.shard_bytes,
        "shard_ops": e.shard_ops,
        "node_keys": e.node_keys,
        "node_bytes": e.node_bytes,
        "node_ops": e.node_ops,
        "node_leaders": e.node_leaders,
    })
}

fn write_list(out: &mut impl Write, format: WriteOut, list: &ShardListResponse) -> Result<()> {
    let (epoch, replication) = list
        .map
        .as_ref()
        .map_or((0, 0), |m| (m.epoch, m.replication));
    let entropy = list.entropy.unwrap_or_default();
    match format {
        WriteOut::Simple => {
            writeln!(
                out,
                "epoch={epoch} shards={} replication={replication}",
                list.shards.len()
            )?;
            for s in &list.shards {
                writeln!(
                    out,
                    "shard={} slots={}..{} replicas={} leader={} keys={} bytes={} ops/s={:.1} applied={}",
                    s.shard,
                    s.slot_start,
                    s.slot_end,
                    list_of(&s.replicas),
                    if s.leader_id == 0 {
                        "-".to_string()
                    } else {
                        s.leader_id.to_string()
                    },
                    s.keys,
                    s.bytes,
                    s.ops_per_sec,
                    s.applied_index
                )?;
            }
            writeln!(out, "{}", entropy_line(&entropy))?;
        }
        WriteOut::Table => {
            let mut t = Table::new(&[
                "SHARD", "SLOTS", "REPLICAS", "LEADER", "KEYS", "BYTES", "OPS/S", "APPLIED",
            ]);
            for s in &list.shards {
                t.row(vec![
                    s.shard.to_string(),
                    format!("{}..{}", s.slot_start, s.slot_end),
                    list_of(&s.replicas),
                    if s.leader_id == 0 {
                        "-".into()
                    } else {
                        s.leader_id.to_string()
                    },
                    s.keys.to_string(),
                    s.bytes.to_string(),
                    format!("{:.1}", s.ops_per_sec),
                    s.applied_index.to_string(),
                ]);
            }
            t.write(out)?;
            writeln!(out, "epoch={epoch} replication={replication}")?;
            writeln!(out, "{}", entropy_line(&entropy))?;
        }
        WriteOut::Json => {
            let shards: Vec<Value> = list
                .shards
                .iter()
                .map(|s| {
                    json!({
                        "shard": s.shard,
                        "slot_start": s.slot_start,
                        "slot_end": s.slot_end,
                        "replicas": s.replicas,
                        "leader_id": s.leader_id,
                        "keys": s.keys,
                        "bytes": s.bytes,
                        "ops_per_sec": s.ops_per_sec,
                        "applied_index": s.applied_index,
                    })
                })
                .collect();
            let doc = json!({
                "epoch": epoch,
                "replication": replication,
                "shards": shards,
                "entropy": entropy_json(&entropy),
                "unreachable": list.unreachable,
            });
            serde_json::to_writer(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
