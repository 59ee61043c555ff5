//! A linearizability checker for [`History`](crate::history::History) histories of one
//! key-value store: Wing & Gong's search with Lowe's cache, as in porcupine.
//!
//! Keys are independent registers, so a history is linearizable iff each key's sub-history is
//! (P-compositionality); each key is searched on its own. The search walks the key's call and
//! return events in time order (a doubly-linked list, calls before returns at equal times):
//! it linearizes a call whose op the model accepts next, lifting the op out of the list, and
//! backtracks when it reaches the return of an op it has not linearized. A cache of
//! (linearized set, model state) pairs prunes every configuration already explored.
//!
//! # The model: a versioned register
//!
//! State: the current value and its version, or absent; plus `floor`, a lower bound of the
//! log index of the last write (of any kind) linearized on the key. Versions are the shard's
//! Raft log index, so every write of the key — put, delete, successful or failed CAS — has a
//! larger index than the one before it.
//!
//! - `Put(value) → v`: legal iff `v > floor`; then `(value, v)`, `floor = v`.
//! - `Get → r`: `r` must be exactly the state.
//! - `Delete → existed`: `existed` must say whether a value is there; then absent,
//!   `floor + 1`.
//! - `Cas(expected, value) → (true, v)`: the current version must be `expected` (`None`:
//!   absent) and `v > floor`; then `(value, v)`. `→ (false, c)`: `c` must be the current
//!   version and differ from `expected`; state unchanged, `floor + 1`.
//!
//! An op whose outcome is unknown (timeout, unavailable, …) may take effect anywhere after its
//! invocation or not at all (porcupine's rule: it completes at +infinity with an unconstrained
//! result). An unknown put or CAS writes a version nobody was told: the state holds it as
//! "at least `floor + 1`" until a read or a CAS answer names it, which binds it. Values are
//! unique per write, so a read names the one write it saw.
//!
//! Ops that failed for sure are left out; so are reads with unknown outcomes (they change
//! nothing and constrain nothing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use crate::history::{Op, OpKind, OpResult, Outcome};

/// How much search the checker may spend before it answers "too big" instead.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Search steps (one per event visited) per key.
    pub max_steps_per_key: u64,
    /// Wall time for the whole history; keys not checked by then are reported too big.
    pub max_time: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_steps_per_key: 20_000_000,
            max_time: Duration::from_secs(120),
        }
    }
}

/// The verdict on one key's sub-history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// Not linearizable: why, in a few lines.
    Illegal(String),
    /// The budget ran out first: nothing is known.
    TooBig(String),
}

/// What checking a whole history found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Keys checked (all keys of the history).
    pub keys: usize,
    /// Ops that went into the search (failed ops and unknown reads left out).
    pub ops: usize,
    /// Search steps taken, all keys together.
    pub steps: u64,
    pub elapsed: Duration,
    /// Keys that are not linearizable, each with an explanation.
    pub illegal: Vec<(String, String)>,
    /// Keys the budget was too small for.
    pub too_big: Vec<(String, String)>,
}

impl Report {
    /// Linearizable: every key checked, none illegal.
    pub fn is_linearizable(&self) -> bool {
        self.illegal.is_empty() && self.too_big.is_empty()
    }

    /// Whether some key is certainly not linearizable.
    pub fn is_illegal(&self) -> bool {
        !self.illegal.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_illegal() {
            "NOT linearizable"
        } else if self.too_big.is_empty() {
            "linearizable"
        } else {
            "unknown (search budget exhausted)"
        };
        write!(
            f,
            "{verdict}: {} keys, {} ops, {} steps in {:?}",
            self.keys, self.ops, self.steps, self.elapsed
        )?;
        for (key, why) in &self.illegal {
            write!(f, "\nkey {key}: {why}")?;
        }
        for (key, why) in &self.too_big {
            write!(f, "\nkey {key}: too big: {why}")?;
        }
        Ok(())
    }
}

/// Checks every key of `ops` (a [`History`](crate::history::History)'s ops, in any order).
pub fn check(ops: &[Op], budget: Budget) -> Report {
    let started = Instant::now();
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut report = Report {
        keys: by_key.len(),
        ..Report::default()
    };
    for (key, key_ops) in by_key {
        let remaining = budget.max_time.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            report
                .too_big
                .push((key.to_string(), "no time left for this key".into()));
            continue;
        }
        let (verdict, n, steps) = check_key(&key_ops, budget.max_steps_per_key, remaining);
        report.ops += n;
        report.steps += steps;
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Illegal(why) => report.illegal.push((key.to_string(), why)),
            Verdict::TooBig(why) => report.too_big.push((key.to_string(), why)),
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// A version in the model: told to a client, or only known to be at least this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ver {
    Known(u64),
    AtLeast(u64),
}

