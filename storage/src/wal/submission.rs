//! Queueing a submission: reserving its place in the log and sending it to the writer.
//!
//! Reservation and sending happen under the state lock the caller holds, so file order is
//! submission order. A reservation that does not fit the active segment rotates: the new
//! segment starts with every group's summary (purge point, vote, committed), which is what
//! lets older segments be deleted without losing that state.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;

use crate::GroupId;
use crate::error::Error;
use crate::wal::group_log::GroupLog;
use crate::wal::record::Record;
use crate::wal::segment::SEGMENT_HEADER_LEN;
use crate::wal::shared::{Callback, Msg, Op, State};

pub(super) fn join(mut prefix: Vec<u8>, buf: Vec<u8>) -> Vec<u8> {
    if prefix.is_empty() {
        return buf;
    }
    prefix.extend_from_slice(&buf);
    prefix
}

/// Encodes each group's purge point, vote and committed: the first records of a new segment.
pub(super) fn encode_summary(groups: &HashMap<GroupId, GroupLog>, buf: &mut Vec<u8>) {
    let mut ids: Vec<_> = groups.keys().copied().collect();
    ids.sort_unstable();
    for group in ids {
        let g = &groups[&group];
        if let Some(upto) = g.purged {
            Record::Purge { group, upto }.encode(buf);
        }
        if let Some(data) = &g.vote {
            Record::Vote {
                group,
                data: data.clone(),
            }
            .encode(buf);
        }
        if let Some(data) = &g.committed {
            Record::Committed {
                group,
                data: data.clone(),
            }
            .encode(buf);
        }
    }
}

/// Reserves `len` bytes of log. Returns the segment, the offset where the caller's frames
/// start, and the bytes that must precede them (a new segment's summary, when rotating).
pub(super) fn reserve(st: &mut State, len: u64) -> (u64, u64, Vec<u8>) {
    let limit = st.segment_size;
    let mut prefix = Vec::new();
    if st.active_len > SEGMENT_HEADER_LEN as u64 && st.active_len + len > limit {
        st.active += 1;
        st.active_len = SEGMENT_HEADER_LEN as u64;
        encode_summary(&st.groups, &mut prefix);
    }
    let segment = st.active;
    let start = st.active_len;
    st.active_len += prefix.len() as u64 + len;
    (segment, start + prefix.len() as u64, prefix)
}

/// Encodes one small record and queues it.
pub(super) fn submit(
    st: &mut State,
    record: Record,
    drops: BTreeMap<u64, u64>,
    done: Option<Callback>,
) {
    let mut buf = Vec::new();
    record.encode(&mut buf);
    let (segment, base, prefix) = reserve(st, buf.len() as u64);
    send(
        st,
        Op {
            segment,
            offset: base - prefix.len() as u64,
            bytes: join(prefix, buf),
            adds: 0,
            drops: drops.into_iter().collect(),
            done,
        },
    );
}

pub(super) fn send(st: &mut State, op: Op) {
    if let Err(mpsc::SendError(Msg::Op(op))) = st.tx.send(Msg::Op(op))
        && let Some(done) = op.done
    {
        done(Err(Error::Shutdown));
    }
}
