//! Jepsen-style tests: concurrent clients put, get (linearizable), compare-and-swap and delete
//! over a few contended keys of a 3-node cluster, every operation recorded in a
//! [`History`]; a nemesis kills, pauses or cuts off processes meanwhile; then the faults heal,
//! every key is read once more, and the history must be linearizable (the per-key checker in
//! `checker.rs`), no acknowledged write may be lost, every node must hold the same data, every
//! shard must have a leader within 10 s of each heal, and the cluster must serve a write within
//! 15 s of the heal.
//!
//! Scenarios: `kill -9` of the leader (several times), of a follower, of every node at once,
//! SIGSTOP of the leader for longer than the election timeout, then SIGCONT; the leader cut
//! off from the majority, and a slow, lossy network with partitions (both through the
//! fault-injecting proxies of `proxy.rs`); a node of a sharded cluster killed; nodes joining
//! and leaving; a node crashing at a failpoint picked at random.
//!
//! - `ISLAB_SEED=<n>` repeats a run's random choices (each scenario prints its seed); the
//!   timing of a real cluster is not repeatable, so neither is the exact history.
//! - `ISLAB_LONG=1` runs more clients, longer, with more fault rounds.
//! - `ISLAB_KEEP_HISTORY=1` saves every history as JSON, not only failing ones (they go to
//!   `target/tmp/linearizable-<scenario>-<seed>.json`; `History::load` reads them back).
//!
//! The scenarios run one at a time (three nodes each is what a 2-core machine carries while
//! election timeouts hold).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use islab_client::{Client, ClientConfig, ReadConsistency};
use islab_cluster_tests::checker::{self, Budget};
use islab_cluster_tests::history::{History, Op, OpKind, OpResult, Outcome, unique_value};
use islab_cluster_tests::proxy::Faults;
use islab_cluster_tests::{Cluster, init_tracing, wait_for};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

/// One scenario at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A write must succeed within this long of the heal.
const SERVE_AFTER_HEAL: Duration = Duration::from_secs(15);
/// Every shard must have a leader (that its running replicas agree on) this soon after a heal.
const LEADER_AFTER_HEAL: Duration = Duration::from_secs(10);
/// Once the workload stops, every replica must reach the same applied index this soon.
const CONVERGE: Duration = Duration::from_secs(30);

/// How big a run is.
struct Settings {
    name: &'static str,
    seed: u64,
    clients: usize,
    keys: Vec<String>,
    /// Ok operations required before the first fault (and the least time spent on them).
    warm_up_ops: usize,
    warm_up: Duration,
    /// Ok operations required while a fault lasts and after it heals.
    progress_ops: usize,
    /// Fault rounds, for the scenarios that repeat their fault.
    rounds: usize,
}

impl Settings {
    fn new(name: &'static str) -> Settings {
        let long = std::env::var("ISLAB_LONG").is_ok_and(|v| !v.is_empty() && v != "0");
        let seed = match std::env::var("ISLAB_SEED") {
            Ok(s) => s
                .parse()
                .unwrap_or_else(|_| panic!("ISLAB_SEED={s} is not a number")),
            Err(_) => rand::random(),
        };
        eprintln!("scenario {name}: seed {seed} (ISLAB_SEED={seed} repeats its random choices)");
        tracing::info!(name, seed, long, "scenario");
        Settings {
            name,
            seed,
            clients: if long { 8 } else { 5 },
            keys: (0..20).map(|i| format!("k{i:02}")).collect(),
            warm_up_ops: if long { 2000 } else { 500 },
            warm_up: Duration::from_secs(if long { 10 } else { 2 }),
            progress_ops: if long { 500 } else { 150 },
            rounds: if long { 10 } else { 3 },
        }
    }
}

/// A client of the cluster for one workload process: endpoints rotated so clients start at
/// different nodes; `request_timeout` for one attempt (a paused node holds a request until
/// then) and a `deadline` after which an operation's outcome is unknown.
fn workload_client(
    cluster: &Cluster,
    index: usize,
    request_timeout: Duration,
    deadline: Duration,
) -> Client {
    let mut endpoints = cluster.endpoints();
    let len = endpoints.len();
    endpoints.rotate_left(index % len);
    let mut config = ClientConfig::new(endpoints);
    config.deadline = deadline;
    config.request_timeout = request_timeout;
    config.connect_timeout = Duration::from_secs(1);
    Client::with_config(config).expect("client")
}

