//! Requests decoded from bytes and applied to a fresh memory store.
//!
//! Input: the storage codec's encoding of a `Vec<Request>`. Each request is applied at the
//! next log index (1, 2, ...) with `MemStore::apply_request`; a request with a write id is then
//! retried and must get the same answer. Afterwards the store's accounting must match its
//! content, and a checkpoint of it must load back to the same content.
//!
//! The node validates a client's request (node/src/validate.rs: key and value sizes, reserved
//! prefix, batch limits) before proposing it; that code is private to the node crate, so this
//! target applies every request that decodes, as a replica applying a log entry would.
#![no_main]

use std::sync::Arc;

use islab_fuzz::scratch_dir;
use islab_storage::{Checkpoint, CheckpointMeta, MemStore, RESERVED_PREFIX, Request, codec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(requests) = codec::decode::<Vec<Request>>(input) else {
        return;
    };
    let store = Arc::new(MemStore::new());
    let mut index = 0u64;
    for request in &requests {
        let _ = request.to_string();
        index += 1;
        let response = store.apply_request(index, request);
        if request.id.is_some() {
            index += 1;
            assert_eq!(
                store.apply_request(index, request),
                response,
                "a retry got another answer: {request:?}"
            );
        }
    }

    let (mut keys, mut bytes, mut user_keys) = (0u64, 0u64, 0u64);
    let mut content = Vec::new();
    store.for_each(|k, v| {
        keys += 1;
        bytes += (k.len() + v.value.len()) as u64;
        user_keys += u64::from(!k.starts_with(RESERVED_PREFIX));
        content.push((k.clone(), v.clone()));
    });
    assert_eq!(store.len() as u64, keys);
    assert_eq!(store.bytes(), bytes);
    assert_eq!(store.user_keys(), user_keys);

    let path = scratch_dir().join("request.ckp");
    let meta = CheckpointMeta {
        group: 1,
        last_applied: None,
        membership: Default::default(),
        snapshot_id: "fuzz".into(),
    };
    let scan = store.begin_checkpoint(index).unwrap();
    let ckp = Checkpoint::write(&path, &meta, scan).unwrap();
    let loaded = ckp.load().unwrap();
    let mut reloaded = Vec::new();
    loaded.for_each(|k, v| reloaded.push((k.clone(), v.clone())));
    content.sort();
    reloaded.sort();
    assert_eq!(reloaded, content, "a checkpoint changed the store");
});
