//! `islab wal dump`: a human-readable (or JSON Lines) view of a node's binary WAL.
//!
//! Segments are read by storage's own [`SegmentScan`], the reader recovery uses, so what
//! this calls damage is what recovery would; files are read with plain `std::fs`, never through
//! the `Wal` (opening it recovers, and recovery cuts torn tails). This module prints what it
//! finds, one line per segment, record and stretch of damage, then a summary:
//!
//! ```text
//! simple  00000000000000000001.log:32 entry group=1 term=1 index=1 put k (3 bytes)
//! table   FILE  OFFSET  KIND  GROUP  TERM  INDEX  DETAIL   (aligned columns)
//! json    {"type":"record","file":"…","offset":32,"len":20,"kind":"entry","group":1,…}
//! ```
//!
//! The outcome is [`Outcome::Damaged`] (exit status 2) when anything was not a valid record.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;
use islab_storage::{Damage, DataDir, Record, ScanItem, SegmentScan, list_segments};
use serde_json::{Map, Value, json};

use crate::Outcome;
use crate::cli::{WalDumpArgs, WriteOut};
use crate::inspect::payload::{self, PayloadDecoder, Rendered};

/// The directory holding the segments: the data directory's WAL if `dir` is one, else `dir`
/// itself.
fn wal_dir(dir: &Path) -> PathBuf {
    let nested = DataDir::wal_dir_in(dir);
    if nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    }
}

pub fn run(args: &WalDumpArgs, format: WriteOut, out: &mut impl Write) -> Result<Outcome> {
    let format = if args.json { WriteOut::Json } else { format };
    let dir = wal_dir(&args.dir);
    let segments =
        list_segments(&dir).with_context(|| format!("reading WAL directory {}", dir.display()))?;
    if segments.is_empty() {
        anyhow::bail!(
            "no WAL segments (files named like 00000000000000000001.log) in {}",
            dir.display()
        );
    }
    let mut dump = Dump {
        out,
        format,
        group: args.group,
        decoder: payload::decoder(args.raw),
        stats: Stats::default(),
    };
    if format == WriteOut::Table {
        dump.table_header()?;
    }
    for (i, (seq, path)) in segments.iter().enumerate() {
        let data = match std::fs::read(path) {
            Ok(data) => Bytes::from(data),
            // A running node deletes segments no group needs any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %path.display(), "segment vanished while dumping (collected by a running node?)");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        dump.segment(*seq, path, data, i + 1 == segments.len())?;
    }
    dump.summary(&dir)?;
    dump.out.flush()?;
    let damage = dump.stats.damage.len();
    if damage > 0 {
        eprintln!(
            "islab: damage found in the WAL at {}: {damage} place{}",
            dir.display(),
            if damage == 1 { "" } else { "s" }
        );
        return Ok(Outcome::Damaged);
    }
    Ok(Outcome::Clean)
}

#[derive(Default)]
struct Stats {
    segments: u64,
    records: u64,
    /// Records printed (all of them, or those of `--group`).
    shown: u64,
    bytes: u64,
    /// Entry records per group (every entry record, including ones a later truncate or
    /// purge removed).
    entries: BTreeMap<u64, u64>,
    kinds: BTreeMap<&'static str, u64>,
    damage: Vec<(String, Damage)>,
}

struct Dump<'a, W> {
    out: &'a mut W,
    format: WriteOut,
    group: Option<u64>,
    decoder: &'static dyn PayloadDecoder,
    stats: Stats,
}

/// One record, ready to print in any format.
struct Row {
    kind: &'static str,
    group: u64,
    term: Option<u64>,
    index: Option<u64>,
    /// `simple` text after the fixed fields.
    detail: String,
    /// JSON fields after the fixed ones.
    json: Map<String, Value>,
}

