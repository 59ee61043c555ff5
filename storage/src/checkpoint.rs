//! Checkpoint files: the image of one shard at an applied log id.
//!
//! A checkpoint is both the Raft snapshot (streamed to a lagging or new replica in chunks) and
//! the starting point of recovery (loaded, then the WAL tail is replayed on top).
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
//! Blocks are compressed with lz4 when that makes them smaller. A file is written under a
//! temporary name, fsynced and renamed, so a crash leaves either the old set of checkpoints or
//! the new one, never a half file under a real name.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::memstore::{CheckpointScan, MemStore, Versioned};
use crate::{GroupId, LogPos, codec};

mod loader;

/// The checkpoint format this build writes and reads.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"ISLABCKP";
const END_MAGIC: &[u8; 8] = b"ISLABEND";
const TRAILER_LEN: u64 = 28;
const BLOCK_HEADER_LEN: usize = 13;
/// Raw bytes per block before compression.
const BLOCK_SIZE: usize = 256 << 10;
const CODEC_NONE: u8 = 0;
const CODEC_LZ4: u8 = 1;
const MAX_BLOCK: usize = 64 << 20;
/// The smallest a key can be in a block: four one-byte varints (empty key and value).
const MIN_KEY_BYTES: u64 = 4;

/// What a checkpoint is the image of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub group: GroupId,
    /// The last log entry applied to the image (`None`: nothing applied yet).
    pub last_applied: Option<LogPos>,
    /// The Raft layer's membership config as of `last_applied` (opaque here).
    pub membership: Bytes,
    /// Unique per checkpoint (Raft's snapshot id).
    pub snapshot_id: String,
}

/// A complete, header-verified checkpoint file.
///
/// It keeps the file open: a checkpoint being streamed to a follower stays readable even after
/// a newer one replaced it and its name was deleted.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    path: PathBuf,
    file: std::sync::Arc<File>,
    meta: CheckpointMeta,
    size: u64,
    keys: u64,
    blocks: u64,
    data_start: u64,
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

/// The temporary name a checkpoint is written under before its rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("syncing", dir, e))?;
    }
    Ok(())
}

