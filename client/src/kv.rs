//! The values data calls take and return, in the SDK's own types so that callers do not
//! handle prost messages (or their "field absent means zero" conventions).

use std::time::Duration;

use bytes::Bytes;
use islab_proto::v1 as proto;

use crate::error::{Error, Result};

/// A stored key with its value and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// The log index of the write that stored this value; it grows with every write to the
    /// key and is what [`Client::cas`](crate::Client::cas) compares against.
    pub version: u64,
}

impl From<proto::KeyValue> for KeyValue {
    fn from(kv: proto::KeyValue) -> Self {
        KeyValue {
            key: kv.key,
            value: kv.value,
            version: kv.version,
        }
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ReadConsistency {
    /// The read sees every write acknowledged before it started (read index on the leader).
    #[default]
    Linearizable,
    /// Served by whichever node answers, from its own replica, without a round to the
    /// leader; cheaper, may be stale.
    Serializable,
}

impl ReadConsistency {
    pub(crate) fn to_proto(self) -> i32 {
        match self {
            ReadConsistency::Linearizable => proto::ReadConsistency::Linearizable as i32,
            ReadConsistency::Serializable => proto::ReadConsistency::Serializable as i32,
        }
    }
}

/// The result of a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CasOutcome {
    /// Whether the value was written.
    pub succeeded: bool,
    /// The key's version after the call: the new version on success, the version that did
    /// not match on failure; `None` if the key does not exist.
    pub current_version: Option<u64>,
}

impl From<proto::CompareAndSwapResponse> for CasOutcome {
    fn from(r: proto::CompareAndSwapResponse) -> Self {
        CasOutcome {
            succeeded: r.succeeded,
            current_version: r.current_version,
        }
    }
}

/// A TTL in the wire's milliseconds. Sub-millisecond TTLs round up (the wire's 0 means
/// "never expires", which a caller asking for a TTL cannot have meant); a zero TTL is refused.
pub(crate) fn ttl_ms(ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(Error::InvalidArgument(
            "ttl must be positive (use put without a ttl for a key that never expires)".into(),
        ));
    }
    Ok(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// Refuses an empty key before it costs a round trip (the server would refuse it too).
pub(crate) fn check_key(key: &Bytes) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("key must not be empty".into()));
    }
    Ok(())
}

/// A get's answer as the SDK returns it.
pub(crate) fn found(key: Bytes, r: proto::GetResponse) -> Option<KeyValue> {
    r.found.then(|| KeyValue {
        key,
        value: r.value,
        version: r.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_become_whole_milliseconds() {
        assert_eq!(ttl_ms(Duration::from_secs(3)).unwrap(), 3000);
        assert_eq!(ttl_ms(Duration::from_micros(10)).unwrap(), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)).unwrap(), 1);
        assert_eq!(ttl_ms(Duration::MAX).unwrap(), u64::MAX);
        assert!(matches!(
            ttl_ms(Duration::ZERO),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn consistency_matches_the_wire_enum() {
        assert_eq!(ReadConsistency::default().to_proto(), 0);
        assert_eq!(ReadConsistency::Serializable.to_proto(), 1);
    }

    #[test]
    fn empty_keys_are_refused_locally() {
        assert!(matches!(
            check_key(&Bytes::new()),
            Err(Error::InvalidArgument(_))
        ));
        check_key(&Bytes::from_static(b"k")).unwrap();
    }
}
