//! The byte layout of a checkpoint file, in one place: header, blocks, trailer, and the
//! encoding of a key inside a block. The writer, the readers and the loader all use these.
//!
//! ```text
//! | "ISLABCKP" | version u32 | meta_len u32 | meta (bincode CheckpointMeta) | crc32c(version..meta) u32 |
//! | block: raw_len u32 | stored_len u32 | codec u8 | crc32c(stored) u32 | stored bytes | ...
//! | trailer: "ISLABEND" | keys u64 | blocks u64 | crc32c(trailer so far) u32 |
//!
//! block content (before compression): per key
//!   varint key_len | key | varint version | varint expires_at+1 (0 = none) | varint value_len | value
//! ```
//!
//! Blocks are compressed with lz4 when that makes them smaller.

use std::io::Write;

use bytes::Bytes;

use crate::checkpoint::CheckpointMeta;
use crate::codec;
use crate::error::Result;
use crate::memstore::Versioned;

/// The checkpoint format this build writes and reads.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
pub(super) const MAGIC: &[u8; 8] = b"ISLABCKP";
pub(super) const END_MAGIC: &[u8; 8] = b"ISLABEND";
pub(super) const TRAILER_LEN: u64 = 28;
pub(super) const BLOCK_HEADER_LEN: usize = 13;
/// Raw bytes per block before compression.
pub(super) const BLOCK_SIZE: usize = 256 << 10;
pub(super) const CODEC_NONE: u8 = 0;
pub(super) const CODEC_LZ4: u8 = 1;
pub(super) const MAX_BLOCK: usize = 64 << 20;
/// The smallest a key can be in a block: four one-byte varints (empty key and value).
pub(super) const MIN_KEY_BYTES: u64 = 4;

pub(super) fn encode_header(meta: &CheckpointMeta) -> Result<Vec<u8>> {
    let meta_bytes = codec::encode(meta)?;
    let mut header = Vec::with_capacity(20 + meta_bytes.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    header.extend_from_slice(&meta_bytes);
    let crc = crc32c::crc32c(&header[8..]);
    header.extend_from_slice(&crc.to_le_bytes());
    Ok(header)
}

/// Appends one key to a block's content.
pub(super) fn encode_key(raw: &mut Vec<u8>, key: &[u8], v: &Versioned) {
    put_varint(raw, key.len() as u64);
    raw.extend_from_slice(key);
    put_varint(raw, v.version);
    put_varint(raw, v.expires_at.map_or(0, |e| e + 1));
    put_varint(raw, v.value.len() as u64);
    raw.extend_from_slice(&v.value);
}

/// Writes a block holding `raw`, lz4-compressed if that makes it smaller.
pub(super) fn write_block(out: &mut impl Write, raw: &[u8]) -> std::io::Result<()> {
    let compressed = lz4_flex::block::compress(raw);
    let (codec_id, stored): (u8, &[u8]) = if compressed.len() < raw.len() {
        (CODEC_LZ4, &compressed)
    } else {
        (CODEC_NONE, raw)
    };
    let mut bh = [0u8; BLOCK_HEADER_LEN];
    bh[0..4].copy_from_slice(&(raw.len() as u32).to_le_bytes());
    bh[4..8].copy_from_slice(&(stored.len() as u32).to_le_bytes());
    bh[8] = codec_id;
    bh[9..13].copy_from_slice(&crc32c::crc32c(stored).to_le_bytes());
    out.write_all(&bh)?;
    out.write_all(stored)
}

pub(super) fn encode_trailer(keys: u64, blocks: u64) -> Vec<u8> {
    let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
    trailer.extend_from_slice(END_MAGIC);
    trailer.extend_from_slice(&keys.to_le_bytes());
    trailer.extend_from_slice(&blocks.to_le_bytes());
    let crc = crc32c::crc32c(&trailer);
    trailer.extend_from_slice(&crc.to_le_bytes());
    trailer
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(super) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn take(raw: &Bytes, pos: &mut usize, len: u64) -> Result<Bytes, String> {
    let end = pos
        .checked_add(usize::try_from(len).map_err(|_| "length overflow")?)
        .filter(|e| *e <= raw.len())
        .ok_or("field runs past the block")?;
    let out = raw.slice(*pos..end);
    *pos = end;
    Ok(out)
}

pub(super) fn decode_block(
    raw: &Bytes,
    f: &mut impl FnMut(Bytes, Versioned),
) -> Result<u64, String> {
    let mut pos = 0;
    let mut n = 0;
    while pos < raw.len() {
        let key_len = get_varint(raw, &mut pos)?;
        let key = take(raw, &mut pos, key_len)?;
        let version = get_varint(raw, &mut pos)?;
        let expires_at = get_varint(raw, &mut pos)?.checked_sub(1);
        let value_len = get_varint(raw, &mut pos)?;
        let value = take(raw, &mut pos, value_len)?;
        f(
            key,
            Versioned {
                value,
                version,
                expires_at,
            },
        );
        n += 1;
    }
    Ok(n)
}