/// One workload process: random operations on random keys until told to stop.
async fn client_loop(
    index: usize,
    client: Client,
    keys: Vec<String>,
    seed: u64,
    history: Arc<History>,
    stop: watch::Receiver<bool>,
) {
    let mut rng =
        SmallRng::seed_from_u64(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // The last version of each key this client heard of: what its CASes expect.
    let mut seen: HashMap<String, Option<u64>> = HashMap::new();
    let mut writes = 0u64;
    while !*stop.borrow() {
        let key = keys[rng.random_range(0..keys.len())].clone();
        let roll = rng.random_range(0..100);
        let kind = if roll < 40 {
            OpKind::Get
        } else if roll < 90 {
            writes += 1;
            let value = unique_value(index, writes);
            if roll < 70 {
                OpKind::Put { value }
            } else {
                let known = seen.get(&key).copied().flatten();
                let expected = match rng.random_range(0..10) {
                    0..6 => known,
                    6..8 => None,
                    _ => Some(known.unwrap_or(0) + 1),
                };
                OpKind::Cas { expected, value }
            }
        } else {
            OpKind::Delete
        };
        match history.run(index, &client, &key, kind).await {
            Outcome::Ok(OpResult::Put { version }) => {
                seen.insert(key, Some(version));
            }
            Outcome::Ok(OpResult::Get { found }) => {
                seen.insert(key, found.map(|(_, v)| v));
            }
            Outcome::Ok(OpResult::Cas { current, .. }) => {
                seen.insert(key, current);
            }
            Outcome::Ok(OpResult::Delete { .. }) => {
                seen.insert(key, None);
            }
            Outcome::Failed(e) | Outcome::Unknown(e) => {
                tracing::debug!(client = index, error = %e, "operation without a result");
            }
            Outcome::Pending => unreachable!("run completes the op"),
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..3))).await;
    }
}

/// A run: the workload, its history, and the checks at the end.
struct Run {
    settings: Settings,
    history: Arc<History>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    rng: SmallRng,
    started: Instant,
    _keep: KeepOnPanic,
}

/// Saves the history if the test fails (panics) anywhere after the workload began.
struct KeepOnPanic {
    history: Arc<History>,
    name: &'static str,
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let seed = self.history.seed();
            let path = history_path(self.name, seed);
            match self.history.save(&path) {
                Ok(()) => eprintln!(
                    "the test failed: history of {} (seed {seed}) saved to {}",
                    self.name,
                    path.display()
                ),
                Err(e) => eprintln!("could not save the history to {}: {e}", path.display()),
            }
        }
    }
}

impl Run {
    /// Starts the workload's clients on `cluster`.
    fn start(cluster: &Cluster, settings: Settings) -> Run {
        let history = Arc::new(History::new(settings.seed));
        let (stop, rx) = watch::channel(false);
        let tasks = (0..settings.clients)
            .map(|i| {
                // Client 0 is impatient: during a fault its operations run out of time and
                // end unknown, which the checker must then place (or drop) itself. Client 1
                // is patient: a request it sent to a paused leader is still waiting for the
                // answer when that node resumes (believing it still leads).
                let (request_timeout, deadline) = match i {
                    0 => (1, 2),
                    1 => (8, 20),
                    _ => (2, 10),
                };
                tokio::spawn(client_loop(
                    i,
                    workload_client(
                        cluster,
                        i,
                        Duration::from_secs(request_timeout),
                        Duration::from_secs(deadline),
                    ),
                    settings.keys.clone(),
                    settings.seed,
                    history.clone(),
                    rx.clone(),
                ))
            })
            .collect();
        let rng = SmallRng::seed_from_u64(settings.seed);
        let _keep = KeepOnPanic {
            history: history.clone(),
            name: settings.name,
        };
        Run {
            settings,
            history,
            stop,
            tasks,
            rng,
            started: Instant::now(),
            _keep,
        }
    }

