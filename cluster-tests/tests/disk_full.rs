//! A full disk: the nodes' data directories on a small tmpfs. Writes fill it until the nodes'
//! free-space reserve is reached; from then on writes are refused with a clear "no space"
//! error while reads and status go on and every process keeps running; once space is freed,
//! writes are accepted again without a restart, and no acknowledged write is lost.
//!
//! Mounting a tmpfs needs root (CI runs as root); without it the test fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use islab_client::{Client, Error};
use islab_cluster_tests::{Cluster, init_tracing, wait_for};

/// One test at a time: each runs three nodes, which is what a 2-core machine carries while
/// election timeouts hold.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The tmpfs all three nodes share.
const DISK_BYTES: u64 = 128 << 20;
/// Each node's reserve (`--min-free-disk-bytes`).
const RESERVE: u64 = 24 << 20;
/// Values large enough to fill the disk quickly (each is written by all three nodes).
const VALUE_BYTES: usize = 64 << 10;

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a {bytes}-byte tmpfs on {} failed (this test needs root): {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(self.path()).expect("statvfs");
        s.f_bavail * s.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file of `bytes` zeroes (tmpfs has no holes to hide them in).
fn filler(path: &Path, bytes: u64) -> PathBuf {
    let file = path.join("filler");
    let chunk = vec![0u8; 1 << 20];
    let mut f = std::fs::File::create(&file).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        std::io::Write::write_all(&mut f, &chunk[..n]).unwrap();
        left -= n as u64;
    }
    file
}

/// Puts values of [`VALUE_BYTES`] one at a time until one fails; returns the acknowledged
/// (key, version)s and the error. Fails after 1,000 writes with no error.
async fn write_until_refused(client: &Client, disk: &Tmpfs) -> (Vec<(String, u64)>, Error) {
    let value = vec![b'v'; VALUE_BYTES];
    let mut acked = Vec::new();
    loop {
        let key = format!("fill-{}", acked.len());
        match client.put(key.clone(), value.clone()).await {
            Ok(version) => acked.push((key, version)),
            Err(e) => return (acked, e),
        }
        assert!(
            acked.len() < 1000,
            "1000 writes of {VALUE_BYTES} bytes and no failure; {} bytes free",
            disk.free()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_clearly_and_recovers_when_space_returns() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let disk = Tmpfs::mount(DISK_BYTES);
    let reserve = RESERVE.to_string();
    let mut cluster = Cluster::start_in(disk.path(), 3, &["--min-free-disk-bytes", &reserve]).await;
    let client = cluster.client();
    client.put("before", "the disk filled").await.unwrap();

    // Leave 6 MiB above the reserve, so the values below cross it within a few dozen writes.
    let free = disk.free();
    assert!(
        free > RESERVE + (8 << 20),
        "tmpfs too small: {free} bytes free"
    );
    let fill = filler(disk.path(), free - RESERVE - (6 << 20));
    tracing::info!(
        free = disk.free(),
        "--- filler written: writing until refused"
    );

    let (acked, refusal) = write_until_refused(&client, &disk).await;
    tracing::info!(acked = acked.len(), %refusal, "--- refused");
    assert!(
        matches!(&refusal, Error::NoSpace(m) if m.contains("no space for writes") && m.contains("min-free-disk-bytes")),
        "the refusal names the cause: {refusal:?}"
    );
    assert!(!acked.is_empty(), "some writes fitted before the reserve");

    tracing::info!("--- reads, status and every process go on");
    for (key, version) in &acked {
        let kv = client.get(key.clone()).await.unwrap().expect("acked");
        assert_eq!(kv.version, *version, "{key}");
    }
    for id in 1..=3 {
        assert!(cluster.node(id).is_running(), "node {id} exited");
        let addr = cluster.node(id).addr();
        cluster.status(&addr).await.unwrap();
    }
    let again = client.put("refused", "still").await.unwrap_err();
    assert!(matches!(again, Error::NoSpace(_)), "{again:?}");

    tracing::info!("--- space freed: writes are accepted again");
    std::fs::remove_file(&fill).unwrap();
    wait_for(
        "a write accepted after space was freed",
        Duration::from_secs(30),
        || async {
            client
                .put("after", "space returned")
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    for (key, version) in &acked {
        let kv = client.get(key.clone()).await.unwrap().expect("acked");
        assert_eq!(kv.version, *version, "{key}");
    }
    assert!(client.get("before").await.unwrap().is_some());
    cluster.converged(0).await;
    for id in 1..=3 {
        assert!(cluster.node(id).is_running(), "node {id} exited");
    }
}

/// With no reserve the WAL itself meets ENOSPC: a node then stops acknowledging and exits
/// (a write that may be half on disk is never acknowledged, and the WAL never retries), and
/// once space is freed and the nodes restart, every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_in_the_wal_stops_the_node_and_a_restart_loses_no_acknowledged_write() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let disk = Tmpfs::mount(DISK_BYTES);
    let mut cluster = Cluster::start_in(disk.path(), 3, &["--min-free-disk-bytes", "0"]).await;
    let mut config = islab_client::ClientConfig::new(cluster.endpoints());
    config.deadline = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(2);
    let client = Client::with_config(config).unwrap();
    client.put("before", "the disk filled").await.unwrap();

    let free = disk.free();
    let fill = filler(disk.path(), free - (6 << 20));
    tracing::info!(
        free = disk.free(),
        "--- filler written: writing until the WAL fails"
    );
    let (acked, refusal) = write_until_refused(&client, &disk).await;
    tracing::info!(acked = acked.len(), %refusal, "--- writes fail");

    // A node whose WAL failed exits on its own; the others may wait for a quorum that cannot
    // write. Give the first exit time, then stop whatever still runs.
    wait_for(
        "a node to exit after its WAL met a full disk",
        Duration::from_secs(60),
        || {
            let exited: Vec<u64> = cluster
                .nodes
                .iter_mut()
                .filter_map(|n| (!n.is_running()).then_some(n.id))
                .collect();
            async move {
                if exited.is_empty() {
                    Err("all running".to_string())
                } else {
                    Ok(exited)
                }
            }
        },
    )
    .await;
    let logs: String = cluster.nodes.iter().map(|n| n.log_tail()).collect();
    assert!(
        logs.contains("no space left on device"),
        "the WAL failure is named in the logs"
    );
    for node in &mut cluster.nodes {
        node.kill();
    }

    tracing::info!("--- space freed, nodes restarted");
    std::fs::remove_file(&fill).unwrap();
    for node in &mut cluster.nodes {
        node.start();
    }
    cluster.leader().await;
    let client = cluster.client();
    for (key, version) in &acked {
        let kv = client.get(key.clone()).await.unwrap().expect("acked");
        assert_eq!(kv.version, *version, "{key}");
    }
    assert!(client.get("before").await.unwrap().is_some());
    client.put("after", "space returned").await.unwrap();
}
