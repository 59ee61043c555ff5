//! Segment files: names and the fixed header every segment starts with.
//!
//! ```text
//! wal/00000000000000000001.log
//! | magic "ISLABWAL" | format version u32 | reserved u32 | seq u64 | crc32c u32 | pad u32 | records ...
//! ```
//!
//! Segments are numbered in write order; recovery reads them in that order.

use std::path::{Path, PathBuf};

/// Length of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// The WAL format this build writes and reads.
pub const WAL_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"ISLABWAL";

/// File name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.log")
}

/// Path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_name(seq))
}

/// The sequence number of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of segment `seq`.
pub fn encode_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than a header: a segment whose creation was torn.
    Short,
    /// Not a segment header, or checksum mismatch.
    Invalid(String),
    /// A format version this build does not read.
    Version(u32),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Short => f.write_str("shorter than a segment header"),
            HeaderError::Invalid(reason) => f.write_str(reason),
            HeaderError::Version(v) => write!(f, "unsupported format version {v}"),
        }
    }
}

/// Checks a segment header; returns the sequence number it records.
pub fn decode_header(buf: &[u8]) -> Result<u64, HeaderError> {
    if buf.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderError::Short);
    }
    if &buf[0..8] != MAGIC {
        return Err(HeaderError::Invalid("bad magic".into()));
    }
    let crc = u32::from_le_bytes(buf[24..28].try_into().unwrap());
    if crc != crc32c::crc32c(&buf[0..24]) {
        return Err(HeaderError::Invalid("header checksum mismatch".into()));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().unwrap());
    if version != WAL_FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(u64::from_le_bytes(buf[16..24].try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_headers() {
        assert_eq!(segment_name(1), "00000000000000000001.log");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("LOCK"), None);
        let h = encode_header(7);
        assert_eq!(decode_header(&h), Ok(7));
        assert_eq!(decode_header(&h[..10]), Err(HeaderError::Short));
        let mut bad = h;
        bad[17] ^= 1;
        assert!(matches!(decode_header(&bad), Err(HeaderError::Invalid(_))));
    }
}
