//! The one error type of `islab-process`.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a node process could not be started or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log file could not be opened or written.
    #[error("node {id}: cannot write its log {}: {source}", log.display())]
    Log {
        id: u64,
        log: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The binary could not be started.
    #[error("starting node {id} ({}): {source}", exe.display())]
    Spawn {
        id: u64,
        exe: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The node ended before it served; `tail` is the end of this run's log.
    #[error("node {id} exited during start ({status}); the end of {}:\n{tail}", log.display())]
    ExitedDuringStart {
        id: u64,
        status: String,
        log: PathBuf,
        tail: String,
    },

    /// The node did not print its "serving on" line in time.
    #[error("node {id} did not serve within {waited:?}; the end of {}:\n{tail}", log.display())]
    NotServing {
        id: u64,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
}
