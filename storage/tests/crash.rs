//! Crash test with real processes: a child process appends to four groups of a WAL on the real
//! disk, many appends in flight, printing each acknowledged range; the parent `kill -9`s it at
//! a random moment, reopens the WAL, and checks that every acknowledged entry is there
//! bit-exact, that every entry present is exactly what was submitted (contiguous, nothing
//! invented), then restarts the child on the same directory. Many rounds.
//!
//! The child is the ignored test `crash_child` of this same binary, started with an env var.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{entry, init_tracing, verify_group};
use islab_storage::{LogPos, Wal, WalConfig};
use rand::{Rng, SeedableRng};

const GROUPS: u64 = 4;
const ROUNDS: usize = 25;
const DIR_VAR: &str = "ISLAB_CRASH_CHILD_DIR";

fn config() -> WalConfig {
    WalConfig {
        segment_size: 256 << 10,
        ..Default::default()
    }
}

#[test]
#[ignore = "the child process of `acknowledged_entries_survive_kill_9`, started by it"]
fn crash_child() {
    let dir = std::env::var(DIR_VAR).expect("run by the crash test");
    let (wal, _) = Wal::open(&dir, config()).unwrap();
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let in_flight = Arc::new((Mutex::new(0usize), std::sync::Condvar::new()));
    let mut next: Vec<u64> = (0..GROUPS)
        .map(|g| wal.log_state(g).last.map_or(1, |p| p.index + 1))
        .collect();
    writeln!(stdout.lock().unwrap(), "ready").unwrap();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    loop {
        let g = rng.random_range(0..GROUPS);
        let first = next[g as usize];
        let n = rng.random_range(1..5);
        {
            let (count, cv) = &*in_flight;
            let mut c = count.lock().unwrap();
            while *c >= 64 {
                c = cv.wait(c).unwrap();
            }
            *c += 1;
        }
        let out = stdout.clone();
        let flight = in_flight.clone();
        wal.append(
            g,
            (first..first + n).map(|i| entry(g, i, 1)).collect(),
            move |r| {
                r.expect("append failed");
                let mut o = out.lock().unwrap();
                writeln!(o, "ack {g} {first} {}", first + n - 1).unwrap();
                o.flush().unwrap();
                let (count, cv) = &*flight;
                *count.lock().unwrap() -= 1;
                cv.notify_one();
            },
        )
        .unwrap();
        next[g as usize] += n;
        if first > 2000 && rng.random_ratio(1, 200) {
            // Purge old entries now and then so segments are collected while we crash.
            wal.purge(
                g,
                LogPos {
                    term: 1,
                    index: first - 1000,
                },
            )
            .unwrap();
        }
    }
}

/// Starts the child, lets it acknowledge for a random while, kills it with SIGKILL, and
/// returns the acknowledged (group, first, last) ranges it printed.
fn run_child_and_kill(dir: &Path, rng: &mut impl Rng) -> Vec<(u64, u64, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = Vec::new();
    let parse = |line: String, acked: &mut Vec<(u64, u64, u64)>| {
        if let Some(rest) = line.strip_prefix("ack ") {
            let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            acked.push((v[0], v[1], v[2]));
        }
    };
    // Wait until it is really writing, then kill it at a random moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.is_empty() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("child acknowledged nothing within 60 s");
        parse(line, &mut acked);
    }
    let run_for = Duration::from_millis(rng.random_range(5..400));
    let until = Instant::now() + run_for;
    while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        parse(line, &mut acked);
        if Instant::now() >= until {
            break;
        }
    }
    child.kill().expect("kill -9");
    child.wait().unwrap();
    // Lines already printed before the kill are acknowledged too.
    reader.join().unwrap();
    while let Ok(line) = rx.try_recv() {
        parse(line, &mut acked);
    }
    acked
}

#[test]
fn acknowledged_entries_survive_kill_9() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xc0ffee);
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        tracing::info!("--- round {round}: start the child, kill -9 it");
        let acked = run_child_and_kill(dir.path(), &mut rng);
        total_acked += acked.iter().map(|(_, a, b)| b - a + 1).sum::<u64>();

        let (wal, report) = Wal::open(dir.path(), config()).unwrap();
        tracing::info!(?report.torn_tail, entries = report.entries, "reopened");
        for g in 0..GROUPS {
            let acked_last = acked
                .iter()
                .filter(|(ag, _, _)| *ag == g)
                .map(|(_, _, last)| *last)
                .max()
                .unwrap_or(0);
            verify_group(&wal, g, acked_last, &format!("round {round}"));
        }
    }
    tracing::info!(rounds = ROUNDS, total_acked, "crash rounds done");
    assert!(
        total_acked > ROUNDS as u64 * 10,
        "too little was acknowledged: {total_acked}"
    );
}