impl Checkpoint {
    /// Writes the image `scan` captures to `path` (via a temporary file, fsync and rename).
    /// Blocking and CPU-heavy: run it on a blocking thread.
    pub fn write(path: &Path, meta: &CheckpointMeta, scan: CheckpointScan) -> Result<Checkpoint> {
        let tmp = temp_path(path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err("creating", &tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let werr = |e| io_err("writing", &tmp, e);

        out.write_all(&encode_header(meta)?).map_err(werr)?;
        let mut raw = Vec::with_capacity(BLOCK_SIZE + 4096);
        let mut blocks = 0u64;
        let keys = scan.for_each_chunk(|chunk| {
            for (key, v) in chunk {
                encode_key(&mut raw, key, v);
                if raw.len() >= BLOCK_SIZE {
                    write_block(&mut out, &raw).map_err(werr)?;
                    blocks += 1;
                    raw.clear();
                }
            }
            Ok(())
        })?;
        if !raw.is_empty() {
            write_block(&mut out, &raw).map_err(werr)?;
            blocks += 1;
        }
        out.write_all(&encode_trailer(keys, blocks)).map_err(werr)?;
        let file = out.into_inner().map_err(|e| werr(e.into_error()))?;
        file.sync_all().map_err(|e| io_err("syncing", &tmp, e))?;
        drop(file);
        crate::failpoint!("checkpoint::before_rename", |_| Err(io_err(
            "renaming",
            &tmp,
            crate::failpoints::injected_error("checkpoint::before_rename")
        )));
        std::fs::rename(&tmp, path).map_err(|e| io_err("renaming", &tmp, e))?;
        crate::failpoint!("checkpoint::after_rename", |_| Err(io_err(
            "syncing the directory of",
            path,
            crate::failpoints::injected_error("checkpoint::after_rename")
        )));
        sync_parent(path)?;
        Checkpoint::open(path)
    }

    /// Opens a checkpoint, verifying its header and trailer (not yet its blocks: [`verify`] and
    /// [`load`] do that).
    ///
    /// [`verify`]: Checkpoint::verify
    /// [`load`]: Checkpoint::load
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let file = File::open(path).map_err(|e| io_err("opening", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| io_err("reading metadata of", path, e))?
            .len();
        let mut head = [0u8; 16];
        if size < 16 + 4 + TRAILER_LEN {
            return Err(corrupt(
                path,
                0,
                format!("{size} bytes is too short for a checkpoint"),
            ));
        }
        file.read_exact_at(&mut head, 0)
            .map_err(|e| io_err("reading", path, e))?;
        if &head[0..8] != MAGIC {
            return Err(corrupt(path, 0, "not a checkpoint file (bad magic)"));
        }
        let version = u32::from_le_bytes(head[8..12].try_into().unwrap());
        if version != CHECKPOINT_FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                file: path.to_path_buf(),
                version,
                supported: CHECKPOINT_FORMAT_VERSION,
            });
        }
        let meta_len = u32::from_le_bytes(head[12..16].try_into().unwrap()) as u64;
        if 16 + meta_len + 4 + TRAILER_LEN > size {
            return Err(corrupt(
                path,
                12,
                format!("header length {meta_len} runs past the file"),
            ));
        }
        let mut meta_and_crc = vec![0u8; meta_len as usize + 4];
        file.read_exact_at(&mut meta_and_crc, 16)
            .map_err(|e| io_err("reading", path, e))?;
        let (meta_bytes, crc) = meta_and_crc.split_at(meta_len as usize);
        let mut covered = head[8..16].to_vec();
        covered.extend_from_slice(meta_bytes);
        if crc32c::crc32c(&covered) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(corrupt(path, 0, "header checksum mismatch"));
        }
        let meta: CheckpointMeta = codec::decode(meta_bytes)
            .map_err(|e| corrupt(path, 16, format!("undecodable header: {e}")))?;

        let mut trailer = [0u8; TRAILER_LEN as usize];
        let trailer_at = size - TRAILER_LEN;
        file.read_exact_at(&mut trailer, trailer_at)
            .map_err(|e| io_err("reading", path, e))?;
        if &trailer[0..8] != END_MAGIC
            || crc32c::crc32c(&trailer[0..24])
                != u32::from_le_bytes(trailer[24..28].try_into().unwrap())
        {
            return Err(corrupt(
                path,
                trailer_at,
                "missing or damaged trailer (incomplete file?)",
            ));
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            file: std::sync::Arc::new(file),
            meta,
            size,
            keys: u64::from_le_bytes(trailer[8..16].try_into().unwrap()),
            blocks: u64::from_le_bytes(trailer[16..24].try_into().unwrap()),
            data_start: 16 + meta_len + 4,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &CheckpointMeta {
        &self.meta
    }

    /// File size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Keys in the image, as the trailer records.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Blocks in the file, as the trailer records.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Loads the image into a new store, verifying every block.
    ///
    /// The calling thread reads the blocks; [`available_parallelism`] workers (at least 2)
    /// check, decompress, decode and insert them (`checkpoint/loader.rs`). Every check
    /// [`verify`] makes is made, and of the damage the threads found, the first in file order
    /// is reported.
    ///
    /// [`available_parallelism`]: std::thread::available_parallelism
    /// [`verify`]: Checkpoint::verify
    pub fn load(&self) -> Result<MemStore> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        self.load_on(workers.max(2))
    }

    /// [`load`](Checkpoint::load) with `workers` workers.
    fn load_on(&self, workers: usize) -> Result<MemStore> {
        let store = self.empty_store();
        let Some(key) = loader::load(self, &store, workers)? else {
            return Ok(store);
        };
        // A key twice: possible only in a damaged file whose checksums were made to match.
        // Which copy wins would depend on the threads' timing; load it again in file order,
        // so the last copy wins as it always did.
        tracing::warn!(
            file = %self.path.display(),
            key = %key.escape_ascii(),
            "a key appears twice in the checkpoint; loading it again on one thread"
        );
        drop(store);
        let store = self.empty_store();
        self.for_each(|key, value| store.load(key, value))?;
        Ok(store)
    }

    /// A store presized for the image.
    fn empty_store(&self) -> MemStore {
        // The trailer's count presizes the map, but it is only checked after the last block:
        // trust it no further than the file's size (a key takes at least MIN_KEY_BYTES of a
        // block), or a damaged count reserves terabytes up front. A file holding more keys
        // than that (lz4 beat the bound) only makes the map grow while it loads.
        let plausible = self.keys.min(self.size / MIN_KEY_BYTES);
        MemStore::with_capacity(usize::try_from(plausible).unwrap_or(0).min(1 << 30))
    }

    /// Checks every block's checksum and the key count without building a store.
    pub fn verify(&self) -> Result<()> {
        self.for_each(|_, _| {})
    }

    /// Decodes every key of the image in file order, on the calling thread.
    pub fn for_each(&self, mut f: impl FnMut(Bytes, Versioned)) -> Result<()> {
        let (mut keys, mut blocks) = (0u64, 0u64);
        for block in self.read_blocks() {
            let block = block?;
            let pos = block.pos;
            let raw = block.unpack(&self.path)?;
            keys += decode_block(&raw, &mut f).map_err(|r| corrupt(&self.path, pos, r))?;
            blocks += 1;
        }
        self.check_counts(keys, blocks)
    }

    /// The blocks in file order, their lengths checked against the file (not yet their
    /// checksums: [`StoredBlock::unpack`] does that, on whichever thread decodes the block).
    fn read_blocks(&self) -> Blocks<'_> {
        Blocks {
            ckpt: self,
            pos: self.data_start,
            end: self.size - TRAILER_LEN,
            failed: false,
        }
    }

    /// Compares what the blocks held with what the trailer records.
    fn check_counts(&self, keys: u64, blocks: u64) -> Result<()> {
        if keys != self.keys || blocks != self.blocks {
            return Err(corrupt(
                &self.path,
                self.size - TRAILER_LEN,
                format!(
                    "trailer records {} keys in {} blocks, found {keys} in {blocks}",
                    self.keys, self.blocks
                ),
            ));
        }
        Ok(())
    }

    /// Up to `max` bytes of the file at `offset`: a chunk of the snapshot stream.
    pub fn read_chunk(&self, offset: u64, max: usize) -> Result<Bytes> {
        let len = (self.size.saturating_sub(offset)).min(max as u64) as usize;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| io_err("reading", &self.path, e))?;
        Ok(Bytes::from(buf))
    }
}

