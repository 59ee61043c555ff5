//! Failpoints: named places where a test can make a node fail on purpose.
//!
//! Built only with the `failpoints` cargo feature (`cargo build -p islab-cli --features
//! failpoints`); without it [`failpoint!`](crate::failpoint) expands to nothing, so a release
//! build pays nothing. A failpoints build of `islab server` reads the standard `FAILPOINTS`
//! environment variable at start (`FAILPOINTS='wal::before_fsync=5*off->return'`, several
//! separated by `;`); actions are those of the `fail` crate: `off`, `return`, `panic`,
//! `sleep(ms)`, `delay(ms)`, `pause`, `yield`, `print`, with `N%` and `N*` and `->` chains. In
//! such a build any panic aborts the process, so `panic` is a crash wherever it fires (tokio
//! would otherwise catch it in a task).
//!
//! | name | where | `return` means |
//! |---|---|---|
//! | `wal::before_write` | WAL writer, before a batch's `write` | the write fails with EIO |
//! | `wal::after_write` | WAL writer, after the `write`, before the fsync | the write fails with EIO |
//! | `wal::before_fsync` | WAL writer, before `fdatasync` | the fsync fails with EIO |
//! | `wal::after_fsync` | WAL writer, after `fdatasync`, before the callbacks | the fsync fails with EIO (the data is on disk but nobody hears so) |
//! | `checkpoint::before_rename` | writing a checkpoint: fsynced `.tmp`, before the rename | the checkpoint fails with EIO |
//! | `checkpoint::after_rename` | writing a checkpoint: renamed, before the directory fsync | the checkpoint fails with EIO |
//! | `snapshot::install` | a snapshot received from the leader, verified, before it is installed | the install is refused (EIO); the leader sends it again |
//! | `apply::before` | the state machine, before it applies each entry | apply fails with EIO |
//!
//! A failed WAL write or fsync stops the writer for good, which stops the node (it exits
//! non-zero); an I/O error in apply stops the group's Raft, which does too.

#[cfg(feature = "failpoints")]
#[doc(hidden)]
pub use fail;

/// Every failpoint, by name.
pub const NAMES: &[&str] = &[
    "wal::before_write",
    "wal::after_write",
    "wal::before_fsync",
    "wal::after_fsync",
    "checkpoint::before_rename",
    "checkpoint::after_rename",
    "snapshot::install",
    "apply::before",
];

/// Whether this build has failpoints.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// The error a failpoint's `return` injects: EIO, as a failing disk reports it.
pub fn injected_error(name: &str) -> std::io::Error {
    // EIO is 5 on every Unix this runs on.
    let eio = std::io::Error::from_raw_os_error(5);
    std::io::Error::other(format!("{eio}, injected by failpoint {name}"))
}

/// `fail::fail_point!` when built with the `failpoints` feature, nothing otherwise.
#[cfg(feature = "failpoints")]
#[macro_export]
macro_rules! failpoint {
    ($($t:tt)*) => { $crate::failpoints::fail::fail_point!($($t)*) };
}

/// `fail::fail_point!` when built with the `failpoints` feature, nothing otherwise.
#[cfg(not(feature = "failpoints"))]
#[macro_export]
macro_rules! failpoint {
    ($($t:tt)*) => {};
}
