//! One group's quiescence on this node: as leader, whether it paused heartbeats; as follower,
//! whether it holds its election timer on the leader's pings. The rules are in `quiesce`'s
//! header; this is their state and one round of them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use islab_raft::{Group, Role};

use crate::liveness::Liveness;

/// A group with no new log entry for this long, fully replicated, pauses its heartbeats.
const QUIESCE_AFTER: Duration = Duration::from_secs(2);

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

    /// Resumes heartbeats if they were paused: called before every request on the group.
    pub fn wake(&self, raft: &Group) {
        let mut q = self.state.lock().unwrap();
        q.idle = None;
        if q.paused_in.take().is_some() {
            set_pause(raft, false);
            tracing::debug!(group = raft.id(), "awake");
        }
    }

    /// One round of the leader and follower rules (see `quiesce`).
    pub fn tick(&self, raft: &Group, me: u64, liveness: &Liveness, timeout: Duration) {
        let m = raft.metrics();
        let mut q = self.state.lock().unwrap();
        let last = m.last_log_index.unwrap_or(0);
        match m.role {
            Role::Leader => {
                if q.holding {
                    q.holding = false;
                    set_hold(raft, false);
                }
                if let Some(term) = q.paused_in
                    && term != m.term
                {
                    // Paused in an earlier term: a new leadership always heartbeats first.
                    q.paused_in = None;
                    set_pause(raft, false);
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
                    set_pause(raft, true);
                    q.paused_in = Some(m.term);
                    tracing::debug!(group = raft.id(), "quiescent");
                }
            }
            _ => {
                if q.paused_in.take().is_some() {
                    set_pause(raft, false);
                }
                q.idle = None;
                let hold = m
                    .leader
                    .is_some_and(|l| l != me && liveness.holds_quiet(l, raft.id(), timeout));
                if hold != q.holding {
                    q.holding = hold;
                    set_hold(raft, hold);
                }
            }
        }
    }
}

/// Pauses or resumes this node's heartbeats and timer ticks of the group. openraft ticks
/// a group every fifth of a heartbeat interval whatever it does; a quiet group needs
/// neither.
fn set_pause(raft: &Group, paused: bool) {
    raft.enable_heartbeat(!paused);
    raft.enable_tick(!paused);
}

/// Holds or releases this node's election timer (and ticks) of the group, as a follower.
fn set_hold(raft: &Group, hold: bool) {
    raft.enable_elect(!hold);
    raft.enable_tick(!hold);
}
