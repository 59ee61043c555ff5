//! One `islab server` process of a test: an [`islab_process::NodeProcess`] (the same child
//! the playground runs) under the settings every test wants, restartable on the same data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use islab_process::{Launch, Stopped};

use crate::{free_port, islab_binary};

/// A node process: its id, port and data directory outlive the process, so it can be killed
/// and started again on the same data.
pub struct NodeProcess {
    pub id: u64,
    pub port: u16,
    pub data_dir: PathBuf,
    log: PathBuf,
    extra_args: Vec<String>,
    /// The binary to run instead of [`islab_binary`] (a failpoints build, say).
    binary: Option<PathBuf>,
    /// Extra environment for the next start (`FAILPOINTS`, say).
    env: Vec<(String, String)>,
    child: Option<islab_process::NodeProcess>,
}

impl NodeProcess {
    /// A node that is not started yet; `dir` holds its data directory and log.
    pub fn new(id: u64, dir: &Path, extra_args: &[&str]) -> NodeProcess {
        NodeProcess {
            id,
            port: free_port(),
            data_dir: dir.join(format!("node{id}")),
            log: dir.join(format!("node{id}.log")),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            binary: None,
            env: Vec::new(),
            child: None,
        }
    }

    /// Moves the data directory (before the first start): `dir/node<id>`. The log stays.
    pub fn set_data_dir_in(&mut self, dir: &Path) {
        self.data_dir = dir.join(format!("node{}", self.id));
    }

    /// Adds `islab server` flags for the next starts.
    pub fn push_args(&mut self, args: &[&str]) {
        self.extra_args.extend(args.iter().map(|s| s.to_string()));
    }

    /// Runs `binary` instead of the default `islab` from the next start on.
    pub fn set_binary(&mut self, binary: PathBuf) {
        self.binary = Some(binary);
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for the next starts.
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.env.retain(|(n, _)| n != name);
        if let Some(v) = value {
            self.env.push((name.to_string(), v.to_string()));
        }
    }

    /// Sets (actions "off": clears) failpoint `name` in the running node, through
    /// `Admin.SetFailpoint` (a failpoints build only; others answer UNIMPLEMENTED).
    pub async fn set_failpoint(&self, name: &str, actions: &str) -> Result<(), tonic::Status> {
        let mut admin =
            islab_proto::v1::admin_client::AdminClient::connect(format!("http://{}", self.addr()))
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        admin
            .set_failpoint(islab_proto::v1::SetFailpointRequest {
                name: name.to_string(),
                actions: actions.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Sets failpoint `name` to `panic` in the running node. Under load the failpoint may fire,
    /// and the node abort, before the answer leaves it: no answer is not an error here;
    /// [`NodeProcess::wait_failpoint_crash`] then proves the crash.
    pub async fn set_failpoint_panic(&self, name: &str) {
        if let Err(e) = self.set_failpoint(name, "panic").await {
            tracing::info!(%e, name, "no answer to the set: the node may have crashed first");
        }
    }

    /// Waits up to `within` until the node crashed at failpoint `name` set to `panic`: it exited
    /// non-zero and its log holds the fail crate's panic message (not just the name, which the
    /// set call logs too). Blocks the thread (from async code: `block_in_place`).
    pub fn wait_failpoint_crash(&mut self, name: &str, within: Duration) {
        let id = self.id;
        let status = self
            .wait_exit(within)
            .unwrap_or_else(|| panic!("node {id} still runs {within:?} after {name} was set"));
        assert!(!status.success(), "{name}: node {id} exited with {status}");
        let tail = self.log_tail();
        assert!(
            tail.contains(&format!("failpoint {name} panic")),
            "{name}: node {id}'s crash is not the failpoint's:\n{tail}"
        );
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its exit status (the
    /// process is then reaped: [`NodeProcess::start`] may run it again), or `None` if it still
    /// runs (or was not running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.wait_exit(timeout)?;
        self.child = None;
        Some(status)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id while the node runs (to signal it, e.g. SIGSTOP/SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.exit_status().is_none())
    }

    /// Starts the process and waits (30 s) for its "serving" line; a node that exits instead
    /// (a port taken meanwhile by another process, say) fails the test with its log.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let binary = self.binary.clone().unwrap_or_else(islab_binary);
        let mut launch = Launch::new(binary, self.id, self.addr(), &self.data_dir, &self.log);
        // Failover takes the leader lease (the maximum election timeout, 2 × 500 ms) plus at
        // most one more election timeout: well inside the 5 s the failover test allows.
        launch.args = ["--heartbeat-ms", "100", "--election-timeout-ms", "500"]
            .into_iter()
            .map(String::from)
            .chain(self.extra_args.iter().cloned())
            .collect();
        launch
            .env("RUST_LOG", "info,openraft=warn")
            // The default reserve (256 MiB) would refuse every write on a machine whose /tmp
            // is nearly full; tests that are about the reserve set the flag themselves.
            .env("ISLAB_MIN_FREE_DISK_BYTES", (32u64 << 20).to_string())
            // A crash's message stays at the end of the log (`log_tail`), not under a
            // backtrace the test runner's own RUST_BACKTRACE would add.
            .env("RUST_BACKTRACE", "0");
        for (name, value) in &self.env {
            launch.env(name, value);
        }
        let mut child = islab_process::NodeProcess::spawn(&launch).expect("spawn islab server");
        if let Err(e) = child.wait_serving(Duration::from_secs(30)) {
            child.kill();
            panic!("{e}");
        }
        self.child = Some(child);
    }

    /// `kill -9`: no shutdown, no flush beyond what the node already made durable.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// SIGTERM and wait (30 s) for an orderly exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        match c.stop(Duration::from_secs(30)) {
            Stopped::Exited(status) => status.success(),
            Stopped::Killed => false,
        }
    }

    /// Where the running node serves `/metrics` (started with `--metrics-listen`): the address
    /// its last start printed, so `127.0.0.1:0` (any free port) works.
    pub fn metrics_addr(&self) -> Option<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains(" metrics on http://"))?;
        let url = line.split(" metrics on http://").nth(1)?;
        Some(url.trim_end_matches("/metrics").to_string())
    }

    /// Whether the node's whole log (every run on this data directory) contains `text`.
    pub fn log_contains(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(text)
    }

    /// The last lines of the node's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
