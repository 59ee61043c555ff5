//! Faults injected at named failpoints (see `islab_storage::failpoints`), in real `islab`
//! processes built with `--features failpoints` (the harness builds that binary, the
//! `islab-failpoints` bin target). Each scenario runs four writers, injects a fault in one node — with
//! `Admin.SetFailpoint` mid-run, or with `FAILPOINTS` at its start — waits on what must follow
//! (the node exits, the others keep serving, the node catches up once restarted without the
//! failpoint), and checks that every acknowledged write is readable with its version.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use islab_cluster_tests::{Cluster, Load, data_group, init_tracing, wait_for};

/// One test at a time: each runs three nodes, which is what a 2-core machine carries while
/// election timeouts hold.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Checkpoint often and keep little log behind it, so checkpoints (and purges) happen under
/// a short load.
const SNAPSHOT_ARGS: &[&str] = &[
    "--snapshot-after-entries",
    "200",
    "--keep-entries-after-snapshot",
    "50",
];

/// Waits (`within`) for node `id` to exit by itself; returns its exit status.
fn exits(cluster: &mut Cluster, id: u64, within: Duration) -> ExitStatus {
    let node = cluster.node(id);
    let status = tokio::task::block_in_place(|| node.wait_exit(within));
    status.unwrap_or_else(|| panic!("node {id} still runs after {within:?}"))
}

/// A node of the data shard that is not its leader.
async fn a_follower(cluster: &Cluster) -> u64 {
    let leader = cluster.leader().await;
    cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .unwrap()
}

/// The data shard's checkpoint index on node `id`.
async fn checkpoint_index(cluster: &mut Cluster, id: u64) -> u64 {
    let addr = cluster.node(id).addr();
    let s = cluster.status(&addr).await.unwrap();
    data_group(&s).unwrap().checkpoint_index
}

/// An fsync that fails (EIO) on the leader mid-run: it stops acknowledging and exits non-zero;
/// the other two elect a leader and keep every acknowledged write; restarted without the
/// failpoint, the node recovers from its disk and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_node_and_loses_no_acknowledged_write() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let mut cluster = Cluster::start_failpoints(3, &[]).await;
    let load = Load::start(&cluster.client(), "a", 4);
    load.wait_more(0, 200, "200 acknowledged writes").await;

    let victim = cluster.leader().await;
    tracing::info!(victim, "--- the leader's next fsync fails with EIO");
    let before = load.count();
    cluster
        .node(victim)
        .set_failpoint("wal::before_fsync", "return")
        .await
        .unwrap();
    let set_at = Instant::now();
    let status = exits(&mut cluster, victim, Duration::from_secs(30));
    tracing::info!(victim, %status, after = ?set_at.elapsed(), "--- the node exited");
    assert!(!status.success(), "node {victim} exited with {status}");
    assert!(
        cluster
            .node(victim)
            .log_tail()
            .contains("injected by failpoint wal::before_fsync"),
        "the log names the injected failure:\n{}",
        cluster.node(victim).log_tail()
    );

    load.wait_more(load.count(), 200, "200 more writes on the other two")
        .await;
    let (acked, failures) = load.stop().await;
    assert!(
        failures <= 4,
        "{failures} writes failed outright; the SDK should ride out the failover"
    );
    assert!(acked.len() > before, "writes went on");
    tracing::info!("--- every acknowledged write is on the remaining two");
    cluster.assert_acked(&acked).await;

    tracing::info!("--- restart it without the failpoint: it catches up");
    cluster.node(victim).start();
    cluster.caught_up(victim).await;
    cluster.converged(0).await;
    cluster.assert_acked(&acked).await;
}

