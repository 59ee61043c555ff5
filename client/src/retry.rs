//! The call loop every SDK request goes through: pick a node, send, and on failure decide
//! between "follow the hint", "try the next node later" and "give up".
//!
//! ```text
//!  start at leader guess (or cursor)
//!        │
//!        ▼
//!  ┌─ attempt (≤ request_timeout, ≤ time left) ──► OK ──► remember leader, return
//!  │     │
//!  │     ├─ stale epoch + newer shard map ──────► install the map, retry at once
//!  │     ├─ UNAVAILABLE + islab-leader hint ──► switch to hinted node, retry at once
//!  │     │                                      (after a few in a row: back off first)
//!  │     ├─ UNAVAILABLE / transport error /
//!  │     │  no answer in time ────────────────► next node, back off (exp. + jitter)
//!  │     └─ anything else ────────────────────► typed error, no retry
//!  └──── until the deadline ─────────────────► Error::Timeout { last error }
//! ```
//!
//! The closure builds the request anew for every attempt from data the caller captured once,
//! so a write is resent with the same `WriteId` and the server applies it once.

use std::future::Future;
use std::time::Duration;

use islab_proto::{LEADER_METADATA, SHARD_MAP_METADATA};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::endpoints::Endpoints;
use crate::error::{Error, Result, is_retryable_status};

/// Hints followed back to back before the loop starts pausing between redirects, so two
/// nodes that name each other during an election cannot spin the client.
const FREE_REDIRECTS: u32 = 3;

/// Which nodes may serve a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Only the leader: start at the leader guess, follow hints, and remember the node that
    /// served the call as the leader.
    Leader,
    /// Any node: like `Leader`, but a node that answers is not taken for the leader
    /// (serializable reads, status).
    AnyNode,
    /// Exactly this node: retried on transient failures, hints ignored.
    Pinned(usize),
}

/// How one call is to be made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallSpec {
    /// The RPC name, for logs.
    pub(crate) name: &'static str,
    pub(crate) route: Route,
    /// The group the call is for: its shard, or 0 (the meta group; also every call made
    /// before the client has a map).
    pub(crate) group: u64,
    /// Bound on the whole call.
    pub(crate) deadline: Duration,
    /// Bound on one attempt; `None`: whatever is left of the deadline.
    pub(crate) attempt_timeout: Option<Duration>,
}

impl CallSpec {
    /// A call bounded by the client's configured deadline and per-attempt timeout.
    pub(crate) fn new(name: &'static str, route: Route, config: &ClientConfig) -> Self {
        CallSpec {
            name,
            route,
            group: 0,
            deadline: config.deadline,
            attempt_timeout: Some(config.request_timeout),
        }
    }
}

/// Runs `attempt(channel, timeout)` until it succeeds, fails for good, or time runs out.
pub(crate) async fn call<T, F, Fut>(
    endpoints: &Endpoints,
    config: &ClientConfig,
    spec: CallSpec,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(Channel, Duration) -> Fut,
    Fut: Future<Output = std::result::Result<Response<T>, Status>>,
{
    let started = Instant::now();
    let deadline = started + spec.deadline;
    let mut backoff = Backoff::new(config.initial_backoff, config.max_backoff);
    let mut at = match spec.route {
        Route::Pinned(i) => i,
        Route::Leader | Route::AnyNode => endpoints.preferred(spec.group),
    };
    let mut attempts = 0u32;
    let mut free_redirects = FREE_REDIRECTS;
    let mut last = String::from("no attempt made");

    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                after: started.elapsed(),
                attempts,
                last,
            });
        }
        if config.max_attempts.is_some_and(|max| attempts >= max) {
            return Err(Error::Unavailable { attempts, last });
        }
        attempts += 1;

        let addr = endpoints.addr(at);
        let timeout = spec.attempt_timeout.map_or(left, |t| t.min(left));
        // An attempt the deadline cuts short says nothing about the node: when it times out,
        // the error to report is the last real failure before it, if there was one.
        let cut_short = attempts > 1 && spec.attempt_timeout.is_none_or(|t| left < t);
        let timed_out = |last: &str| {
            if cut_short {
                format!("{last} (then {addr} did not answer before the deadline)")
            } else {
                format!("{addr}: no answer within {timeout:?}")
            }
        };
        let outcome = tokio::time::timeout(timeout, attempt(endpoints.channel(at), timeout)).await;
        let next = match outcome {
            Ok(Ok(response)) => {
                if spec.route == Route::Leader {
                    endpoints.set_leader(spec.group, at);
                }
                return Ok(response.into_inner());
            }
            Ok(Err(status)) if status.metadata().get_bin(SHARD_MAP_METADATA).is_some() => {
                let map = shard_map(&status)?;
                endpoints.install_map(&map, true)?;
                Next::Redirect(
                    endpoints.preferred(spec.group),
                    format!(
                        "{addr}: our shard map was stale; now at epoch {}",
                        map.epoch
                    ),
                )
            }
            Ok(Err(status)) if !is_retryable_status(&status) => {
                return Err(Error::from_status(&status));
            }
            // The channel enforces the request's grpc-timeout itself and may beat our timer.
            Ok(Err(status)) if is_local_timeout(&status) => Next::Failover(timed_out(&last)),
            Ok(Err(status)) => match (spec.route, leader_hint(&status)) {
                (Route::Leader | Route::AnyNode, Some(hint)) => {
                    match endpoints.redirect(spec.group, hint, at) {
                        Some(i) => {
                            Next::Redirect(i, format!("{addr}: not the leader; it named {hint}"))
                        }
                        None => Next::Failover(describe(&addr, &status)),
                    }
                }
                _ => Next::Failover(describe(&addr, &status)),
            },
            Err(_elapsed) => Next::Failover(timed_out(&last)),
        };

        match next {
            Next::Redirect(i, why) => {
                tracing::debug!(call = spec.name, %why, "following leader hint");
                last = why;
                at = i;
                if free_redirects > 0 {
                    free_redirects -= 1;
                    continue;
                }
                free_redirects = FREE_REDIRECTS;
            }
            Next::Failover(why) => {
                last = why;
                if let Route::Leader | Route::AnyNode = spec.route {
                    at = endpoints.advance(spec.group, at);
                }
            }
        }

        let left = deadline.saturating_duration_since(Instant::now());
        let pause = backoff.next_pause().min(left);
        tracing::debug!(call = spec.name, attempts, error = %last, ?pause, "retrying");
        tokio::time::sleep(pause).await;
    }
}

