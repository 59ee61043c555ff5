//! The one error type of `islab-node`, and its one conversion to a gRPC status.

use std::path::PathBuf;

use tonic::{Code, Status};

/// Everything that can go wrong in a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),

    #[error(transparent)]
    Storage(#[from] islab_storage::Error),

    /// A failure of the Raft layer that is not an answer to a client (see the `From` below).
    #[error(transparent)]
    Raft(islab_raft::Error),

    #[error("data directory {dir} belongs to node {found}, not node {configured}")]
    WrongNode {
        dir: PathBuf,
        found: u64,
        configured: u64,
    },

    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// Not the leader; `leader` is its address when known.
    #[error("not the leader{}", leader.as_ref().map(|l| format!(" (leader: {l})")).unwrap_or_default())]
    NotLeader { leader: Option<String> },

    #[error("{0}")]
    InvalidArgument(String),

    #[error("{0}")]
    TooLarge(String),

    #[error("{0}")]
    Rejected(String),

    /// The data disk has less free space than the node's reserve: writes wait for space.
    #[error("{0}")]
    NoSpace(String),

    #[error("{0}")]
    Unavailable(String),

    #[error("this node belongs to cluster {ours}, not {theirs}")]
    WrongCluster { ours: String, theirs: String },

    #[error("no group {0} on this node")]
    NoSuchGroup(u64),

    /// The request was routed with an older shard map than this node's; `map` is the newer
    /// one, returned to the client.
    #[error("shard map epoch {theirs} is stale: this node has epoch {}", map.epoch)]
    StaleEpoch {
        theirs: u64,
        map: Box<islab_proto::v1::ShardMap>,
    },

    #[error("internal error: {0}")]
    Internal(String),
}

/// The Raft layer's answers, as the node answers its clients: not the leader (with the
/// leader's address), retryable, refused; storage and start-up failures stay `Raft`.
impl From<islab_raft::Error> for Error {
    fn from(e: islab_raft::Error) -> Error {
        use islab_raft::Error as R;
        match e {
            R::NotLeader { leader, .. } => Error::NotLeader { leader },
            R::LeaseExpired { .. } | R::Unavailable { .. } | R::Stopped { .. } => {
                Error::Unavailable(e.to_string())
            }
            R::MembershipRefused { reason, .. } => Error::Rejected(reason),
            R::AlreadyInitialised { reason, .. } => {
                Error::Rejected(format!("already initialised: {reason}"))
            }
            R::Config(reason) => Error::Config(format!("raft: {reason}")),
            other => Error::Raft(other),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match &e {
            Error::InvalidArgument(_) | Error::Config(_) => Code::InvalidArgument,
            Error::TooLarge(_) | Error::NoSpace(_) => Code::ResourceExhausted,
            Error::Rejected(_) | Error::WrongCluster { .. } | Error::StaleEpoch { .. } => {
                Code::FailedPrecondition
            }
            Error::NotLeader { .. } | Error::Unavailable(_) => Code::Unavailable,
            Error::NoSuchGroup(_) => Code::NotFound,
            _ => Code::Internal,
        };
        let mut status = Status::new(code, e.to_string());
        if let Error::NoSpace(_) = &e {
            status.metadata_mut().insert(
                islab_proto::ERROR_METADATA,
                tonic::metadata::MetadataValue::from_static(islab_proto::ERROR_NO_SPACE),
            );
        }
        if let Error::StaleEpoch { map, .. } = &e {
            let encoded = prost::Message::encode_to_vec(map.as_ref());
            status.metadata_mut().insert_bin(
                islab_proto::SHARD_MAP_METADATA,
                tonic::metadata::MetadataValue::from_bytes(&encoded),
            );
        }
        if let Error::NotLeader {
            leader: Some(leader),
        } = &e
            && let Ok(v) = leader.parse()
        {
            status
                .metadata_mut()
                .insert(islab_proto::LEADER_METADATA, v);
        }
        status
    }
}
