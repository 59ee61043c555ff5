//! The node's HTTP listener for monitoring (`--metrics-listen`, plaintext, apart from the gRPC
//! port): `/metrics` for Prometheus, `/livez` and `/readyz` for load balancers and Kubernetes
//! probes.
//!
//! Everything it shows is read when it is asked for, from the same state `Admin.Status`
//! answers with (`admin::status`), except two things recorded on the way: the WAL's fsync
//! times (always) and, only while this listener exists, each gRPC call (`grpc`: two clock
//! reads, a map lookup under a read lock, a boxed future and three atomic adds per call).
//! The listener is meant for a private network: it has no TLS and no auth (issue 17).
//!
//! - `metrics` — the scrape: counters and gauges in the OpenMetrics text format
//! - `grpc` — the tower layer that counts and times every gRPC call the node serves
//! - `probes` — what live and ready mean

pub(crate) mod grpc;
mod metrics;
mod probes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::node_state::NodeState;

/// Binds the monitoring listener (so a taken port fails the node's start, naming it).
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serves the monitoring endpoints on `listener` until the node stops.
pub(crate) async fn serve(state: Arc<NodeState>, listener: TcpListener) {
    let stop = state.stop.clone();
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/livez", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(ready))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}

async fn scrape(
    axum::extract::State(state): axum::extract::State<Arc<NodeState>>,
) -> impl IntoResponse {
    match metrics::render(&state) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn ready(
    axum::extract::State(state): axum::extract::State<Arc<NodeState>>,
) -> impl IntoResponse {
    let not_ready = probes::not_ready(&state);
    if not_ready.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", not_ready.join("; ")),
        )
    }
}