/// A request carrying the attempt's timeout, so the server can stop working on it when the
/// client has stopped waiting (gRPC `grpc-timeout`).
pub(crate) fn timed<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

/// What to do after a failed attempt that is worth retrying.
enum Next {
    /// A node named another as leader: go there (the reason is kept as the last error).
    Redirect(usize, String),
    /// Try the next node (or the same one, when pinned) after a pause.
    Failover(String),
}

/// The newer shard map a stale-epoch answer carries.
fn shard_map(status: &Status) -> Result<islab_proto::v1::ShardMap> {
    let bytes = status
        .metadata()
        .get_bin(SHARD_MAP_METADATA)
        .and_then(|v| v.to_bytes().ok())
        .ok_or_else(|| Error::Protocol("a stale-epoch answer without a readable map".into()))?;
    prost::Message::decode(bytes.as_ref())
        .map_err(|e| Error::Protocol(format!("a stale-epoch answer with a bad map: {e}")))
}

/// The leader address a not-leader answer carries, if any.
fn leader_hint(status: &Status) -> Option<&str> {
    let hint = status
        .metadata()
        .get(LEADER_METADATA)?
        .to_str()
        .ok()?
        .trim();
    (!hint.is_empty()).then_some(hint)
}

/// Whether `status` is the client transport's own "timeout expired", not a server's answer.
fn is_local_timeout(status: &Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(err) = cause {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// `addr: Code: message: cause: cause…`, the cause chain saying why a connection failed.
fn describe(addr: &str, status: &Status) -> String {
    let mut text = format!("{addr}: {:?}: {}", status.code(), status.message());
    let mut cause = std::error::Error::source(status);
    while let Some(err) = cause {
        let line = err.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn hints_come_from_the_islab_leader_metadata() {
        let mut status = Status::unavailable("not the leader");
        assert_eq!(leader_hint(&status), None);
        status
            .metadata_mut()
            .insert(LEADER_METADATA, "10.0.0.2:7379".parse().unwrap());
        assert_eq!(leader_hint(&status), Some("10.0.0.2:7379"));
        status
            .metadata_mut()
            .insert(LEADER_METADATA, " ".parse().unwrap());
        assert_eq!(leader_hint(&status), None, "a blank hint is no hint");
    }

    /// Regression (issue 14): the last attempt, cut short by the deadline, replaced the last
    /// real failure with "no answer within 562 µs". Here the first attempt is refused and every
    /// later one never answers, with an attempt timeout longer than the deadline: the deadline
    /// cuts the second attempt, and the error still names the refusal.
    #[tokio::test]
    async fn an_attempt_cut_short_by_the_deadline_keeps_the_last_real_error() {
        let endpoints = Endpoints::new(
            &["127.0.0.1:9".to_string()],
            Duration::from_secs(1),
            &BTreeMap::new(),
        )
        .unwrap();
        let config = ClientConfig::new(["127.0.0.1:9"]);
        let spec = CallSpec {
            name: "Put",
            route: Route::Leader,
            group: 1,
            deadline: Duration::from_millis(500),
            attempt_timeout: Some(Duration::from_secs(30)),
        };
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let err = call::<(), _, _>(&endpoints, &config, spec, |_, _| {
            let n = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                if n == 0 {
                    Err(Status::unavailable("election in progress"))
                } else {
                    std::future::pending().await
                }
            }
        })
        .await
        .unwrap_err();
        let Error::Timeout { last, attempts, .. } = err else {
            panic!("expected a timeout, got {err:?}");
        };
        assert_eq!(attempts, 2);
        assert!(last.contains("election in progress"), "{last}");
        assert!(
            last.contains("did not answer before the deadline"),
            "{last}"
        );

        // The first attempt timing out is a real failure of its own: it is named as such.
        let spec = CallSpec {
            name: "Put",
            route: Route::Leader,
            group: 1,
            deadline: Duration::from_millis(300),
            attempt_timeout: None,
        };
        let err = call::<(), _, _>(&endpoints, &config, spec, |_, _| std::future::pending())
            .await
            .unwrap_err();
        let Error::Timeout { last, .. } = err else {
            panic!("expected a timeout, got {err:?}");
        };
        assert!(last.contains("no answer within"), "{last}");
    }

    #[test]
    fn descriptions_name_the_node_and_the_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused (os 111)");
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        let text = describe("127.0.0.1:9", &status);
        assert!(text.starts_with("127.0.0.1:9: Unavailable"), "{text}");
        assert!(text.contains("refused (os 111)"), "{text}");
    }
}
