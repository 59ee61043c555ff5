//! Write load for fault tests: writers that record what was acknowledged, so a test can check
//! afterwards that every acknowledged write survived the fault.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use islab_client::Client;
use tokio::sync::watch;

use crate::wait_for;

/// What writers had acknowledged: (key, value, version).
type Acked = Arc<Mutex<Vec<(String, String, u64)>>>;

/// Writes unique keys `<prefix><id>-<i>` until told to stop; returns how many failed.
async fn writer(
    client: Client,
    prefix: &'static str,
    id: usize,
    stop: watch::Receiver<bool>,
    acked: Acked,
) -> usize {
    let mut failures = 0;
    for i in 0.. {
        if *stop.borrow() {
            break;
        }
        let key = format!("{prefix}{id}-{i:06}");
        let value = format!("value-{id}-{i}");
        match client.put(key.clone(), value.clone()).await {
            Ok(version) => acked.lock().unwrap().push((key, value, version)),
            Err(e) => {
                // Unknown outcome: allowed, but must be rare (the SDK retries through failover).
                tracing::warn!(%key, error = %e, "write failed");
                failures += 1;
            }
        }
    }
    failures
}

/// Writers on the cluster's client, and their stop switch.
pub struct Load {
    acked: Acked,
    stop: watch::Sender<bool>,
    writers: Vec<tokio::task::JoinHandle<usize>>,
}

impl Load {
    pub fn start(client: &Client, prefix: &'static str, writers: usize) -> Load {
        let acked: Acked = Arc::default();
        let (stop, rx) = watch::channel(false);
        let writers = (0..writers)
            .map(|id| {
                tokio::spawn(writer(
                    client.clone(),
                    prefix,
                    id,
                    rx.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        Load {
            acked,
            stop,
            writers,
        }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits (90 s) until `more` writes beyond `from` are acknowledged.
    pub async fn wait_more(&self, from: usize, more: usize, what: &str) {
        wait_for(what, Duration::from_secs(90), || async {
            let n = self.count() - from;
            if n >= more {
                Ok(())
            } else {
                Err(format!("{n} of {more} so far"))
            }
        })
        .await;
    }

    /// Stops the writers; returns what they acknowledged and how many writes failed.
    pub async fn stop(self) -> (Vec<(String, String, u64)>, usize) {
        self.stop.send(true).unwrap();
        let mut failures = 0;
        for w in self.writers {
            failures += w.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        (acked, failures)
    }
}
