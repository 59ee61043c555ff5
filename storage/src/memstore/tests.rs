//! Unit tests of the memory store: apply, sessions, range scans and checkpoint scans.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::WriteId;
use crate::error::Error;
use crate::memstore::command::{Command, MAX_GATHERED, Request, Response};

fn put(k: &str, v: &str) -> Command {
    Command::Put {
        key: Bytes::copy_from_slice(k.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
        expires_at: None,
    }
}

fn del(k: &str) -> Command {
    Command::Delete {
        key: Bytes::copy_from_slice(k.as_bytes()),
    }
}

fn cas(k: &str, expected: Option<u64>, v: &str) -> Command {
    Command::Cas {
        key: Bytes::copy_from_slice(k.as_bytes()),
        expected,
        value: Bytes::copy_from_slice(v.as_bytes()),
        expires_at: None,
    }
}

#[test]
fn put_delete_cas_versions() {
    let s = MemStore::new();
    assert_eq!(s.apply(1, &put("a", "1")), Response::Put { version: 1 });
    assert_eq!(s.get(b"a").unwrap().version, 1);
    assert_eq!(
        s.apply(2, &cas("a", Some(7), "x")),
        Response::Cas {
            succeeded: false,
            current: Some(1)
        }
    );
    assert_eq!(
        s.apply(3, &cas("a", Some(1), "2")),
        Response::Cas {
            succeeded: true,
            current: Some(3)
        }
    );
    assert_eq!(
        s.apply(4, &cas("b", None, "new")),
        Response::Cas {
            succeeded: true,
            current: Some(4)
        }
    );
    assert_eq!(s.apply(5, &del("a")), Response::Delete { existed: true });
    assert_eq!(s.apply(6, &del("a")), Response::Delete { existed: false });
    assert_eq!(s.len(), 1);
    assert_eq!(s.bytes(), 4);
}

#[test]
fn batch_is_all_or_nothing() {
    let s = MemStore::new();
    s.apply(1, &put("a", "1"));
    let bad = Command::Batch(vec![put("b", "1"), cas("a", Some(9), "x")]);
    assert!(matches!(s.apply(2, &bad), Response::Rejected { .. }));
    assert!(s.get(b"b").is_none());
    let good = Command::Batch(vec![put("b", "1"), cas("a", Some(1), "2"), del("c")]);
    assert_eq!(
        s.apply(3, &good),
        Response::Batch(vec![
            Response::Put { version: 3 },
            Response::Cas {
                succeeded: true,
                current: Some(3)
            },
            Response::Delete { existed: false },
        ])
    );
    // A CAS on a key the batch wrote sees the version that write gets (the batch's index),
    // so check and apply agree: no half-applied batch.
    let sneaky = Command::Batch(vec![put("k2", "a"), cas("k2", Some(u64::MAX), "b")]);
    assert!(matches!(s.apply(4, &sneaky), Response::Rejected { .. }));
    assert!(
        s.get(b"k2").is_none(),
        "nothing of a rejected batch is applied"
    );
    let chained = Command::Batch(vec![put("k2", "a"), cas("k2", Some(5), "b")]);
    assert!(matches!(s.apply(5, &chained), Response::Batch(_)));
    assert_eq!(s.get(b"k2").unwrap().value, "b");
    let nested = Command::Batch(vec![Command::Batch(vec![])]);
    assert!(matches!(s.apply(6, &nested), Response::Rejected { .. }));
}

#[test]
fn scan_pages_in_key_order() {
    let s = MemStore::new();
    for (i, k) in ["b", "a", "d", "c", "e", "ab", "x"].iter().enumerate() {
        s.apply(i as u64 + 1, &put(k, "v"));
    }
    s.apply_request(
        9,
        &Request {
            id: Some(WriteId { client: 1, seq: 1 }),
            command: put("z", "v"),
        },
    );
    let keys = |items: Vec<(Bytes, Versioned)>| -> Vec<String> {
        items
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect()
    };
    let (items, more) = s.scan(b"", None, b"", 3);
    assert_eq!(
        (keys(items), more),
        (vec!["a".into(), "ab".into(), "b".into()], true)
    );
    let (items, more) = s.scan(b"b\0", Some(b"e"), b"", 10);
    assert_eq!((keys(items), more), (vec!["c".into(), "d".into()], false));
    let (items, _) = s.scan(b"", None, b"a", 10);
    assert_eq!(keys(items), vec!["a".to_string(), "ab".into()]);
    let (items, _) = s.scan(b"", None, b"", 100);
    assert_eq!(items.len(), 8, "session keys are not user keys");
}

#[test]
fn a_gathered_entry_applies_each_request_on_its_own_at_its_own_version() {
    use crate::memstore::command::version;
    let s = MemStore::new();
    let id = |seq| Some(WriteId { client: 7, seq });
    let entry = |requests: Vec<Request>| Request::new(Command::Gathered(requests));
    // Before gathering, a plain entry's version was its log index: still so.
    assert_eq!(
        s.apply_entry(1, &Request::new(put("old", "x"))),
        Response::Put { version: 1 }
    );
    let got = s.apply_entry(
        2,
        &entry(vec![
            Request {
                id: id(1),
                command: put("k", "a"),
            },
            // The same key again in the same entry: a later, larger version.
            Request {
                id: id(2),
                command: put("k", "b"),
            },
            // A CAS sees the earlier requests of its entry.
            Request {
                id: id(3),
                command: cas("k", Some(version(2, 1)), "c"),
            },
            // A failing CAS fails alone.
            Request::new(cas("k", Some(1), "nope")),
            // An atomic batch stays atomic: its failing CAS rejects all of it, only it.
            Request::new(Command::Batch(vec![put("j", "1"), cas("k", None, "2")])),
            // A retry of the first request, gathered with it: the first answer, once.
            Request {
                id: id(1),
                command: put("k", "a"),
            },
            Request::new(del("old")),
            // Nesting is refused, alone.
            entry(vec![Request::new(put("n", "1"))]),
        ]),
    );
    let Response::Gathered(answers) = got else {
        panic!("{got:?}")
    };
    assert_eq!(
        answers[0],
        Response::Put {
            version: version(2, 0)
        }
    );
    assert_eq!(
        answers[1],
        Response::Put {
            version: version(2, 1)
        }
    );
    assert_eq!(
        answers[2],
        Response::Cas {
            succeeded: true,
            current: Some(version(2, 2))
        }
    );
    assert_eq!(
        answers[3],
        Response::Cas {
            succeeded: false,
            current: Some(version(2, 2))
        }
    );
    assert!(
        matches!(answers[4], Response::Rejected { .. }),
        "{:?}",
        answers[4]
    );
    assert_eq!(
        answers[5],
        Response::Put {
            version: version(2, 0)
        },
        "a retry"
    );
    assert_eq!(answers[6], Response::Delete { existed: true });
    assert!(
        matches!(answers[7], Response::Rejected { .. }),
        "{:?}",
        answers[7]
    );
    assert_eq!(answers.len(), 8);
    let k = s.get(b"k").unwrap();
    assert_eq!((&k.value[..], k.version), (&b"c"[..], version(2, 2)));
    assert!(s.get(b"j").is_none() && s.get(b"n").is_none() && s.get(b"old").is_none());
    // Versions keep growing across entries, from plain ones to gathered ones.
    assert!(version(2, 0) > 1 && version(3, 0) > version(2, MAX_GATHERED - 1));
    // A gathered entry is only valid at the top: with a write id of its own, refused.
    let mut with_id = entry(vec![Request::new(put("z", "1"))]);
    with_id.id = id(9);
    assert!(matches!(
        s.apply_entry(3, &with_id),
        Response::Rejected { .. }
    ));
    assert!(s.get(b"z").is_none());
}

#[test]
fn a_retried_write_is_applied_once() {
    let s = MemStore::new();
    let req = |seq, v: &str| Request {
        id: Some(WriteId { client: 9, seq }),
        command: put("k", v),
    };
    let put_at = |version| Response::Put { version };
    assert_eq!(s.apply_request(1, &req(1, "a")), put_at(1));
    // The retry (a new log entry carrying the same id) returns the first answer.
    assert_eq!(s.apply_request(2, &req(1, "a")), put_at(1));
    assert_eq!(s.get(b"k").unwrap().version, 1);
    assert_eq!(s.apply_request(3, &req(3, "c")), put_at(3));
    // Pipelined writes arrive out of order: seq 2 after seq 3 is still applied, once.
    assert_eq!(s.apply_request(4, &req(2, "b")), put_at(4));
    assert_eq!(s.apply_request(5, &req(2, "b")), put_at(4));
    assert_eq!(s.get(b"k").unwrap().value, "b");
    assert_eq!(s.apply_request(6, &Request::new(put("k", "d"))), put_at(6));
    // Far beyond the window, an old seq is refused rather than risked.
    let far = SESSION_WINDOW + 10;
    assert_eq!(s.apply_request(7, &req(far, "e")), put_at(7));
    assert!(matches!(
        s.apply_request(8, &req(5, "x")),
        Response::Rejected { .. }
    ));
    assert_eq!(s.get(b"k").unwrap().value, "e");
    assert_eq!(
        s.user_keys(),
        1,
        "session keys are not counted as user keys"
    );
    assert_eq!(s.user_bytes(), 2);
}

#[test]
fn a_checkpoint_cut_at_the_last_version_holds_gathered_writes_and_nothing_later() {
    // Regression: the cut used to be the applied log index, below every gathered version,
    // so a checkpoint held none of the values gathered entries wrote (lost on restart).
    let s = Arc::new(MemStore::new());
    let gathered = |n: usize, tag: &str| {
        Request::new(Command::Gathered(
            (0..n)
                .map(|i| Request::new(put(&format!("k{i}"), tag)))
                .collect(),
        ))
    };
    for index in 1..=10 {
        s.apply_entry(index, &gathered(50, "old"));
    }
    assert_eq!(s.last_version(), crate::memstore::command::version(10, 49));
    let scan = s.begin_checkpoint(s.last_version()).unwrap();
    s.apply_entry(11, &gathered(25, "new"));
    s.apply_entry(
        12,
        &Request::new(Command::Gathered(vec![Request::new(del("k49"))])),
    );
    let mut seen = HashMap::new();
    scan.for_each_chunk(|chunk| {
        for (k, v) in chunk {
            seen.insert(k.clone(), v.clone());
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(seen.len(), 50, "every key the gathered entries wrote");
    assert!(
        seen.values().all(|v| v.value == "old"),
        "nothing written after the cut"
    );
    assert_eq!(
        seen[&Bytes::from_static(b"k49")].version,
        crate::memstore::command::version(10, 49)
    );
    // A store loaded from the image continues the versions where it stopped.
    let loaded = MemStore::new();
    for (k, v) in seen {
        loaded.load(k, v);
    }
    assert_eq!(
        loaded.last_version(),
        crate::memstore::command::version(10, 49)
    );
}

#[test]
fn checkpoint_sees_state_at_its_index() {
    let s = Arc::new(MemStore::new());
    for i in 0..1000u64 {
        s.apply(i + 1, &put(&format!("k{i}"), "old"));
    }
    let scan = s.begin_checkpoint(1000).unwrap();
    assert!(matches!(
        s.begin_checkpoint(1000),
        Err(Error::CheckpointInProgress)
    ));
    // Changes after the checkpoint index must not show up in it.
    for i in 0..500u64 {
        s.apply(1001 + i, &put(&format!("k{i}"), "new"));
    }
    s.apply(2000, &del("k999"));
    s.apply(2001, &put("fresh", "x"));
    let mut seen = HashMap::new();
    let n = scan
        .for_each_chunk(|chunk| {
            for (k, v) in chunk {
                assert!(
                    seen.insert(k.clone(), v.clone()).is_none(),
                    "duplicate {k:?}"
                );
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 1000);
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|v| v.value == "old" && v.version <= 1000));
    assert!(s.begin_checkpoint(2001).is_ok(), "the scan ended on drop");
}
