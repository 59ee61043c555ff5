//! Checkpoint files: the image of one shard at an applied log id.
//!
//! A checkpoint is both the Raft snapshot (streamed to a lagging or new replica in chunks) and
//! the starting point of recovery (loaded, then the WAL tail is replayed on top). Its byte
//! layout is in `checkpoint/format.rs`, the reading of its blocks in `checkpoint/blocks.rs`.
//!
//! A file is written under a temporary name, fsynced and renamed, so a crash leaves either the
//! old set of checkpoints or the new one, never a half file under a real name. A checkpoint
//! received from a leader takes the same path (`checkpoint/receiver.rs`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::checkpoint::blocks::Blocks;
use crate::checkpoint::format::{
    BLOCK_SIZE, END_MAGIC, MAGIC, MIN_KEY_BYTES, TRAILER_LEN, decode_block, encode_header,
    encode_key, encode_trailer, write_block,
};
use crate::error::{Error, Result};
use crate::memstore::{CheckpointScan, MemStore, Versioned};
use crate::{GroupId, LogPos, codec};

mod blocks;
mod format;
mod loader;
mod receiver;

pub use format::CHECKPOINT_FORMAT_VERSION;
pub use receiver::CheckpointReceiver;

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
