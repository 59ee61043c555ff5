//! The running child: spawned from a [`Launch`], watched through its exit status and its log.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::launch::Launch;

/// What the node prints on stdout once it serves (`islab server`'s one line for scripts).
const SERVING: &str = "serving on";

/// How often exits and the log are polled while waiting.
const POLL: Duration = Duration::from_millis(20);

/// One `islab server` child. Dropping it does not stop the process: the owner decides
/// (the playground stops its nodes in order, a test kills them).
pub struct NodeProcess {
    pub id: u64,
    pub addr: String,
    pub log: PathBuf,
    /// Where this run's part of the log starts (just after its marker line).
    log_start: u64,
    child: Child,
    exited: Option<ExitStatus>,
}

/// How [`NodeProcess::stop`] ended the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself (or had already) with this status.
    Exited(ExitStatus),
    /// It was still running after the grace period and was killed.
    Killed,
}

impl NodeProcess {
    /// Starts the node described by `launch`. Returns once the process exists; see
    /// [`NodeProcess::wait_serving`] for when it serves.
    pub fn spawn(launch: &Launch) -> Result<NodeProcess, Error> {
        let id = launch.id;
        let log_error = |source| Error::Log {
            id,
            log: launch.log.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .map_err(log_error)?;
        writeln!(file, "{}", marker(id, &launch.addr)).map_err(log_error)?;
        let log_start = file.metadata().map_err(log_error)?.len();
        let stderr = file.try_clone().map_err(log_error)?;

        let mut command = Command::new(&launch.exe);
        command
            .arg("server")
            .args([
                "--id",
                &id.to_string(),
                "--listen",
                &launch.addr,
                "--data-dir",
            ])
            .arg(&launch.data_dir)
            .args(&launch.args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            // The log is a file: no colour codes in it.
            .env("NO_COLOR", "1");
        if let Some(prefix) = &launch.env_remove_prefix {
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with(prefix.as_str()) {
                    command.env_remove(name);
                }
            }
        }
        command.envs(launch.env.iter().map(|(n, v)| (n, v)));
        if launch.own_process_group {
            command.process_group(0);
        }
        if launch.die_with_parent {
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: the closure runs in the child between fork and exec and only makes two
            // async-signal-safe system calls; it allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The parent died before the request took effect.
                    if libc::getppid() != parent {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().map_err(|source| Error::Spawn {
            id,
            exe: launch.exe.clone(),
            source,
        })?;
        Ok(NodeProcess {
            id,
            addr: launch.addr.clone(),
            log: launch.log.clone(),
            log_start,
            child,
            exited: None,
        })
    }

    /// Waits up to `timeout` for the node's "serving on" line in this run's log. A node that
    /// exits first, or stays silent, is an error carrying the end of its log.
    pub fn wait_serving(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.this_run().contains(SERVING) {
                return Ok(());
            }
            if let Some(status) = self.exit_status() {
                // It may have served and stopped in between: the log decides.
                if self.this_run().contains(SERVING) {
                    return Ok(());
                }
                return Err(Error::ExitedDuringStart {
                    id: self.id,
                    status: describe(status),
                    log: self.log.clone(),
                    tail: self.log_tail(40),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::NotServing {
                    id: self.id,
                    waited: timeout,
                    log: self.log.clone(),
                    tail: self.log_tail(40),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, once it has (collecting it); `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.exited = status,
                // Already collected elsewhere (cannot happen: the child is ours alone).
                Err(_) => self.exited = Some(ExitStatus::from_raw(0)),
            }
        }
        self.exited
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal` if the process still runs.
    pub fn signal(&mut self, signal: libc::c_int) {
        if self.exit_status().is_none() {
            // SAFETY: kill(2) with the pid of a child not collected yet, so the pid cannot
            // have been reused.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, signal);
            }
        }
    }

    /// `kill -9` and collect it: no shutdown, nothing flushed beyond what the node already
    /// made durable.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        if let Some(status) = self.exited {
            return status;
        }
        let status = self.child.wait().unwrap_or(ExitStatus::from_raw(0));
        self.exited = Some(status);
        status
    }

    /// SIGTERM, then SIGKILL if the node still runs after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Stopped {
        self.signal(libc::SIGTERM);
        match self.wait_exit(grace) {
            Some(status) => Stopped::Exited(status),
            None => {
                self.kill();
                Stopped::Killed
            }
        }
    }

    /// The last `lines` lines of this run's log, each indented as `  | …`, for an error
    /// message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = match read_from(&self.log, self.log_start) {
            Ok(text) => text,
            Err(e) => return format!("  (cannot read {}: {e})", self.log.display()),
        };
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        if tail.is_empty() {
            return "  (the log is empty)".into();
        }
        tail.iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// This run's part of the log ("" if it cannot be read yet).
    fn this_run(&self) -> String {
        read_from(&self.log, self.log_start).unwrap_or_default()
    }
}

/// The line written to the log before each start.
fn marker(id: u64, addr: &str) -> String {
    format!("--- starting node {id} on {addr}")
}

fn read_from(path: &Path, offset: u64) -> io::Result<String> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// How a node process ended: `exit status 1`, `killed by signal 9`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}
