//! `islab health`: is this node serving? One gRPC health check (`grpc.health.v1.Health/Check`),
//! exit 0 only on SERVING.
//!
//! It exists for container healthchecks: the image is `FROM scratch` with no shell or curl, so
//! the check is the binary itself, in exec form. It makes exactly one attempt under one
//! deadline (a healthcheck is retried by whoever runs it) and goes straight to the endpoint
//! given, never following leader hints: the question is about that node, not the cluster.
//! A node serves before it belongs to a cluster, which is what lets a one-shot init job wait
//! for "every node healthy" first.
//!
//! ```text
//! simple  SERVING
//! json    {"endpoint":"127.0.0.1:7379","service":"","status":"SERVING"}
//! ```

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Outcome;
use crate::cli::{GlobalArgs, HealthArgs, WriteOut};
use crate::connect;

/// How long the check may take when `--timeout` is not given: shorter than a healthcheck's
/// usual timeout, so the command reports why instead of being killed.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

pub fn run(
    args: &HealthArgs,
    global: &GlobalArgs,
    format: WriteOut,
    out: &mut impl Write,
) -> Result<Outcome> {
    let endpoint = match &args.endpoint {
        Some(e) => e.trim().to_string(),
        None => connect::endpoints(global)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no endpoint: give --endpoint or --endpoints"))?,
    };
    let timeout = global.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let status = connect::block_on(check(&endpoint, &args.service, timeout))?
        .with_context(|| format!("health check of {endpoint}"))?;
    let name = status.as_str_name();
    match format {
        WriteOut::Json => {
            let doc = json!({"endpoint": endpoint, "service": args.service, "status": name});
            serde_json::to_writer(&mut *out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        WriteOut::Simple | WriteOut::Table => writeln!(out, "{name}")?,
    }
    out.flush()?;
    if status != ServingStatus::Serving {
        bail!("{endpoint} is {name}");
    }
    Ok(Outcome::Clean)
}

/// One health check of `service` at `endpoint` (`host:port`), bounded by `timeout` in all.
async fn check(endpoint: &str, service: &str, timeout: Duration) -> Result<ServingStatus> {
    let addr = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| anyhow!("bad endpoint {endpoint:?}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let ask = async {
        let channel = channel.connect().await.context("cannot connect")?;
        let request = HealthCheckRequest {
            service: service.to_string(),
        };
        let response = HealthClient::new(channel)
            .check(request)
            .await
            .map_err(|s| anyhow!("{:?}: {}", s.code(), s.message()))?;
        let code = response.into_inner().status;
        ServingStatus::try_from(code).map_err(|_| anyhow!("unknown serving status {code}"))
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| anyhow!("no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_an_error_that_says_so() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = check(&closed.to_string(), "", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("cannot connect"), "{e:#}");
        let e = check("no port", "", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("bad endpoint"), "{e:#}");
    }
}
