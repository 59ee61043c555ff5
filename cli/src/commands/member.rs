//! `islab member list | add | promote | remove`.
//!
//! Changes go through the SDK's admin handle, which sends them to the leader (following
//! redirects). `add` returns only once the new learner has caught up, which can take a while
//! on a big cluster: its default `--timeout` is minutes, not seconds.
//!
//! ```text
//! simple  node=1 addr=127.0.0.1:7379 role=voter leader=true      (one line per member)
//! table   ID  ADDR  ROLE  LEADER
//! json    {"leader_id":1,"members":[{"id":1,"addr":"…","voter":true,"leader":true}]}
//! ```
//!
//! A change prints `OK …` (or, in JSON, `"action"` and `"node"`) before the members.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use islab_client::Member;
use serde_json::{Map, Value, json};

use crate::Outcome;
use crate::cli::{GlobalArgs, MemberCommand, WriteOut};
use crate::connect::{self, DEFAULT_TIMEOUT};
use crate::table::Table;

/// `member add` waits for the learner to catch up, `member remove` for the node's replicas to
/// move off it.
const ADD_TIMEOUT: Duration = Duration::from_secs(300);

pub fn run(
    command: &MemberCommand,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    let (members, leader, change) = connect::block_on(async {
        let timeout = match command {
            MemberCommand::Add { .. } | MemberCommand::Remove { .. } => ADD_TIMEOUT,
            _ => DEFAULT_TIMEOUT,
        };
        let client = connect::client(global, timeout)?;
        let admin = client.admin();
        let (members, change) = match command {
            MemberCommand::List => {
                let list = admin.member_list().await.context("member list")?;
                let leader = (list.leader_id != 0).then_some(list.leader_id);
                return anyhow::Ok((list.members, leader, None));
            }
            MemberCommand::Add { id, addr } => {
                let members = admin
                    .member_add(*id, addr.clone())
                    .await
                    .with_context(|| format!("member add {id} {addr}"))?;
                (members, ("add", *id, "added as a learner (caught up)"))
            }
            MemberCommand::Promote { id } => {
                let members = admin
                    .member_promote(*id)
                    .await
                    .with_context(|| format!("member promote {id}"))?;
                (members, ("promote", *id, "promoted to voter"))
            }
            MemberCommand::Remove { id } => {
                let members = admin
                    .member_remove(*id)
                    .await
                    .with_context(|| format!("member remove {id}"))?;
                (members, ("remove", *id, "removed"))
            }
        };
        // The node that made the change is the leader; name it if it is a member by that
        // address (members are named by their advertised address, which the client may
        // reach through --address-map).
        let map = &client.config().address_map;
        let leader = client.leader().and_then(|addr| {
            let dialled = |m: &Member| map.get(&m.addr).unwrap_or(&m.addr) == &addr;
            members.iter().find(|m| dialled(m)).map(|m| m.id)
        });
        Ok((members, leader, Some(change)))
    })??;

    let mut head = Map::new();
    if let Some((action, id, done)) = change {
        if format == WriteOut::Json {
            head.insert("action".into(), action.into());
            head.insert("node".into(), id.into());
        } else {
            writeln!(out, "OK node={id} {done}")?;
        }
    }
    write_members(out, format, head, &members, leader)?;
    Ok(Outcome::Clean)
}

fn role(m: &Member) -> &'static str {
    if m.voter { "voter" } else { "learner" }
}

/// Prints `members` (sorted by id) in `format`; JSON puts the fields of `head` first.
pub fn write_members(
    out: &mut impl Write,
    format: WriteOut,
    head: Map<String, Value>,
    members: &[Member],
    leader: Option<u64>,
) -> Result<()> {
    let mut members = members.to_vec();
    members.sort_by_key(|m| m.id);
    match format {
        WriteOut::Simple => {
            for m in &members {
                write!(out, "node={} addr={} role={}", m.id, m.addr, role(m))?;
                if let Some(leader) = leader {
                    write!(out, " leader={}", leader == m.id)?;
                }
                writeln!(out)?;
            }
        }
        WriteOut::Table => {
            let mut t = Table::new(&["ID>", "ADDR", "ROLE", "LEADER"]);
            for m in &members {
                let is_leader = if leader == Some(m.id) { "*" } else { "" };
                t.row(vec![
                    m.id.to_string(),
                    m.addr.clone(),
                    role(m).into(),
                    is_leader.into(),
                ]);
            }
            t.write(out)?;
        }
        WriteOut::Json => {
            let mut doc = head;
            doc.insert("leader_id".into(), json!(leader));
            let list: Vec<Value> = members
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id,
                        "addr": m.addr,
                        "voter": m.voter,
                        "leader": leader == Some(m.id),
                    })
                })
                .collect();
            doc.insert("members".into(), list.into());
            serde_json::to_writer(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
