//! Making sense of the bytes storage keeps opaque: entry payloads, votes, committed log ids
//! and checkpoint membership, all written by the Raft layer.
//!
//! Storage frames and checksums these blobs but never looks inside; `islab-raft` encodes them
//! with `islab_storage::codec` (bincode 2 over serde) as openraft values and owns their decoders
//! ([`islab_raft::encoding`]); this module only renders what they return. A [`PayloadDecoder`]
//! turns one blob into a line of text and a JSON value. [`RaftPayloads`] decodes them as the
//! Raft layer wrote them; [`RawPayloads`] shows only their length and first bytes (`--raw`,
//! and the fallback for a blob that does not decode, which is not damage: the record's checksum
//! already vouched for its bytes).

use std::collections::BTreeSet;

use islab_raft::encoding;
use islab_raft::{EntryPayload, LogId, Membership, StoredMembership, Vote};
use islab_storage::Command;
use serde_json::{Map, Value, json};

use crate::show;

/// Bytes shown of a payload that is not decoded.
const HEX_PREFIX: usize = 32;

/// One decoded blob: a short text for `simple`/`table` output and a value for JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub json: Value,
}

/// Decodes the opaque blobs of the WAL and of checkpoints. `Err` carries why a blob does not
/// decode; callers then fall back to [`raw`].
pub trait PayloadDecoder {
    /// An `Entry` record's payload.
    fn entry(&self, payload: &[u8]) -> Result<Rendered, String>;
    /// A `Vote` record's data.
    fn vote(&self, data: &[u8]) -> Result<Rendered, String>;
    /// A `Committed` record's data.
    fn committed(&self, data: &[u8]) -> Result<Rendered, String>;
    /// A checkpoint's membership.
    fn membership(&self, data: &[u8]) -> Result<Rendered, String>;
}

/// The decoder for the payloads of this build's Raft layer, or the raw view when `raw`.
pub fn decoder(raw: bool) -> &'static dyn PayloadDecoder {
    if raw { &RawPayloads } else { &RaftPayloads }
}

/// `f` applied to `bytes`, or the raw view with the reason it did not decode.
pub fn render(bytes: &[u8], f: impl FnOnce(&[u8]) -> Result<Rendered, String>) -> Rendered {
    f(bytes).unwrap_or_else(|reason| {
        let mut r = raw(bytes);
        r.text = format!("undecodable ({reason}): {}", r.text);
        if let Value::Object(m) = &mut r.json {
            m.insert("undecodable".into(), Value::from(reason));
        }
        r
    })
}

/// Length and first bytes of an undecoded blob.
pub fn raw(bytes: &[u8]) -> Rendered {
    Rendered {
        text: format!(
            "{} bytes {}",
            bytes.len(),
            show::hex_prefix(bytes, HEX_PREFIX)
        ),
        json: json!({
            "len": bytes.len(),
            "hex_prefix": show::hex_prefix(bytes, HEX_PREFIX),
        }),
    }
}

/// Shows every blob undecoded.
pub struct RawPayloads;

impl PayloadDecoder for RawPayloads {
    fn entry(&self, payload: &[u8]) -> Result<Rendered, String> {
        Ok(raw(payload))
    }

    fn vote(&self, data: &[u8]) -> Result<Rendered, String> {
        Ok(raw(data))
    }

    fn committed(&self, data: &[u8]) -> Result<Rendered, String> {
        Ok(raw(data))
    }

    fn membership(&self, data: &[u8]) -> Result<Rendered, String> {
        Ok(raw(data))
    }
}

/// Decodes blobs with `islab-raft`'s own decoders ([`islab_raft::encoding`]), so the dump
/// reads exactly the format the node writes.
pub struct RaftPayloads;