impl Ver {
    /// The version, if it can be `v` (binding an unknown one).
    fn bind(self, v: u64) -> Option<u64> {
        match self {
            Ver::Known(k) if k == v => Some(v),
            Ver::AtLeast(m) if v >= m => Some(v),
            _ => None,
        }
    }
}

/// The model's state for one key. Values are interned per key (`u32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct State {
    cur: Option<(u32, Ver)>,
    floor: u64,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Put(u32),
    Get,
    Delete,
    Cas(Option<u64>, u32),
}

#[derive(Clone, Copy, Debug)]
enum Res {
    Put(u64),
    Get(Option<(u32, u64)>),
    Delete(bool),
    Cas(bool, Option<u64>),
}

/// One op of the key, in the search's terms.
#[derive(Clone, Copy, Debug)]
struct COp {
    kind: Kind,
    /// `None`: unknown outcome.
    res: Option<Res>,
    invoke: u64,
    /// `u64::MAX`: never (unknown outcome).
    complete: u64,
}

/// Every state the model can be in after `op` from `s` (none: illegal here). Pushes onto
/// `out` (cleared first).
fn step(s: State, op: &COp, out: &mut Vec<State>) {
    out.clear();
    let written = |value: u32, v: u64| State {
        cur: Some((value, Ver::Known(v))),
        floor: v,
    };
    let unknown_write = |value: u32, floor: u64| State {
        cur: Some((value, Ver::AtLeast(floor + 1))),
        floor: floor + 1,
    };
    match (op.kind, op.res) {
        // (An op that does not fit falls through to the last arm, which allows nothing.)
        (Kind::Put(value), Some(Res::Put(v))) if v > s.floor => out.push(written(value, v)),
        (Kind::Put(value), None) => out.push(unknown_write(value, s.floor)),
        (Kind::Get, Some(Res::Get(None))) if s.cur.is_none() => out.push(s),
        (Kind::Get, Some(Res::Get(Some((value, v))))) => {
            if let Some((cur, ver)) = s.cur
                && cur == value
                && let Some(v) = ver.bind(v)
            {
                out.push(State {
                    cur: Some((value, Ver::Known(v))),
                    floor: s.floor.max(v),
                });
            }
        }
        (Kind::Get, None) => out.push(s),
        (Kind::Delete, Some(Res::Delete(existed))) if existed == s.cur.is_some() => {
            out.push(State {
                cur: None,
                floor: s.floor + 1,
            })
        }
        (Kind::Delete, None) => out.push(State {
            cur: None,
            floor: s.floor + 1,
        }),
        (Kind::Cas(expected, value), res) => {
            // The state in which the CAS matches, with the version bound; None: it cannot.
            let matched = match (expected, s.cur) {
                (None, None) => Some(s),
                (Some(e), Some((cur, ver))) => ver.bind(e).map(|e| State {
                    cur: Some((cur, Ver::Known(e))),
                    floor: s.floor.max(e),
                }),
                _ => None,
            };
            let can_fail = match (expected, s.cur) {
                (None, None) => false,
                (Some(e), Some((_, Ver::Known(k)))) => k != e,
                _ => true,
            };
            match res {
                Some(Res::Cas(true, Some(v))) => {
                    if let Some(m) = matched
                        && v > m.floor
                    {
                        out.push(written(value, v));
                    }
                }
                Some(Res::Cas(true, None)) => {} // a successful CAS always has a version
                Some(Res::Cas(false, current)) => {
                    if current == expected {
                        return; // it would have matched
                    }
                    match (current, s.cur) {
                        (None, None) => out.push(State {
                            cur: None,
                            floor: s.floor + 1,
                        }),
                        (Some(c), Some((cur, ver))) => {
                            if let Some(c) = ver.bind(c) {
                                out.push(State {
                                    cur: Some((cur, Ver::Known(c))),
                                    floor: s.floor.max(c) + 1,
                                });
                            }
                        }
                        _ => {}
                    }
                }
                None => {
                    if let Some(m) = matched {
                        out.push(unknown_write(value, m.floor));
                    }
                    if can_fail {
                        out.push(State {
                            cur: s.cur,
                            floor: s.floor + 1,
                        });
                    }
                }
                Some(_) => {} // a result of another kind of op: malformed, never legal
            }
        }
        _ => {} // illegal here, or a result of another kind of op (malformed)
    }
}

