//! The playground's node processes: `islab server` children that stop when asked and never
//! outlive the playground.
//!
//! Each child runs in its own process group, so a Ctrl-C in the terminal reaches only the
//! playground, which then stops the nodes in order (SIGTERM, wait, SIGKILL after a grace
//! period). Each is also told by the kernel to receive SIGTERM if the playground dies
//! (`PR_SET_PDEATHSIG`), so a playground killed with SIGKILL does not leave nodes behind.
//! [`NodeProcesses`] is the guard: dropped without [`NodeProcesses::stop`], it stops them.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long a node may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Lines of a node's log shown when it dies.
const TAIL_LINES: usize = 20;

/// One `islab server` child.
pub struct NodeProcess {
    pub id: u64,
    /// The address it listens on (and advertises).
    pub addr: String,
    pub log: PathBuf,
    child: Child,
    exited: Option<ExitStatus>,
}

impl NodeProcess {
    /// Starts `exe server --id … --listen addr --data-dir data_dir extra…`, stdout and
    /// stderr appended to `log` (after a line marking the start, so the logs of earlier
    /// playgrounds on the same directory stay). `ISLAB_*` variables of the playground's
    /// environment are not passed on: the flags say everything about the node.
    pub fn spawn(
        exe: &Path,
        id: u64,
        addr: &str,
        data_dir: &Path,
        log: PathBuf,
        extra: &[String],
    ) -> Result<NodeProcess> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening the log {}", log.display()))?;
        writeln!(file, "--- islab playground: starting node {id} on {addr}")
            .with_context(|| format!("writing the log {}", log.display()))?;
        let stderr = file
            .try_clone()
            .with_context(|| format!("opening the log {}", log.display()))?;
        let mut command = Command::new(exe);
        command
            .arg("server")
            .args(["--id", &id.to_string(), "--listen", addr, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .process_group(0)
            // The log is a file: no colour codes in it.
            .env("NO_COLOR", "1");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ISLAB_") {
                command.env_remove(name);
            }
        }
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the child between fork and exec and only makes two
        // async-signal-safe system calls; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The playground died before the request took effect.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting node {id} ({})", exe.display()))?;
        Ok(NodeProcess {
            id,
            addr: addr.to_string(),
            log,
            child,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, once it has (collecting it); `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.exited = status,
                // Not our child any more (cannot happen) or already collected: treat as gone.
                Err(_) => self.exited = Some(ExitStatus::from_raw(0)),
            }
        }
        self.exited
    }

    fn signal(&mut self, signal: libc::c_int) {
        if self.exit_status().is_none() {
            // SAFETY: kill(2) with the pid of a child we have not collected yet, so the pid
            // cannot have been reused.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, signal);
            }
        }
    }

    /// The last lines of the node's log (of this start), indented, for an error message.
    pub fn log_tail(&self) -> String {
        let text = match std::fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return format!("  (cannot read {}: {e})", self.log.display()),
        };
        let marker = format!("--- islab playground: starting node {}", self.id);
        let this_run = text.rfind(&marker).map_or(&text[..], |at| &text[at..]);
        let lines: Vec<&str> = this_run.lines().skip(1).collect();
        let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        if tail.is_empty() {
            return "  (the log is empty)".into();
        }
        tail.iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Exit status 0, or SIGTERM's default action (a node stopped before it had installed its
/// handler, early in its start).
fn stopped_cleanly(status: ExitStatus) -> bool {
    status.success() || status.signal() == Some(libc::SIGTERM)
}

/// How a node process ended.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// The playground's nodes; stops them when dropped.
#[derive(Default)]
pub struct NodeProcesses {
    pub nodes: Vec<NodeProcess>,
}

impl NodeProcesses {
    /// How many nodes are still running.
    pub fn running(&mut self) -> usize {
        self.nodes
            .iter_mut()
            .map(|n| usize::from(n.exit_status().is_none()))
            .sum()
    }

    /// `Err` naming the first node that has exited, with the end of its log.
    pub fn check_running(&mut self, when: &str) -> Result<()> {
        for node in &mut self.nodes {
            if let Some(status) = node.exit_status() {
                anyhow::bail!(
                    "node {} exited {when} ({}); the end of {}:\n{}",
                    node.id,
                    describe(status),
                    node.log.display(),
                    node.log_tail()
                );
            }
        }
        Ok(())
    }

    /// Stops every node still running: SIGTERM, then SIGKILL for any still there after
    /// `grace`. Returns a line per node that did not stop cleanly.
    pub fn stop(&mut self, grace: Duration) -> Vec<String> {
        let running: Vec<u64> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.exit_status().is_none().then_some(n.id))
            .collect();
        for node in &mut self.nodes {
            node.signal(libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while self.nodes.iter_mut().any(|n| n.exit_status().is_none()) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut problems = Vec::new();
        for node in &mut self.nodes {
            if node.exit_status().is_none() {
                node.signal(libc::SIGKILL);
                let _ = node.child.wait().map(|s| node.exited = Some(s));
                problems.push(format!(
                    "node {} did not stop within {grace:?} of SIGTERM and was killed",
                    node.id
                ));
            } else if running.contains(&node.id)
                && let Some(status) = node.exited.filter(|s| !stopped_cleanly(*s))
            {
                problems.push(format!(
                    "node {} ended with {} (see {})",
                    node.id,
                    describe(status),
                    node.log.display()
                ));
            }
        }
        problems
    }
}

impl Drop for NodeProcesses {
    fn drop(&mut self) {
        for problem in self.stop(STOP_GRACE) {
            eprintln!("islab playground: {problem}");
        }
    }
}
