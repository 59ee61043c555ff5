//! Checkpoint files, opened from disk and received as a chunk stream.
//!
//! Input: `mode u8 | chunk u8 | file bytes`. The bytes are written as a checkpoint file, which
//! is opened, verified and loaded (with its membership decoded as the Raft layer does); then
//! they are received again through `CheckpointReceiver` in chunks of `4 * (chunk + 1)` bytes.
//! Nothing may panic, and both ways must agree on whether the file is good.
#![no_main]

use std::path::Path;

use islab_fuzz::{FIX_CRCS, fix_checkpoint_crcs, scratch_dir};
use islab_raft::encoding::decode_membership;
use islab_storage::{Checkpoint, CheckpointReceiver};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let mode = input[0];
    let chunk = 4 * (input[1] as usize + 1);
    let mut data = input[2..].to_vec();
    if mode & FIX_CRCS != 0 {
        fix_checkpoint_crcs(&mut data);
    }
    let dir = scratch_dir();
    let path = dir.join("fuzzed.ckp");
    std::fs::write(&path, &data).unwrap();
    let good = open(&path);

    let received = dir.join("received.ckp");
    let mut rx = CheckpointReceiver::create(&received).unwrap();
    // A chunk that does not start where the last one ended is refused.
    assert!(rx.write_chunk(1, &data).is_err());
    let mut offset = 0;
    for piece in data.chunks(chunk) {
        rx.write_chunk(offset, piece).unwrap();
        offset += piece.len() as u64;
    }
    assert_eq!(rx.received(), data.len() as u64);
    match rx.finish() {
        Ok(ckp) => {
            assert!(good, "the receiver accepted a file that does not verify");
            assert_eq!(ckp.size(), data.len() as u64);
        }
        Err(_) => assert!(!good, "the receiver refused a file that verifies"),
    }
});

/// Opens, verifies and loads the file; whether it is a good checkpoint.
fn open(path: &Path) -> bool {
    let Ok(ckp) = Checkpoint::open(path) else {
        return false;
    };
    let _ = decode_membership(&ckp.meta().membership);
    let _ = format!("{:?}", ckp.meta());
    let verified = ckp.verify();
    let loaded = ckp.load();
    assert_eq!(
        verified.is_ok(),
        loaded.is_ok(),
        "verify and load disagree: {verified:?} / {:?}",
        loaded.as_ref().err()
    );
    if let Ok(store) = loaded {
        // Keys may repeat in a damaged file, never be invented.
        assert!(store.len() as u64 <= ckp.keys());
        let mut n = 0;
        ckp.for_each(|_, _| n += 1).unwrap();
        assert_eq!(n, ckp.keys());
    }
    verified.is_ok()
}
