//! `islab wal dump` against a WAL the real engine wrote.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{
    GROUP1_ENTRY_RECORDS, GROUP2_ENTRY_RECORDS, flip, islab, json_lines, stderr, stdout, write_wal,
};
use serde_json::Value;

fn wal_fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_wal(&data);
    (tmp, data)
}

fn records(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["type"] == "record").collect()
}

fn segment_files(wal: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(wal)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn json_lines_show_every_record_of_both_groups() {
    let (_tmp, data) = wal_fixture();
    let out = islab(&["wal", "dump", data.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);

    let segments: Vec<_> = lines.iter().filter(|l| l["type"] == "segment").collect();
    // Group 2's batch, group 1's big batch (a batch is never split), then the rest.
    let files: Vec<_> = segments
        .iter()
        .map(|s| s["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "00000000000000000001.log",
            "00000000000000000002.log",
            "00000000000000000003.log"
        ]
    );
    assert_eq!(segments[2]["last"], true);

    let records = records(&lines);
    let of = |kind: &str, group: u64| {
        records
            .iter()
            .filter(|r| r["kind"] == kind && r["group"] == group)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("entry", 1).len() as u64, GROUP1_ENTRY_RECORDS);
    assert_eq!(of("entry", 2).len() as u64, GROUP2_ENTRY_RECORDS);
    assert_eq!(of("truncate", 1).len(), 1);
    assert_eq!(of("truncate", 1)[0]["after"], 8);
    assert_eq!(of("purge", 1).len(), 1);
    assert_eq!(
        (
            of("purge", 1)[0]["term"].clone(),
            of("purge", 1)[0]["index"].clone()
        ),
        (1.into(), 3.into())
    );
    assert_eq!(of("vote", 1).len(), 1);
    assert_eq!(of("committed", 1).len(), 1);

    // Entries carry their position and decoded payload, in log order.
    let g1: Vec<(u64, u64)> = of("entry", 1)
        .iter()
        .map(|r| (r["term"].as_u64().unwrap(), r["index"].as_u64().unwrap()))
        .collect();
    let mut expected: Vec<(u64, u64)> = (1..=10).map(|i| (1, i)).collect();
    expected.extend([(2, 9), (2, 10)]);
    assert_eq!(g1, expected);
    let first = of("entry", 2)[0];
    assert_eq!(first["payload"]["type"], "normal");
    assert_eq!(first["payload"]["command"]["op"], "put");
    assert_eq!(first["payload"]["command"]["key"], "b1");
    assert_eq!(first["payload"]["command"]["value"], "vvv");
    let last = of("entry", 1).last().copied().unwrap();
    assert_eq!(last["payload"]["type"], "membership");
    assert_eq!(
        last["payload"]["membership"]["configs"],
        serde_json::json!([[1, 2, 3]])
    );
    assert_eq!(of("entry", 1)[10]["payload"]["type"], "blank");
    assert_eq!(of("vote", 1)[0]["vote"]["leader_id"]["term"], 2);
    assert_eq!(of("vote", 1)[0]["vote"]["committed"], true);
    assert_eq!(of("committed", 1)[0]["committed"]["index"], 10);

    // Offsets are those of real records: they start after the header and do not overlap.
    for pair in records.windows(2) {
        if pair[0]["file"] == pair[1]["file"] {
            let end = pair[0]["offset"].as_u64().unwrap() + pair[0]["len"].as_u64().unwrap();
            assert_eq!(end, pair[1]["offset"].as_u64().unwrap());
        }
    }
    assert_eq!(records[0]["offset"], 32);

    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["segments"], 3);
    assert_eq!(summary["records"], records.len());
    assert_eq!(summary["entries"]["1"], GROUP1_ENTRY_RECORDS);
    assert_eq!(summary["entries"]["2"], GROUP2_ENTRY_RECORDS);
    assert_eq!(summary["clean"], true);
    assert_eq!(summary["damage"], serde_json::json!([]));
}

#[test]
fn text_output_has_one_line_per_record_and_a_summary() {
    let (_tmp, data) = wal_fixture();
    // The WAL directory itself works as well as the data directory.
    let out = islab(&["wal", "dump", data.join("wal").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();

    let entry_lines = |group: u64| {
        lines
            .iter()
            .filter(|l| l.contains(&format!(" entry group={group} ")))
            .count() as u64
    };
    assert_eq!(entry_lines(1), GROUP1_ENTRY_RECORDS);
    assert_eq!(entry_lines(2), GROUP2_ENTRY_RECORDS);
    assert!(
        lines
            .contains(&"00000000000000000001.log:32 entry group=2 term=1 index=1 put b1 (3 bytes)"),
        "{text}"
    );
    assert!(text.contains(" truncate group=1 after=8"), "{text}");
    assert!(text.contains(" purge group=1 term=1 index=3"), "{text}");
    assert!(text.contains(" vote group=1 <T2-N1:Q>"), "{text}");
    assert!(
        text.contains(" entry group=1 term=2 index=9 blank"),
        "{text}"
    );
    assert!(
        text.contains(
            " entry group=1 term=2 index=10 membership voters={1,2,3} learners={} \
             nodes=1@localhost,2@localhost,3@localhost\n"
        ),
        "{text}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("segment ")).count(),
        3
    );

    let summary = lines.last().unwrap();
    assert!(summary.starts_with("summary: "), "{summary}");
    assert!(summary.contains(" segments=3 "), "{summary}");
    assert!(
        summary.contains(" entries-per-group=1:12,2:3 "),
        "{summary}"
    );
    assert!(summary.contains(" truncate=1 "), "{summary}");
    assert!(summary.ends_with(" damage=none"), "{summary}");

    // The table view has the same records under a header.
    let out = islab(&["-w", "table", "wal", "dump", data.to_str().unwrap()]);
    assert!(out.status.success());
    let table = stdout(&out);
    assert!(table.lines().next().unwrap().starts_with("FILE"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" entry ")).count() as u64,
        GROUP1_ENTRY_RECORDS + GROUP2_ENTRY_RECORDS
    );
}

#[test]
fn group_filter_shows_only_that_group() {
    let (_tmp, data) = wal_fixture();
    let out = islab(&[
        "-w",
        "json",
        "wal",
        "dump",
        data.to_str().unwrap(),
        "--group",
        "2",
    ]);
    assert!(out.status.success());
    let lines = json_lines(&out);
    let records = records(&lines);
    assert_eq!(records.len() as u64, GROUP2_ENTRY_RECORDS);
    assert!(records.iter().all(|r| r["group"] == 2));
    let summary = lines.last().unwrap();
    assert_eq!(summary["shown"], GROUP2_ENTRY_RECORDS);
    assert_eq!(
        summary["entries"]["1"], GROUP1_ENTRY_RECORDS,
        "the summary covers the whole WAL"
    );
}

#[test]
fn a_flipped_byte_is_reported_with_file_and_offset_and_the_dump_goes_on() {
    let (_tmp, data) = wal_fixture();
    let dir = data.to_str().unwrap();
    let clean = json_lines(&islab(&["wal", "dump", dir, "--json"]));
    let clean_records = records(&clean);
    // Entry 3 of group 1: in the middle of a segment that is not the last one.
    let victim = clean_records
        .iter()
        .find(|r| r["kind"] == "entry" && r["group"] == 1 && r["index"] == 3)
        .unwrap();
    let file = victim["file"].as_str().unwrap();
    assert_eq!(file, "00000000000000000002.log");
    let offset = victim["offset"].as_u64().unwrap();
    let len = victim["len"].as_u64().unwrap();
    flip(&data.join("wal").join(file), (offset + len / 2) as usize);

    let out = islab(&["wal", "dump", dir, "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines = json_lines(&out);
    let damage: Vec<_> = lines.iter().filter(|l| l["type"] == "damage").collect();
    assert_eq!(damage.len(), 1, "{lines:?}");
    assert_eq!(damage[0]["file"], file);
    assert_eq!(damage[0]["offset"], offset);
    assert_eq!(damage[0]["damage"], "corrupt");
    assert!(
        damage[0]["reason"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch")
    );
    assert_eq!(damage[0]["resumed_at"], offset + len);
    assert_eq!(
        records(&lines).len(),
        clean_records.len() - 1,
        "only the damaged record is lost"
    );
    let summary = lines.last().unwrap();
    assert_eq!(summary["clean"], false);
    assert_eq!(summary["damage"][0]["offset"], offset);

    let out = islab(&["wal", "dump", dir]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{file}:{offset} DAMAGE corrupt: checksum mismatch"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("resuming at offset {}", offset + len)),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap().ends_with("damage=1 corrupt"),
        "{text}"
    );
    assert!(stderr(&out).contains("damage found"), "{}", stderr(&out));
}

#[test]
fn a_torn_tail_is_reported_and_never_cut() {
    let (_tmp, data) = wal_fixture();
    let last = data.join("wal/00000000000000000003.log");
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..bytes.len() - 3]).unwrap();
    let before = segment_files(&data.join("wal"));

    let out = islab(&["wal", "dump", data.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let lines = json_lines(&out);
    let damage: Vec<_> = lines.iter().filter(|l| l["type"] == "damage").collect();
    assert_eq!(damage.len(), 1);
    assert_eq!(damage[0]["file"], "00000000000000000003.log");
    assert_eq!(damage[0]["damage"], "torn-tail");
    assert_eq!(damage[0]["resumed_at"], Value::Null);

    // Read-only: unlike opening the WAL, dumping it leaves every byte where it was.
    assert_eq!(segment_files(&data.join("wal")), before);
}

#[test]
fn raw_mode_shows_payload_bytes() {
    let (_tmp, data) = wal_fixture();
    let out = islab(&["wal", "dump", data.to_str().unwrap(), "--json", "--raw"]);
    assert!(out.status.success());
    let lines = json_lines(&out);
    let entry = records(&lines)
        .into_iter()
        .find(|r| r["kind"] == "entry")
        .unwrap();
    assert!(entry["payload"]["hex_prefix"].is_string(), "{entry}");
    assert_eq!(entry["payload"]["len"], entry["payload_len"]);
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let out = islab(&["wal", "dump", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("islab: "), "{err}");
    assert!(
        err.contains(missing.to_str().unwrap()) && err.contains("No such file"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    // A directory without segments is not silently an empty WAL.
    let out = islab(&["wal", "dump", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no WAL segments"), "{}", stderr(&out));
}
