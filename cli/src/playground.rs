//! `islab playground`: a real local cluster in one command, for trying IsLabDB out.
//!
//! ```text
//! check the ports are free → start N `islab server` processes (`nodes`)
//!   → poll Status until every node serves (a node that dies: show its log's tail)
//!   → no cluster id anywhere: Init; one already there: reuse it (a restarted playground)
//!   → wait until every node knows the cluster and agrees on a leader
//!   → print endpoints, data directory, example commands, then a line starting "ready"
//!   → Ctrl-C / SIGTERM: stop every node (SIGTERM, SIGKILL after 10 s), exit 0
//! ```
//!
//! Every wait polls a condition against a deadline; the nodes' own logs are in
//! `<dir>/node<i>.log`. The data stays in `<dir>`, so running the playground again on it
//! brings the same cluster back (same members, same data) instead of initialising another.

//!
//! Modules: `nodes` — the node processes as one group that stops together.

pub mod nodes;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use islab_client::{Client, ClientConfig, Member, StatusResponse};
use islab_storage::DataDir;
use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;

use self::nodes::{NodeProcesses, STOP_GRACE, TAIL_LINES, describe};
use crate::Outcome;
use crate::cli::{DurabilityArg, PlaygroundArgs, WriteOut};
use crate::commands::cluster;
use crate::connect;

/// How long the nodes may take to start serving, and then to form the cluster. Generous:
/// a loaded machine may be slow, and the wait ends as soon as the condition holds.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
const FORM_DEADLINE: Duration = Duration::from_secs(60);

/// Pause between two rounds of status polling.
const POLL: Duration = Duration::from_millis(100);

/// Ctrl-C and SIGTERM, listened for from the start so that neither kills the playground
/// before it has stopped its nodes.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Resolves at the next Ctrl-C or SIGTERM; returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// What the playground found or made.
struct Ready {
    cluster_id: String,
    new_cluster: bool,
    leader: u64,
}

pub fn run(args: &PlaygroundArgs, format: WriteOut, out: &mut impl Write) -> Result<Outcome> {
    let last_port = u64::from(args.base_port) + args.nodes - 1;
    if args.base_port == 0 || last_port > u64::from(u16::MAX) {
        bail!(
            "--base-port {} leaves no room for {} nodes (ports 1 to 65535)",
            args.base_port,
            args.nodes
        );
    }
    let addrs: Vec<String> = (0..args.nodes)
        .map(|i| format!("127.0.0.1:{}", u64::from(args.base_port) + i))
        .collect();
    check_ports_free(&addrs)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating the playground directory {}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    check_dirs_free(&dir, args.nodes)?;
    let exe = std::env::current_exe().context("finding the islab executable")?;
    let extra = server_flags(args);

    let mut nodes = NodeProcesses::default();
    let result = connect::block_on(async {
        // Before any child exists: a signal from now on is ours to handle.
        let mut signals = StopSignals::install()?;
        for (i, addr) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let data = dir.join(format!("node{id}"));
            let log = dir.join(format!("node{id}.log"));
            nodes
                .nodes
                .push(nodes::spawn(&exe, id, addr, &data, log, &extra)?);
        }
        let probe = connect::probe_client(&addrs, Default::default(), Duration::from_secs(2))?;
        let ready = tokio::select! {
            r = start(&probe, &addrs, &mut nodes, args.shards) => r?,
            sig = signals.recv() => {
                eprintln!("islab playground: {sig} during startup: stopping the nodes");
                return anyhow::Ok(Outcome::Clean);
            }
        };
        print_ready(out, format, &dir, &nodes, &ready)?;
        out.flush()?;
        let sig = run_until_signal(&mut signals, &mut nodes).await;
        eprintln!(
            "islab playground: {sig}: stopping {} running nodes",
            nodes.running()
        );
        Ok(Outcome::Clean)
    });
    // Whatever happened, the nodes stop before the playground says why it ended.
    for problem in nodes.stop(STOP_GRACE) {
        eprintln!("islab playground: {problem}");
    }
    let outcome = result??;
    match format {
        WriteOut::Json => writeln!(
            out,
            "{}",
            json!({"stopped": true, "dir": dir.display().to_string()})
        )?,
        _ => writeln!(out, "stopped; the data stays in {}", dir.display())?,
    }
    Ok(outcome)
}

/// Flags passed through to every `islab server`.
fn server_flags(args: &PlaygroundArgs) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(bytes) = args.max_value_bytes {
        flags.extend(["--max-value-bytes".to_string(), bytes.to_string()]);
    }
    if let Some(d) = args.durability {
        let d = match d {
            DurabilityArg::Sync => "sync",
            DurabilityArg::Async => "async",
        };
        flags.extend(["--durability".to_string(), d.to_string()]);
    }
    flags
}

