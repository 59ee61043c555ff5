//! The report of a run: every setting (the cluster's durability mode and how many
//! independent clients included, so a number can be traced back), the throughput and the
//! latency percentiles, as text or JSON.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::tally::Tally;
use super::workload::KINDS;
use crate::cli::{BenchArgs, BenchWorkload, GlobalArgs, WriteOut};
use crate::connect;

pub(super) struct Report {
    pub(super) system: String,
    pub(super) durability: String,
    pub(super) nodes: usize,
    pub(super) prefilled: u64,
    pub(super) elapsed: Duration,
    pub(super) requests: u64,
    pub(super) keys: u64,
    pub(super) tally: Tally,
}

pub(super) fn print_report(
    args: &BenchArgs,
    global: &GlobalArgs,
    r: &Report,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<()> {
    let secs = r.elapsed.as_secs_f64();
    let workload = format!("{:?}", args.workload).to_lowercase();
    let loop_kind = match args.rate {
        Some(rate) => format!(
            "open loop at {rate} ops/s, at most {} in flight",
            args.clients
        ),
        None => format!("closed loop, {} in flight", args.clients),
    };
    let loop_kind = format!(
        "{loop_kind} from {} independent client{}",
        args.connections,
        if args.connections == 1 { "" } else { "s" }
    );
    let distribution = format!("{:?}", args.distribution).to_lowercase();
    let consistency = format!("{:?}", args.read_consistency).to_lowercase();
    let per_kind: Vec<_> = KINDS
        .iter()
        .filter(|k| !r.tally.latency[k.index()].is_empty())
        .map(|k| (*k, &r.tally.latency[k.index()]))
        .collect();
    if format == WriteOut::Json {
        let latency: serde_json::Map<String, serde_json::Value> = per_kind
            .iter()
            .map(|(k, h)| {
                (
                    k.name().to_string(),
                    json!({
                        "count": h.len(),
                        "p50_us": h.value_at_quantile(0.50),
                        "p99_us": h.value_at_quantile(0.99),
                        "p999_us": h.value_at_quantile(0.999),
                        "max_us": h.max(),
                    }),
                )
            })
            .collect();
        let doc = json!({
            "settings": {
                "target": r.system,
                "workload": workload,
                "endpoints": connect::endpoints(global),
                "voters": r.nodes,
                "durability": r.durability,
                "clients": args.clients,
                "connections": args.connections,
                "rate": args.rate,
                "duration_s": args.duration.as_secs_f64(),
                "key_size": args.key_size,
                "value_size": args.value_size,
                "keyspace": args.keyspace,
                "distribution": distribution,
                "read_consistency": consistency,
                "batch": args.batch,
                "in_flight_per_shard": args.in_flight_per_shard,
                "read_ratio": args.read_ratio,
                "scan_limit": args.scan_limit,
                "prefilled": r.prefilled,
            },
            "elapsed_s": secs,
            "requests": r.requests,
            "requests_per_s": r.requests as f64 / secs,
            "keys": r.keys,
            "keys_per_s": r.keys as f64 / secs,
            "errors": r.tally.errors,
            "last_error": r.tally.last_error,
            "latency": latency,
        });
        serde_json::to_writer(&mut *out, &doc).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "settings: target={}; workload={workload} {loop_kind}; duration={:.1}s; durability={} on {} voters; \
         key={} B value={} B keyspace={} ({distribution}); read-consistency={consistency}; \
         batch={}{}{}{}",
        r.system,
        args.duration.as_secs_f64(),
        r.durability,
        r.nodes,
        args.key_size,
        args.value_size,
        args.keyspace,
        args.batch,
        if r.system == "islab" {
            format!("; in-flight-per-shard={}", args.in_flight_per_shard)
        } else {
            String::new()
        },
        if args.workload == BenchWorkload::Mixed {
            format!("; read-ratio={}", args.read_ratio)
        } else {
            String::new()
        },
        if r.prefilled > 0 {
            format!("; prefilled {} keys", r.prefilled)
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "throughput: {:.0} requests/s ({:.0} keys/s), {} requests in {secs:.2}s, {} errors{}",
        r.requests as f64 / secs,
        r.keys as f64 / secs,
        r.requests,
        r.tally.errors,
        r.tally
            .last_error
            .as_ref()
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    )?;
    for (kind, h) in per_kind {
        writeln!(
            out,
            "{:<5} latency: p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} ops)",
            kind.name(),
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.len()
        )?;
    }
    Ok(())
}
