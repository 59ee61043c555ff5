//! One `islab server` child process, as both `islab playground` and the cluster tests run it.
//!
//! A [`Launch`] says how to start a node (binary, id, address, data directory, log file, extra
//! flags and environment); [`NodeProcess::spawn`] starts it with stdout and stderr appended to
//! the log after a marker line, so a log kept across restarts still shows where each run
//! begins, and [`NodeProcess::wait_serving`] waits for the node's one "serving on" line in
//! this run's part of the log. Stopping is SIGTERM, a grace period, then SIGKILL
//! ([`NodeProcess::stop`]); a test's `kill -9` is [`NodeProcess::kill`].
//!
//! The playground additionally puts each node in its own process group (a Ctrl-C reaches
//! only the playground, which stops the nodes in order) and asks the kernel to send the node
//! SIGTERM when the playground dies (`PR_SET_PDEATHSIG`); tests leave both off, since a test
//! thread that spawned a node may end before the test does.
//!
//! Modules:
//! - `error` — [`Error`], the crate's one error type
//! - `launch` — [`Launch`], what to start
//! - `node_process` — [`NodeProcess`], the running child

mod error;
mod launch;
mod node_process;

pub use crate::error::Error;
pub use crate::launch::Launch;
pub use crate::node_process::{NodeProcess, Stopped, describe};
