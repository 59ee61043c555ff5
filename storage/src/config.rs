//! WAL configuration: plain data, validated once by [`WalConfig::sanitize`] when the WAL opens.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Acknowledged once `fdatasync` covering it has returned. With Raft on top this means
    /// "acknowledged = fsynced on a majority".
    #[default]
    Sync,
    /// Acknowledged once written to the OS (the seed's mode); fsynced every `sync_interval`.
    /// A power loss may lose the last few milliseconds of acknowledged writes on this node.
    Async,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Sync => "sync",
            Durability::Async => "async",
        })
    }
}

/// What recovery does with a record that fails its checksum (raft-engine's modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryMode {
    /// A torn or corrupt tail of the last segment is cut (it was never acknowledged); corruption
    /// anywhere else refuses to open, naming the file and offset.
    #[default]
    TolerateTailCorruption,
    /// Skip corrupt records wherever they are, log each one loudly, and cut the log of any group
    /// that lost an entry at the hole (its leader sends the rest again).
    TolerateCorruption,
}

/// Settings of one node's WAL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct WalConfig {
    /// Size at which the active segment is closed and a new one started.
    /// Default: 64 MiB.
    pub segment_size: u64,
    /// Default: `sync`.
    pub durability: Durability,
    /// Default: `tolerate-tail-corruption`.
    pub recovery: RecoveryMode,
    /// How often `async` mode fsyncs. Default: 5 ms.
    #[serde(with = "duration_ms")]
    pub sync_interval: Duration,
    /// Bytes of recent entry payloads kept in memory so replication and apply rarely read
    /// segments. Default: 64 MiB.
    pub cache_bytes: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size: 64 << 20,
            durability: Durability::Sync,
            recovery: RecoveryMode::TolerateTailCorruption,
            sync_interval: Duration::from_millis(5),
            cache_bytes: 64 << 20,
        }
    }
}

impl WalConfig {
    /// Checks the values once, at open.
    pub fn sanitize(&self) -> Result<()> {
        if self.segment_size < 4096 {
            return Err(Error::Config(format!(
                "segment-size must be at least 4096 bytes, got {}",
                self.segment_size
            )));
        }
        if self.segment_size > u32::MAX as u64 {
            return Err(Error::Config(format!(
                "segment-size must be below 4 GiB, got {}",
                self.segment_size
            )));
        }
        if self.durability == Durability::Async && self.sync_interval.is_zero() {
            return Err(Error::Config("sync-interval must be above zero".into()));
        }
        Ok(())
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        WalConfig::default().sanitize().unwrap();
        let bad = WalConfig {
            segment_size: 10,
            ..Default::default()
        };
        assert!(
            bad.sanitize()
                .unwrap_err()
                .to_string()
                .contains("segment-size")
        );
    }
}
