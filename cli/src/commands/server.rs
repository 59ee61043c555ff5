//! `islab server`: one node in the foreground.
//!
//! Settings are layered flags > `ISLAB_*` env (clap reads both) > `--config` TOML file >
//! defaults, then validated once by the node. Signals are handled only here: Ctrl-C or SIGTERM
//! stops the node in order (stop accepting, shut the Raft groups down, flush the WAL).

use std::path::Path;

use anyhow::{Context, Result};
use islab_node::{Node, NodeConfig};
use islab_storage::{Durability, RecoveryMode};

use crate::Outcome;
use crate::cli::{DurabilityArg, LogFormat, RecoveryArg, ServerArgs};

/// Builds the node's configuration from the layers.
pub fn config(args: &ServerArgs) -> Result<NodeConfig> {
    let mut c = match &args.config {
        Some(path) => read_file(path)?,
        None => NodeConfig::default(),
    };
    if let Some(id) = args.id {
        c.id = id;
    }
    if let Some(d) = &args.data_dir {
        c.data_dir = d.clone();
    }
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if let Some(m) = args.metrics_listen {
        c.metrics_listen = Some(m);
    }
    if let Some(a) = &args.advertise {
        c.advertise = Some(a.clone());
    }
    c.peer_address_map
        .extend(args.peer_address_map.iter().cloned());
    if let Some(d) = args.durability {
        c.wal.durability = match d {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Async => Durability::Async,
        };
    }
    if let Some(r) = args.wal_recovery {
        c.wal.recovery = match r {
            RecoveryArg::TolerateTailCorruption => RecoveryMode::TolerateTailCorruption,
            RecoveryArg::TolerateCorruption => RecoveryMode::TolerateCorruption,
        };
    }
    if let Some(v) = args.max_value_bytes {
        c.limits.max_value_bytes = v;
    }
    if let Some(b) = args.min_free_disk_bytes {
        c.limits.min_free_disk_bytes = b;
    }
    if let Some(h) = args.heartbeat_ms {
        c.raft.heartbeat_ms = h;
    }
    if let Some(e) = args.election_timeout_ms {
        c.raft.election_timeout_min_ms = e;
        c.raft.election_timeout_max_ms = 2 * e;
    }
    if let Some(n) = args.snapshot_after_entries {
        c.raft.snapshot_after_entries = n;
    }
    if let Some(n) = args.keep_entries_after_snapshot {
        c.raft.keep_entries_after_snapshot = n;
    }
    if let Some(n) = args.wal_budget_bytes {
        c.raft.wal_budget_bytes = n;
    }
    if let Some(n) = args.wal_segment_bytes {
        c.wal.segment_size = n;
    }
    if let Some(n) = args.gather_max_requests {
        c.gather.max_requests = n;
    }
    if let Some(n) = args.gather_max_in_flight {
        c.gather.max_in_flight = n;
    }
    c.validate()?;
    Ok(c)
}

fn read_file(path: &Path) -> Result<NodeConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

pub fn run(args: ServerArgs) -> Result<Outcome> {
    let config = config(&args)?;
    #[cfg(feature = "failpoints")]
    let _failpoints = failpoints_setup();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("islab")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut node = Node::start(config).await?;
        // The metrics address first, so that whoever waits for "serving on" finds it too.
        if let Some(at) = node.metrics_addr() {
            println!("islab node {} metrics on http://{at}/metrics", node.id());
        }
        // One line on stdout that scripts (and tests) can wait for.
        println!(
            "islab node {} serving on {} (advertised as {})",
            node.id(),
            node.local_addr(),
            node.advertise_addr()
        );
        tokio::select! {
            r = node.stopped() => {
                r?;
                anyhow::bail!("the server stopped unexpectedly");
            }
            s = shutdown_signal() => s?,
        }
        tracing::info!("shutting down");
        node.shutdown().await?;
        Ok(Outcome::Clean)
    })
}

/// A failpoints build (`--features failpoints`, see `islab_storage::failpoints`): sets the
/// failpoints `FAILPOINTS` names (`name=actions;…`; a malformed value stops the server), and
/// makes every panic abort the process, so a failpoint's `panic` is a crash wherever it fires
/// rather than a task failure tokio would catch and the node might outlive.
#[cfg(feature = "failpoints")]
fn failpoints_setup() -> fail::FailScenario<'static> {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let scenario = fail::FailScenario::setup();
    let active = fail::list();
    if !active.is_empty() {
        tracing::warn!(failpoints = ?active, "failpoints set from FAILPOINTS");
    }
    scenario
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Server logs go to stderr, text or JSON, filtered by `RUST_LOG` (default: info).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(argv: &[&str]) -> ServerArgs {
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Server(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "id = 7\ndata-dir = \"/from/file\"\nmetrics-listen = \"127.0.0.1:9379\"\n[wal]\ndurability = \"async\"\n[limits]\nmax-value-bytes = 100\n",
        )
        .unwrap();
        let c = config(&args(&[
            "islab",
            "server",
            "--config",
            file.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!((c.id, c.wal.durability), (7, Durability::Async));
        assert_eq!(c.limits.max_value_bytes, 100);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9379".parse().unwrap()));
        let c = config(&args(&[
            "islab",
            "server",
            "--config",
            file.to_str().unwrap(),
            "--id",
            "9",
            "--durability",
            "sync",
            "--metrics-listen",
            "0.0.0.0:9100",
        ]))
        .unwrap();
        assert_eq!((c.id, c.wal.durability), (9, Durability::Sync));
        assert_eq!(c.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
        assert_eq!(c.data_dir, std::path::PathBuf::from("/from/file"));
    }

    #[test]
    fn bad_settings_are_named() {
        let e = config(&args(&["islab", "server", "--id", "0"])).unwrap_err();
        assert!(e.to_string().contains("id"), "{e}");
    }
}
