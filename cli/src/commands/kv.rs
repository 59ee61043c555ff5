//! `islab put | get | del | scan`: the data commands, one SDK call each.
//!
//! Keys and values come from the command line as bytes (a non-UTF-8 argument is taken as
//! it is) and are printed as text, or as hex when they are not UTF-8 (`show`). Requests the
//! cluster refuses (an empty or over-long key, a value over the limit) fail with the
//! server's reason, which names the limit; the SDK retries only what may succeed later.
//!
//! ```text
//!         simple                      table                 json
//! put     OK version=17               KEY VERSION           {"key":"k","version":17}
//! get     <value>  (nothing: absent)  KEY VALUE VERSION     {"key":"k","found":true,"value":"v","version":17}
//! del     deleted=1                   KEY DELETED           {"key":"k","deleted":true}
//! scan    key="k" value="v" version=17  KEY VALUE VERSION   {"count":1,"items":[{"key":"k","value":"v","version":17}]}
//! ```

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;

use anyhow::{Context, Result};
use bytes::Bytes;
use islab_client::{KeyValue, ReadConsistency, Scan};
use serde_json::{Map, Value, json};

use crate::Outcome;
use crate::cli::{ConsistencyArg, DelArgs, GetArgs, GlobalArgs, PutArgs, ScanArgs, WriteOut};
use crate::connect::{self, DEFAULT_TIMEOUT};
use crate::show;
use crate::table::Table;

/// Bytes of a key or value shown in a table cell or an error message.
const CELL_MAX: usize = 64;

fn bytes(arg: &OsString) -> Bytes {
    Bytes::from(arg.clone().into_vec())
}

fn consistency(arg: ConsistencyArg) -> ReadConsistency {
    match arg {
        ConsistencyArg::Linearizable => ReadConsistency::Linearizable,
        ConsistencyArg::Serializable => ReadConsistency::Serializable,
    }
}

/// `name` followed by the key, for error messages: `put "user/1"`.
fn what(name: &str, key: &[u8]) -> String {
    format!("{name} {}", show::text(key, CELL_MAX))
}

fn json_line(out: &mut impl Write, value: &Value) -> Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

pub fn put(
    args: &PutArgs,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    let (key, value) = (bytes(&args.key), bytes(&args.value));
    let version = connect::block_on(async {
        let client = connect::client(global, DEFAULT_TIMEOUT)?;
        let version = match args.ttl {
            Some(ttl) => client.put_with_ttl(key.clone(), value, ttl).await?,
            None => client.put(key.clone(), value).await?,
        };
        anyhow::Ok(version)
    })?
    .with_context(|| what("put", &key))?;
    match format {
        WriteOut::Simple => writeln!(out, "OK version={version}")?,
        WriteOut::Table => {
            let mut t = Table::new(&["KEY", "VERSION>"]);
            t.row(vec![show::text(&key, CELL_MAX), version.to_string()]);
            t.write(out)?;
        }
        WriteOut::Json => {
            let mut m = Map::new();
            show::put_bytes(&mut m, "key", &key);
            m.insert("version".into(), version.into());
            json_line(out, &Value::Object(m))?;
        }
    }
    Ok(Outcome::Clean)
}

pub fn get(
    args: &GetArgs,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    let key = bytes(&args.key);
    let found = connect::block_on(async {
        let client = connect::client(global, DEFAULT_TIMEOUT)?;
        anyhow::Ok(
            client
                .get_with(key.clone(), consistency(args.consistency))
                .await?,
        )
    })?
    .with_context(|| what("get", &key))?;
    match format {
        // etcdctl's behaviour: an absent key prints nothing.
        WriteOut::Simple => {
            if let Some(kv) = &found {
                writeln!(out, "{}", show::plain(&kv.value))?;
            }
        }
        WriteOut::Table => {
            let mut t = Table::new(&["KEY", "VALUE", "VERSION>"]);
            if let Some(kv) = &found {
                t.row(row(kv));
            }
            t.write(out)?;
        }
        WriteOut::Json => {
            let mut m = Map::new();
            show::put_bytes(&mut m, "key", &key);
            m.insert("found".into(), found.is_some().into());
            if let Some(kv) = &found {
                show::put_bytes(&mut m, "value", &kv.value);
                m.insert("version".into(), kv.version.into());
            }
            json_line(out, &Value::Object(m))?;
        }
    }
    Ok(Outcome::Clean)
}

pub fn del(
    args: &DelArgs,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    let key = bytes(&args.key);
    let existed = connect::block_on(async {
        let client = connect::client(global, DEFAULT_TIMEOUT)?;
        anyhow::Ok(client.delete(key.clone()).await?)
    })?
    .with_context(|| what("del", &key))?;
    match format {
        WriteOut::Simple => writeln!(out, "deleted={}", u8::from(existed))?,
        WriteOut::Table => {
            let mut t = Table::new(&["KEY", "DELETED>"]);
            t.row(vec![
                show::text(&key, CELL_MAX),
                u8::from(existed).to_string(),
            ]);
            t.write(out)?;
        }
        WriteOut::Json => {
            let mut m = Map::new();
            show::put_bytes(&mut m, "key", &key);
            m.insert("deleted".into(), existed.into());
            json_line(out, &Value::Object(m))?;
        }
    }
    Ok(Outcome::Clean)
}

pub fn scan(
    args: &ScanArgs,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    let scan = match (&args.prefix, &args.start, &args.end) {
        (Some(prefix), _, _) => Scan::prefix(bytes(prefix)),
        (None, start, Some(end)) => {
            Scan::range(start.as_ref().map(bytes).unwrap_or_default()..bytes(end))
        }
        (None, Some(start), None) => Scan::from_key(bytes(start)),
        (None, None, None) => Scan::all(),
    }
    .limit(args.limit)
    .consistency(consistency(args.consistency));
    let items = connect::block_on(async {
        let client = connect::client(global, DEFAULT_TIMEOUT)?;
        anyhow::Ok(client.scan(scan).await?)
    })?
    .context("scan")?;
    match format {
        WriteOut::Simple => {
            for kv in &items {
                writeln!(
                    out,
                    "key={} value={} version={}",
                    show::text(&kv.key, usize::MAX),
                    show::text(&kv.value, usize::MAX),
                    kv.version
                )?;
            }
        }
        WriteOut::Table => {
            let mut t = Table::new(&["KEY", "VALUE", "VERSION>"]);
            for kv in &items {
                t.row(row(kv));
            }
            t.write(out)?;
        }
        WriteOut::Json => {
            let items: Vec<Value> = items
                .iter()
                .map(|kv| {
                    let mut m = Map::new();
                    show::put_bytes(&mut m, "key", &kv.key);
                    show::put_bytes(&mut m, "value", &kv.value);
                    m.insert("version".into(), kv.version.into());
                    Value::Object(m)
                })
                .collect();
            json_line(out, &json!({"count": items.len(), "items": items}))?;
        }
    }
    Ok(Outcome::Clean)
}

fn row(kv: &KeyValue) -> Vec<String> {
    vec![
        show::text(&kv.key, CELL_MAX),
        show::text(&kv.value, CELL_MAX),
        kv.version.to_string(),
    ]
}
