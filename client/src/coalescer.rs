//! [`Coalescer`]: the one mechanism behind write and read coalescing — concurrent requests of
//! one client to the same place (a shard, or a shard and a consistency) travel together as
//! one RPC, and a lone request pays no delay.
//!
//! ```text
//! req(a) ──► fewer than max_in_flight in flight?  yes ─► Alone(turn): sent at once, by itself
//! req(b) ──►                                       no ─► queued ┐
//! req(c) ──►                                       no ─► queued ┴─► turn given back (answer in,
//!                                                                   or caller gone): one send [b, c]
//! ```
//!
//! The invariants it keeps, which the write and read sides (`write_coalesce.rs`,
//! `read_coalesce.rs`) rely on:
//! - at most `max_in_flight` requests per place are in flight (each a request sent alone
//!   holding a [`TurnGuard`], or one flusher task sending batch after batch);
//! - a queued request leaves in a batch sent after it was queued (so a queued linearizable
//!   read still sees every write acknowledged before it was called);
//! - a turn is given back when its guard drops, answered or not, so a caller that gives up
//!   does not stall the requests behind it;
//! - a batch refused as a whole ([`Combine::refused_as_whole`]) answers each of its requests
//!   [`Entered::Alone`] without a turn: the caller sends it again by itself; any other failure
//!   is every request's failure.
//!
//! What a request is, when one may join a queue, and how a batch is sent is the
//! [`Combine`] implementation's business.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// The parts of coalescing that differ between kinds of requests.
pub(crate) trait Combine: Send + Sync + 'static {
    /// Where requests gather: each value has its own queue and its own turns.
    type At: Copy + Eq + Hash + Send + Sync + 'static;
    /// One caller's request.
    type Request: Send + 'static;
    /// One request's own answer, out of a batch's.
    type Answer: Send + 'static;
    /// What a queue tracks about the requests waiting in it (sizes, keys), reset when they leave.
    type Load: Default + Send;
    /// What a request is called in errors ("write", "get").
    const WHAT: &'static str;

    /// Whether `request` may wait in a queue already holding `waiting` requests with `load`
    /// (and if so, adds it to `load`). A request refused here is sent at once, by itself.
    fn admit(&self, load: &mut Self::Load, waiting: usize, request: &Self::Request) -> bool;

    /// Sends `requests` (all gathered at `at`) as one RPC: one answer per request, in order.
    fn send(
        &self,
        at: Self::At,
        requests: Vec<Self::Request>,
    ) -> impl Future<Output = Result<Vec<Self::Answer>>> + Send;

    /// Whether `error` refused the batch as a whole without applying any of it, so that each
    /// request should be sent again by itself.
    fn refused_as_whole(error: &Error) -> bool;
}

/// What a request handed to the coalescer comes back as.
pub(crate) enum Entered<C: Combine> {
    /// Answered as part of a batch.
    Done(C::Answer),
    /// To be sent by the caller, alone. Holding the place's turn (`Some`), the caller keeps
    /// it until its answer is in; dropping it sends what gathered meanwhile.
    Alone(Option<TurnGuard<C>>),
}

/// What a queued request is answered with.
enum Outcome<A> {
    Done(A),
    /// The batch was refused as a whole without being applied: send the request alone.
    Alone,
}

struct Waiting<C: Combine> {
    request: C::Request,
    answer: oneshot::Sender<Result<Outcome<C::Answer>>>,
}

struct Queue<C: Combine> {
    /// Requests of this place in flight (each one sent alone, or a flusher task).
    in_flight: usize,
    waiting: Vec<Waiting<C>>,
    load: C::Load,
}

impl<C: Combine> Default for Queue<C> {
    fn default() -> Self {
        Queue {
            in_flight: 0,
            waiting: Vec::new(),
            load: C::Load::default(),
        }
    }
}

/// Per-place queues of requests waiting for a turn, and the combiner that sends them.
pub(crate) struct Coalescer<C: Combine> {
    combiner: C,
    max_in_flight: usize,
    queues: Mutex<HashMap<C::At, Queue<C>>>,
}

