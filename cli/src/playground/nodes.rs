//! The playground's node processes: `islab server` children (an [`islab_process::NodeProcess`]
//! each) that stop when asked and never outlive the playground.
//!
//! Each child runs in its own process group, so a Ctrl-C in the terminal reaches only the
//! playground, which then stops the nodes in order (SIGTERM, wait, SIGKILL after a grace
//! period). Each is also told by the kernel to receive SIGTERM if the playground dies
//! (`PR_SET_PDEATHSIG`), so a playground killed with SIGKILL does not leave nodes behind.
//! [`NodeProcesses`] is the guard: dropped without [`NodeProcesses::stop`], it stops them.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Result;
use islab_process::Launch;
pub use islab_process::{NodeProcess, describe};

/// How long a node may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Lines of a node's log shown when it dies.
pub const TAIL_LINES: usize = 20;

/// Starts `exe server --id … --listen addr --data-dir data_dir extra…` as a playground node:
/// its own process group, SIGTERM when the playground dies, stdout and stderr appended to
/// `log` (after a line marking the start, so the logs of earlier playgrounds on the same
/// directory stay). `ISLAB_*` variables of the playground's environment are not passed on:
/// the flags say everything about the node.
pub fn spawn(
    exe: &Path,
    id: u64,
    addr: &str,
    data_dir: &Path,
    log: PathBuf,
    extra: &[String],
) -> Result<NodeProcess> {
    let mut launch = Launch::new(exe, id, addr, data_dir, log);
    launch.args = extra.to_vec();
    launch.env_remove_prefix = Some("ISLAB_".into());
    launch.own_process_group = true;
    launch.die_with_parent = true;
    Ok(NodeProcess::spawn(&launch)?)
}

/// Exit status 0, or SIGTERM's default action (a node stopped before it had installed its
/// handler, early in its start).
fn stopped_cleanly(status: ExitStatus) -> bool {
    status.success() || status.signal() == Some(libc::SIGTERM)
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
                    node.log_tail(TAIL_LINES)
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
                node.kill();
                problems.push(format!(
                    "node {} did not stop within {grace:?} of SIGTERM and was killed",
                    node.id
                ));
            } else if running.contains(&node.id)
                && let Some(status) = node.exit_status().filter(|s| !stopped_cleanly(*s))
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