    /// Waits (120 s) until `more` operations beyond those done so far completed with a result.
    async fn progress(&self, more: usize, what: &str) {
        let from = self.history.ok_count();
        wait_for(what, Duration::from_secs(120), || async {
            let n = self.history.ok_count() - from;
            if n >= more {
                Ok(())
            } else {
                Err(format!("{n} of {more} ok operations so far"))
            }
        })
        .await;
    }

    /// The warm-up: a fixed time and a minimum of successful operations (a run that did
    /// nothing before its fault proves nothing).
    async fn warm_up(&self) {
        let min = self.settings.warm_up_ops;
        wait_for(
            &format!("{min} ok operations before the fault"),
            Duration::from_secs(120),
            || async {
                let n = self.history.ok_count();
                if n >= min && self.started.elapsed() >= self.settings.warm_up {
                    Ok(())
                } else {
                    Err(format!("{n} ok operations so far"))
                }
            },
        )
        .await;
        tracing::info!(ok = self.history.ok_count(), "--- warmed up");
    }

    /// Right after a heal: each of the `shards` shards has a leader its running replicas agree
    /// on within [`LEADER_AFTER_HEAL`] of `healed_at`.
    async fn leaders_after_heal(&self, cluster: &Cluster, shards: usize, healed_at: Instant) {
        let left = LEADER_AFTER_HEAL.saturating_sub(healed_at.elapsed());
        cluster.shard_leaders_within(shards, left).await;
        tracing::info!(took = ?healed_at.elapsed(), "--- every shard has a leader after the heal");
    }

    /// After a heal: a write (recorded) succeeds within [`SERVE_AFTER_HEAL`] of `healed_at`,
    /// and the workload makes progress again.
    async fn served_after_heal(&self, cluster: &Cluster, healed_at: Instant) {
        let client = workload_client(cluster, 0, Duration::from_secs(2), SERVE_AFTER_HEAL);
        let probe = self.settings.clients; // a client index of its own
        let key = &self.settings.keys[0];
        let value = unique_value(probe, 1); // one probe per run
        let outcome = self
            .history
            .run(probe, &client, key, OpKind::Put { value })
            .await;
        let took = healed_at.elapsed();
        assert!(
            matches!(outcome, Outcome::Ok(_)) && took <= SERVE_AFTER_HEAL,
            "no write succeeded within {SERVE_AFTER_HEAL:?} of the heal: {outcome:?} after {took:?}"
        );
        tracing::info!(?took, "--- a write succeeded after the heal");
        self.progress(self.settings.progress_ops, "progress after the heal")
            .await;
    }

