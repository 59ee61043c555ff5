//! What the fuzz targets share: the layout of their inputs, checksum fix-ups, a scratch
//! directory, and the seed encodings `examples/gen_corpus.rs` writes to `corpus/`.
//!
//! # Checksums
//!
//! Every on-disk structure is covered by crc32c, which a mutation fuzzer almost never gets
//! right by chance: without help it would only ever test the checksum checks. So the targets
//! whose input is a file take a leading mode byte, and when its bit [`FIX_CRCS`] is set the
//! target recomputes every checksum it can locate before decoding. Half the inputs exercise
//! the structure behind the checksums, half the checks themselves.

use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use islab_storage::{Command, Request, WriteId};

/// Mode bit (all file targets): recompute the checksums before decoding.
pub const FIX_CRCS: u8 = 1;
/// Mode bit (`wal_record`): prepend a valid segment header to each segment.
pub const WAL_HEADER: u8 = 2;
/// Mode bit (`wal_record`): split the bytes into two segments (at the offset in bytes 1..3).
pub const WAL_SPLIT: u8 = 4;
/// Mode bit (`wal_record`): recover in tolerate-corruption mode.
pub const WAL_TOLERATE: u8 = 8;

/// The WAL record header: `len u32 | crc32c u32`.
const RECORD_HEADER: usize = 8;

/// Recomputes the checksum of every record whose length field is plausible, walking the
/// records from the start of `data` (a segment's body, after its header).
pub fn fix_wal_crcs(data: &mut [u8]) {
    let mut pos = 0;
    while pos + RECORD_HEADER < data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        if len == 0 || len > data.len() - pos - RECORD_HEADER {
            return;
        }
        let body = pos + RECORD_HEADER..pos + RECORD_HEADER + len;
        let crc = crc32c::crc32c(&data[body.clone()]);
        data[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = body.end;
    }
}

/// Checkpoint layout constants (see `storage/src/checkpoint/format.rs`).
const CKP_HEAD: usize = 16;
const CKP_TRAILER: usize = 28;
const CKP_BLOCK_HEADER: usize = 13;

/// Recomputes a checkpoint's header, block and trailer checksums, as far as its length fields
/// make sense.
pub fn fix_checkpoint_crcs(data: &mut [u8]) {
    let size = data.len();
    if size < CKP_HEAD + 4 + CKP_TRAILER {
        return;
    }
    let end = size - CKP_TRAILER;
    let crc = crc32c::crc32c(&data[end..size - 4]);
    data[size - 4..].copy_from_slice(&crc.to_le_bytes());
    let meta_len = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
    if meta_len > end - CKP_HEAD - 4 {
        return;
    }
    let crc_at = CKP_HEAD + meta_len;
    let crc = crc32c::crc32c(&data[8..crc_at]);
    data[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    let mut pos = crc_at + 4;
    while pos + CKP_BLOCK_HEADER <= end {
        let stored = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if stored > end - pos - CKP_BLOCK_HEADER {
            return;
        }
        let body = pos + CKP_BLOCK_HEADER..pos + CKP_BLOCK_HEADER + stored;
        let crc = crc32c::crc32c(&data[body.clone()]);
        data[pos + 9..pos + 13].copy_from_slice(&crc.to_le_bytes());
        pos = body.end;
    }
}

/// A directory of this process for files the targets must write (checkpoints). Under
/// `$ISLAB_FUZZ_SCRATCH` (scripts/fuzz points it at a tmpfs directory it removes afterwards),
/// else under the system's temporary directory.
pub fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("ISLAB_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("islab-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the fuzz scratch directory");
        dir
    })
}

/// Request sequences that exercise every command kind, sessions and their retries.
pub fn seed_requests() -> Vec<Vec<Request>> {
    let b = |s: &'static str| Bytes::from_static(s.as_bytes());
    let put = |k: &'static str, v: &'static str, exp: Option<u64>| Command::Put {
        key: b(k),
        value: b(v),
        expires_at: exp,
    };
    let id = |client: u64, seq: u64| Some(WriteId { client, seq });
    vec![
        vec![Request::new(put("k", "v", None))],
        vec![
            Request::new(put("a", "1", Some(1_700_000_000_000))),
            Request::new(Command::Cas {
                key: b("a"),
                expected: Some(1),
                value: b("2"),
                expires_at: None,
            }),
            Request::new(Command::Cas {
                key: b("b"),
                expected: None,
                value: b("3"),
                expires_at: None,
            }),
            Request::new(Command::Delete { key: b("a") }),
        ],
        vec![Request::new(Command::Batch(vec![
            put("x", "1", None),
            Command::Cas {
                key: b("x"),
                expected: Some(1),
                value: b("2"),
                expires_at: Some(5),
            },
            Command::Delete { key: b("y") },
        ]))],
        vec![
            Request {
                id: id(7, 1),
                command: put("s", "1", None),
            },
            Request {
                id: id(7, 1),
                command: put("s", "1", None),
            },
            Request {
                id: id(7, 70_000),
                command: Command::Delete { key: b("s") },
            },
            Request {
                id: id(7, 2),
                command: put("s", "2", None),
            },
        ],
    ]
}