/// A crash while a checkpoint is written — before its rename on one node, after it on
/// another: each node recovers from its previous checkpoint plus the WAL, converges, and no
/// acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_checkpoint_recovers_from_the_previous_one_and_the_wal() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let mut cluster = Cluster::start_failpoints(3, SNAPSHOT_ARGS).await;
    let load = Load::start(&cluster.client(), "b", 4);
    load.wait_more(0, 300, "300 acknowledged writes").await;

    for name in ["checkpoint::before_rename", "checkpoint::after_rename"] {
        let victim = a_follower(&cluster).await;
        let ckpt_before = checkpoint_index(&mut cluster, victim).await;
        tracing::info!(
            victim,
            name,
            ckpt_before,
            "--- crash at the next checkpoint"
        );
        cluster.node(victim).set_failpoint_panic(name).await;
        let node = cluster.node(victim);
        tokio::task::block_in_place(|| node.wait_failpoint_crash(name, Duration::from_secs(60)));
        tracing::info!(victim, "--- the node crashed");

        load.wait_more(load.count(), 100, "100 more writes while it is down")
            .await;
        tracing::info!(victim, "--- restart it without the failpoint");
        cluster.node(victim).start();
        if name == "checkpoint::before_rename" {
            // The crash left the finished but unrenamed `.tmp`; recovery removed it and went
            // on from the previous checkpoint (if any) plus the WAL.
            assert!(
                cluster
                    .node(victim)
                    .log_contains("removing unfinished checkpoint"),
                "{}",
                cluster.node(victim).log_tail()
            );
        }
        cluster.caught_up(victim).await;
        // It goes on checkpointing, now past the one it crashed in.
        let addr = cluster.node(victim).addr();
        wait_for(
            "a new checkpoint on the restarted node",
            Duration::from_secs(60),
            || async {
                let s = cluster.status(&addr).await?;
                let c = data_group(&s)?.checkpoint_index;
                if c > ckpt_before {
                    Ok(())
                } else {
                    Err(format!("checkpoint index {c}, was {ckpt_before}"))
                }
            },
        )
        .await;
    }
    let (acked, failures) = load.stop().await;
    assert!(failures <= 4, "{failures} writes failed outright");
    cluster.converged(0).await;
    cluster.assert_acked(&acked).await;
}

/// A follower whose apply is slowed down (`apply::before=sleep(10)`): the cluster keeps
/// serving at the pace of the other two; once the failpoint is off the follower catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_applying_follower_does_not_stop_the_cluster() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let mut cluster = Cluster::start_failpoints(3, &[]).await;
    let load = Load::start(&cluster.client(), "c", 4);
    load.wait_more(0, 100, "100 acknowledged writes").await;

    let slow = a_follower(&cluster).await;
    tracing::info!(slow, "--- every apply on the follower sleeps 10 ms");
    cluster
        .node(slow)
        .set_failpoint("apply::before", "sleep(10)")
        .await
        .unwrap();
    let (slow_addr, leader_addr) = (
        cluster.node(slow).addr(),
        cluster.node(cluster.leader().await).addr(),
    );
    wait_for(
        "the slow follower to fall 20 entries behind the leader",
        Duration::from_secs(60),
        || async {
            let leader = data_group(&cluster.status(&leader_addr).await?)?.applied_index;
            let follower = data_group(&cluster.status(&slow_addr).await?)?.applied_index;
            if leader >= follower + 20 {
                Ok(())
            } else {
                Err(format!("leader applied {leader}, follower {follower}"))
            }
        },
    )
    .await;
    load.wait_more(load.count(), 400, "400 writes with the slow follower")
        .await;
    assert!(cluster.node(slow).is_running(), "a slow apply is no crash");

    tracing::info!(slow, "--- failpoint off: the follower catches up");
    cluster
        .node(slow)
        .set_failpoint("apply::before", "off")
        .await
        .unwrap();
    let (acked, failures) = load.stop().await;
    assert_eq!(failures, 0, "no write fails because a follower is slow");
    cluster.caught_up(slow).await;
    cluster.converged(0).await;
    cluster.assert_acked(&acked).await;
}

