//! `/metrics`: what `Admin.Status` says, as OpenMetrics text, read on each scrape.
//!
//! Names follow etcd's where there is one to follow (`*_leader_changes_seen`, `*_fsync_duration_
//! seconds`), prefixed `islab_`; the gRPC ones are go-grpc-prometheus' own, as etcd exports
//! them. Labels: per-group series carry `group` (the shard's Raft group id; a handful per
//! node, so the cardinality is the number of shards); node-wide ones carry none.
//!
//! ```text
//! islab_build_info{version}                       1
//! islab_server_groups / _leading / _without_leader / _quiescent   counts of this node's groups
//! islab_server_leader_changes_seen_total          new leaders seen, over all groups
//! islab_cluster_map_epoch                         the shard map's epoch this node knows
//! islab_group_{keys,bytes,term,applied_index,committed_index,is_leader}{group}     gauges
//! islab_group_{write_entries,write_requests,read_requests,keys_read,read_rounds,
//!             leader_changes}_total{group}
//! islab_wal_{bytes,segments}                      gauges
//! islab_wal_{fsyncs,entries_appended,batches,bytes_written}_total
//! islab_wal_fsync_duration_seconds_{bucket,sum,count}   histogram, 100 µs … 8.192 s
//! islab_disk_{free_bytes,reserve_bytes}, islab_writes_refused (1 while under the reserve)
//! grpc_server_handled_total{grpc_service,grpc_method,grpc_code}   (go-grpc-prometheus names)
//! grpc_server_handling_seconds_{bucket,sum,count}{grpc_service,grpc_method}
//! ```
//!
//! A group's counters count from when the group started on this node (a restart or a replica
//! that moves here starts them at 0, which Prometheus reads as a counter reset).

use islab_storage::Latency;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::grpc::{CODES, MethodReading};
use crate::admin::status::local_status;
use crate::node_state::NodeState;

