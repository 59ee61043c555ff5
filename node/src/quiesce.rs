//! Quiescence: idle groups stop heartbeating, so a node with many shards costs little CPU when
//! nothing happens.
//!
//! ```text
//! leader of group g, idle ≥ QUIESCE_AFTER and every replica caught up
//!   └─ pauses g's heartbeats and ticks; its node's pings list g as quiesced
//! follower of g, whose leader's node pings and lists g
//!   └─ holds its election timer and ticks for g (openraft `elect(false)`, `tick(false)`)
//! leader's node stops pinging for LIVENESS_TIMEOUT (crashed, partitioned)
//!   └─ followers elect again at once: a leader that cannot be heard is not trusted
//! a write or read on g, or a new term
//!   └─ heartbeats resume before the request goes on; the next ping drops g from the list
//! ```
//!
//! One ping per peer node per `PING_INTERVAL` replaces, for idle groups, a heartbeat per group
//! per follower per heartbeat interval. Safety never rests on this: pausing elections only
//! delays a failover, and the liveness timeout bounds the delay by about one election timeout.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use islab_proto::raft::v1::PingRequest;
use islab_raft::Role;

use crate::node_state::{META_GROUP, NodeState};
use crate::shard::Shard;

/// How often each node pings every other.
pub(crate) const PING_INTERVAL: Duration = Duration::from_millis(200);
/// A ping naming the groups its sender leads is trusted for leader hints this long.
pub(crate) const LEADER_HINT_TTL: Duration = Duration::from_secs(1);
/// A group with no new log entry for this long, fully replicated, pauses its heartbeats.
const QUIESCE_AFTER: Duration = Duration::from_secs(2);

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
    fn holds_quiet(&self, leader: u64, group: u64, timeout: Duration) -> bool {
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

/// Per group: the leader side's idle tracking and pause, the follower side's held election.
#[derive(Default)]
pub(crate) struct Quiet {
    state: Mutex<QuietState>,
}

#[derive(Default)]
struct QuietState {
    /// (last log index, since when it has not moved).
    idle: Option<(u64, Instant)>,
    /// The term in which this node, as leader, paused heartbeats.
    paused_in: Option<u64>,
    /// Whether this node, as follower, holds its election timer.
    holding: bool,
}

impl Quiet {
    /// Whether heartbeats are paused (this node leads the group, quiescent).
    pub fn is_paused(&self) -> bool {
        self.state.lock().unwrap().paused_in.is_some()
    }

    /// Whether this node is quiescent in the group: heartbeats paused (leader) or election
    /// held (follower).
    pub fn is_quiet(&self) -> bool {
        let q = self.state.lock().unwrap();
        q.paused_in.is_some() || q.holding
    }
}

impl Shard {
    /// Resumes heartbeats if they were paused: called before every request on the group.
    pub fn wake(&self) {
        let mut q = self.quiet.state.lock().unwrap();
        q.idle = None;
        if q.paused_in.take().is_some() {
            self.set_pause(false);
            tracing::debug!(group = self.group, "awake");
        }
    }

    /// Pauses or resumes this node's heartbeats and timer ticks of the group. openraft ticks
    /// a group every fifth of a heartbeat interval whatever it does; a quiet group needs
    /// neither.
    fn set_pause(&self, paused: bool) {
        self.raft.enable_heartbeat(!paused);
        self.raft.enable_tick(!paused);
    }

    /// Holds or releases this node's election timer (and ticks) of the group, as a follower.
    fn set_hold(&self, hold: bool) {
        self.raft.enable_elect(!hold);
        self.raft.enable_tick(!hold);
    }

    /// One round of the leader and follower rules above.
    fn quiesce_tick(&self, me: u64, liveness: &Liveness, timeout: Duration) {
        let m = self.raft.metrics();
        let mut q = self.quiet.state.lock().unwrap();
        let last = m.last_log_index.unwrap_or(0);
        match m.role {
            Role::Leader => {
                if q.holding {
                    q.holding = false;
                    self.set_hold(false);
                }
                if let Some(term) = q.paused_in
                    && term != m.term
                {
                    // Paused in an earlier term: a new leadership always heartbeats first.
                    q.paused_in = None;
                    self.set_pause(false);
                }
                let since = match q.idle {
                    Some((index, since)) if index == last => since,
                    _ => {
                        q.idle = Some((last, Instant::now()));
                        return;
                    }
                };
                let caught_up = m
                    .replication
                    .as_ref()
                    .is_some_and(|r| r.values().all(|matched| *matched == Some(last)));
                if q.paused_in.is_none() && caught_up && since.elapsed() >= QUIESCE_AFTER {
                    self.set_pause(true);
                    q.paused_in = Some(m.term);
                    tracing::debug!(group = self.group, "quiescent");
                }
            }
            _ => {
                if q.paused_in.take().is_some() {
                    self.set_pause(false);
                }
                q.idle = None;
                let hold = m
                    .leader
                    .is_some_and(|l| l != me && liveness.holds_quiet(l, self.group, timeout));
                if hold != q.holding {
                    q.holding = hold;
                    self.set_hold(hold);
                }
            }
        }
    }
}

/// Pings every peer and applies the quiescence rules to every data group, every
/// `PING_INTERVAL`, until the node stops.
pub(crate) async fn run(state: Arc<NodeState>) {
    let timeout = Duration::from_millis(state.config.raft.election_timeout_min_ms);
    let mut tick = tokio::time::interval(PING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let me = state.id();
        let mut quiesced = Vec::new();
        let mut leading = Vec::new();
        for shard in state.shards() {
            if shard.group == META_GROUP {
                continue;
            }
            shard.quiesce_tick(me, &state.liveness, timeout);
            if shard.quiet.is_paused() {
                quiesced.push(shard.group);
            }
            if shard.is_leader(me) {
                leading.push(shard.group);
            }
        }
        let Some(cluster_id) = state.cluster.get() else {
            continue;
        };
        for (id, addr) in state.nodes().iter() {
            if *id == me {
                continue;
            }
            let Ok(mut client) = state.peers.client(addr) else {
                continue;
            };
            let ping = PingRequest {
                cluster_id: cluster_id.clone(),
                from: me,
                quiesced: quiesced.clone(),
                leading: leading.clone(),
            };
            // Fire and forget: a lost ping only lets followers elect, which is always safe.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(PING_INTERVAL * 2, client.ping(ping)).await;
            });
        }
    }
}