/// Every failpoint set to `panic` on one node under load: the node crashes there, restarts
/// without it, and the cluster converges with no acknowledged write lost. `snapshot::install`
/// fires only on a node that needs a snapshot: that node is stopped until the leader has
/// purged the entries it lacks, then started with `FAILPOINTS` set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_failpoint_loses_no_acknowledged_write() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let mut cluster = Cluster::start_failpoints(3, SNAPSHOT_ARGS).await;
    let load = Load::start(&cluster.client(), "d", 4);
    load.wait_more(0, 100, "100 acknowledged writes").await;

    // Every failpoint but `snapshot::install`, which fires only on a node that needs a
    // snapshot (below).
    let names = islab_storage::failpoints::NAMES
        .iter()
        .filter(|n| **n != "snapshot::install");
    for (i, name) in names.enumerate() {
        // Followers and leaders alike: 1, 2, 3, 1, ...
        let victim = (i as u64 % 3) + 1;
        tracing::info!(victim, name, "--- panic at the failpoint");
        cluster.node(victim).set_failpoint_panic(name).await;
        let node = cluster.node(victim);
        tokio::task::block_in_place(|| node.wait_failpoint_crash(name, Duration::from_secs(60)));
        load.wait_more(load.count(), 50, "50 more writes").await;
        cluster.node(victim).start();
        cluster.caught_up(victim).await;
    }

    let victim = a_follower(&cluster).await;
    tracing::info!(
        victim,
        "--- snapshot::install: stopped until the leader purged past it"
    );
    let victim_addr = cluster.node(victim).addr();
    let applied = data_group(&cluster.status(&victim_addr).await.unwrap())
        .unwrap()
        .applied_index;
    assert!(cluster.node(victim).stop(), "orderly stop");
    let leader = cluster.leader().await;
    let leader_addr = cluster.node(leader).addr();
    wait_for(
        "the leader to purge past the stopped node",
        Duration::from_secs(90),
        || async {
            let s = cluster.status(&leader_addr).await?;
            let purged = data_group(&s)?.purged_index;
            if purged > applied + 1 {
                Ok(())
            } else {
                Err(format!("purged {purged}, the node applied {applied}"))
            }
        },
    )
    .await;
    cluster
        .node(victim)
        .set_env("FAILPOINTS", Some("snapshot::install=panic"));
    cluster.node(victim).start();
    let node = cluster.node(victim);
    tokio::task::block_in_place(|| {
        node.wait_failpoint_crash("snapshot::install", Duration::from_secs(60))
    });
    cluster.node(victim).set_env("FAILPOINTS", None);
    cluster.node(victim).start();
    cluster.caught_up(victim).await;

    let (acked, failures) = load.stop().await;
    assert!(failures <= 8, "{failures} writes failed outright");
    cluster.converged(0).await;
    cluster.assert_acked(&acked).await;
}

/// A follower cut off by the network — still running — until the leader has purged the log it
/// lacks. The failpoint `snapshot::install` is set on it through the admin call while it is cut
/// off (clients still reach it); when the links heal the leader sends it a checkpoint and it
/// dies installing it. Restarted without the failpoint it installs the snapshot and catches
/// up, and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_past_the_purge_dies_installing_the_snapshot() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let mut cluster = Cluster::start_failpoints_proxied(3, SNAPSHOT_ARGS).await;
    let load = Load::start(&cluster.client(), "e", 4);
    load.wait_more(0, 100, "100 acknowledged writes").await;

    let victim = a_follower(&cluster).await;
    let victim_addr = cluster.node(victim).addr();
    tracing::info!(victim, "--- cut the follower off");
    cluster.net().partition(&[victim]);
    let others: Vec<u64> = (1..=3).filter(|id| *id != victim).collect();
    let leader = cluster.leader_among(&others).await;
    let leader_addr = cluster.node(leader).addr();
    // Past the end of the victim's log (read again each time: what was in flight when the
    // links were cut may still land), so that only a snapshot can catch it up.
    let applied = wait_for(
        "the leader to purge past the cut-off node's log",
        Duration::from_secs(90),
        || async {
            let victim = data_group(&cluster.status(&victim_addr).await?)?.clone();
            let purged = data_group(&cluster.status(&leader_addr).await?)?.purged_index;
            if purged > victim.last_log_index + 1 {
                Ok(victim.applied_index)
            } else {
                Err(format!(
                    "purged {purged}, the node's log ends at {}",
                    victim.last_log_index
                ))
            }
        },
    )
    .await;
    cluster
        .node(victim)
        .set_failpoint("snapshot::install", "panic")
        .await
        .unwrap();
    tracing::info!(victim, "--- heal: the leader sends it a snapshot");
    cluster.net().heal();
    let node = cluster.node(victim);
    tokio::task::block_in_place(|| {
        node.wait_failpoint_crash("snapshot::install", Duration::from_secs(60))
    });
    cluster.node(victim).start();
    cluster.caught_up(victim).await;
    let checkpoint = checkpoint_index(&mut cluster, victim).await;
    assert!(
        checkpoint > applied,
        "node {victim} caught up from a snapshot: checkpoint {checkpoint}, it had applied {applied}"
    );

    let (acked, failures) = load.stop().await;
    assert!(failures <= 8, "{failures} writes failed outright");
    cluster.converged(0).await;
    cluster.assert_acked(&acked).await;
}

/// A plain build answers `SetFailpoint` with UNIMPLEMENTED; a failpoints build refuses an
/// unknown name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_failpoint_needs_a_failpoints_build_and_a_known_name() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let cluster = Cluster::start_failpoints(1, &[]).await;
    let e = cluster.nodes[0]
        .set_failpoint("no::such", "return")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    drop(cluster);

    let plain = Cluster::start(1).await;
    let e = plain.nodes[0]
        .set_failpoint("wal::before_fsync", "return")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e}");
    assert!(e.message().contains("built without failpoints"), "{e}");
}
