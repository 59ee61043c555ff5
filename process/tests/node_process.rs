//! `NodeProcess` against real child processes: small shell scripts standing in for
//! `islab server` (the real binary is exercised by the playground and cluster tests).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use islab_process::{Error, Launch, NodeProcess, Stopped};

const WAIT: Duration = Duration::from_secs(30);

/// An executable script `name` in `dir`; it is called as `script server --id N --listen A
/// --data-dir D …`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn launch(exe: &Path, dir: &Path) -> Launch {
    Launch::new(
        exe,
        7,
        "127.0.0.1:1",
        dir.join("data"),
        dir.join("node7.log"),
    )
}

#[test]
fn waits_for_serving_and_stops_with_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = script(
        tmp.path(),
        "node",
        r#"echo "args: $*"; echo "value: $GREETING"; sleep 0.3; echo "node $3 serving on $5"; exec sleep 600"#,
    );
    let mut l = launch(&exe, tmp.path());
    l.args = vec!["--extra".into()];
    l.env("GREETING", "hello");
    let mut node = NodeProcess::spawn(&l).unwrap();
    node.wait_serving(WAIT).unwrap();
    assert_eq!(node.exit_status(), None);
    let tail = node.log_tail(10);
    assert!(
        tail.contains("args: server --id 7 --listen 127.0.0.1:1 --data-dir")
            && tail.contains("--extra"),
        "{tail}"
    );
    assert!(tail.contains("value: hello"), "{tail}");
    match node.stop(WAIT) {
        Stopped::Exited(status) => assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}"),
        Stopped::Killed => panic!("sleep ignored SIGTERM"),
    }
}

#[test]
fn a_node_that_exits_during_start_is_an_error_with_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = script(tmp.path(), "node", "echo 'cannot bind: taken' >&2; exit 3");
    let mut node = NodeProcess::spawn(&launch(&exe, tmp.path())).unwrap();
    let err = node.wait_serving(WAIT).unwrap_err();
    match &err {
        Error::ExitedDuringStart {
            id, status, tail, ..
        } => {
            assert_eq!(*id, 7);
            assert_eq!(status, "exit status 3");
            assert!(tail.contains("cannot bind: taken"), "{tail}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_silent_node_times_out_and_kill_collects_it() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = script(tmp.path(), "node", "trap '' TERM; exec sleep 600");
    let mut node = NodeProcess::spawn(&launch(&exe, tmp.path())).unwrap();
    let err = node.wait_serving(Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, Error::NotServing { id: 7, .. }), "{err}");
    // `trap '' TERM` is inherited by the exec'd sleep: only SIGKILL ends it.
    assert_eq!(node.stop(Duration::from_millis(300)), Stopped::Killed);
    assert_eq!(
        node.exit_status().and_then(|s| s.signal()),
        Some(libc::SIGKILL)
    );
}

#[test]
fn a_restart_sees_only_its_own_part_of_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let first = script(
        tmp.path(),
        "first",
        "echo 'old run serving on x'; exec sleep 600",
    );
    let mut node = NodeProcess::spawn(&launch(&first, tmp.path())).unwrap();
    node.wait_serving(WAIT).unwrap();
    node.kill();
    // The second run never serves: the first run's line must not count for it.
    let second = script(tmp.path(), "second", "echo 'second run failing'; exit 1");
    let mut node = NodeProcess::spawn(&launch(&second, tmp.path())).unwrap();
    let err = node.wait_serving(WAIT).unwrap_err();
    assert!(matches!(err, Error::ExitedDuringStart { .. }), "{err}");
    let tail = node.log_tail(10);
    assert!(tail.contains("second run failing"), "{tail}");
    assert!(!tail.contains("old run"), "{tail}");
    let log = std::fs::read_to_string(tmp.path().join("node7.log")).unwrap();
    assert_eq!(
        log.matches("--- starting node 7 on 127.0.0.1:1").count(),
        2,
        "{log}"
    );
}

#[test]
fn a_missing_binary_is_a_spawn_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = NodeProcess::spawn(&launch(&tmp.path().join("absent"), tmp.path()))
        .err()
        .expect("spawned a missing binary");
    assert!(matches!(err, Error::Spawn { id: 7, .. }), "{err}");
}

#[test]
fn die_with_parent_and_own_group_start_normally() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = script(
        tmp.path(),
        "node",
        "echo \"pgid $(cut -d' ' -f5 /proc/$$/stat)\"; echo 'serving on x'; exec sleep 600",
    );
    let mut l = launch(&exe, tmp.path());
    l.own_process_group = true;
    l.die_with_parent = true;
    let mut node = NodeProcess::spawn(&l).unwrap();
    node.wait_serving(WAIT).unwrap();
    let tail = node.log_tail(10);
    assert!(tail.contains(&format!("pgid {}", node.pid())), "{tail}");
    node.kill();
}