    /// Stops the workload, reads every key, and checks everything.
    async fn finish(self, cluster: &Cluster) {
        let stopping = Instant::now();
        self.stop.send(true).unwrap();
        for task in self.tasks {
            task.await.expect("a workload client panicked");
        }
        tracing::info!(took = ?stopping.elapsed(), "--- workload stopped");

        // The final reads, recorded like every other op.
        let reader = self.settings.clients + 1;
        let client = workload_client(cluster, 1, Duration::from_secs(5), Duration::from_secs(30));
        let mut finals: BTreeMap<String, Option<(String, u64)>> = BTreeMap::new();
        for key in &self.settings.keys {
            match self.history.run(reader, &client, key, OpKind::Get).await {
                Outcome::Ok(OpResult::Get { found }) => {
                    finals.insert(key.clone(), found);
                }
                other => panic!("the final read of {key} failed: {other:?}"),
            }
        }

        let applied = cluster.converged_within(0, CONVERGE).await;
        tracing::info!(applied, "--- every node applied the same index");
        for node in &cluster.nodes {
            let mut config = ClientConfig::new([node.addr()]);
            config.deadline = Duration::from_secs(10);
            let local = Client::with_config(config).unwrap();
            for (key, want) in &finals {
                let got = local
                    .get_with(key.clone(), ReadConsistency::Serializable)
                    .await
                    .unwrap_or_else(|e| panic!("node {}: read {key}: {e}", node.id))
                    .map(|kv| (String::from_utf8_lossy(&kv.value).into_owned(), kv.version));
                assert_eq!(&got, want, "node {} holds another {key}", node.id);
            }
        }

        let ops = self.history.ops();
        let seed = self.settings.seed;
        let name = self.settings.name;
        if std::env::var("ISLAB_KEEP_HISTORY").is_ok_and(|v| !v.is_empty() && v != "0") {
            let path = history_path(name, seed);
            self.history.save(&path).expect("saving the history");
            eprintln!(
                "history of {name} (seed {seed}) saved to {}",
                path.display()
            );
        }
        let stats = Stats::of(&ops);
        tracing::info!(%stats, "history");
        eprintln!("{name}: {stats}");

        let lost = lost_writes(&ops, &finals);
        if !lost.is_empty() {
            panic!(
                "{} acknowledged writes lost (seed {seed}):\n{}",
                lost.len(),
                lost.join("\n")
            );
        }

        let report = checker::check(&ops, Budget::default());
        eprintln!("{name}: {report}");
        assert!(report.is_linearizable(), "{name} (seed {seed}): {report}");

        // The check is not vacuous: the same history with one stale read planted fails.
        let (mutated, what) = checker::stale_read_mutation(&ops)
            .expect("no pair of reads to plant a stale read with: the workload did too little");
        let report = checker::check(&mutated, Budget::default());
        assert!(
            report.is_illegal(),
            "the checker accepted a planted stale read ({what}): {report}"
        );
        tracing::info!(%what, "a planted stale read is caught");
    }
}

fn history_path(name: &str, seed: u64) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("linearizable-{name}-{seed}.json"))
}

/// Acknowledged writes the final reads contradict: for each key, the final read must be at
/// least as new as every acknowledged write of it, or absent only if a delete might have come
/// after the newest acknowledged write.
fn lost_writes(ops: &[Op], finals: &BTreeMap<String, Option<(String, u64)>>) -> Vec<String> {
    let mut lost = Vec::new();
    for (key, last) in finals {
        let newest = ops
            .iter()
            .filter(|op| &op.key == key)
            .filter_map(|op| match op.outcome {
                Outcome::Ok(OpResult::Put { version })
                | Outcome::Ok(OpResult::Cas {
                    succeeded: true,
                    current: Some(version),
                }) => Some((version, op)),
                _ => None,
            })
            .max_by_key(|(v, _)| *v);
        let Some((version, write)) = newest else {
            continue;
        };
        let ok = match last {
            Some((_, v)) => *v >= version,
            None => ops.iter().any(|d| {
                &d.key == key
                    && matches!(d.kind, OpKind::Delete)
                    && !matches!(d.outcome, Outcome::Failed(_))
                    && d.complete_ns.is_none_or(|c| c > write.invoke_ns)
            }),
        };
        if !ok {
            lost.push(format!("{write}; the final read found {last:?}"));
        }
    }
    lost
}

/// Counts of a history, for the log.
struct Stats {
    ops: usize,
    ok: usize,
    failed: usize,
    unknown: usize,
    reads_found: usize,
    cas_ok: usize,
    cas_failed: usize,
}

impl Stats {
    fn of(ops: &[Op]) -> Stats {
        let count = |f: &dyn Fn(&Outcome) -> bool| ops.iter().filter(|o| f(&o.outcome)).count();
        Stats {
            ops: ops.len(),
            ok: count(&|o| matches!(o, Outcome::Ok(_))),
            failed: count(&|o| matches!(o, Outcome::Failed(_))),
            unknown: count(&|o| matches!(o, Outcome::Unknown(_))),
            reads_found: count(&|o| matches!(o, Outcome::Ok(OpResult::Get { found: Some(_) }))),
            cas_ok: count(&|o| {
                matches!(
                    o,
                    Outcome::Ok(OpResult::Cas {
                        succeeded: true,
                        ..
                    })
                )
            }),
            cas_failed: count(&|o| {
                matches!(
                    o,
                    Outcome::Ok(OpResult::Cas {
                        succeeded: false,
                        ..
                    })
                )
            }),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ops: {} ok, {} failed, {} unknown; {} reads found a value; CAS {} succeeded, {} failed",
            self.ops,
            self.ok,
            self.failed,
            self.unknown,
            self.reads_found,
            self.cas_ok,
            self.cas_failed
        )
    }
}

