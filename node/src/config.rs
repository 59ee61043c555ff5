//! A node's configuration: plain data, validated once by [`NodeConfig::validate`] at start.
//!
//! Layering (flags > env `ISLAB_*` > TOML file > defaults) is the CLI's job; the node only
//! ever sees the result.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use islab_storage::WalConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct NodeConfig {
    /// This node's id in the cluster; never 0, never reused. Default: 1.
    pub id: u64,
    /// Where the WAL, checkpoints and catalog live. Default: `./islab-data`.
    pub data_dir: PathBuf,
    /// Address the gRPC server binds (port 0: any free port). Default: `127.0.0.1:7379`.
    pub listen: SocketAddr,
    /// `host:port` other nodes and clients use to reach this node. Default: the bound address.
    pub advertise: Option<String>,
    /// Where this node dials a peer that the cluster names by another address: advertised
    /// `host:port` → the `host:port` to connect to (a peer behind NAT or a port forward, or a
    /// test's fault-injecting proxy). Peers not in the map are dialled at their address.
    pub peer_address_map: BTreeMap<String, String>,
    /// Where the monitoring HTTP listener binds (`/metrics`, `/livez`, `/readyz`; plaintext,
    /// apart from the gRPC port). Default: none, no listener.
    pub metrics_listen: Option<SocketAddr>,
    pub wal: WalConfig,
    pub limits: Limits,
    pub raft: RaftTiming,
    pub gather: Gathering,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: 1,
            data_dir: PathBuf::from("islab-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7379)),
            advertise: None,
            peer_address_map: BTreeMap::new(),
            metrics_listen: None,
            wal: WalConfig::default(),
            limits: Limits::default(),
            raft: RaftTiming::default(),
            gather: Gathering::default(),
        }
    }
}

/// Request limits: anything larger is refused with a clear error, never a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Limits {
    /// Default: 4096.
    pub max_key_bytes: usize,
    /// Default: 1 MiB.
    pub max_value_bytes: usize,
    /// Default: 10,000.
    pub max_batch_ops: usize,
    /// Keys plus values of one batch. Default: 16 MiB.
    pub max_batch_bytes: usize,
    /// Most keys one scan page returns. Default: 10,000.
    pub max_scan_limit: usize,
    /// Keys a scan page returns when the request says 0. Default: 1,000.
    pub default_scan_limit: usize,
    /// A leader refuses client writes while the data directory's file system has less free
    /// space than this (checked every 100 ms), so that its WAL does not meet a full disk.
    /// Default: 256 MiB.
    pub min_free_disk_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 4096,
            max_value_bytes: 1 << 20,
            max_batch_ops: 10_000,
            max_batch_bytes: 16 << 20,
            max_scan_limit: 10_000,
            default_scan_limit: 1_000,
            min_free_disk_bytes: 256 << 20,
        }
    }
}

impl Limits {
    /// The largest gRPC message the node accepts: a maximal batch plus framing.
    pub fn max_message_bytes(&self) -> usize {
        self.max_batch_bytes.max(self.max_value_bytes) + (1 << 20)
    }
}

/// Raft timing and log retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RaftTiming {
    /// Default: 100 ms.
    pub heartbeat_ms: u64,
    /// Default: 800 ms.
    pub election_timeout_min_ms: u64,
    /// Default: 1600 ms.
    pub election_timeout_max_ms: u64,
    /// Take a checkpoint (snapshot) after this many entries since the last. Default: 50,000.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind a checkpoint, for followers that lag a little.
    /// Default: 10,000.
    pub keep_entries_after_snapshot: u64,
    /// While the WAL holds more than this many bytes, the groups pinning its oldest segment
    /// are checkpointed and their logs purged, so the segment can be deleted (see
    /// `wal_budget.rs`); recovery reads at most about this much log. 0: no budget (logs are
    /// purged only by `snapshot-after-entries`). Default: 512 MiB.
    pub wal_budget_bytes: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_ms: 100,
            election_timeout_min_ms: 800,
            election_timeout_max_ms: 1600,
            snapshot_after_entries: 50_000,
            keep_entries_after_snapshot: 10_000,
            wal_budget_bytes: 512 << 20,
        }
    }
}

