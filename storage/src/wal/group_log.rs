//! The in-memory index of one group's log inside the shared WAL.
//!
//! A Raft log is contiguous, so the index is a deque of locations: `locs[i]` is the entry with
//! index `first + i`. Truncation pops the back, purging pops the front; both hand every removed
//! location to a closure so the caller can keep per-segment live counts (which drive GC).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::{LogPos, LogState};

/// Where one entry lives: its frame in a segment, and maybe its payload in memory.
#[derive(Clone, Debug)]
pub(crate) struct Loc {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub term: u64,
    /// The payload, while it is in the bounded cache of recent entries.
    pub cached: Option<Bytes>,
}

/// One group's log index and its small durable state.
#[derive(Debug, Default)]
pub(crate) struct GroupLog {
    /// Index of `locs[0]` (meaningless while `locs` is empty).
    pub first: u64,
    pub locs: VecDeque<Loc>,
    pub purged: Option<LogPos>,
    pub vote: Option<Bytes>,
    pub committed: Option<Bytes>,
}

impl GroupLog {
    pub fn last_index(&self) -> Option<u64> {
        if self.locs.is_empty() {
            None
        } else {
            Some(self.first + self.locs.len() as u64 - 1)
        }
    }

    /// The index the next append must carry, if the log constrains it.
    pub fn next_index(&self) -> Option<u64> {
        match self.last_index() {
            Some(last) => Some(last + 1),
            None => self.purged.map(|p| p.index + 1),
        }
    }

    pub fn state(&self) -> LogState {
        let last = match self.locs.back() {
            Some(loc) => Some(LogPos {
                term: loc.term,
                index: self.first + self.locs.len() as u64 - 1,
            }),
            None => self.purged,
        };
        LogState {
            purged: self.purged,
            last,
        }
    }

    pub fn get(&self, index: u64) -> Option<&Loc> {
        let i = index.checked_sub(self.first)?;
        self.locs.get(usize::try_from(i).ok()?)
    }

    pub fn get_mut(&mut self, index: u64) -> Option<&mut Loc> {
        let i = index.checked_sub(self.first)?;
        self.locs.get_mut(usize::try_from(i).ok()?)
    }

    /// Appends the location of entry `index`; the caller has checked contiguity.
    pub fn push(&mut self, index: u64, loc: Loc) {
        if self.locs.is_empty() {
            self.first = index;
        }
        debug_assert_eq!(index, self.first + self.locs.len() as u64);
        self.locs.push_back(loc);
    }

    /// Removes entries with index > `after` (all when `None`).
    pub fn truncate_after(&mut self, after: Option<u64>, mut removed: impl FnMut(&Loc)) {
        while let Some(last) = self.last_index() {
            if after.is_some_and(|a| last <= a) {
                break;
            }
            let loc = self.locs.pop_back().unwrap();
            removed(&loc);
        }
    }

    /// Removes entries with index <= `upto.index` and remembers `upto` as purged.
    pub fn purge(&mut self, upto: LogPos, mut removed: impl FnMut(&Loc)) {
        while !self.locs.is_empty() && self.first <= upto.index {
            let loc = self.locs.pop_front().unwrap();
            removed(&loc);
            self.first += 1;
        }
        if self.locs.is_empty() {
            self.first = upto.index + 1;
        }
        if self.purged.is_none_or(|p| p.index < upto.index) {
            self.purged = Some(upto);
        }
    }

    /// Nothing left worth remembering.
    pub fn is_blank(&self) -> bool {
        self.locs.is_empty()
            && self.purged.is_none()
            && self.vote.is_none()
            && self.committed.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(term: u64) -> Loc {
        Loc {
            segment: 1,
            offset: 0,
            len: 0,
            term,
            cached: None,
        }
    }

    #[test]
    fn push_truncate_purge() {
        let mut g = GroupLog::default();
        assert_eq!(g.next_index(), None);
        for i in 5..10 {
            g.push(i, loc(1));
        }
        assert_eq!(g.state().last, Some(LogPos { term: 1, index: 9 }));
        let mut n = 0;
        g.truncate_after(Some(7), |_| n += 1);
        assert_eq!((n, g.last_index()), (2, Some(7)));
        g.purge(LogPos { term: 1, index: 5 }, |_| n += 1);
        assert_eq!((g.first, g.locs.len(), n), (6, 2, 3));
        g.purge(LogPos { term: 1, index: 20 }, |_| {});
        assert_eq!(g.state().last, Some(LogPos { term: 1, index: 20 }));
        assert_eq!(g.next_index(), Some(21));
        g.truncate_after(None, |_| panic!("nothing left"));
    }
}