/// Sends `signal` (STOP, CONT) to node `id`'s process.
fn signal(cluster: &mut Cluster, id: u64, signal: &str) {
    let pid = cluster
        .node(id)
        .pid()
        .unwrap_or_else(|| panic!("node {id} is not running"));
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
    if signal == "STOP" {
        stopped(pid);
    }
}

/// Waits (10 s) until every thread of process `pid` is stopped. `kill -STOP` returns once the
/// signal is sent, but the process stops only when its threads next get a CPU: on a busy
/// machine it went on serving (a status request sent after `kill` returned, answered as
/// leader) for tens of milliseconds. Linux only, like `kill`'s use here.
fn stopped(pid: u32) {
    let running = || -> Result<Vec<String>, String> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
        let mut running = Vec::new();
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue; // a thread that just exited
            };
            // "tid (comm) state ...": the comm may hold spaces and parentheses.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            if !matches!(state, Some("T" | "t" | "Z" | "X")) {
                running.push(format!("{}:{state:?}", task.file_name().to_string_lossy()));
            }
        }
        Ok(running)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match running() {
            Ok(r) if r.is_empty() => return,
            last => assert!(
                Instant::now() < deadline,
                "process {pid} not stopped 10 s after SIGSTOP: {last:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_leader_repeatedly() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let settings = Settings::new("kill_leader");
    let mut cluster = Cluster::start(3).await;
    let run = Run::start(&cluster, settings);
    run.warm_up().await;
    let mut healed_at = Instant::now();
    for round in 0..run.settings.rounds {
        let leader = cluster.leader().await;
        tracing::info!(round, leader, "--- kill -9 the leader");
        cluster.node(leader).kill();
        let new = cluster.leader().await;
        assert_ne!(new, leader);
        tracing::info!(round, new, "--- new leader");
        run.progress(run.settings.progress_ops, "progress under the new leader")
            .await;
        cluster.node(leader).start();
        healed_at = Instant::now();
        run.leaders_after_heal(&cluster, 1, healed_at).await;
        cluster.caught_up(leader).await;
        tracing::info!(round, leader, "--- the old leader is back and caught up");
    }
    run.served_after_heal(&cluster, healed_at).await;
    run.finish(&cluster).await;
}

/// The same workload over a sharded cluster (4 shards, leaders spread over the three nodes):
/// the keys live in different Raft groups, and a killed node takes several leaders with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_a_node_of_a_sharded_cluster() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let settings = Settings::new("kill_sharded");
    let mut cluster = Cluster::start_sharded(3, 4, 3, &[]).await;
    let mut run = Run::start(&cluster, settings);
    run.warm_up().await;
    let mut healed_at = Instant::now();
    for round in 0..run.settings.rounds {
        let victim = run.rng.random_range(1..=3u64);
        tracing::info!(round, victim, "--- kill -9 a node of the sharded cluster");
        cluster.node(victim).kill();
        run.progress(run.settings.progress_ops, "progress without it")
            .await;
        cluster.node(victim).start();
        healed_at = Instant::now();
        run.leaders_after_heal(&cluster, 4, healed_at).await;
        cluster.shard_leaders(4).await;
        cluster.caught_up(victim).await;
        tracing::info!(round, victim, "--- it is back and caught up");
    }
    run.served_after_heal(&cluster, healed_at).await;
    run.finish(&cluster).await;
}