/// A decode error as the text shown in place of a value.
fn shown(e: islab_raft::Error) -> String {
    e.to_string()
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

impl PayloadDecoder for RaftPayloads {
    fn entry(&self, payload: &[u8]) -> Result<Rendered, String> {
        Ok(
            match encoding::decode_entry_payload(payload).map_err(shown)? {
                EntryPayload::Blank => Rendered {
                    text: "blank".into(),
                    json: json!({"type": "blank"}),
                },
                EntryPayload::Normal(request) => Rendered {
                    text: request.to_string(),
                    json: {
                        let mut json = request_json(&request);
                        json["type"] = "normal".into();
                        json
                    },
                },
                EntryPayload::Membership(m) => Rendered {
                    text: format!("membership {}", membership_text(&m)),
                    json: json!({"type": "membership", "membership": to_json(&m)?}),
                },
            },
        )
    }

    fn vote(&self, data: &[u8]) -> Result<Rendered, String> {
        let vote: Vote = encoding::decode_vote(data).map_err(shown)?;
        Ok(Rendered {
            text: vote.to_string(),
            json: to_json(&vote)?,
        })
    }

    fn committed(&self, data: &[u8]) -> Result<Rendered, String> {
        let committed: Option<LogId> = encoding::decode_committed(data).map_err(shown)?;
        Ok(Rendered {
            text: committed.map_or_else(|| "none".into(), |c| c.to_string()),
            json: to_json(&committed)?,
        })
    }

    fn membership(&self, data: &[u8]) -> Result<Rendered, String> {
        let m: StoredMembership = encoding::decode_membership(data).map_err(shown)?;
        let log_id = m.log_id().map_or_else(|| "none".into(), |l| l.to_string());
        Ok(Rendered {
            text: format!("log-id={log_id} {}", membership_text(m.membership())),
            json: to_json(&m)?,
        })
    }
}

/// `voters={1,2,3} learners={4} nodes=1@addr,…`; a joint config shows as `{1,2,3}+{2,3,4}`.
/// (openraft's own `Display` prints each node as a `Debug` struct.)
fn membership_text(m: &Membership) -> String {
    let set = |ids: &BTreeSet<u64>| {
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        format!("{{{}}}", ids.join(","))
    };
    let voters: Vec<String> = m.get_joint_config().iter().map(set).collect();
    let learners: BTreeSet<u64> = m.learner_ids().collect();
    let nodes: Vec<String> = m
        .nodes()
        .map(|(id, n)| format!("{id}@{}", n.addr))
        .collect();
    format!(
        "voters={} learners={} nodes={}",
        voters.join("+"),
        set(&learners),
        nodes.join(",")
    )
}

/// A command with its key and value readable (serde would print bytes as arrays of numbers).
/// A request: its command and its write id (null when it has none).
fn request_json(request: &islab_storage::Request) -> Value {
    json!({
        "command": command_json(&request.command),
        "client_id": request.id.map(|id| id.client),
        "seq": request.id.map(|id| id.seq),
    })
}

fn command_json(cmd: &Command) -> Value {
    let mut m = Map::new();
    match cmd {
        Command::Put {
            key,
            value,
            expires_at,
        } => {
            m.insert("op".into(), "put".into());
            show::put_bytes(&mut m, "key", key);
            show::put_bytes(&mut m, "value", value);
            m.insert("expires_at".into(), json!(expires_at));
        }
        Command::Delete { key } => {
            m.insert("op".into(), "delete".into());
            show::put_bytes(&mut m, "key", key);
        }
        Command::Cas {
            key,
            expected,
            value,
            expires_at,
        } => {
            m.insert("op".into(), "cas".into());
            show::put_bytes(&mut m, "key", key);
            m.insert("expected".into(), json!(expected));
            show::put_bytes(&mut m, "value", value);
            m.insert("expires_at".into(), json!(expires_at));
        }
        Command::Batch(cmds) => {
            m.insert("op".into(), "batch".into());
            m.insert(
                "commands".into(),
                Value::Array(cmds.iter().map(command_json).collect()),
            );
        }
        Command::Gathered(requests) => {
            m.insert("op".into(), "gathered".into());
            m.insert(
                "requests".into(),
                Value::Array(requests.iter().map(request_json).collect()),
            );
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use islab_storage::codec;

    use super::*;

    #[test]
    fn raft_entries_decode_and_garbage_falls_back() {
        let put = EntryPayload::Normal(islab_storage::Request::new(Command::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(&[0xff]),
            expires_at: None,
        }));
        let bytes = codec::encode(&put).unwrap();
        let r = render(&bytes, |b| RaftPayloads.entry(b));
        assert_eq!(r.text, "put k (1 bytes)");
        assert_eq!(
            r.json,
            json!({"type": "normal", "command":
                {"op": "put", "key": "k", "value_hex": "ff", "expires_at": null},
                "client_id": null, "seq": null})
        );

        let r = render(&[0xff, 0xff], |b| RaftPayloads.entry(b));
        assert!(r.text.starts_with("undecodable ("), "{}", r.text);
        assert!(r.text.ends_with("2 bytes ffff"), "{}", r.text);
        assert_eq!(r.json["len"], 2);
    }

    #[test]
    fn membership_is_short() {
        let m = Membership::new_with_defaults(vec![BTreeSet::from([1, 2])], [3]);
        let r = RaftPayloads
            .entry(&codec::encode(&EntryPayload::Membership(m)).unwrap())
            .unwrap();
        assert_eq!(
            r.text,
            "membership voters={1,2} learners={3} nodes=1@localhost,2@localhost,3@localhost"
        );
        assert_eq!(r.json["membership"]["configs"], json!([[1, 2]]));
    }

    #[test]
    fn raw_shows_a_prefix() {
        let r = render(&[7u8; 40], |b| RawPayloads.vote(b));
        assert_eq!(r.json["len"], 40);
        assert!(r.text.starts_with("40 bytes 0707") && r.text.ends_with('…'));
    }
}
