//! What this node heard from its peers' pings: who is alive, which groups each leads and
//! keeps quiescent. Followers hold elections on it (`quiet`), and not-leader answers name the
//! leader from it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one peer's last ping said.
struct Heard {
    at: Instant,
    /// Groups it leads and keeps quiescent.
    quiesced: BTreeSet<u64>,
    /// Every data group it leads.
    leading: BTreeSet<u64>,
}

/// What this node heard from its peers' pings.
#[derive(Default)]
pub(crate) struct Liveness {
    peers: Mutex<HashMap<u64, Heard>>,
}

impl Liveness {
    pub fn heard(&self, from: u64, quiesced: BTreeSet<u64>, leading: BTreeSet<u64>) {
        self.peers.lock().unwrap().insert(
            from,
            Heard {
                at: Instant::now(),
                quiesced,
                leading,
            },
        );
    }

    /// Whether node `leader` pinged within `timeout` and said it keeps `group` quiescent.
    pub fn holds_quiet(&self, leader: u64, group: u64, timeout: Duration) -> bool {
        self.peers
            .lock()
            .unwrap()
            .get(&leader)
            .is_some_and(|h| h.at.elapsed() < timeout && h.quiesced.contains(&group))
    }

    /// The peer whose latest ping (within `timeout`) says it leads `group`; the most recent
    /// such ping when two claim it (a leadership that just moved).
    pub fn leader_of(&self, group: u64, timeout: Duration) -> Option<u64> {
        self.peers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, h)| h.at.elapsed() < timeout && h.leading.contains(&group))
            .max_by_key(|(_, h)| h.at)
            .map(|(id, _)| *id)
    }
}
