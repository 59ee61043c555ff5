//! Network faults on loopback: a TCP proxy on every directed link between two nodes.
//!
//! Node `a` dials node `b` through the proxy of link `a → b` (the node's
//! `--peer-address-map`); requests and their answers travel that one connection, so cutting
//! both links between two nodes separates them while clients still reach every node (as in
//! Jepsen's partitions, where the clients sit outside the cut).
//!
//! A link can be:
//!
//! - **cut**: bytes stop moving both ways and new connections are accepted but carry nothing,
//!   as when packets are dropped: the dialer sees timeouts, not refusals. Nothing is thrown
//!   away: when the link heals, what waited is delivered, late, as TCP would retransmit it,
//!   so a node also sees stale messages after a partition.
//! - **slow**: every chunk is delayed by `delay` plus up to `jitter`.
//! - **lossy**: each chunk is lost with probability `loss` and arrives only after
//!   [`RETRANSMIT`], as TCP delivers a lost segment after its retransmission timeout, and
//!   whatever follows waits behind it (delivery stays in order).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How late a lost chunk arrives: Linux's minimum TCP retransmission timeout.
pub const RETRANSMIT: Duration = Duration::from_millis(200);

/// What a link does to the bytes it carries.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    pub cut: bool,
    pub delay: Duration,
    pub jitter: Duration,
    /// Probability (0..1) that a chunk is lost once and retransmitted.
    pub loss: f64,
}

impl Faults {
    /// A healthy link.
    pub const NONE: Faults = Faults {
        cut: false,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
    };
}

/// One directed link: a listener on a free loopback port forwarding to `target`.
pub struct LinkProxy {
    port: u16,
    faults: watch::Sender<Faults>,
    task: JoinHandle<()>,
}

impl LinkProxy {
    /// Starts forwarding to `target` (`host:port`), on `runtime`.
    pub fn start(target: String, runtime: &tokio::runtime::Handle) -> LinkProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("proxy nonblocking");
        let port = listener.local_addr().expect("proxy addr").port();
        let (faults, rx) = watch::channel(Faults::NONE);
        let task = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("proxy listener");
            accept_loop(listener, target, rx).await
        });
        LinkProxy { port, faults, task }
    }

    /// Where the dialer connects.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: String, faults: watch::Receiver<Faults>) {
    // Dropped with the task: every connection's pipes go with it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, _)) = accepted else {
                    // Out of file descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                connections.spawn(connection(inbound, target.clone(), faults.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One proxied connection: connects to the target once the link is not cut, then runs a pipe
/// each way until either side closes.
async fn connection(inbound: TcpStream, target: String, mut faults: watch::Receiver<Faults>) {
    if faults.wait_for(|f| !f.cut).await.is_err() {
        return;
    }
    let Ok(outbound) = TcpStream::connect(&target).await else {
        return; // the node is down: the dialer sees the connection close
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let mut pipes = JoinSet::new();
    pipes.spawn(pipe(in_read, out_write, faults.clone()));
    pipes.spawn(pipe(out_read, in_write, faults));
    // Either direction ending ends the connection (dropping the other pipe closes its halves).
    pipes.join_next().await;
}

/// Copies `from` to `to`, each chunk delivered no earlier than its arrival plus the link's
/// delay, never while the link is cut, and in order.
async fn pipe<R, W>(mut from: R, mut to: W, faults: watch::Receiver<Faults>)
where
    R: AsyncReadExt + Unpin + Send + 'static,
    W: AsyncWriteExt + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let _reader = AbortOnDrop(tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    }));
    let mut faults = faults;
    let mut last_due = Instant::now();
    while let Some((arrived, chunk)) = rx.recv().await {
        let f = *faults.borrow_and_update();
        let mut due = arrived + f.delay;
        if !f.jitter.is_zero() {
            due += f.jitter.mul_f64(rand::rng().random::<f64>());
        }
        if f.loss > 0.0 && rand::rng().random::<f64>() < f.loss {
            due += RETRANSMIT;
        }
        due = due.max(last_due);
        last_due = due;
        tokio::time::sleep_until(due).await;
        if faults.wait_for(|f| !f.cut).await.is_err() {
            break;
        }
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Aborts its task when dropped (a pipe aborted with its connection takes its reader along).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A proxy on every directed link among a set of nodes.
///
/// The proxies run on a runtime of their own, so a test that blocks its own threads (waiting
/// for a process to start, say) never stalls the traffic between the nodes.
pub struct Net {
    /// (from, to) → the proxy `from` dials `to` through.
    links: BTreeMap<(u64, u64), LinkProxy>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Net {
    /// Proxies for every ordered pair of `nodes` (id, address).
    pub fn start(nodes: &[(u64, String)]) -> Net {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("link-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        let mut links = BTreeMap::new();
        for (from, _) in nodes {
            for (to, addr) in nodes {
                if from != to {
                    links.insert(
                        (*from, *to),
                        LinkProxy::start(addr.clone(), runtime.handle()),
                    );
                }
            }
        }
        Net {
            links,
            runtime: Some(runtime),
        }
    }

    /// Node `id`'s `--peer-address-map` value: each peer's address → its link's proxy.
    pub fn peer_map(&self, id: u64, addr_of: impl Fn(u64) -> String) -> String {
        self.links
            .iter()
            .filter(|((from, _), _)| *from == id)
            .map(|((_, to), proxy)| format!("{}={}", addr_of(*to), proxy.addr()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Sets the faults of both links between `a` and `b`.
    pub fn set_between(&self, a: u64, b: u64, faults: Faults) {
        for key in [(a, b), (b, a)] {
            if let Some(p) = self.links.get(&key) {
                p.set(faults);
            }
        }
    }

    /// Cuts every link between the nodes of `side` and the others: two sides that cannot
    /// reach each other, each still whole inside.
    pub fn partition(&self, side: &[u64]) {
        for ((from, to), proxy) in &self.links {
            if side.contains(from) != side.contains(to) {
                proxy.set(Faults {
                    cut: true,
                    ..proxy.faults()
                });
            }
        }
    }

    /// The same faults on every link.
    pub fn set_all(&self, faults: Faults) {
        for proxy in self.links.values() {
            proxy.set(faults);
        }
    }

    /// Every link healthy again.
    pub fn heal(&self) {
        self.set_all(Faults::NONE);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.links.clear();
        // Dropped from async code (a test's runtime), a runtime must not wait for its tasks.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