/// The content type of the text `render` returns.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of `node` now, as OpenMetrics text.
pub(crate) fn render(node: &Arc<NodeState>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector { node: node.clone() }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Reads the node's state when a scrape encodes it.
struct NodeCollector {
    node: Arc<NodeState>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

type Labels = [(&'static str, String); 1];

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(v as i64);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// `islab_wal_fsync_duration_seconds` (etcd: `etcd_disk_wal_fsync_duration_seconds`).
fn fsync_histogram(e: &mut DescriptorEncoder, h: &Latency) -> std::fmt::Result {
    let mut m = e.encode_descriptor(
        "islab_wal_fsync_duration_seconds",
        "How long the WAL's fdatasync calls took (one per group commit)",
        None,
        MetricType::Histogram,
    )?;
    let (sum, count, buckets) = histogram_parts(h);
    m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

/// `grpc_server_handled_total` and `grpc_server_handling_seconds`, go-grpc-prometheus' names.
fn grpc_families(e: &mut DescriptorEncoder, methods: &[MethodReading]) -> std::fmt::Result {
    let mut handled = e.encode_descriptor(
        "grpc_server_handled",
        "gRPC calls this node answered, by method and status code",
        None,
        MetricType::Counter,
    )?;
    for m in methods {
        for (code, n) in m.handled.iter().enumerate() {
            // OK always, other codes once they happened.
            if *n == 0 && code != 0 {
                continue;
            }
            let labels = [
                ("grpc_service", m.service.clone()),
                ("grpc_method", m.method.clone()),
                ("grpc_code", CODES[code].to_string()),
            ];
            ConstCounter::new(*n).encode(handled.encode_family(&labels)?)?;
        }
    }
    let mut seconds = e.encode_descriptor(
        "grpc_server_handling_seconds",
        "Time from a call's arrival to its response headers, by method",
        None,
        MetricType::Histogram,
    )?;
    for m in methods {
        let labels = [
            ("grpc_service", m.service.clone()),
            ("grpc_method", m.method.clone()),
        ];
        let (sum, count, buckets) = histogram_parts(&m.latency);
        seconds
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

/// A reading as the encoder wants it: sum in seconds, count, each bucket's own count with
/// its bound in seconds, +Inf last.
fn histogram_parts(h: &Latency) -> (f64, u64, Vec<(f64, u64)>) {
    let mut below = 0;
    let mut buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|(bound, cumulative)| {
            let own = cumulative - below;
            below = *cumulative;
            (*bound as f64 / 1e6, own)
        })
        .collect();
    buckets.push((f64::MAX, h.count - below));
    (h.sum_micros as f64 / 1e6, h.count, buckets)
}

/// One gauge family with a series per group.
fn group_gauges(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> std::fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// One counter family with a series per group.
fn group_counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> std::fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let node = &self.node;
        let status = local_status(node);
        let wal = node.wal.stats();

        let info = e.encode_descriptor(
            "islab_build_info",
            "The islab build this node runs (always 1)",
            None,
            MetricType::Gauge,
        );
        ConstGauge::new(1)
            .encode(info?.encode_family(&[("version", env!("CARGO_PKG_VERSION").to_string())])?)?;

        let groups = &status.groups;
        let count = |f: &dyn Fn(&islab_proto::v1::GroupStatus) -> bool| {
            groups.iter().filter(|g| f(g)).count() as u64
        };
        gauge(
            &mut e,
            "islab_server_groups",
            "Raft groups this node runs (the meta group and its shard replicas)",
            groups.len() as u64,
        )?;
        gauge(
            &mut e,
            "islab_server_groups_leading",
            "Raft groups this node leads",
            count(&|g| g.role == "leader"),
        )?;
        gauge(
            &mut e,
            "islab_server_groups_without_leader",
            "Raft groups of this node that know no leader (alert when above 0 for long)",
            count(&|g| g.leader_id == 0),
        )?;
        gauge(
            &mut e,
            "islab_server_groups_quiescent",
            "Raft groups of this node that are quiet (no heartbeats while idle)",
            count(&|g| g.quiesced),
        )?;
        counter(
            &mut e,
            "islab_server_leader_changes_seen",
            "New leaders this node saw, over all its groups, since it started (etcd: etcd_server_leader_changes_seen_total)",
            node.leader_changes.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "islab_cluster_map_epoch",
            "Epoch of the shard map this node knows (0: none yet)",
            status.epoch,
        )?;

        let rows = |f: &dyn Fn(&islab_proto::v1::GroupStatus) -> u64| -> Vec<(Labels, u64)> {
            groups
                .iter()
                .map(|g| ([("group", g.group_id.to_string())], f(g)))
                .collect()
        };
        let signed = |r: Vec<(Labels, u64)>| -> Vec<(Labels, i64)> {
            r.into_iter().map(|(l, v)| (l, v as i64)).collect()
        };
        group_gauges(
            &mut e,
            "islab_group_keys",
            "Keys held by this replica of the group",
            &signed(rows(&|g| g.keys)),
        )?;
        group_gauges(
            &mut e,
            "islab_group_bytes",
            "Bytes of keys and values held by this replica",
            &signed(rows(&|g| g.bytes)),
        )?;
        group_gauges(
            &mut e,
            "islab_group_term",
            "The group's Raft term as this node knows it",
            &signed(rows(&|g| g.term)),
        )?;
        group_gauges(
            &mut e,
            "islab_group_applied_index",
            "Last log index applied by this replica",
            &signed(rows(&|g| g.applied_index)),
        )?;
        group_gauges(
            &mut e,
            "islab_group_committed_index",
            "Highest log index this replica knows committed",
            &signed(rows(&|g| g.commit_index)),
        )?;
        group_gauges(
            &mut e,
            "islab_group_is_leader",
            "1 if this node leads the group",
            &signed(rows(&|g| u64::from(g.role == "leader"))),
        )?;
        group_counters(
            &mut e,
            "islab_group_write_entries",
            "Client-write log entries this node proposed as the group's leader",
            &rows(&|g| g.write_entries),
        )?;
        group_counters(
            &mut e,
            "islab_group_write_requests",
            "Client write requests those entries carried (gathered writes share an entry)",
            &rows(&|g| g.write_requests),
        )?;
        group_counters(
            &mut e,
            "islab_group_read_requests",
            "Read requests this replica served",
            &rows(&|g| g.read_requests),
        )?;
        group_counters(
            &mut e,
            "islab_group_keys_read",
            "Keys those reads returned or looked up",
            &rows(&|g| g.keys_read),
        )?;
        group_counters(
            &mut e,
            "islab_group_read_rounds",
            "Read-index rounds run for linearizable reads (reads share rounds)",
            &rows(&|g| g.read_rounds),
        )?;
        let changes: std::collections::HashMap<u64, u64> = node
            .shards()
            .iter()
            .map(|s| (s.group, s.leader_changes.load(Ordering::Relaxed)))
            .collect();
        group_counters(
            &mut e,
            "islab_group_leader_changes",
            "New leaders this node saw in the group since the group started here (the first included)",
            &rows(&|g| changes.get(&g.group_id).copied().unwrap_or(0)),
        )?;

        gauge(
            &mut e,
            "islab_wal_bytes",
            "Bytes in the WAL's live segment files",
            wal.bytes,
        )?;
        gauge(
            &mut e,
            "islab_wal_segments",
            "Live WAL segment files",
            wal.segments,
        )?;
        counter(
            &mut e,
            "islab_wal_fsyncs",
            "fdatasync calls of the WAL (one per group commit)",
            wal.fsyncs,
        )?;
        counter(
            &mut e,
            "islab_wal_entries_appended",
            "Log entries appended to the WAL, every group together",
            wal.entries_appended,
        )?;
        counter(
            &mut e,
            "islab_wal_batches",
            "Write batches of the WAL writer",
            wal.batches,
        )?;
        counter(
            &mut e,
            "islab_wal_bytes_written",
            "Bytes written to WAL segment files since the node started",
            wal.bytes_written,
        )?;
        fsync_histogram(&mut e, &wal.fsync_latency)?;
        if let Some(grpc) = &node.grpc {
            grpc_families(&mut e, &grpc.read())?;
        }

        let disk = &node.disk;
        gauge(
            &mut e,
            "islab_disk_free_bytes",
            "Free bytes on the data directory's file system at the last check",
            disk.free(),
        )?;
        gauge(
            &mut e,
            "islab_disk_reserve_bytes",
            "Free bytes under which client writes are refused (limits.min-free-disk-bytes)",
            disk.reserve(),
        )?;
        gauge(
            &mut e,
            "islab_writes_refused",
            "1 while client writes are refused for lack of disk space",
            u64::from(disk.is_low()),
        )?;
        Ok(())
    }
}