/// Why `op` cannot take effect in `s`, for the failure message.
fn why_not(s: State, op: &COp, values: &[String]) -> String {
    let state = describe_state(s, values);
    let version = |ver: Ver| match ver {
        Ver::Known(v) => format!("v{v}"),
        Ver::AtLeast(m) => format!("v>={m}"),
    };
    let current_version = s.cur.map_or("absent".to_string(), |(_, ver)| version(ver));
    match (op.kind, op.res) {
        (Kind::Put(_), Some(Res::Put(v))) => format!(
            "its version v{v} is not above v{} (versions never go backwards), state {state}",
            s.floor
        ),
        (Kind::Get, Some(Res::Get(None))) => {
            format!(
                "it read the key as absent, but the state is {state} (stale read or lost write?)"
            )
        }
        (Kind::Get, Some(Res::Get(Some((value, v))))) => format!(
            "it read {}@v{v}, but the state is {state} (stale read, lost write or wrong version?)",
            values[value as usize]
        ),
        (Kind::Delete, Some(Res::Delete(existed))) => {
            format!("it said existed={existed}, but the state is {state}")
        }
        (Kind::Cas(expected, _), Some(Res::Cas(succeeded, current))) => format!(
            "it expected {expected:?} and answered succeeded={succeeded} current={current:?}, \
             but the current version is {current_version} (state {state})"
        ),
        _ => format!("the model refuses it in state {state}"),
    }
}

fn describe_state(s: State, values: &[String]) -> String {
    match s.cur {
        None => format!("absent (last write at or after v{})", s.floor),
        Some((value, Ver::Known(v))) => format!("{}@v{v}", values[value as usize]),
        Some((value, Ver::AtLeast(m))) => {
            format!(
                "{}@v>={m} (an unacknowledged write)",
                values[value as usize]
            )
        }
    }
}

/// A set of op indexes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> BitSet {
        BitSet(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

const NIL: usize = usize::MAX;

/// The events of a key's ops as a doubly-linked list; node 0 is the head, node `1 + 2i` the
/// call of op `i`, `2 + 2i` its return.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Events {
    fn new(ops: &[COp]) -> Events {
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            order.push((op.invoke, false, 1 + 2 * i)); // calls first at equal times
            order.push((op.complete, true, 2 + 2 * i));
        }
        order.sort();
        let n = 1 + 2 * ops.len();
        let mut next = vec![NIL; n];
        let mut prev = vec![NIL; n];
        let mut last = 0;
        for &(_, _, node) in &order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Events { next, prev }
    }

    fn remove(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn restore(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != NIL {
            self.prev[n] = x;
        }
    }

    fn lift(&mut self, op: usize) {
        self.remove(1 + 2 * op);
        self.remove(2 + 2 * op);
    }

    fn unlift(&mut self, op: usize) {
        self.restore(2 + 2 * op);
        self.restore(1 + 2 * op);
    }
}

/// A linearized op and how to undo it.
struct Frame {
    op: usize,
    before: State,
    /// The next of `step`'s alternatives to try if this one leads nowhere.
    next_alt: usize,
}

/// Checks one key; returns the verdict, how many ops were searched and the steps taken.
fn check_key(key_ops: &[&Op], max_steps: u64, max_time: Duration) -> (Verdict, usize, u64) {
    let (ops, origin, values) = match prepare(key_ops) {
        Ok(prepared) => prepared,
        Err(why) => return (Verdict::Illegal(why), key_ops.len(), 0),
    };
    let n = ops.len();
    let describe = |i: usize| key_ops[origin[i]].to_string();
    let started = Instant::now();
    let mut events = Events::new(&ops);
    let mut cache: HashSet<(BitSet, State)> = HashSet::new();
    let mut linearized = BitSet::new(n);
    let mut stack: Vec<Frame> = Vec::new();
    let mut state = State {
        cur: None,
        floor: 0,
    };
    let mut succ = Vec::new();
    let mut steps = 0u64;
    // The deepest point reached: (depth, state there, ops linearized, the op that was stuck).
    let mut best: Option<(usize, State, Vec<usize>, usize)> = None;

    let mut entry = events.next[0];
    loop {
        if events.next[0] == NIL {
            return (Verdict::Linearizable, n, steps);
        }
        steps += 1;
        if steps > max_steps || (steps.is_multiple_of(4096) && started.elapsed() > max_time) {
            return (
                Verdict::TooBig(format!(
                    "{n} ops, gave up after {steps} steps and {:?} (deepest prefix {} ops)",
                    started.elapsed(),
                    best.as_ref().map_or(0, |b| b.0)
                )),
                n,
                steps,
            );
        }
        // The op to linearize next, and the first of step()'s alternatives to try.
        let (op, from) = if entry != NIL && entry % 2 == 1 {
            ((entry - 1) / 2, 0)
        } else {
            // A return of an op not linearized yet: whatever comes next, it came too late.
            if entry != NIL {
                let stuck = (entry - 2) / 2;
                if best.as_ref().is_none_or(|b| stack.len() > b.0) {
                    best = Some((
                        stack.len(),
                        state,
                        stack.iter().map(|f| f.op).collect(),
                        stuck,
                    ));
                }
            }
            let Some(frame) = stack.pop() else {
                let (depth, at, prefix, stuck) = best.expect("a failed search got stuck somewhere");
                let mut why = format!(
                    "not linearizable: at most {depth} of {n} ops can be ordered; then {} cannot \
                     take effect: {}",
                    describe(stuck),
                    why_not(at, &ops[stuck], &values)
                );
                if !prefix.is_empty() {
                    why.push_str("\n  last ops of that order:");
                    for &i in &prefix[prefix.len().saturating_sub(6)..] {
                        why.push_str(&format!("\n    {}", describe(i)));
                    }
                }
                return (Verdict::Illegal(why), n, steps);
            };
            state = frame.before;
            linearized.clear(frame.op);
            events.unlift(frame.op);
            entry = 1 + 2 * frame.op; // if no alternative is left: carry on after it
            (frame.op, frame.next_alt)
        };
        step(state, &ops[op], &mut succ);
        let mut advanced = false;
        for (alt, &next) in succ.iter().enumerate().skip(from) {
            linearized.set(op);
            if cache.insert((linearized.clone(), next)) {
                stack.push(Frame {
                    op,
                    before: state,
                    next_alt: alt + 1,
                });
                state = next;
                events.lift(op);
                entry = events.next[0];
                advanced = true;
                break;
            }
            linearized.clear(op);
        }
        if !advanced {
            entry = events.next[entry];
        }
    }
}

