//! Counting and timing every gRPC call the node serves: a tower layer around the whole server.
//!
//! Named as go-grpc-prometheus names them (what etcd exports, so its dashboards and alert
//! rules carry over): `grpc_server_handled_total{grpc_service, grpc_method, grpc_code}` and
//! `grpc_server_handling_seconds{grpc_service, grpc_method}`. The code is the `grpc-status`
//! of the response headers — where tonic puts a handler's error (a "trailers-only" answer) —
//! or OK when there is none; a status sent later in trailers (an error in the middle of a
//! stream) is not seen, and a stream's time is the time to its first response headers.
//!
//! Only the services this node serves are counted by name, and at most [`MAX_METHODS`]
//! methods: a path nobody defined (a port scanner, a client of another system) counts under
//! `grpc_service="unknown"`, so no request can grow the series.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::Either;
use islab_storage::{Latency, LatencyHistogram};
use tower_layer::Layer;
use tower_service::Service;

/// Most methods counted by name; the prefixes below hold about 30.
const MAX_METHODS: usize = 128;

/// The services counted by name.
const KNOWN_PREFIXES: [&str; 4] = [
    "/islab.v1.",
    "/islab.raft.v1.",
    "/grpc.health.v1.",
    "/grpc.reflection.",
];

/// gRPC status codes by number (0 OK … 16 UNAUTHENTICATED), as go-grpc-prometheus spells them.
pub(crate) const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// One method's calls.
#[derive(Default)]
pub(crate) struct MethodStats {
    pub handled: [AtomicU64; 17],
    pub latency: LatencyHistogram,
}

/// Every method's calls, shared by the layer and the scrape.
#[derive(Default)]
pub(crate) struct GrpcStats {
    methods: RwLock<HashMap<String, Arc<MethodStats>>>,
}

/// A method's stats as a scrape reads them.
pub(crate) struct MethodReading {
    pub service: String,
    pub method: String,
    pub handled: [u64; 17],
    pub latency: Latency,
}

impl GrpcStats {
    fn method(&self, path: &str) -> Arc<MethodStats> {
        let known = KNOWN_PREFIXES.iter().any(|p| path.starts_with(p))
            && path[1..].split_once('/').is_some();
        let key = if known { path } else { "/unknown/unknown" };
        if let Some(m) = self.methods.read().unwrap().get(key) {
            return m.clone();
        }
        let mut methods = self.methods.write().unwrap();
        let key = if methods.len() >= MAX_METHODS && !methods.contains_key(key) {
            "/unknown/unknown"
        } else {
            key
        };
        methods.entry(key.to_string()).or_default().clone()
    }

    /// Every method seen so far, sorted by path.
    pub fn read(&self) -> Vec<MethodReading> {
        let methods = self.methods.read().unwrap();
        let mut out: Vec<MethodReading> = methods
            .iter()
            .map(|(path, m)| {
                let (service, method) = path[1..].split_once('/').unwrap_or(("unknown", "unknown"));
                MethodReading {
                    service: service.to_string(),
                    method: method.to_string(),
                    handled: std::array::from_fn(|i| m.handled[i].load(Ordering::Relaxed)),
                    latency: m.latency.read(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.method).cmp(&(&b.service, &b.method)));
        out
    }
}

/// Wraps the node's gRPC server so every call is counted in [`GrpcStats`] — when there are
/// stats to count into (the node serves `/metrics`); without, calls pass straight through.
#[derive(Clone)]
pub(crate) struct GrpcMetricsLayer {
    pub stats: Option<Arc<GrpcStats>>,
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            stats: self.stats.clone(),
        }
    }
}

/// A call being counted: its answer, then the counting.
pub(crate) type Timed<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

#[derive(Clone)]
pub(crate) struct GrpcMetrics<S> {
    inner: S,
    stats: Option<Arc<GrpcStats>>,
}

impl<S, B, RB> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Timed<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(stats) = &self.stats else {
            return Either::Left(self.inner.call(request));
        };
        let method = stats.method(request.uri().path());
        let started = Instant::now();
        let answer = self.inner.call(request);
        Either::Right(Box::pin(async move {
            let result = answer.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|c| *c < CODES.len())
                    .unwrap_or(0),
                // The transport failed the call before any answer.
                Err(_) => 2,
            };
            method.handled[code].fetch_add(1, Ordering::Relaxed);
            method.latency.record(started.elapsed());
            result
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_series_and_the_map_is_bounded() {
        let stats = GrpcStats::default();
        stats.method("/islab.v1.Kv/Put").handled[0].fetch_add(1, Ordering::Relaxed);
        for i in 0..1000 {
            stats.method(&format!("/evil.Service/M{i}")).handled[12]
                .fetch_add(1, Ordering::Relaxed);
        }
        for i in 0..1000 {
            stats.method(&format!("/islab.v1.Kv/Made{i}"));
        }
        let read = stats.read();
        assert!(read.len() <= MAX_METHODS, "{} series", read.len());
        let unknown = read.iter().find(|m| m.service == "unknown").unwrap();
        assert_eq!(unknown.handled[12], 1000);
        let put = read
            .iter()
            .find(|m| (m.service.as_str(), m.method.as_str()) == ("islab.v1.Kv", "Put"))
            .unwrap();
        assert_eq!(put.handled[0], 1);
    }
}