/// How a shard leader gathers the writes of all its clients into shared Raft entries (see
/// `write_gatherer.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Gathering {
    /// Most client requests in one entry, 1 to 4096 (1: every request is its own entry).
    /// Default: 1024.
    pub max_requests: usize,
    /// Most key and value bytes in one entry; a larger request goes alone. Default: 4 MiB.
    pub max_bytes: usize,
    /// Entries of one shard proposed and not yet applied at once: writes arriving meanwhile
    /// wait for the next. Default: 1.
    pub max_in_flight: usize,
}

impl Default for Gathering {
    fn default() -> Self {
        Gathering {
            max_requests: 1024,
            max_bytes: 4 << 20,
            max_in_flight: 1,
        }
    }
}

impl Gathering {
    pub(crate) fn limits(&self) -> crate::shard::write_gatherer::GatherLimits {
        crate::shard::write_gatherer::GatherLimits {
            max_requests: self.max_requests,
            max_bytes: self.max_bytes,
            max_in_flight: self.max_in_flight,
        }
    }
}

impl NodeConfig {
    /// Checks every value once; the error names the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.id == 0 {
            return bad("id must be 1 or more".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data-dir must be set".into());
        }
        if let Some(a) = &self.advertise
            && !a.contains(':')
        {
            return bad(format!("advertise must be host:port, got {a:?}"));
        }
        for (from, to) in &self.peer_address_map {
            if !from.contains(':') || !to.contains(':') {
                return bad(format!(
                    "peer-address-map entries must be host:port=host:port, got {from:?}={to:?}"
                ));
            }
        }
        self.wal
            .sanitize()
            .map_err(|e| Error::Config(format!("wal: {e}")))?;
        let l = &self.limits;
        if l.max_key_bytes == 0 || l.max_value_bytes == 0 || l.max_batch_ops == 0 {
            return bad("limits must be above zero".into());
        }
        if l.default_scan_limit == 0 || l.default_scan_limit > l.max_scan_limit {
            return bad("default-scan-limit must be between 1 and max-scan-limit".into());
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms < 2 * r.heartbeat_ms {
            return bad(format!(
                "election-timeout-min-ms ({}) must be at least twice heartbeat-ms ({})",
                r.election_timeout_min_ms, r.heartbeat_ms
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return bad("election-timeout-max-ms must exceed election-timeout-min-ms".into());
        }
        if r.snapshot_after_entries == 0 {
            return bad("snapshot-after-entries must be above zero".into());
        }
        let g = &self.gather;
        if g.max_requests == 0 || g.max_requests > islab_storage::MAX_GATHERED {
            return bad(format!(
                "gather.max-requests must be between 1 and {}, got {}",
                islab_storage::MAX_GATHERED,
                g.max_requests
            ));
        }
        if g.max_bytes == 0 || g.max_in_flight == 0 {
            return bad("gather.max-bytes and gather.max-in-flight must be above zero".into());
        }
        if g.max_bytes > l.max_batch_bytes {
            // An entry must fit one Raft message, which is sized for the largest batch.
            return bad(format!(
                "gather.max-bytes ({}) must not exceed limits.max-batch-bytes ({})",
                g.max_bytes, l.max_batch_bytes
            ));
        }
        if r.wal_budget_bytes != 0 && r.wal_budget_bytes < 2 * self.wal.segment_size {
            return bad(format!(
                "wal-budget-bytes ({}) must be 0 (no budget) or at least two WAL segments ({})",
                r.wal_budget_bytes,
                2 * self.wal.segment_size
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_setting() {
        NodeConfig::default().validate().unwrap();
        let e = NodeConfig {
            id: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("id"), "{e}");
        let mut c = NodeConfig::default();
        c.raft.election_timeout_min_ms = 10;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("election-timeout-min-ms")
        );
    }
}