type Prepared = (Vec<COp>, Vec<usize>, Vec<String>);

/// One key's ops in the search's terms (and, for each, its index in `key_ops`; and the
/// interned values); or, for a history that is plainly wrong, why.
fn prepare(key_ops: &[&Op]) -> Result<Prepared, String> {
    // Interned values: every value a write of this key wrote, and which op wrote it.
    let mut values: Vec<String> = Vec::new();
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut writer: HashMap<&str, &Op> = HashMap::new();
    for op in key_ops {
        if matches!(op.outcome, Outcome::Failed(_)) {
            continue;
        }
        if let Some(v) = op.kind.written_value() {
            if let Some(other) = writer.insert(v, op) {
                return Err(format!(
                    "two writes of one value (values must be unique): {other} and {op}"
                ));
            }
            ids.insert(v, values.len() as u32);
            values.push(v.to_string());
        }
    }
    // Plain errors first, with plain messages; the search would find them too.
    for op in key_ops {
        if let Outcome::Ok(OpResult::Get {
            found: Some((value, version)),
        }) = &op.outcome
        {
            let Some(w) = writer.get(value.as_str()) else {
                return Err(format!(
                    "{op} read a value that no write of this key wrote (a read of a value never \
                     written)"
                ));
            };
            let acked = match &w.outcome {
                Outcome::Ok(OpResult::Put { version }) => Some(*version),
                Outcome::Ok(OpResult::Cas {
                    succeeded: true,
                    current,
                }) => *current,
                Outcome::Ok(OpResult::Cas {
                    succeeded: false, ..
                }) => {
                    return Err(format!("{op} read the value of a CAS that failed: {w}"));
                }
                _ => None,
            };
            if let Some(acked) = acked
                && acked != *version
            {
                return Err(format!(
                    "{op} read version v{version}, but the write of that value was acknowledged \
                     at v{acked}: {w}"
                ));
            }
            if let Some(done) = op.complete_ns
                && done < w.invoke_ns
            {
                return Err(format!(
                    "{op} read a value before its write was invoked: {w}"
                ));
            }
        }
    }
    // Versions of acknowledged writes never go backwards in real time.
    let mut acked: Vec<(&Op, u64)> = key_ops
        .iter()
        .filter_map(|op| match &op.outcome {
            Outcome::Ok(OpResult::Put { version }) => Some((*op, *version)),
            Outcome::Ok(OpResult::Cas {
                succeeded: true,
                current: Some(version),
            }) => Some((*op, *version)),
            _ => None,
        })
        .collect();
    let mut by_completion = acked.clone();
    by_completion.sort_by_key(|(op, _)| op.complete_ns);
    acked.sort_by_key(|(op, _)| op.invoke_ns);
    let mut done = 0;
    let mut highest: Option<(&Op, u64)> = None;
    for (op, version) in &acked {
        while done < by_completion.len()
            && by_completion[done]
                .0
                .complete_ns
                .is_some_and(|c| c < op.invoke_ns)
        {
            let (w, v) = by_completion[done];
            if highest.is_none_or(|(_, h)| v > h) {
                highest = Some((w, v));
            }
            done += 1;
        }
        if let Some((earlier, h)) = highest
            && *version <= h
        {
            return Err(format!(
                "version went backwards: {op} acknowledged v{version} after {earlier} had \
                 acknowledged v{h}"
            ));
        }
    }

    let mut ops = Vec::new();
    let mut origin = Vec::new();
    for (i, op) in key_ops.iter().enumerate() {
        if matches!(op.outcome, Outcome::Failed(_)) {
            continue; // did not happen
        }
        let kind = match &op.kind {
            OpKind::Put { value } => Kind::Put(ids[value.as_str()]),
            OpKind::Get => Kind::Get,
            OpKind::Delete => Kind::Delete,
            OpKind::Cas { expected, value } => Kind::Cas(*expected, ids[value.as_str()]),
        };
        let res = match &op.outcome {
            Outcome::Failed(_) => unreachable!("left out above"),
            Outcome::Pending | Outcome::Unknown(_) => {
                if matches!(kind, Kind::Get) {
                    continue; // changes nothing, constrains nothing
                }
                None
            }
            Outcome::Ok(r) => Some(match r {
                OpResult::Put { version } => Res::Put(*version),
                OpResult::Get { found } => {
                    Res::Get(found.as_ref().map(|(v, ver)| (ids[v.as_str()], *ver)))
                }
                OpResult::Delete { existed } => Res::Delete(*existed),
                OpResult::Cas { succeeded, current } => Res::Cas(*succeeded, *current),
            }),
        };
        let complete = match res {
            Some(_) => op.complete_ns.unwrap_or(u64::MAX),
            None => u64::MAX,
        };
        ops.push(COp {
            kind,
            res,
            invoke: op.invoke_ns,
            complete,
        });
        origin.push(i);
    }
    Ok((ops, origin, values))
}

