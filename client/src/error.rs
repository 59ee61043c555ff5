//! The SDK's one error type, and the single place where a gRPC `Status` becomes an [`Error`].
//!
//! The server promises that its status codes mean what they say (DESIGN.md, "Interfaces"), so
//! the mapping is a table: a bad request is [`Error::InvalidArgument`], an over-size one
//! [`Error::TooLarge`], a refused one (failed CAS in a batch, cluster not initialised)
//! [`Error::Rejected`]. Those are never retried: asking again gets the same answer. Statuses
//! that say "not now" (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED) and failures of the
//! connection itself are retried by the call loop until the call's deadline, and only surface
//! as [`Error::Timeout`] / [`Error::Unavailable`] carrying the last thing that went wrong.

use std::time::Duration;

use tonic::{Code, Status};

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything an SDK call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed: an empty key, a zero TTL, a bad member id (INVALID_ARGUMENT).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A key, value or batch is over the server's limits (RESOURCE_EXHAUSTED).
    #[error("too large: {0}")]
    TooLarge(String),
    /// The node's data disk has less free space than its reserve, so it refuses writes until
    /// space is freed; reads still work (RESOURCE_EXHAUSTED marked `islab-error: no-space`).
    #[error("no space: {0}")]
    NoSpace(String),
    /// The server refused the request in the cluster's current state: a batch whose
    /// compare-and-swap failed, a cluster that is not initialised, an init of a node that
    /// already belongs to a cluster (FAILED_PRECONDITION).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The call used up [`ClientConfig::max_attempts`](crate::ClientConfig::max_attempts)
    /// before its deadline without any endpoint serving it.
    #[error("no endpoint served the call in {attempts} attempts; last error: {last}")]
    Unavailable {
        /// Attempts made, redirects included.
        attempts: u32,
        /// The last error seen, prefixed by the endpoint that gave it.
        last: String,
    },
    /// The call's deadline passed while retrying.
    #[error("gave up after {after:?} and {attempts} attempts; last error: {last}")]
    Timeout {
        /// Time from the start of the call to giving up.
        after: Duration,
        /// Attempts made, redirects included.
        attempts: u32,
        /// The last error seen, prefixed by the endpoint that gave it.
        last: String,
    },
    /// An endpoint is not a usable `host:port` (or `http://host:port`).
    #[error("invalid endpoint {0}")]
    InvalidEndpoint(String),
    /// The [`ClientConfig`](crate::ClientConfig) cannot work (no endpoints, zero timeouts, …).
    #[error("invalid client config: {0}")]
    InvalidConfig(String),
    /// The server answered something the SDK cannot use (for instance a scan page that says
    /// there is more but does not say where to continue).
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// Any other gRPC status (NOT_FOUND, INTERNAL, UNIMPLEMENTED, PERMISSION_DENIED, …).
    #[error("server error {code:?}: {message}")]
    Server {
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
}

impl Error {
    /// Whether the same call may succeed if it is made again later: true for
    /// [`Error::Timeout`] and [`Error::Unavailable`] (the cluster may have a leader by then),
    /// [`Error::NoSpace`] (once space is freed) and for a [`Error::Server`] whose code is
    /// transient; false for errors about the
    /// request itself, which will be refused again.
    ///
    /// The SDK has already retried transient failures up to the call's deadline before
    /// returning any of these.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Timeout { .. } | Error::NoSpace(_) => true,
            Error::Server { code, .. } => is_transient_code(*code),
            Error::InvalidArgument(_)
            | Error::TooLarge(_)
            | Error::Rejected(_)
            | Error::InvalidEndpoint(_)
            | Error::InvalidConfig(_)
            | Error::Protocol(_) => false,
        }
    }

    /// Converts a status that is final for this call (see [`is_retryable_status`]).
    pub(crate) fn from_status(status: &Status) -> Error {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => Error::InvalidArgument(message),
            Code::ResourceExhausted
                if status
                    .metadata()
                    .get(islab_proto::ERROR_METADATA)
                    .is_some_and(|v| v == islab_proto::ERROR_NO_SPACE) =>
            {
                Error::NoSpace(message)
            }
            Code::ResourceExhausted => Error::TooLarge(message),
            Code::FailedPrecondition => Error::Rejected(message),
            code => Error::Server { code, message },
        }
    }
}

/// Codes that mean "not now": the request may succeed on another node or a moment later.
fn is_transient_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled
    )
}

/// Whether the call loop should try again after `status`.
///
/// A status built by the client's own transport (it carries the underlying error as its
/// `source`: a refused connection, a reset stream) is always worth retrying: the request may
/// never have reached a server. Writes are safe to resend because they carry a `WriteId`.
pub(crate) fn is_retryable_status(status: &Status) -> bool {
    is_transient_code(status.code()) || std::error::Error::source(status).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_codes_map_to_typed_errors() {
        let cases = [
            (Code::InvalidArgument, "InvalidArgument"),
            (Code::ResourceExhausted, "TooLarge"),
            (Code::FailedPrecondition, "Rejected"),
            (Code::NotFound, "Server"),
            (Code::Internal, "Server"),
        ];
        for (code, want) in cases {
            let err = Error::from_status(&Status::new(code, "why"));
            let got = format!("{err:?}");
            assert!(got.starts_with(want), "{code:?} mapped to {got}");
            assert!(err.to_string().contains("why"), "{err}");
            assert!(!err.is_retryable(), "{code:?} must not be retryable");
            assert!(!is_retryable_status(&Status::new(code, "why")));
        }
    }

    #[test]
    fn a_full_disk_is_its_own_error() {
        let mut status = Status::new(Code::ResourceExhausted, "no space for writes");
        status.metadata_mut().insert(
            islab_proto::ERROR_METADATA,
            tonic::metadata::MetadataValue::from_static(islab_proto::ERROR_NO_SPACE),
        );
        let err = Error::from_status(&status);
        assert!(matches!(err, Error::NoSpace(_)), "{err:?}");
        assert!(err.to_string().contains("no space for writes"), "{err}");
        assert!(err.is_retryable(), "space may come back");
        assert!(
            !is_retryable_status(&status),
            "but the call loop does not spin on it"
        );
    }

    #[test]
    fn transient_codes_are_retried() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::Cancelled,
        ] {
            assert!(is_retryable_status(&Status::new(code, "later")), "{code:?}");
            assert!(
                Error::Server {
                    code,
                    message: String::new()
                }
                .is_retryable()
            );
        }
    }

    #[test]
    fn a_local_transport_failure_is_retried_whatever_its_code() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let status = Status::from_error(Box::new(io));
        assert_eq!(status.code(), Code::Unknown);
        assert!(is_retryable_status(&status));
    }

    #[test]
    fn give_up_errors_are_retryable_and_say_what_happened() {
        let err = Error::Timeout {
            after: Duration::from_secs(15),
            attempts: 7,
            last: "127.0.0.1:1: Unavailable: connection refused".into(),
        };
        assert!(err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("15s") && text.contains("7 attempts"),
            "{text}"
        );
        assert!(text.contains("connection refused"), "{text}");
    }
}
