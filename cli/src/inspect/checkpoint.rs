//! `islab checkpoint inspect`: what a checkpoint file is the image of, and whether every block
//! of it is intact.
//!
//! Opening checks the header and trailer; then every block is read and checksummed (one pass,
//! which also collects the first `--keys N` keys). A block that fails makes the outcome
//! [`Outcome::Damaged`] (exit status 2) and the message names the file and the block's offset.

use std::io::Write;

use anyhow::{Context, Result};
use bytes::Bytes;
use islab_storage::{Checkpoint, Versioned};
use serde_json::{Map, Value, json};

use crate::Outcome;
use crate::cli::{CheckpointInspectArgs, WriteOut};
use crate::inspect::payload;
use crate::show;

/// Bytes of a key or value shown in text output.
const TEXT_MAX: usize = 64;

pub fn run(
    args: &CheckpointInspectArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    let ckpt = Checkpoint::open(&args.file).context("cannot inspect the checkpoint")?;
    let limit = args.keys.unwrap_or(0);
    let mut first: Vec<(Bytes, Versioned)> = Vec::with_capacity(limit.min(10_000));
    // `for_each` is `verify` (every block's checksum, the trailer's counts) plus the keys.
    let verified = ckpt.for_each(|key, value| {
        if first.len() < limit {
            first.push((key, value));
        }
    });
    let meta = ckpt.meta();
    let membership = payload::render(&meta.membership, |b| payload::decoder(false).membership(b));

    if format == WriteOut::Json {
        let mut doc = json!({
            "file": ckpt.path().display().to_string(),
            "size": ckpt.size(),
            "group": meta.group,
            "last_applied": meta.last_applied.map(|p| json!({"term": p.term, "index": p.index})),
            "snapshot_id": meta.snapshot_id,
            "membership": membership.json,
            "membership_len": meta.membership.len(),
            "keys": ckpt.keys(),
            "blocks": ckpt.blocks(),
            "verify": match &verified {
                Ok(()) => json!({"ok": true}),
                Err(e) => {
                    let mut v = json!({"ok": false, "error": e.to_string()});
                    if let islab_storage::Error::Corrupt { offset, reason, .. } = e {
                        v["offset"] = json!(offset);
                        v["reason"] = json!(reason);
                    }
                    v
                }
            },
        });
        if args.keys.is_some() {
            doc["first_keys"] = first.iter().map(|(k, v)| key_json(k, v)).collect();
        }
        serde_json::to_writer(&mut *out, &doc).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        let field = |out: &mut dyn Write, name: &str, value: &dyn std::fmt::Display| {
            writeln!(out, "{name:<13} {value}")
        };
        field(out, "file", &ckpt.path().display())?;
        field(out, "size", &format_args!("{} bytes", ckpt.size()))?;
        field(out, "group", &meta.group)?;
        match meta.last_applied {
            Some(p) => field(
                out,
                "last-applied",
                &format_args!("term={} index={}", p.term, p.index),
            )?,
            None => field(out, "last-applied", &"none")?,
        }
        field(out, "snapshot-id", &meta.snapshot_id)?;
        field(out, "membership", &membership.text)?;
        field(out, "keys", &ckpt.keys())?;
        field(out, "blocks", &ckpt.blocks())?;
        match &verified {
            Ok(()) => field(
                out,
                "verify",
                &"ok (every block's checksum and the key count match)",
            )?,
            Err(e) => field(out, "verify", &format_args!("FAILED: {e}"))?,
        }
        if args.keys.is_some() {
            print_keys(out, format, &first)?;
        }
    }
    out.flush()?;

    match verified {
        Ok(()) => Ok(Outcome::Clean),
        Err(e @ islab_storage::Error::Corrupt { .. }) => {
            eprintln!("islab: checkpoint damaged: {e}");
            Ok(Outcome::Damaged)
        }
        Err(e) => Err(e).context("verifying the checkpoint"),
    }
}

fn print_keys(out: &mut impl Write, format: WriteOut, keys: &[(Bytes, Versioned)]) -> Result<()> {
    let expires = |v: &Versioned| v.expires_at.map_or_else(|| "-".into(), |e| e.to_string());
    writeln!(out, "first {} keys (in file order):", keys.len())?;
    if format == WriteOut::Table {
        writeln!(
            out,
            "  {:<32} {:>10} {:>14}  VALUE",
            "KEY", "VERSION", "EXPIRES-AT"
        )?;
        for (k, v) in keys {
            writeln!(
                out,
                "  {:<32} {:>10} {:>14}  {}",
                show::text(k, TEXT_MAX),
                v.version,
                expires(v),
                show::text(&v.value, TEXT_MAX)
            )?;
        }
    } else {
        for (k, v) in keys {
            writeln!(
                out,
                "  {} version={} expires-at={} value={}",
                show::text(k, TEXT_MAX),
                v.version,
                expires(v),
                show::text(&v.value, TEXT_MAX)
            )?;
        }
    }
    Ok(())
}

fn key_json(key: &[u8], v: &Versioned) -> Value {
    let mut m = Map::new();
    show::put_bytes(&mut m, "key", key);
    m.insert("version".into(), v.version.into());
    m.insert("expires_at".into(), json!(v.expires_at));
    show::put_bytes(&mut m, "value", &v.value);
    m.insert("value_len".into(), v.value.len().into());
    Value::Object(m)
}