/// Membership changes under the workload: a fourth node joins (replicas move onto it, each
/// catching up before it votes), then node 1 leaves (its replicas move off first), all while
/// the clients read and write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_and_leave_under_the_workload() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let settings = Settings::new("membership");
    let mut cluster = Cluster::start_sharded(3, 4, 3, &[]).await;
    let run = Run::start(&cluster, settings);
    run.warm_up().await;
    let admin = cluster
        .client()
        .admin()
        .with_deadline(Duration::from_secs(180));

    tracing::info!("--- node 4 joins");
    cluster.add_process(4, &[]).start();
    admin.member_add(4, cluster.node(4).addr()).await.unwrap();
    admin.member_promote(4).await.unwrap();
    wait_for(
        "node 4 to hold replicas",
        Duration::from_secs(120),
        || async {
            let list = admin.shard_list().await.map_err(|e| e.to_string())?;
            let held = list
                .shards
                .iter()
                .filter(|s| s.replicas.contains(&4))
                .count();
            if held >= 2 {
                Ok(())
            } else {
                Err(format!("node 4 holds {held}"))
            }
        },
    )
    .await;
    run.progress(run.settings.progress_ops, "progress after the join")
        .await;

    tracing::info!("--- node 1 leaves: its replicas move off first");
    let members = match admin.member_remove(1).await {
        Ok(members) => members,
        Err(e) => {
            for n in &cluster.nodes {
                eprintln!("--- node {} log:\n{}", n.id, n.log_tail());
            }
            panic!("member remove 1: {e}");
        }
    };
    assert!(!members.iter().any(|m| m.id == 1), "{members:?}");
    let list = admin.shard_list().await.unwrap();
    assert!(
        list.shards
            .iter()
            .all(|s| !s.replicas.contains(&1) && s.replicas.len() == 3)
    );
    cluster.node(1).stop();
    cluster.nodes.retain(|n| n.id != 1);
    let healed_at = Instant::now();
    run.leaders_after_heal(&cluster, 4, healed_at).await;
    cluster.shard_leaders(4).await;
    run.served_after_heal(&cluster, healed_at).await;
    run.finish(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_a_follower() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let settings = Settings::new("kill_follower");
    let mut cluster = Cluster::start(3).await;
    let mut run = Run::start(&cluster, settings);
    run.warm_up().await;
    let mut healed_at = Instant::now();
    for round in 0..run.settings.rounds {
        let leader = cluster.leader().await;
        let followers: Vec<u64> = cluster
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| *id != leader)
            .collect();
        let follower = followers[run.rng.random_range(0..followers.len())];
        tracing::info!(round, follower, "--- kill -9 a follower");
        cluster.node(follower).kill();
        run.progress(run.settings.progress_ops, "progress on two nodes")
            .await;
        cluster.node(follower).start();
        healed_at = Instant::now();
        run.leaders_after_heal(&cluster, 1, healed_at).await;
        cluster.caught_up(follower).await;
    }
    run.served_after_heal(&cluster, healed_at).await;
    run.finish(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_every_node_at_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let settings = Settings::new("kill_all");
    let mut cluster = Cluster::start(3).await;
    let mut run = Run::start(&cluster, settings);
    run.warm_up().await;
    let rounds = run.settings.rounds.div_ceil(2);
    let mut healed_at = Instant::now();
    for round in 0..rounds {
        tracing::info!(round, "--- kill -9 every node");
        for node in &mut cluster.nodes {
            node.kill();
        }
        // Clients keep trying meanwhile; the impatient one's operations end unknown.
        let down = Duration::from_millis(run.rng.random_range(500..2500));
        tokio::time::sleep(down).await;
        for node in &mut cluster.nodes {
            node.start();
        }
        healed_at = Instant::now();
        run.leaders_after_heal(&cluster, 1, healed_at).await;
        let leader = cluster.leader().await;
        tracing::info!(round, leader, "--- restarted");
        run.progress(run.settings.progress_ops, "progress after the restart")
            .await;
    }
    run.served_after_heal(&cluster, healed_at).await;
    run.finish(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_the_leader_past_the_election_timeout() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let settings = Settings::new("pause_leader");
    let mut cluster = Cluster::start(3).await;
    let mut run = Run::start(&cluster, settings);
    run.warm_up().await;
    let mut healed_at = Instant::now();
    for round in 0..run.settings.rounds {
        let leader = cluster.leader().await;
        // Well past the election timeout (500-1000 ms) and the leader's lease (1000 ms).
        let pause = Duration::from_millis(run.rng.random_range(2500..4000));
        tracing::info!(round, leader, ?pause, "--- SIGSTOP the leader");
        signal(&mut cluster, leader, "STOP");
        let paused_at = Instant::now();
        // Only the others are asked: the old leader is stopped, and no claim of its counts.
        let others: Vec<u64> = cluster
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| *id != leader)
            .collect();
        let new = cluster.leader_among(&others).await;
        assert_ne!(new, leader);
        tracing::info!(round, new, "--- new leader while the old one is paused");
        run.progress(run.settings.progress_ops, "progress under the new leader")
            .await;
        if let Some(rest) = pause.checked_sub(paused_at.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        signal(&mut cluster, leader, "CONT");
        healed_at = Instant::now();
        run.leaders_after_heal(&cluster, 1, healed_at).await;
        tracing::info!(round, leader, paused = ?paused_at.elapsed(), "--- SIGCONT the old leader");
        cluster.caught_up(leader).await;
    }
    run.served_after_heal(&cluster, healed_at).await;
    run.finish(&cluster).await;
}

/// A network partition on loopback: the leader is cut off from the other two nodes (every
/// link between them cut by the proxies; clients still reach all three, so some talk to the
/// old leader, which can no longer commit or confirm a read), the majority elects a leader and
/// serves, then the links heal and the old leader gets the messages that waited, late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolate_the_leader_from_the_majority() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let settings = Settings::new("partition_leader");
    let cluster = Cluster::start_proxied(3, 1, 3, &[]).await;
    let mut run = Run::start(&cluster, settings);
    run.warm_up().await;
    let mut healed_at = Instant::now();
    for round in 0..run.settings.rounds {
        let leader = cluster.leader().await;
        tracing::info!(round, leader, "--- cut the leader off from the majority");
        cluster.net().partition(&[leader]);
        let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        // One of the others (the old leader is not asked, so cannot be the answer).
        let new = cluster.leader_among(&others).await;
        tracing::info!(round, new, "--- the majority elected a new leader");
        run.progress(run.settings.progress_ops, "progress in the majority")
            .await;
        // Sometimes the partition outlasts a few more elections on the minority side.
        let more = Duration::from_millis(run.rng.random_range(0..1500));
        tokio::time::sleep(more).await;
        cluster.net().heal();
        healed_at = Instant::now();
        run.leaders_after_heal(&cluster, 1, healed_at).await;
        tracing::info!(round, leader, "--- healed");
        cluster.caught_up(leader).await;
    }
    run.served_after_heal(&cluster, healed_at).await;
    run.finish(&cluster).await;
}