impl PartialEq for Checkpoint {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.meta == other.meta && self.size == other.size
    }
}

impl Eq for Checkpoint {}

/// One block as the file stores it.
struct StoredBlock {
    /// Where its header starts: the offset its errors name.
    pos: u64,
    raw_len: usize,
    codec: u8,
    crc: u32,
    stored: Vec<u8>,
}

impl StoredBlock {
    /// Checks the block's checksum, codec and lengths, and returns its content.
    fn unpack(self, path: &Path) -> Result<Bytes> {
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
struct Blocks<'a> {
    ckpt: &'a Checkpoint,
    pos: u64,
    /// Where the trailer starts.
    end: u64,
    failed: bool,
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

/// Receives a checkpoint as a stream of chunks (the follower side of a snapshot install).
pub struct CheckpointReceiver {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    received: u64,
}

impl CheckpointReceiver {
    /// Starts receiving into a temporary file next to `path`.
    pub fn create(path: &Path) -> Result<CheckpointReceiver> {
        let tmp = temp_path(path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err("creating", &tmp, e))?;
        Ok(CheckpointReceiver {
            path: path.to_path_buf(),
            tmp,
            file,
            received: 0,
        })
    }

    /// Appends the chunk that starts at `offset`; chunks must arrive in order.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset != self.received {
            return Err(corrupt(
                &self.tmp,
                offset,
                format!("chunk out of order: expected offset {}", self.received),
            ));
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| io_err("writing", &self.tmp, e))?;
        self.received += data.len() as u64;
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Syncs, verifies every block, and moves the file to its real name.
    pub fn finish(self) -> Result<Checkpoint> {
        self.file
            .sync_all()
            .map_err(|e| io_err("syncing", &self.tmp, e))?;
        let received = Checkpoint::open(&self.tmp)?;
        received.verify()?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io_err("renaming", &self.tmp, e))?;
        sync_parent(&self.path)?;
        Checkpoint::open(&self.path)
    }
}

fn encode_header(meta: &CheckpointMeta) -> Result<Vec<u8>> {
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
fn encode_key(raw: &mut Vec<u8>, key: &[u8], v: &Versioned) {
    put_varint(raw, key.len() as u64);
    raw.extend_from_slice(key);
    put_varint(raw, v.version);
    put_varint(raw, v.expires_at.map_or(0, |e| e + 1));
    put_varint(raw, v.value.len() as u64);
    raw.extend_from_slice(&v.value);
}

/// Writes a block holding `raw`, lz4-compressed if that makes it smaller.
fn write_block(out: &mut impl Write, raw: &[u8]) -> std::io::Result<()> {
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

fn encode_trailer(keys: u64, blocks: u64) -> Vec<u8> {
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

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
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

fn decode_block(raw: &Bytes, f: &mut impl FnMut(Bytes, Versioned)) -> Result<u64, String> {
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