impl<W: Write> Dump<'_, W> {
    fn segment(&mut self, seq: u64, path: &Path, data: Bytes, is_last: bool) -> Result<()> {
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.stats.segments += 1;
        self.stats.bytes += data.len() as u64;
        match self.format {
            WriteOut::Simple => writeln!(
                self.out,
                "segment {file} seq={seq} size={}{}",
                data.len(),
                if is_last { " (last)" } else { "" }
            )?,
            WriteOut::Table => writeln!(
                self.out,
                "{file:<24} {:>10} {:<10} size={} seq={seq}",
                0,
                "segment",
                data.len()
            )?,
            WriteOut::Json => self.json_line(json!({
                "type": "segment", "file": file, "seq": seq, "size": data.len(), "last": is_last,
            }))?,
        }
        for item in SegmentScan::new(seq, data, is_last) {
            self.item(&file, item)?;
        }
        Ok(())
    }

    fn item(&mut self, file: &str, item: ScanItem) -> Result<()> {
        match item {
            ScanItem::Record {
                offset,
                len,
                record,
            } => {
                self.stats.records += 1;
                let row = self.row(&record);
                *self.stats.kinds.entry(row.kind).or_default() += 1;
                if row.kind == "entry" {
                    *self.stats.entries.entry(row.group).or_default() += 1;
                }
                if self.group.is_some_and(|g| g != row.group) {
                    return Ok(());
                }
                self.stats.shown += 1;
                self.print_row(file, offset, len, row)
            }
            ScanItem::Damage(d) => {
                self.print_damage(file, &d)?;
                self.stats.damage.push((file.to_string(), d));
                Ok(())
            }
        }
    }

    fn row(&self, record: &Record) -> Row {
        let decoded = |r: Rendered, name: &str, len: usize| {
            let mut json = Map::new();
            json.insert(name.into(), r.json);
            json.insert(format!("{name}_len"), len.into());
            (r.text, json)
        };
        match record {
            Record::Entry {
                group,
                term,
                index,
                payload,
            } => {
                let r = payload::render(payload, |b| self.decoder.entry(b));
                let (detail, json) = decoded(r, "payload", payload.len());
                Row {
                    kind: "entry",
                    group: *group,
                    term: Some(*term),
                    index: Some(*index),
                    detail,
                    json,
                }
            }
            Record::Truncate { group, after } => Row {
                kind: "truncate",
                group: *group,
                term: None,
                index: None,
                detail: match after {
                    Some(a) => format!("after={a}"),
                    None => "after=none (every entry)".into(),
                },
                json: Map::from_iter([("after".to_string(), json!(after))]),
            },
            Record::Purge { group, upto } => Row {
                kind: "purge",
                group: *group,
                term: Some(upto.term),
                index: Some(upto.index),
                detail: "(up to and including)".into(),
                json: Map::new(),
            },
            Record::Vote { group, data } => {
                let r = payload::render(data, |b| self.decoder.vote(b));
                let (detail, json) = decoded(r, "vote", data.len());
                Row {
                    kind: "vote",
                    group: *group,
                    term: None,
                    index: None,
                    detail,
                    json,
                }
            }
            Record::Committed { group, data } => {
                let r = payload::render(data, |b| self.decoder.committed(b));
                let (detail, json) = decoded(r, "committed", data.len());
                Row {
                    kind: "committed",
                    group: *group,
                    term: None,
                    index: None,
                    detail,
                    json,
                }
            }
        }
    }

    fn print_row(&mut self, file: &str, offset: u64, len: usize, row: Row) -> Result<()> {
        match self.format {
            WriteOut::Simple => {
                write!(self.out, "{file}:{offset} {} group={}", row.kind, row.group)?;
                if let (Some(t), Some(i)) = (row.term, row.index) {
                    write!(self.out, " term={t} index={i}")?;
                }
                writeln!(self.out, " {}", row.detail)?;
            }
            WriteOut::Table => {
                let opt = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
                writeln!(
                    self.out,
                    "{file:<24} {offset:>10} {:<10} {:>6} {:>8} {:>10}  {}",
                    row.kind,
                    row.group,
                    opt(row.term),
                    opt(row.index),
                    row.detail
                )?;
            }
            WriteOut::Json => {
                let mut m = Map::new();
                m.insert("type".into(), "record".into());
                m.insert("file".into(), file.into());
                m.insert("offset".into(), offset.into());
                m.insert("len".into(), len.into());
                m.insert("kind".into(), row.kind.into());
                m.insert("group".into(), row.group.into());
                if let (Some(t), Some(i)) = (row.term, row.index) {
                    m.insert("term".into(), t.into());
                    m.insert("index".into(), i.into());
                }
                m.extend(row.json);
                self.json_line(Value::Object(m))?;
            }
        }
        Ok(())
    }

    fn print_damage(&mut self, file: &str, d: &Damage) -> Result<()> {
        let resume = match d.resumed_at {
            Some(at) => format!("resuming at offset {at}"),
            None => "nothing valid follows in this segment".into(),
        };
        match self.format {
            WriteOut::Simple => writeln!(
                self.out,
                "{file}:{} DAMAGE {}: {} ({} bytes; {resume})",
                d.offset,
                d.kind.name(),
                d.reason,
                d.bytes
            )?,
            WriteOut::Table => writeln!(
                self.out,
                "{file:<24} {:>10} {:<10} {:>6} {:>8} {:>10}  {}: {} ({} bytes; {resume})",
                d.offset,
                "DAMAGE",
                "-",
                "-",
                "-",
                d.kind.name(),
                d.reason,
                d.bytes
            )?,
            WriteOut::Json => self.json_line(json!({
                "type": "damage",
                "file": file,
                "offset": d.offset,
                "damage": d.kind.name(),
                "reason": d.reason,
                "bytes": d.bytes,
                "resumed_at": d.resumed_at,
            }))?,
        }
        Ok(())
    }

    fn table_header(&mut self) -> Result<()> {
        writeln!(
            self.out,
            "{:<24} {:>10} {:<10} {:>6} {:>8} {:>10}  DETAIL",
            "FILE", "OFFSET", "KIND", "GROUP", "TERM", "INDEX"
        )?;
        Ok(())
    }

    fn summary(&mut self, dir: &Path) -> Result<()> {
        let s = &self.stats;
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, d) in &s.damage {
            *by_kind.entry(d.kind.name()).or_default() += 1;
        }
        if self.format == WriteOut::Json {
            let entries: Map<String, Value> = s
                .entries
                .iter()
                .map(|(g, n)| (g.to_string(), (*n).into()))
                .collect();
            let damage: Vec<Value> = s
                .damage
                .iter()
                .map(|(file, d)| {
                    json!({"file": file, "offset": d.offset, "damage": d.kind.name(), "reason": d.reason})
                })
                .collect();
            return self.json_line(json!({
                "type": "summary",
                "dir": dir.display().to_string(),
                "segments": s.segments,
                "bytes": s.bytes,
                "records": s.records,
                "shown": s.shown,
                "group": self.group,
                "kinds": s.kinds,
                "entries": entries,
                "damage": damage,
                "clean": s.damage.is_empty(),
            }));
        }
        let entries = if s.entries.is_empty() {
            "none".to_string()
        } else {
            let groups: Vec<String> = s.entries.iter().map(|(g, n)| format!("{g}:{n}")).collect();
            groups.join(",")
        };
        let kinds: Vec<String> = s.kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let damage = if s.damage.is_empty() {
            "none".to_string()
        } else {
            let parts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {}", k)).collect();
            parts.join(", ")
        };
        writeln!(
            self.out,
            "summary: dir={} segments={} bytes={} records={}{} entries-per-group={entries} {} damage={damage}",
            dir.display(),
            s.segments,
            s.bytes,
            s.records,
            match self.group {
                Some(g) => format!(" shown={} (group {g})", s.shown),
                None => String::new(),
            },
            kinds.join(" "),
        )?;
        Ok(())
    }

    fn json_line(&mut self, value: Value) -> Result<()> {
        serde_json::to_writer(&mut *self.out, &value).map_err(std::io::Error::from)?;
        writeln!(self.out)?;
        Ok(())
    }
}