/// A slow and lossy network: every link delays each chunk by 1-11 ms and loses 5 % of them
/// (each lost chunk arrives a retransmission timeout late, what follows waiting behind it),
/// over a sharded cluster, while one node at a time is cut off from the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lossy_network_with_partitions_of_a_sharded_cluster() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let settings = Settings::new("lossy_sharded");
    let cluster = Cluster::start_proxied(3, 4, 3, &[]).await;
    let mut run = Run::start(&cluster, settings);
    run.warm_up().await;
    let lossy = Faults {
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(10),
        loss: 0.05,
        ..Faults::NONE
    };
    tracing::info!(?lossy, "--- every link slow and lossy");
    cluster.net().set_all(lossy);
    run.progress(run.settings.progress_ops, "progress over the lossy links")
        .await;
    for round in 0..run.settings.rounds {
        let victim = run.rng.random_range(1..=3u64);
        tracing::info!(round, victim, "--- cut a node off (links still lossy)");
        cluster.net().partition(&[victim]);
        run.progress(run.settings.progress_ops, "progress without it")
            .await;
        // Back on lossy links: its inflated terms may depose leaders, and elections over 5 %
        // loss take longer, so the 10 s bound applies only after the full heal below.
        cluster.net().set_all(lossy);
        tracing::info!(round, victim, "--- its links are back (lossy)");
        cluster.shard_leaders(4).await;
        cluster.caught_up(victim).await;
    }
    cluster.net().heal();
    let healed_at = Instant::now();
    tracing::info!("--- every link healthy again");
    run.leaders_after_heal(&cluster, 4, healed_at).await;
    run.served_after_heal(&cluster, healed_at).await;
    run.finish(&cluster).await;
}

