//! `islab checkpoint inspect` against a checkpoint the real engine wrote.

mod common;

use common::{CHECKPOINT_KEYS, flip, islab, stderr, stdout, write_checkpoint};

#[test]
fn shows_meta_and_key_count_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ckpt");
    let written = write_checkpoint(&path);
    let file = path.to_str().unwrap();

    let out = islab(&["checkpoint", "inspect", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).filter(|r| r.starts_with(' ')))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("keys"), CHECKPOINT_KEYS.to_string());
    assert_eq!(field("group"), "7");
    assert_eq!(field("last-applied"), "term=2 index=1000");
    assert_eq!(field("snapshot-id"), "7-2-1000-test");
    assert_eq!(field("blocks"), written.blocks().to_string());
    assert_eq!(field("size"), format!("{} bytes", written.size()));
    assert_eq!(
        field("membership"),
        "log-id=1.1 voters={1,2,3} learners={} nodes=1@localhost,2@localhost,3@localhost"
    );
    assert!(field("verify").starts_with("ok"), "{text}");

    let out = islab(&["-w", "json", "checkpoint", "inspect", file, "--keys", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["keys"], CHECKPOINT_KEYS);
    assert_eq!(doc["group"], 7);
    assert_eq!(
        doc["last_applied"],
        serde_json::json!({"term": 2, "index": 1000})
    );
    assert_eq!(doc["verify"]["ok"], true);
    assert_eq!(
        doc["membership"]["membership"]["configs"],
        serde_json::json!([[1, 2, 3]])
    );
    let first = doc["first_keys"].as_array().unwrap();
    assert_eq!(first.len(), 3);
    for k in first {
        let key = k["key"].as_str().unwrap();
        let i: u64 = key.strip_prefix("key").unwrap().parse().unwrap();
        assert_eq!(k["version"], i + 1);
        assert_eq!(k["value"], format!("value of key {i}"));
    }

    let out = islab(&["checkpoint", "inspect", file, "--keys", "2"]);
    let text = stdout(&out);
    assert!(text.contains("first 2 keys (in file order):"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("  \"key")).count(),
        2,
        "{text}"
    );
}

#[test]
fn a_corrupt_block_is_found_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ckpt");
    write_checkpoint(&path);
    // The first block starts after magic, version, meta length, meta and its checksum.
    let data = std::fs::read(&path).unwrap();
    let meta_len = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
    let first_block = 16 + meta_len + 4;
    flip(&path, first_block + 13 + 7);

    let out = islab(&["checkpoint", "inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("at offset {first_block}")), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        stdout(&out).contains("verify        FAILED"),
        "{}",
        stdout(&out)
    );

    let out = islab(&[
        "-w",
        "json",
        "checkpoint",
        "inspect",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["verify"]["ok"], false);
    assert_eq!(doc["verify"]["offset"], first_block);
}

#[test]
fn a_damaged_header_is_damage_and_a_missing_file_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ckpt");
    write_checkpoint(&path);
    flip(&path, 20);
    let out = islab(&["checkpoint", "inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("header checksum mismatch"),
        "{}",
        stderr(&out)
    );

    let missing = tmp.path().join("missing");
    let out = islab(&["checkpoint", "inspect", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("islab: "), "{err}");
    assert!(
        err.contains(missing.to_str().unwrap()) && err.contains("No such file"),
        "{err}"
    );
    assert_eq!(err.matches("No such file").count(), 1, "said once: {err}");
}
