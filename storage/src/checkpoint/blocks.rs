//! Reading a checkpoint's blocks: each block's lengths checked against the file as it is
//! read, its checksum, codec and size checked when it is unpacked.
//!
//! The two steps are apart so the parallel loader can read on one thread and unpack on many;
//! the sequential readers ([`Checkpoint::for_each`], [`Checkpoint::verify`]) do both in turn.

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use crate::checkpoint::format::{BLOCK_HEADER_LEN, CODEC_LZ4, CODEC_NONE, MAX_BLOCK};
use crate::checkpoint::{Checkpoint, corrupt, io_err};
use crate::error::Result;

/// One block as the file stores it.
pub(super) struct StoredBlock {
    /// Where its header starts: the offset its errors name.
    pub(super) pos: u64,
    raw_len: usize,
    pub(super) codec: u8,
    crc: u32,
    stored: Vec<u8>,
}

impl StoredBlock {
    /// Checks the block's checksum, codec and lengths, and returns its content.
    pub(super) fn unpack(self, path: &Path) -> Result<Bytes> {
        let pos = self.pos;
        if crc32c::crc32c(&self.stored) != self.crc {
            return Err(corrupt(path, pos, "block checksum mismatch"));
        }
        match self.codec {
            CODEC_NONE if self.stored.len() == self.raw_len => Ok(Bytes::from(self.stored)),
            CODEC_NONE => Err(corrupt(
                path,
                pos,
                format!(
                    "uncompressed block holds {} bytes, its header says {}",
                    self.stored.len(),
                    self.raw_len
                ),
            )),
            CODEC_LZ4 => match lz4_flex::block::decompress(&self.stored, self.raw_len) {
                Ok(raw) if raw.len() == self.raw_len => Ok(Bytes::from(raw)),
                Ok(raw) => Err(corrupt(
                    path,
                    pos,
                    format!(
                        "lz4 block holds {} bytes, its header says {}",
                        raw.len(),
                        self.raw_len
                    ),
                )),
                Err(e) => Err(corrupt(path, pos, format!("lz4: {e}"))),
            },
            other => Err(corrupt(path, pos, format!("unknown block codec {other}"))),
        }
    }
}

/// Reads a checkpoint's blocks in file order; ends after the first error.
pub(super) struct Blocks<'a> {
    pub(super) ckpt: &'a Checkpoint,
    pub(super) pos: u64,
    /// Where the trailer starts.
    pub(super) end: u64,
    pub(super) failed: bool,
}

impl Blocks<'_> {
    fn read(&mut self) -> Result<StoredBlock> {
        let (path, file, pos) = (&self.ckpt.path, &self.ckpt.file, self.pos);
        let mut bh = [0u8; BLOCK_HEADER_LEN];
        if self.end - pos < BLOCK_HEADER_LEN as u64 {
            return Err(corrupt(path, pos, "truncated block header"));
        }
        file.read_exact_at(&mut bh, pos)
            .map_err(|e| io_err("reading", path, e))?;
        let raw_len = u32::from_le_bytes(bh[0..4].try_into().unwrap()) as usize;
        let stored_len = u32::from_le_bytes(bh[4..8].try_into().unwrap()) as usize;
        let next = pos + (BLOCK_HEADER_LEN + stored_len) as u64;
        if raw_len > MAX_BLOCK || stored_len > MAX_BLOCK || next > self.end {
            return Err(corrupt(path, pos, "block length out of range"));
        }
        let mut stored = vec![0u8; stored_len];
        file.read_exact_at(&mut stored, pos + BLOCK_HEADER_LEN as u64)
            .map_err(|e| io_err("reading", path, e))?;
        self.pos = next;
        Ok(StoredBlock {
            pos,
            raw_len,
            codec: bh[8],
            crc: u32::from_le_bytes(bh[9..13].try_into().unwrap()),
            stored,
        })
    }
}

impl Iterator for Blocks<'_> {
    type Item = Result<StoredBlock>;

    fn next(&mut self) -> Option<Result<StoredBlock>> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let block = self.read();
        self.failed = block.is_err();
        Some(block)
    }
}
