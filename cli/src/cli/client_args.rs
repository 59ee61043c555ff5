//! Arguments of the client commands: `cluster`, `member`, `shard`, `health` and the data
//! commands `put | get | del | scan`.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::values::parse_duration;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Initialise a new cluster whose voters are the nodes at `--endpoints`.
    ///
    /// Every endpoint is asked who it is (node id, advertised address); the first one is then
    /// sent Init with all of them as voters. Refused if a node is unreachable, already belongs
    /// to a cluster, or two endpoints are the same node. Waits (up to `--timeout`) until every
    /// node knows the cluster and agrees on a leader, then prints the cluster id and members.
    Init(InitArgs),

    /// Show every endpoint's status: node, cluster, durability, WAL, and per Raft group its
    /// role, leader, term, log indices, checkpoint and size.
    ///
    /// An endpoint that does not answer is shown as unreachable, and the exit status is 1.
    Status,
}

/// `islab cluster init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Succeed without changing anything if the nodes already belong to one cluster (for a
    /// one-shot init job that runs again on every start). Nodes of two different clusters,
    /// or an unreachable node of a new cluster, are still errors.
    #[arg(long)]
    pub if_needed: bool,

    /// Shards (Raft groups) the key space is split into; fixed for the life of the cluster.
    #[arg(long, default_value_t = islab_node::DEFAULT_SHARDS, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub shards: u32,

    /// Replicas per shard (capped by the number of nodes).
    #[arg(long, default_value_t = islab_node::DEFAULT_REPLICATION, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication: u32,
}

#[derive(Debug, Subcommand)]
pub enum ShardCommand {
    /// Every shard: its slot range, replicas, leader, keys, bytes, applied ops/s; then the
    /// map's epoch and how evenly keys, bytes, ops and leaders spread (entropy, 1 = even).
    List,

    /// Make `node` the leader of `shard` (it must hold a voting replica); returns once it
    /// leads. The cluster's own balancing may move it again later.
    TransferLeader {
        /// The shard's id (see `islab shard list`).
        shard: u64,
        /// The node to lead it.
        node: u64,
    },
}

/// `islab health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The node to ask. [default: the first of --endpoints]
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Option<String>,

    /// The gRPC service whose status to ask for (e.g. islab.v1.Kv). [default: the whole server]
    #[arg(long, default_value = "")]
    pub service: String,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List the members (voters and learners) and the leader.
    List,

    /// Add a node as a learner; returns once it has caught up with the leader's log.
    Add {
        /// The new node's id (as given to its `islab server --id`).
        id: u64,
        /// host:port the other nodes and clients reach it at.
        addr: String,
    },

    /// Make a caught-up learner a voter.
    Promote {
        /// The learner's id.
        id: u64,
    },

    /// Remove a node (voter or learner) from the cluster. Its shard replicas move to the
    /// other nodes first, so this can take a while (default --timeout: 5 minutes).
    Remove {
        /// The node's id.
        id: u64,
    },
}

/// Read consistency of `get` and `scan`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    /// Sees every write acknowledged before the read started (read index on the leader).
    #[default]
    Linearizable,
    /// Served from the replica that answers; cheaper, may be stale.
    Serializable,
}

/// `islab put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key (any bytes the shell can pass; not empty, at most 4 KiB).
    pub key: OsString,

    /// The value.
    #[arg(allow_hyphen_values = true)]
    pub value: OsString,

    /// Expire the key after this long (e.g. 500ms, 10s, 5m, 1h30m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,
}

/// `islab get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    pub key: OsString,

    /// How fresh the read must be.
    #[arg(long, value_enum, default_value_t)]
    pub consistency: ConsistencyArg,
}

/// `islab del`.
#[derive(Debug, Args)]
pub struct DelArgs {
    /// The key.
    pub key: OsString,
}

/// `islab scan`: a prefix, a range, or (with neither) every key.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Only keys that begin with this prefix.
    #[arg(long, conflicts_with_all = ["start", "end"])]
    pub prefix: Option<OsString>,

    /// First key of the range (included). [default: the first key]
    #[arg(long)]
    pub start: Option<OsString>,

    /// End of the range (excluded). [default: no end]
    #[arg(long)]
    pub end: Option<OsString>,

    /// Print at most N keys (0: all of them).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: usize,

    /// How fresh the read must be (each page of a long scan is its own read).
    #[arg(long, value_enum, default_value_t)]
    pub consistency: ConsistencyArg,
}