/// Refuses to start if a port is taken, naming it (the node would fail the same way, later).
fn check_ports_free(addrs: &[String]) -> Result<()> {
    for (i, addr) in addrs.iter().enumerate() {
        if let Err(e) = TcpListener::bind(addr.as_str()) {
            bail!(
                "cannot use {addr} for node {}: {e} (another playground or server running? \
                 choose another --base-port)",
                i + 1
            );
        }
    }
    Ok(())
}

/// Refuses to start on data directories another process uses (a playground already running
/// on `dir`), before anything touches them.
fn check_dirs_free(dir: &Path, nodes: u64) -> Result<()> {
    for id in 1..=nodes {
        let data = dir.join(format!("node{id}"));
        // Taking the node's lock and dropping it at once.
        DataDir::open(&data).with_context(|| {
            format!(
                "cannot start node {id}: is a playground already running on {}?",
                dir.display()
            )
        })?;
    }
    Ok(())
}

/// Waits for every node to serve, initialises the cluster (or finds the one the directory
/// already holds), and waits for it to form.
async fn start(
    probe: &Client,
    addrs: &[String],
    nodes: &mut NodeProcesses,
    shards: u32,
) -> Result<Ready> {
    let statuses = wait_serving(probe, addrs, nodes).await?;
    let existing: BTreeSet<&str> = statuses
        .iter()
        .map(|s| s.cluster_id.as_str())
        .filter(|id| !id.is_empty())
        .collect();
    let (cluster_id, new_cluster) = match existing.len() {
        0 => {
            let members = statuses.iter().map(|s| Member {
                id: s.node_id,
                addr: s.addr.clone(),
                voter: true,
            });
            let config = ClientConfig {
                deadline: FORM_DEADLINE,
                ..ClientConfig::new(addrs.iter().cloned())
            };
            let id = Client::with_config(config)?
                .admin()
                .init_sharded(&addrs[0], members, shards, islab_node::DEFAULT_REPLICATION)
                .await
                .context("initialising the cluster")?;
            (id, true)
        }
        1 => {
            let id = existing.into_iter().next().unwrap_or_default().to_string();
            check_same_members(&statuses, &id)?;
            (id, false)
        }
        _ => bail!(
            "the nodes' data directories belong to different clusters ({}): choose another --dir",
            existing.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    let deadline = Instant::now() + FORM_DEADLINE;
    let leader = cluster::wait_formed(probe, addrs, &cluster_id, deadline, || {
        nodes.check_running("while the cluster formed")
    })
    .await
    .context("waiting for the cluster to form")?;
    Ok(Ready {
        cluster_id,
        new_cluster,
        leader,
    })
}

/// Polls every node's status until all answer; fails if a node process exits meanwhile or
/// another node answers on one of the ports.
async fn wait_serving(
    probe: &Client,
    addrs: &[String],
    nodes: &mut NodeProcesses,
) -> Result<Vec<StatusResponse>> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        nodes.check_running("during startup")?;
        let mut serving = Vec::new();
        let mut waiting = Vec::new();
        for (i, (addr, status)) in cluster::statuses(probe, addrs)
            .await
            .into_iter()
            .enumerate()
        {
            let id = i as u64 + 1;
            match status {
                Ok(s) if s.node_id != id => bail!(
                    "{addr} answers as node {}, not node {id}: is another cluster using the port?",
                    s.node_id
                ),
                Ok(s) => serving.push(s),
                Err(e) => waiting.push(format!("node {id} at {addr}: {e}")),
            }
        }
        if waiting.is_empty() {
            return Ok(serving);
        }
        if Instant::now() >= deadline {
            bail!(
                "the nodes did not all serve within {STARTUP_DEADLINE:?}: {}",
                waiting.join("; ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A reused directory's cluster must be the one these nodes make up: same ids, same
/// addresses (the members' addresses are in the Raft log, so another --base-port or
/// --nodes would leave members nobody can reach).
fn check_same_members(statuses: &[StatusResponse], cluster_id: &str) -> Result<()> {
    let Some(known) = statuses
        .iter()
        .filter(|s| s.cluster_id == cluster_id)
        .map(cluster::members_of)
        .max_by_key(|m| m.len())
    else {
        return Ok(());
    };
    let recorded: BTreeSet<(u64, &str)> = known.iter().map(|m| (m.id, m.addr.as_str())).collect();
    let started: BTreeSet<(u64, &str)> = statuses
        .iter()
        .map(|s| (s.node_id, s.addr.as_str()))
        .collect();
    if recorded != started {
        let list = |set: &BTreeSet<(u64, &str)>| {
            set.iter()
                .map(|(id, addr)| format!("{id}@{addr}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        bail!(
            "the directory holds cluster {cluster_id} with members {}, but this playground \
             started {}: run it with the --nodes and --base-port it was created with, or \
             choose another --dir",
            list(&recorded),
            list(&started)
        );
    }
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM; meanwhile reports (once) any node that exits on its own.
/// The others keep serving: stopping one node by hand is a fair experiment.
async fn run_until_signal(signals: &mut StopSignals, nodes: &mut NodeProcesses) -> &'static str {
    let mut reported = BTreeSet::new();
    loop {
        tokio::select! {
            sig = signals.recv() => return sig,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for node in &mut nodes.nodes {
            if let Some(status) = node.exit_status()
                && reported.insert(node.id)
            {
                eprintln!(
                    "islab playground: node {} exited ({}); the end of {}:\n{}",
                    node.id,
                    describe(status),
                    node.log.display(),
                    node.log_tail(TAIL_LINES)
                );
            }
        }
    }
}

fn print_ready(
    out: &mut impl Write,
    format: WriteOut,
    dir: &Path,
    nodes: &NodeProcesses,
    ready: &Ready,
) -> Result<()> {
    let endpoints: Vec<&str> = nodes.nodes.iter().map(|n| n.addr.as_str()).collect();
    let endpoints = endpoints.join(",");
    if format == WriteOut::Json {
        let list: Vec<_> = nodes
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "id": n.id,
                    "addr": n.addr,
                    "pid": n.pid(),
                    "log": n.log.display().to_string(),
                })
            })
            .collect();
        let doc = json!({
            "ready": true,
            "cluster_id": ready.cluster_id,
            "new_cluster": ready.new_cluster,
            "leader_id": ready.leader,
            "dir": dir.display().to_string(),
            "endpoints": endpoints,
            "nodes": list,
        });
        writeln!(out, "{doc}")?;
        return Ok(());
    }
    let exe = invoked_as();
    writeln!(
        out,
        "islab playground: {} nodes, {} cluster {}, data in {}",
        nodes.nodes.len(),
        if ready.new_cluster { "new" } else { "existing" },
        ready.cluster_id,
        dir.display()
    )?;
    for n in &nodes.nodes {
        let leader = if n.id == ready.leader {
            "  (leader)"
        } else {
            ""
        };
        writeln!(
            out,
            "  node {}  {}  pid {}  log {}{leader}",
            n.id,
            n.addr,
            n.pid(),
            n.log.display()
        )?;
    }
    writeln!(out, "endpoints: {endpoints}")?;
    writeln!(out)?;
    writeln!(out, "try (or export ISLAB_ENDPOINTS={endpoints}):")?;
    for example in [
        "put hello world",
        "get hello",
        "shard list",
        "cluster status -w table",
        "member list",
    ] {
        writeln!(out, "  {exe} --endpoints {endpoints} {example}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "ready: Ctrl-C stops the cluster; its data stays in {} for the next playground",
        dir.display()
    )?;
    Ok(())
}

/// The name the user ran islab by, for example commands they can paste.
fn invoked_as() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| "islab".into(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: u64, port: u16, cluster: &str, members: &[(u64, u16)]) -> StatusResponse {
        StatusResponse {
            node_id: id,
            addr: format!("127.0.0.1:{port}"),
            cluster_id: cluster.into(),
            groups: vec![islab_client::GroupStatus {
                group_id: 1,
                members: members
                    .iter()
                    .map(|(id, port)| Member {
                        id: *id,
                        addr: format!("127.0.0.1:{port}"),
                        voter: true,
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_reused_directory_must_hold_the_same_members() {
        let members = [(1, 7000), (2, 7001)];
        // A follower that had not heard from the leader before the last stop knows no
        // cluster yet: still fine.
        let same = [status(1, 7000, "c", &members), status(2, 7001, "", &[])];
        check_same_members(&same, "c").unwrap();
        let moved = [
            status(1, 8000, "c", &members),
            status(2, 8001, "c", &members),
        ];
        let e = check_same_members(&moved, "c").unwrap_err().to_string();
        assert!(e.contains("1@127.0.0.1:7000, 2@127.0.0.1:7001"), "{e}");
        assert!(e.contains("--base-port"), "{e}");
        let grown = [
            status(1, 7000, "c", &members),
            status(2, 7001, "c", &members),
            status(3, 7002, "", &[]),
        ];
        assert!(check_same_members(&grown, "c").is_err());
    }

    #[test]
    fn ports_in_use_are_named() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let e = check_ports_free(std::slice::from_ref(&addr))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&addr) && e.contains("node 1"), "{e}");
    }
}