/// Failpoints under the workload: each round picks a node and a failpoint at random (a
/// failpoints build; checkpoints every 200 entries so the checkpoint ones fire too), makes
/// the node crash there, restarts it without the failpoint and waits until it caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_a_random_failpoint() {
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let settings = Settings::new("failpoint");
    let mut cluster = Cluster::start_failpoints(
        3,
        &[
            "--snapshot-after-entries",
            "200",
            "--keep-entries-after-snapshot",
            "50",
        ],
    )
    .await;
    let mut run = Run::start(&cluster, settings);
    run.warm_up().await;
    // Every failpoint but `snapshot::install`, which fires only on a node that needs a snapshot.
    let names: Vec<&str> = islab_storage::failpoints::NAMES
        .iter()
        .copied()
        .filter(|n| *n != "snapshot::install")
        .collect();
    let mut healed_at = Instant::now();
    for round in 0..run.settings.rounds {
        let victim = run.rng.random_range(1..=3u64);
        let name = names[run.rng.random_range(0..names.len())];
        tracing::info!(round, victim, name, "--- crash a node at a failpoint");
        cluster.node(victim).set_failpoint_panic(name).await;
        let node = cluster.node(victim);
        tokio::task::block_in_place(|| node.wait_failpoint_crash(name, Duration::from_secs(90)));
        run.progress(run.settings.progress_ops, "progress without it")
            .await;
        cluster.node(victim).start();
        healed_at = Instant::now();
        run.leaders_after_heal(&cluster, 1, healed_at).await;
        cluster.caught_up(victim).await;
    }
    run.served_after_heal(&cluster, healed_at).await;
    run.finish(&cluster).await;
}

/// Re-checks a saved history: `ISLAB_HISTORY=<file> cargo test -p islab-cluster-tests --test
/// linearizable recheck -- --ignored --nocapture`.
#[test]
#[ignore = "a tool: needs ISLAB_HISTORY=<a saved history>"]
fn recheck_a_saved_history() {
    let path = std::env::var("ISLAB_HISTORY").expect("ISLAB_HISTORY=<a saved history>");
    let (seed, ops) = History::load(path.as_ref()).expect("reading the history");
    eprintln!("{path}: seed {seed}, {}", Stats::of(&ops));
    let report = checker::check(&ops, Budget::default());
    eprintln!("{report}");
    assert!(report.is_linearizable(), "{report}");
}

#[test]
fn lost_writes_are_found() {
    let op = |id, kind, invoke_ns, complete_ns, outcome| Op {
        id,
        client: 0,
        key: "k".into(),
        kind,
        invoke_ns,
        complete_ns,
        outcome,
    };
    let put = |id, value: &str, at: u64, version| {
        op(
            id,
            OpKind::Put {
                value: value.into(),
            },
            at,
            Some(at + 1),
            Outcome::Ok(OpResult::Put { version }),
        )
    };
    let ops = vec![put(0, "a", 0, 5), put(1, "b", 10, 7)];
    let finals = |found: Option<(&str, u64)>| {
        BTreeMap::from([("k".to_string(), found.map(|(v, n)| (v.to_string(), n)))])
    };
    assert!(lost_writes(&ops, &finals(Some(("b", 7)))).is_empty());
    assert_eq!(lost_writes(&ops, &finals(Some(("a", 5)))).len(), 1);
    assert_eq!(lost_writes(&ops, &finals(None)).len(), 1);
    // Absent is fine if a delete may have come after the newest write.
    let mut with_delete = ops.clone();
    with_delete.push(op(
        2,
        OpKind::Delete,
        5,
        None,
        Outcome::Unknown("timeout".into()),
    ));
    assert!(lost_writes(&with_delete, &finals(None)).is_empty());
    // But not one that completed before it began.
    with_delete[2].complete_ns = Some(6);
    with_delete[2].outcome = Outcome::Ok(OpResult::Delete { existed: true });
    assert_eq!(lost_writes(&with_delete, &finals(None)).len(), 1);
}
