//! What every client command starts with: a tokio runtime of its own and an SDK client for
//! `--endpoints`.
//!
//! `main` stays synchronous; a client command builds a current-thread runtime (one request at
//! a time needs no worker pool) and runs its whole body, client included, inside it, so the
//! SDK's connections are opened and closed on that runtime.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use islab_client::{Client, ClientConfig};

use crate::cli::GlobalArgs;

/// How long a command may take when `--timeout` is not given (the SDK's own default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `body` to completion on a fresh current-thread runtime.
pub fn block_on<F: Future>(body: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(body))
}

/// A client for `--endpoints`, giving up on a call after `--timeout` (or `default`).
pub fn client(global: &GlobalArgs, default: Duration) -> Result<Client> {
    client_with(global, default, |_| {})
}

/// [`client`], with the settings `adjust` changes.
pub fn client_with(
    global: &GlobalArgs,
    default: Duration,
    adjust: impl FnOnce(&mut ClientConfig),
) -> Result<Client> {
    let mut config = ClientConfig {
        deadline: global.timeout.unwrap_or(default),
        address_map: address_map(global),
        ..ClientConfig::new(endpoints(global))
    };
    adjust(&mut config);
    Client::with_config(config).context("bad --endpoints, --address-map or client settings")
}

/// `--address-map` as the SDK takes it (a later entry for the same name wins).
pub fn address_map(global: &GlobalArgs) -> BTreeMap<String, String> {
    global.address_map.iter().cloned().collect()
}

/// A client for asking nodes who they are: an answer is expected at once, so a node that
/// does not give one within `deadline` (at most a few seconds) is reported unreachable
/// instead of retried until the command's deadline.
pub fn probe_client(
    endpoints: &[String],
    address_map: BTreeMap<String, String>,
    deadline: Duration,
) -> Result<Client> {
    let deadline = deadline.min(PROBE_DEADLINE);
    let config = ClientConfig {
        connect_timeout: Duration::from_secs(2).min(deadline),
        request_timeout: Duration::from_secs(2).min(deadline),
        deadline,
        max_attempts: Some(3),
        address_map,
        ..ClientConfig::new(endpoints.iter().cloned())
    };
    Client::with_config(config).context("bad --endpoints or --address-map")
}

const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// `--endpoints` without blanks and exact repeats, in the order given.
pub fn endpoints(global: &GlobalArgs) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for e in &global.endpoints {
        let e = e.trim();
        if !e.is_empty() && !list.iter().any(|seen| seen == e) {
            list.push(e.to_string());
        }
    }
    list
}
