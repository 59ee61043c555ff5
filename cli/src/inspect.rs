//! The offline tools: they read a node's files directly (never through a running node, and
//! never through the WAL or checkpoint engine, whose opening would repair what they are to
//! show), with the readers of the crates that own each format.
//!
//! - `wal_dump` — `islab wal dump`: a WAL's records, read by storage's `SegmentScan`
//! - `checkpoint` — `islab checkpoint inspect`: a checkpoint's meta, keys and block checks
//! - `payload` — rendering the Raft layer's blobs (entries, votes, membership), decoded by
//!   `islab_raft::encoding`

pub mod checkpoint;
pub mod payload;
pub mod wal_dump;
