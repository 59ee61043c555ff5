//! The one place that knows how typed values become bytes: bincode 2 with its standard
//! (varint) configuration over serde.
//!
//! Every payload that goes into the WAL or a checkpoint passes through here, so swapping the
//! format is a change to this file plus a format-version bump. (bincode 3.0.0 is a tombstone
//! that fails to compile: stay on 2.)

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::error::DecodeError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The most memory one decoded value may claim. bincode allocates a byte string or a string as
/// soon as it has read its length prefix, so without a limit a corrupt or hostile length (a few
/// bytes of input) panics with "capacity overflow" or aborts the process out of memory. Far
/// above anything legitimately encoded: a WAL record is at most 256 MiB.
pub const MAX_DECODED_BYTES: usize = 1 << 30;

/// The limit only applies to decoding; it is not part of the byte format.
fn config() -> Configuration<LittleEndian, Varint, Limit<MAX_DECODED_BYTES>> {
    bincode::config::standard().with_limit::<MAX_DECODED_BYTES>()
}

/// Encodes `value` to a fresh buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| Error::Codec(e.to_string()))
}

/// Decodes a whole buffer; trailing bytes are an error (they mean the framing is wrong).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| match e {
            DecodeError::LimitExceeded => Error::Codec(format!(
                "a length in the input claims more than the {MAX_DECODED_BYTES} bytes a decoded \
                 value may hold (corrupt input)"
            )),
            e => Error::Codec(e.to_string()),
        })?;
    if used != bytes.len() {
        return Err(Error::Codec(format!(
            "{} trailing bytes after a value of {used} bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let v = (7u64, String::from("k"), vec![1u8, 2, 3]);
        let mut bytes = encode(&v).unwrap();
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).unwrap(), v);
        bytes.push(0);
        assert!(decode::<(u64, String, Vec<u8>)>(&bytes).is_err());
        assert!(decode::<(u64, String)>(&[0xff]).is_err());
    }

    /// Found by the `request`, `checkpoint` and `raft_envelope` fuzz targets: a huge length
    /// prefix (varint marker 0xfd + u64) made bincode allocate before reading, which panicked
    /// ("capacity overflow") or aborted the process (out of memory).
    #[test]
    fn a_huge_length_prefix_is_an_error_not_a_crash() {
        for len in [u64::MAX, 1 << 62, 1 << 40, (MAX_DECODED_BYTES + 1) as u64] {
            let mut bytes = vec![0xfd];
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(b"short");
            let e = decode::<bytes::Bytes>(&bytes).unwrap_err().to_string();
            assert!(e.contains("claims more than"), "{e}");
            assert!(decode::<String>(&bytes).is_err());
            assert!(decode::<Vec<u8>>(&bytes).is_err());
            assert!(decode::<crate::Request>(&[&[0, 0][..], &bytes].concat()).is_err());
        }
        // Below the limit but longer than the input: refused as well, once the read fails.
        let mut bytes = vec![0xfd];
        bytes.extend_from_slice(&(64u64 << 20).to_le_bytes());
        assert!(decode::<bytes::Bytes>(&bytes).is_err());
    }
}