/// One place's turn to send; dropped (answer in, or the caller gone), it passes the turn to
/// the requests that gathered meanwhile.
pub(crate) struct TurnGuard<C: Combine> {
    coalescer: Arc<Coalescer<C>>,
    at: C::At,
}

impl<C: Combine> Drop for TurnGuard<C> {
    fn drop(&mut self) {
        self.coalescer.done(self.at);
    }
}

impl<C: Combine> Coalescer<C> {
    /// A coalescer sending with `combiner`, allowing `max_in_flight` (at least 1) requests per
    /// place in flight.
    pub(crate) fn new(combiner: C, max_in_flight: usize) -> Self {
        Coalescer {
            combiner,
            max_in_flight,
            queues: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<C::At, Queue<C>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `request` for `at` to the coalescer: it goes now (fewer than `max_in_flight` of
    /// its place were in flight; it now holds a turn), or now without a turn (the queue does
    /// not admit it), or it waits and is answered by the next batch.
    pub(crate) async fn enter(
        self: &Arc<Self>,
        at: C::At,
        request: C::Request,
    ) -> Result<Entered<C>> {
        let rx = {
            let mut queues = self.lock();
            let q = queues.entry(at).or_default();
            if q.in_flight < self.max_in_flight {
                q.in_flight += 1;
                return Ok(Entered::Alone(Some(TurnGuard {
                    coalescer: self.clone(),
                    at,
                })));
            }
            if !self.combiner.admit(&mut q.load, q.waiting.len(), &request) {
                return Ok(Entered::Alone(None));
            }
            let (answer, rx) = oneshot::channel();
            q.waiting.push(Waiting { request, answer });
            rx
        };
        match rx.await {
            Ok(Ok(Outcome::Done(answer))) => Ok(Entered::Done(answer)),
            Ok(Ok(Outcome::Alone)) => Ok(Entered::Alone(None)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Protocol(format!(
                "a coalesced {} lost its batch",
                C::WHAT
            ))),
        }
    }

    /// Takes the requests gathered at `at`, or gives the caller's turn back (one request
    /// fewer in flight) when there are none.
    fn take(&self, at: C::At) -> Vec<Waiting<C>> {
        let mut queues = self.lock();
        let q = queues.entry(at).or_default();
        if q.waiting.is_empty() {
            q.in_flight = q.in_flight.saturating_sub(1);
            return Vec::new();
        }
        q.load = C::Load::default();
        std::mem::take(&mut q.waiting)
    }

    /// Gives a turn back without sending anything (one request fewer in flight).
    fn release(&self, at: C::At) {
        let mut queues = self.lock();
        let q = queues.entry(at).or_default();
        q.in_flight = q.in_flight.saturating_sub(1);
    }

    /// Called when a turn is given back: sends what gathered meanwhile, batch after batch,
    /// until nothing waits.
    fn done(self: &Arc<Self>, at: C::At) {
        let waiting = self.take(at);
        if waiting.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left (the client is being torn down): nobody is there to answer the
            // gathered calls (dropping their senders fails them); give the turn back.
            self.release(at);
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            let mut waiting = waiting;
            while !waiting.is_empty() {
                this.flush(at, waiting).await;
                waiting = this.take(at);
            }
        });
    }

    /// Sends `waiting` as one batch and answers each request.
    async fn flush(&self, at: C::At, waiting: Vec<Waiting<C>>) {
        let (requests, answers): (Vec<_>, Vec<_>) =
            waiting.into_iter().map(|w| (w.request, w.answer)).unzip();
        let count = requests.len();
        match self.combiner.send(at, requests).await {
            Ok(results) if results.len() == count => {
                for (answer, r) in answers.into_iter().zip(results) {
                    let _ = answer.send(Ok(Outcome::Done(r)));
                }
            }
            Ok(results) => {
                let e = Error::Protocol(format!(
                    "a batch of {count} coalesced {}s answered with {} results",
                    C::WHAT,
                    results.len()
                ));
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
            // Refused as a whole, before anything was applied: one request spoiled it for all.
            Err(e) if C::refused_as_whole(&e) => {
                for answer in answers {
                    let _ = answer.send(Ok(Outcome::Alone));
                }
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::Semaphore;
    use tokio::task::JoinHandle;

    use super::*;

    /// A combiner over numbers: a batch answers each number times ten, after `gate` lets it
    /// through; every sent batch is recorded. Requests 0 spoil a batch as a whole, requests
    /// 99 fail it for all; at most `room` requests wait at once.
    struct Tens {
        sent: Mutex<Vec<Vec<u32>>>,
        gate: Semaphore,
        room: usize,
    }

    impl Combine for Tens {
        type At = u8;
        type Request = u32;
        type Answer = u32;
        type Load = ();
        const WHAT: &'static str = "number";

        fn admit(&self, _: &mut (), waiting: usize, _: &u32) -> bool {
            waiting < self.room
        }

        async fn send(&self, _: u8, requests: Vec<u32>) -> Result<Vec<u32>> {
            self.sent.lock().unwrap().push(requests.clone());
            self.gate.acquire().await.unwrap().forget();
            if requests.contains(&0) {
                return Err(Error::InvalidArgument("zero".into()));
            }
            if requests.contains(&99) {
                return Err(Error::Protocol("down".into()));
            }
            Ok(requests.iter().map(|n| n * 10).collect())
        }

        fn refused_as_whole(error: &Error) -> bool {
            matches!(error, Error::InvalidArgument(_))
        }
    }

    fn coalescer(max_in_flight: usize) -> Arc<Coalescer<Tens>> {
        let tens = Tens {
            sent: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
            room: 8,
        };
        Arc::new(Coalescer::new(tens, max_in_flight))
    }

    /// Enters `n` in a task and waits until it is queued (or answered).
    async fn queued(c: &Arc<Coalescer<Tens>>, n: u32) -> JoinHandle<Result<Entered<Tens>>> {
        let before = c.lock().get(&1).map_or(0, |q| q.waiting.len());
        let task = tokio::spawn({
            let c = c.clone();
            async move { c.enter(1, n).await }
        });
        for _ in 0..1000 {
            if c.lock().get(&1).map_or(0, |q| q.waiting.len()) > before || task.is_finished() {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("request {n} was neither queued nor answered");
    }

    fn done(entered: Result<Entered<Tens>>) -> u32 {
        match entered {
            Ok(Entered::Done(n)) => n,
            Ok(Entered::Alone(_)) => panic!("expected a batched answer, got Alone"),
            Err(e) => panic!("expected a batched answer, got {e}"),
        }
    }

    fn in_flight(c: &Coalescer<Tens>) -> usize {
        c.lock().get(&1).map_or(0, |q| q.in_flight)
    }

    #[tokio::test]
    async fn a_lone_request_goes_at_once_holding_the_turn() {
        let c = coalescer(1);
        let Entered::Alone(Some(turn)) = c.enter(1, 5).await.unwrap() else {
            panic!("a lone request must be sent at once, with the turn");
        };
        assert_eq!(in_flight(&c), 1);
        // Another place is not busy: its request goes at once too.
        assert!(matches!(c.enter(2, 6).await, Ok(Entered::Alone(Some(_)))));
        drop(turn);
        assert_eq!(in_flight(&c), 0, "the turn is given back");
        assert!(
            c.combiner.sent.lock().unwrap().is_empty(),
            "nothing batched"
        );
    }

    #[tokio::test]
    async fn requests_queued_behind_the_turn_leave_together_after_it() {
        let c = coalescer(1);
        let Ok(Entered::Alone(Some(turn))) = c.enter(1, 1).await else {
            panic!("first request takes the turn");
        };
        let b = queued(&c, 2).await;
        let d = queued(&c, 3).await;
        assert!(
            c.combiner.sent.lock().unwrap().is_empty(),
            "nothing leaves before the turn"
        );
        drop(turn);
        c.combiner.gate.add_permits(1);
        assert_eq!(done(b.await.unwrap()), 20);
        assert_eq!(done(d.await.unwrap()), 30);
        assert_eq!(*c.combiner.sent.lock().unwrap(), vec![vec![2, 3]]);
        // The flusher gave the turn back once nothing waited.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(in_flight(&c), 0);
    }

    #[tokio::test]
    async fn max_in_flight_turns_go_at_once_and_the_next_waits() {
        let c = coalescer(2);
        // Bounded: a broken turn limit must fail the test, not hang it.
        let within = |f| tokio::time::timeout(Duration::from_secs(30), f);
        let Ok(Ok(Entered::Alone(Some(t1)))) = within(c.enter(1, 1)).await else {
            panic!("the first request did not go at once")
        };
        let Ok(Ok(Entered::Alone(Some(t2)))) = within(c.enter(1, 2)).await else {
            panic!("the second request did not go at once (max in flight 2)")
        };
        let third = queued(&c, 3).await;
        assert!(!third.is_finished());
        drop(t1);
        c.combiner.gate.add_permits(1);
        assert_eq!(done(third.await.unwrap()), 30);
        drop(t2);
    }

    #[tokio::test]
    async fn a_full_queue_sends_the_next_request_alone_without_a_turn() {
        let tens = Tens {
            sent: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
            room: 1,
        };
        let c = Arc::new(Coalescer::new(tens, 1));
        let Ok(Entered::Alone(Some(turn))) = c.enter(1, 1).await else {
            panic!()
        };
        let queued_one = queued(&c, 2).await;
        assert!(matches!(c.enter(1, 3).await, Ok(Entered::Alone(None))));
        assert_eq!(in_flight(&c), 1, "a request sent without a turn takes none");
        drop(turn);
        c.combiner.gate.add_permits(1);
        assert_eq!(done(queued_one.await.unwrap()), 20);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_stall_the_next() {
        let c = coalescer(1);
        // The turn holder gives up (its future is dropped mid-call): the turn comes back.
        let holder = tokio::spawn({
            let c = c.clone();
            async move {
                let _turn = c.enter(1, 1).await;
                std::future::pending::<()>().await;
            }
        });
        while in_flight(&c) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // A queued caller gives up too; the one behind it is still answered.
        let quitter = queued(&c, 2).await;
        let patient = queued(&c, 3).await;
        quitter.abort();
        holder.abort();
        let _ = holder.await;
        c.combiner.gate.add_permits(1);
        assert_eq!(done(patient.await.unwrap()), 30);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(in_flight(&c), 0);
        // And the place is free again: the next request goes at once.
        assert!(matches!(c.enter(1, 4).await, Ok(Entered::Alone(Some(_)))));
    }

    #[tokio::test]
    async fn a_batch_refused_as_a_whole_sends_each_request_alone() {
        let c = coalescer(1);
        let Ok(Entered::Alone(Some(turn))) = c.enter(1, 1).await else {
            panic!()
        };
        let good = queued(&c, 2).await;
        let bad = queued(&c, 0).await;
        drop(turn);
        c.combiner.gate.add_permits(1);
        for task in [good, bad] {
            assert!(
                matches!(task.await.unwrap(), Ok(Entered::Alone(None))),
                "each request is sent again alone, without a turn"
            );
        }
    }

    #[tokio::test]
    async fn any_other_failure_is_every_requests_failure() {
        let c = coalescer(1);
        let Ok(Entered::Alone(Some(turn))) = c.enter(1, 1).await else {
            panic!()
        };
        let a = queued(&c, 2).await;
        let b = queued(&c, 99).await;
        drop(turn);
        c.combiner.gate.add_permits(1);
        for task in [a, b] {
            assert!(matches!(task.await.unwrap(), Err(Error::Protocol(_))));
        }
    }

    #[tokio::test]
    async fn requests_gathering_during_a_batch_leave_in_the_next() {
        let c = coalescer(1);
        let Ok(Entered::Alone(Some(turn))) = c.enter(1, 1).await else {
            panic!()
        };
        let first = queued(&c, 2).await;
        drop(turn);
        // The flusher holds the turn while its batch is out: a new request queues behind it.
        while c.combiner.sent.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let second = queued(&c, 3).await;
        c.combiner.gate.add_permits(2);
        assert_eq!(done(first.await.unwrap()), 20);
        assert_eq!(done(second.await.unwrap()), 30);
        assert_eq!(*c.combiner.sent.lock().unwrap(), vec![vec![2], vec![3]]);
    }
}