/// A copy of `ops` with one stale read planted, to check that a checker that passed a real
/// history is not vacuous: a read `late` made to return what an earlier read `early` of the
/// same key returned (a value), where an acknowledged write that changed the key ran entirely
/// between the two. Values are unique, so no linearization can explain it. Returns the copy and
/// a description; `None` if the history has no such pair of reads.
pub fn stale_read_mutation(ops: &[Op]) -> Option<(Vec<Op>, String)> {
    let changes = |w: &Op| {
        matches!(
            w.outcome,
            Outcome::Ok(OpResult::Put { .. })
                | Outcome::Ok(OpResult::Delete { existed: true })
                | Outcome::Ok(OpResult::Cas {
                    succeeded: true,
                    ..
                })
        )
    };
    let mut by_key: BTreeMap<&str, (Vec<&Op>, Vec<&Op>)> = BTreeMap::new();
    for op in ops {
        match op.outcome {
            Outcome::Ok(OpResult::Get { .. }) => by_key.entry(&op.key).or_default().0.push(op),
            _ if changes(op) => by_key.entry(&op.key).or_default().1.push(op),
            _ => {}
        }
    }
    for (reads, writes) in by_key.values() {
        for late in reads.iter().rev().take(50) {
            for w in writes
                .iter()
                .filter(|w| w.complete_ns < Some(late.invoke_ns))
            {
                let early = reads.iter().find(|e| {
                    matches!(e.outcome, Outcome::Ok(OpResult::Get { found: Some(_) }))
                        && e.complete_ns.is_some_and(|c| c < w.invoke_ns)
                        && e.outcome != late.outcome
                });
                if let Some(early) = early {
                    let mut mutated = ops.to_vec();
                    let at = mutated
                        .iter()
                        .position(|o| o.id == late.id)
                        .expect("the read is in the history");
                    mutated[at].outcome = early.outcome.clone();
                    let what = format!(
                        "{late} made to return what {early} did, although {w} came between"
                    );
                    return Some((mutated, what));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::unique_value;

    /// Builds histories by hand: times in milliseconds.
    #[derive(Default)]
    struct H {
        ops: Vec<Op>,
    }

    impl H {
        fn op(
            &mut self,
            client: usize,
            key: &str,
            kind: OpKind,
            at: (u64, Option<u64>),
            outcome: Outcome,
        ) -> &mut Self {
            let id = self.ops.len();
            let complete_ns = match outcome {
                Outcome::Ok(_) | Outcome::Failed(_) => at.1.map(|c| c * 1_000_000),
                _ => None,
            };
            self.ops.push(Op {
                id,
                client,
                key: key.into(),
                kind,
                invoke_ns: at.0 * 1_000_000,
                complete_ns,
                outcome,
            });
            self
        }
        fn put(&mut self, c: usize, key: &str, value: &str, at: (u64, u64), v: u64) -> &mut Self {
            self.op(
                c,
                key,
                OpKind::Put {
                    value: value.into(),
                },
                (at.0, Some(at.1)),
                Outcome::Ok(OpResult::Put { version: v }),
            )
        }
        fn put_unknown(&mut self, c: usize, key: &str, value: &str, at: u64) -> &mut Self {
            self.op(
                c,
                key,
                OpKind::Put {
                    value: value.into(),
                },
                (at, None),
                Outcome::Unknown("timeout".into()),
            )
        }
        fn get(
            &mut self,
            c: usize,
            key: &str,
            at: (u64, u64),
            found: Option<(&str, u64)>,
        ) -> &mut Self {
            self.op(
                c,
                key,
                OpKind::Get,
                (at.0, Some(at.1)),
                Outcome::Ok(OpResult::Get {
                    found: found.map(|(v, ver)| (v.to_string(), ver)),
                }),
            )
        }
        fn del(&mut self, c: usize, key: &str, at: (u64, u64), existed: bool) -> &mut Self {
            self.op(
                c,
                key,
                OpKind::Delete,
                (at.0, Some(at.1)),
                Outcome::Ok(OpResult::Delete { existed }),
            )
        }
        #[allow(clippy::too_many_arguments)]
        fn cas(
            &mut self,
            c: usize,
            key: &str,
            expected: Option<u64>,
            value: &str,
            at: (u64, u64),
            succeeded: bool,
            current: Option<u64>,
        ) -> &mut Self {
            self.op(
                c,
                key,
                OpKind::Cas {
                    expected,
                    value: value.into(),
                },
                (at.0, Some(at.1)),
                Outcome::Ok(OpResult::Cas { succeeded, current }),
            )
        }
        fn check(&self) -> Report {
            check(&self.ops, Budget::default())
        }
    }

    fn assert_ok(h: &H) {
        let r = h.check();
        assert!(r.is_linearizable(), "{r}");
    }

    fn assert_illegal(h: &H, needle: &str) {
        let r = h.check();
        assert!(r.is_illegal(), "accepted a bad history: {r}");
        let text = r.to_string();
        eprintln!("{text}\n");
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let mut h = H::default();
        h.get(0, "k", (0, 1), None)
            .put(0, "k", "a", (2, 3), 5)
            .get(1, "k", (4, 5), Some(("a", 5)))
            .cas(1, "k", Some(5), "b", (6, 7), true, Some(9))
            .cas(0, "k", Some(5), "c", (8, 9), false, Some(9))
            .del(0, "k", (10, 11), true)
            .del(1, "k", (12, 13), false)
            .cas(1, "k", None, "d", (14, 15), true, Some(20))
            .get(0, "k", (16, 17), Some(("d", 20)));
        assert_ok(&h);
    }

    #[test]
    fn concurrent_writes_may_be_seen_in_either_order() {
        // Two overlapping puts; readers during them see either, but once both are done
        // everyone sees the one with the higher version.
        let mut h = H::default();
        h.put(0, "k", "a", (0, 10), 7)
            .put(1, "k", "b", (1, 9), 6)
            .get(2, "k", (2, 3), Some(("b", 6)))
            .get(3, "k", (4, 5), Some(("a", 7)))
            .get(2, "k", (11, 12), Some(("a", 7)));
        assert_ok(&h);
        // A read concurrent with a put may see before or after it.
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 3)
            .put(1, "k", "b", (2, 10), 4)
            .get(2, "k", (3, 4), Some(("a", 3)))
            .get(3, "k", (5, 6), Some(("b", 4)))
            .get(2, "k", (7, 8), Some(("b", 4)));
        assert_ok(&h);
    }

    #[test]
    fn unknown_writes_may_or_may_not_happen() {
        // Seen: it happened, at the version the read names.
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 3)
            .put_unknown(1, "k", "b", 2)
            .get(2, "k", (5, 6), Some(("b", 8)))
            .get(2, "k", (7, 8), Some(("b", 8)));
        assert_ok(&h);
        // Never seen: it did not happen (or was overwritten).
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 3)
            .put_unknown(1, "k", "b", 2)
            .get(2, "k", (5, 6), Some(("a", 3)))
            .put(2, "k", "c", (7, 8), 10)
            .get(2, "k", (9, 10), Some(("c", 10)));
        assert_ok(&h);
        // Seen only through a later delete that found the key.
        let mut h = H::default();
        h.put_unknown(1, "k", "b", 0).del(2, "k", (5, 6), true);
        assert_ok(&h);
        // But not before it was invoked.
        let mut h = H::default();
        h.get(2, "k", (0, 1), Some(("b", 4)))
            .put_unknown(1, "k", "b", 2);
        assert_illegal(&h, "before its write was invoked");
        // And not at two versions.
        let mut h = H::default();
        h.put_unknown(1, "k", "b", 0)
            .get(2, "k", (5, 6), Some(("b", 4)))
            .get(2, "k", (7, 8), Some(("b", 5)));
        assert_illegal(&h, "not linearizable");
    }

    #[test]
    fn failed_ops_did_not_happen() {
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 3)
            .op(
                1,
                "k",
                OpKind::Put { value: "b".into() },
                (2, Some(3)),
                Outcome::Failed("invalid argument".into()),
            )
            .get(2, "k", (5, 6), Some(("a", 3)));
        assert_ok(&h);
        h.get(2, "k", (7, 8), Some(("b", 4)));
        assert_illegal(&h, "never written");
    }

    #[test]
    fn a_stale_read_is_rejected() {
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 5)
            .put(1, "k", "b", (2, 3), 6)
            .get(2, "k", (4, 5), Some(("a", 5)));
        assert_illegal(&h, "stale read");
    }

    #[test]
    fn a_lost_acknowledged_write_is_rejected() {
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 5).get(1, "k", (2, 3), None);
        assert_illegal(&h, "read the key as absent");
        // Lost under an unknown delete it might have lost to: legal.
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 5)
            .op(
                1,
                "k",
                OpKind::Delete,
                (0, None),
                Outcome::Unknown("timeout".into()),
            )
            .get(1, "k", (2, 3), None);
        assert_ok(&h);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_rejected() {
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 5)
            .get(1, "k", (2, 3), Some(("zzz", 5)));
        assert_illegal(&h, "never written");
        // Written, but to another key.
        let mut h = H::default();
        h.put(0, "j", "a", (0, 1), 5)
            .get(1, "k", (2, 3), Some(("a", 5)));
        assert_illegal(&h, "never written");
    }

    #[test]
    fn a_version_going_backwards_is_rejected() {
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 10).put(1, "k", "b", (2, 3), 8);
        assert_illegal(&h, "backwards");
        // Through a delete and a CAS too (the search, not the quick check).
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 10)
            .del(1, "k", (2, 3), true)
            .cas(0, "k", None, "b", (4, 5), true, Some(11))
            .get(1, "k", (6, 7), Some(("b", 11)));
        assert_illegal(&h, "not linearizable");
        // A read's version must be the one the write was acknowledged with.
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 10)
            .get(1, "k", (2, 3), Some(("a", 9)));
        assert_illegal(&h, "acknowledged at v10");
    }

    #[test]
    fn cas_answers_must_fit_the_state() {
        // Succeeded although the version did not match.
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 5)
            .cas(1, "k", Some(4), "b", (2, 3), true, Some(6));
        assert_illegal(&h, "not linearizable");
        // Failed although it matched.
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 5)
            .cas(1, "k", Some(5), "b", (2, 3), false, Some(5));
        assert_illegal(&h, "not linearizable");
        // Failed naming a version that is not the current one.
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 5)
            .cas(1, "k", Some(4), "b", (2, 3), false, Some(7));
        assert_illegal(&h, "not linearizable");
        // Failed on an absent key, correctly.
        let mut h = H::default();
        h.cas(1, "k", Some(4), "b", (0, 1), false, None);
        assert_ok(&h);
        // An unknown CAS that matched an unknown write's version, read back later.
        let mut h = H::default();
        h.put_unknown(0, "k", "a", 0)
            .op(
                1,
                "k",
                OpKind::Cas {
                    expected: Some(7),
                    value: "b".into(),
                },
                (1, None),
                Outcome::Unknown("timeout".into()),
            )
            .get(2, "k", (10, 11), Some(("b", 9)));
        assert_ok(&h);
    }

    #[test]
    fn a_delete_must_know_whether_the_key_existed() {
        let mut h = H::default();
        h.put(0, "k", "a", (0, 1), 5).del(1, "k", (2, 3), false);
        assert_illegal(&h, "existed=false");
    }

    #[test]
    fn keys_are_checked_independently_and_named() {
        let mut h = H::default();
        h.put(0, "good", "a", (0, 1), 5)
            .get(1, "good", (2, 3), Some(("a", 5)))
            .put(0, "bad", "b", (0, 1), 6)
            .put(1, "bad", "c", (2, 3), 7)
            .get(2, "bad", (4, 5), Some(("b", 6)));
        let r = h.check();
        assert_eq!(r.keys, 2);
        assert_eq!(r.illegal.len(), 1, "{r}");
        assert_eq!(r.illegal[0].0, "bad");
    }

    #[test]
    fn a_search_too_big_for_the_budget_says_so() {
        // Many concurrent unknown CASes and writes: a huge space.
        let mut h = H::default();
        for i in 0..60 {
            h.op(
                i,
                "k",
                OpKind::Cas {
                    expected: Some(i as u64),
                    value: format!("x{i}"),
                },
                (0, None),
                Outcome::Unknown("timeout".into()),
            );
        }
        for i in 0..60 {
            h.put(100 + i, "k", &format!("p{i}"), (1, 1000), 1000 + i as u64);
        }
        h.get(999, "k", (2000, 2001), Some(("zz-never", 1)));
        let r = check(
            &h.ops,
            Budget {
                max_steps_per_key: 1000,
                max_time: Duration::from_secs(10),
            },
        );
        // The unknown value is caught by the quick check before any search…
        assert!(r.is_illegal(), "{r}");
        h.ops.pop();
        h.get(999, "k", (2000, 2001), Some(("p0", 1000)));
        let r = check(
            &h.ops,
            Budget {
                max_steps_per_key: 1000,
                max_time: Duration::from_secs(10),
            },
        );
        // …but this one needs the search, which runs out of budget.
        assert!(!r.is_linearizable() && !r.is_illegal(), "{r}");
        assert!(r.to_string().contains("too big"), "{r}");
    }

    /// One step of the sequential simulation: what a client asks.
    #[derive(Clone, Debug)]
    enum Ask {
        Put,
        Get,
        Delete,
        /// Expect the current version (0), absent (1), or a wrong one (2).
        Cas(u8),
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        fn ask() -> impl Strategy<Value = Ask> {
            prop_oneof![
                3 => Just(Ask::Put),
                3 => Just(Ask::Get),
                1 => Just(Ask::Delete),
                2 => (0u8..3).prop_map(Ask::Cas),
            ]
        }

        /// (key, ask, log entries by others before it, widen back, widen forward, unknown?)
        fn plan() -> impl Strategy<Value = Vec<(u8, Ask, u8, u8, u8, u8)>> {
            prop::collection::vec((0u8..3, ask(), 0u8..3, 0u8..4, 0u8..4, 0u8..12), 1..60)
        }

        /// Runs `plan` against a sequential store and records a history: op `i` runs at
        /// `[10 i, 10 i + 1]`, widened by the plan (widening keeps a history linearizable),
        /// some ops' outcomes dropped (unknown), some refused for sure.
        fn simulate(plan: &[(u8, Ask, u8, u8, u8, u8)]) -> Vec<Op> {
            let mut store: HashMap<String, (String, u64)> = HashMap::new();
            let mut index = 1u64;
            let mut ops = Vec::new();
            for (i, (key, ask, others, back, fwd, fate)) in plan.iter().enumerate() {
                let key = format!("k{key}");
                index += 1 + *others as u64;
                let value = unique_value(i % 4, i as u64);
                let current = store.get(&key).map(|(_, v)| *v);
                let (kind, result) = match ask {
                    Ask::Put => {
                        let kind = OpKind::Put {
                            value: value.clone(),
                        };
                        if *fate == 11 {
                            // Refused for sure: nothing happens, not even a log entry.
                            index -= 1;
                            let at = 10 * i as u64;
                            ops.push(Op {
                                id: ops.len(),
                                client: i % 4,
                                key: key.clone(),
                                kind,
                                invoke_ns: at,
                                complete_ns: Some(at + 1),
                                outcome: Outcome::Failed("invalid argument".into()),
                            });
                            continue;
                        }
                        store.insert(key.clone(), (value, index));
                        (kind, OpResult::Put { version: index })
                    }
                    Ask::Get => {
                        index -= 1 + *others as u64; // reads take no log entry
                        (
                            OpKind::Get,
                            OpResult::Get {
                                found: store.get(&key).cloned(),
                            },
                        )
                    }
                    Ask::Delete => (
                        OpKind::Delete,
                        OpResult::Delete {
                            existed: store.remove(&key).is_some(),
                        },
                    ),
                    Ask::Cas(how) => {
                        let expected = match how {
                            0 => current,
                            1 => None,
                            _ => Some(current.unwrap_or(0) + 1),
                        };
                        let kind = OpKind::Cas {
                            expected,
                            value: value.clone(),
                        };
                        if expected == current {
                            store.insert(key.clone(), (value, index));
                            (
                                kind,
                                OpResult::Cas {
                                    succeeded: true,
                                    current: Some(index),
                                },
                            )
                        } else {
                            (
                                kind,
                                OpResult::Cas {
                                    succeeded: false,
                                    current,
                                },
                            )
                        }
                    }
                };
                let invoke = (10 * i as u64).saturating_sub(12 * *back as u64);
                let unknown = *fate < 2;
                ops.push(Op {
                    id: ops.len(),
                    client: i % 4,
                    key,
                    kind,
                    invoke_ns: invoke,
                    complete_ns: (!unknown).then_some(10 * i as u64 + 1 + 12 * *fwd as u64),
                    outcome: if unknown {
                        Outcome::Unknown("timeout".into())
                    } else {
                        Outcome::Ok(result)
                    },
                });
            }
            ops
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            #[test]
            fn histories_of_a_sequential_store_are_linearizable(plan in plan()) {
                let ops = simulate(&plan);
                let r = check(&ops, Budget::default());
                prop_assert!(r.is_linearizable(), "{}\n{:#?}", r, ops);
            }

            #[test]
            fn a_stale_read_in_a_sequential_history_is_caught(plan in plan()) {
                let Some((ops, what)) = stale_read_mutation(&simulate(&plan)) else {
                    return Err(TestCaseError::reject("no stale read to plant"));
                };
                let r = check(&ops, Budget::default());
                prop_assert!(r.is_illegal(), "accepted a stale read ({}): {}\n{:#?}", what, r, ops);
            }
        }
    }
}
