//! `islab`: the one binary of IsLabDB.
//!
//! `main` parses the command line, runs one command and turns its outcome into the exit status
//! (`--help` lists them): 0 success, 1 error, 2 damage found by an inspection command. Errors
//! go to stderr; a closed stdout (`islab wal dump | head`) ends the command quietly.
//!
//! # Layout
//!
//! - `cli` — the clap types: global flags, the command list, each group's arguments.
//! - `commands` — the commands that run a node or talk to one (`server`, `cluster`, `member`,
//!   `shard`, `put|get|del|scan`, `health`).
//! - `inspect` — the offline tools (`wal dump`, `checkpoint inspect`) and payload rendering.
//! - `bench` — `islab bench`: the load generator (workload, tally, report, target).
//! - `playground` — `islab playground`: a local cluster of node processes.
//! - `connect` — the client commands' runtime and SDK client.
//! - `show` — bytes as text or JSON; `table` — lining up `-w table` output.

mod bench;
mod cli;
mod commands;
mod connect;
mod inspect;
mod playground;
mod show;
mod table;

use std::io::{self, BufWriter, Write};

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{CheckpointCommand, Cli, Command, WalCommand};
use crate::commands::{cluster, health, kv, member, server, shard};
use crate::inspect::{checkpoint, wal_dump};

/// mimalloc instead of glibc malloc: the apply path allocates and frees a value per write, and
/// glibc's free lists were half of its profile (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How a command that ran to completion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    /// The command did its job and found damage (exit status 2).
    Damaged,
}

const EXIT_ERROR: u8 = 1;
const EXIT_DAMAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // `--help` and `--version` arrive here too, as "errors" printed to stdout.
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Command::Server(args) = &cli.command {
        server::init_logging(args.log_format);
    } else {
        init_logging();
    }
    match run(cli) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Damaged) => ExitCode::from(EXIT_DAMAGE),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("islab: {}", message(&e));
            ExitCode::from(exit_status(&e))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let format = cli.global.write_out;
    let mut out = BufWriter::new(io::stdout().lock());
    let global = &cli.global;
    let outcome = match cli.command {
        Command::Server(args) => server::run(*args)?,
        Command::Wal(WalCommand::Dump(args)) => wal_dump::run(&args, format, &mut out)?,
        Command::Checkpoint(CheckpointCommand::Inspect(args)) => {
            checkpoint::run(&args, format, &mut out)?
        }
        Command::Bench(args) => bench::run(&args, global, format, &mut out)?,
        Command::Playground(args) => playground::run(&args, format, &mut out)?,
        Command::Health(args) => health::run(&args, global, format, &mut out)?,
        Command::Cluster(command) => cluster::run(&command, global, format, &mut out)?,
        Command::Member(command) => member::run(&command, global, format, &mut out)?,
        Command::Shard(command) => shard::run(&command, global, format, &mut out)?,
        Command::Put(args) => kv::put(&args, global, format, &mut out)?,
        Command::Get(args) => kv::get(&args, global, format, &mut out)?,
        Command::Del(args) => kv::del(&args, global, format, &mut out)?,
        Command::Scan(args) => kv::scan(&args, global, format, &mut out)?,
    };
    out.flush()?;
    Ok(outcome)
}

/// The error and its causes, `: `-separated, leaving out a cause whose text its parent already
/// ends with (storage's errors print their source themselves).
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.ends_with(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Corruption found on the way to an answer (a checkpoint whose header is damaged, say) is
/// damage, like the damage a dump reports; anything else is an error.
fn exit_status(e: &anyhow::Error) -> u8 {
    let corrupt = e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<islab_storage::Error>(),
            Some(islab_storage::Error::Corrupt { .. })
        )
    });
    if corrupt { EXIT_DAMAGE } else { EXIT_ERROR }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings and errors).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}
