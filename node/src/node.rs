//! Starting and stopping a node.
//!
//! ```text
//! Node::start(config)
//!   validate config → lock the data dir → catalog (node id, cluster id) → open the WAL
//!   → start the meta group and every group the WAL has a log of (log store on the WAL,
//!     state machine, network)
//!   → bind the listener → serve Kv, Admin, Transport, health, reflection
//!   → the reconciler (groups follow the shard map) and the controller (moves replicas and
//!     leaders while this node leads the meta group)
//! NodeHandle::shutdown()
//!   stop accepting → shut every Raft group down → flush and stop the WAL
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use islab_proto::raft::v1::transport_server::TransportServer;
use islab_proto::v1::admin_server::AdminServer;
use islab_proto::v1::kv_server::KvServer;
use islab_raft::TransportService;
use islab_storage::{Catalog, DataDir, Wal};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;

use crate::admin::service::AdminService;
use crate::cluster_id::ClusterId;
use crate::config::NodeConfig;
use crate::control::{controller, quiesce, reconciler, wal_budget};
use crate::error::{Error, Result};
use crate::kv::service::KvService;
use crate::node_state::{META_GROUP, NodeState};
use crate::observe;
use crate::observe::grpc::GrpcMetricsLayer;

/// Entry point: [`Node::start`].
pub struct Node;

/// A running node. Dropping it without [`NodeHandle::shutdown`] stops the server but skips the
/// orderly Raft shutdown.
pub struct NodeHandle {
    addr: SocketAddr,
    /// Where `/metrics`, `/livez` and `/readyz` are served, if they are.
    metrics_addr: Option<SocketAddr>,
    state: Arc<NodeState>,
    stop: CancellationToken,
    server: Option<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
}

impl Node {
    /// Starts a node: recovers its data, starts its groups, and serves on `config.listen`.
    /// Returns once the listener is bound.
    pub async fn start(config: NodeConfig) -> Result<NodeHandle> {
        config.validate()?;
        let config = Arc::new(config);
        // Opening the data directory, sled and the WAL block (file locks, reads, fsyncs): off
        // the async workers.
        let opened = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_data_dir(&config))
        };
        let (data_dir, cluster) = opened.await.map_err(|e| Error::Internal(e.to_string()))??;

        let wal_dir = data_dir.wal_dir();
        let wal_config = config.wal.clone();
        let (wal, report) = tokio::task::spawn_blocking(move || Wal::open(wal_dir, wal_config))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if report.torn_tail.is_some() || !report.skipped.is_empty() {
            tracing::warn!(?report, "the WAL needed repair at open");
        }

        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics_listener = match config.metrics_listen {
            Some(at) => {
                let listener = observe::bind(at).await?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| Error::Bind { addr: at, source })?;
                Some((listener, bound))
            }
            None => None,
        };
        let advertise = config.advertise.clone().unwrap_or_else(|| addr.to_string());
        let state = Arc::new(NodeState::new(
            config.clone(),
            advertise,
            cluster,
            wal,
            data_dir,
        ));
        state.start_group(META_GROUP).await?;
        // Every group with a log here restarts at once, before the map is read, so a replica
        // that restarts serves its shard as soon as it can.
        for group in state.wal.groups() {
            if group != META_GROUP {
                state.start_group(group).await?;
            }
        }

        let stop = state.stop.clone();
        let server = tokio::spawn(serve(state.clone(), listener, stop.clone()));
        state.tasks.spawn(reconciler::run(state.clone()));
        state.tasks.spawn(controller::run(state.clone()));
        state.tasks.spawn(quiesce::run(state.clone()));
        state.tasks.spawn(wal_budget::run(state.clone()));
        state.tasks.spawn(state.disk.clone().watch(stop.clone()));
        let metrics_addr = metrics_listener.map(|(listener, at)| {
            tracing::info!(%at, "serving /metrics, /livez and /readyz");
            state.tasks.spawn(observe::serve(state.clone(), listener));
            at
        });
        tracing::info!(
            node = config.id,
            %addr,
            advertise = %state.advertise,
            durability = %config.wal.durability,
            cluster = ?state.cluster.get(),
            "node started"
        );
        Ok(NodeHandle {
            addr,
            metrics_addr,
            state,
            stop,
            server: Some(server),
        })
    }
}

/// Locks the data directory, clears half-received snapshots, and checks the catalog's node id
/// (recording it on first start). Blocking.
fn open_data_dir(config: &NodeConfig) -> Result<(DataDir, ClusterId)> {
    let data_dir = DataDir::open(&config.data_dir)?;
    data_dir.clear_incoming()?;
    let catalog = Catalog::open(&data_dir.catalog_dir())?;
    match catalog.node_id()? {
        Some(found) if found != config.id => {
            return Err(Error::WrongNode {
                dir: config.data_dir.clone(),
                found,
                configured: config.id,
            });
        }
        Some(_) => {}
        None => catalog.set_node_id(config.id)?,
    }
    let cluster = ClusterId::load(catalog)?;
    Ok((data_dir, cluster))
}

async fn serve(
    state: Arc<NodeState>,
    listener: TcpListener,
    stop: CancellationToken,
) -> std::result::Result<(), tonic::transport::Error> {
    let max = state.config.limits.max_message_bytes();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<KvServer<KvService>>().await;
    health.set_serving::<AdminServer<AdminService>>().await;
    // Both reflection versions, so older and newer grpcurl alike can list the services.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(islab_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor set is valid");
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(islab_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptor set is valid");
    let grpc_metrics = GrpcMetricsLayer {
        stats: state.grpc.clone(),
    };
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .layer(grpc_metrics)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            KvServer::new(KvService {
                node: state.clone(),
            })
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        )
        .add_service(
            AdminServer::new(AdminService {
                node: state.clone(),
            })
            .max_decoding_message_size(max),
        )
        .add_service(
            TransportServer::new(TransportService::new(state))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        // `tcp_nodelay` above is ignored for an incoming stream of our own: the accepted
        // sockets get it here. Without it Nagle holds a small answer written behind another
        // unacknowledged one until the peer's delayed ACK (~40 ms): 1-2 % of single-client
        // puts took 30-45 ms.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop.cancelled_owned(),
        )
        .await
}

impl NodeHandle {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the monitoring listener is bound to (`--metrics-listen`), if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The `host:port` peers and clients use.
    pub fn advertise_addr(&self) -> &str {
        &self.state.advertise
    }

    pub fn id(&self) -> u64 {
        self.state.id()
    }

    /// Stops accepting requests, waits for the background loops, shuts every Raft group
    /// down, waits for their drivers, and flushes the WAL — in that order, so nothing starts
    /// or writes to a group that is stopping, and nothing writes to the WAL once it closes.
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, server).await;
        }
        wait_for(&self.state.tasks, "background loops").await;
        for shard in self.state.shards() {
            if let Err(e) = shard.raft.shutdown().await {
                tracing::warn!(group = shard.group, error = %e, "raft shutdown");
            }
        }
        wait_for(&self.state.drivers, "read and write drivers").await;
        let wal = self.state.wal.clone();
        tokio::task::spawn_blocking(move || wal.shutdown())
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        tracing::info!(node = self.state.id(), "node stopped");
        Ok(())
    }

    /// Resolves when the server stops on its own: it failed, or a group stopped for good
    /// (the error says which); `shutdown` is the normal way out.
    pub async fn stopped(&mut self) -> Result<()> {
        let served = match self.server.as_mut() {
            Some(server) => match server.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Error::Internal(format!("server: {e}"))),
                Err(e) => Err(Error::Internal(format!("server task: {e}"))),
            },
            None => Ok(()),
        };
        self.server = None;
        if let Some(reason) = self.state.fatal.lock().unwrap().clone() {
            return Err(Error::Unavailable(reason));
        }
        served
    }
}

/// How long shutdown waits for each stage (the server, the loops, the drivers) to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Closes `tasks` and waits for them. Each watches the node's stop token, so this is quick;
/// if some are still stuck after [`SHUTDOWN_WAIT`] the shutdown goes on and says so.
async fn wait_for(tasks: &TaskTracker, what: &str) {
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_WAIT, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_running = tasks.len(),
            "{what} did not finish within {SHUTDOWN_WAIT:?}; shutting down anyway"
        );
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use islab_proto::v1::admin_client::AdminClient;
    use islab_proto::v1::kv_client::KvClient;
    use islab_proto::v1::{GetRequest, InitRequest, Member, PutRequest, ReadConsistency};

    use super::*;

    /// Shutdown returns only once every loop it started and every group's driver has
    /// finished (writes in flight while it runs): nothing of the node is left running to
    /// touch the closed WAL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_waits_for_every_loop_and_driver() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            id: 1,
            data_dir: dir.path().join("n1"),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let node = Node::start(config).await.expect("node starts");
        let addr = format!("http://{}", node.advertise_addr());
        let mut admin = AdminClient::connect(addr.clone()).await.unwrap();
        admin
            .init(InitRequest {
                members: vec![Member {
                    id: 1,
                    addr: node.advertise_addr().to_string(),
                    voter: true,
                }],
                shards: 2,
                replication: 1,
            })
            .await
            .expect("init");
        // Writes and linearizable reads, so the groups' gatherers and read rounds have run.
        let mut kv = KvClient::connect(addr).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..20 {
            let key = format!("k{i}");
            loop {
                let put = kv
                    .put(PutRequest {
                        key: key.clone().into(),
                        value: "v".into(),
                        ..Default::default()
                    })
                    .await;
                let got = match put {
                    Ok(_) => {
                        kv.get(GetRequest {
                            key: key.clone().into(),
                            consistency: ReadConsistency::Linearizable as i32,
                        })
                        .await
                    }
                    Err(e) => Err(e),
                };
                match got {
                    Ok(r) => {
                        assert!(r.get_ref().found, "{key} written and not found");
                        break;
                    }
                    // Shards are still electing their first leader.
                    Err(e) if e.code() == tonic::Code::Unavailable => {
                        assert!(Instant::now() < deadline, "{key} not served: {e:?}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("{key}: {e:?}"),
                }
            }
        }
        let state = node.state.clone();
        assert!(!state.tasks.is_empty(), "the background loops run");
        // Writers keep the gatherers' drivers busy while the node shuts down.
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let mut kv = kv.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let put = PutRequest {
                            key: format!("w{w}-{i}").into(),
                            value: "v".into(),
                            ..Default::default()
                        };
                        if kv.put(put).await.is_err() {
                            return i;
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        // One slow finisher in each tracker: shutdown must wait for it, not just cancel it.
        let loop_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let driver_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for (tracker, done) in [(&state.tasks, &loop_done), (&state.drivers, &driver_done)] {
            let (stop, done) = (state.stop.clone(), done.clone());
            tracker.spawn(async move {
                stop.cancelled().await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        }

        node.shutdown().await.expect("shutdown");
        assert!(
            loop_done.load(std::sync::atomic::Ordering::SeqCst),
            "shutdown did not wait for a loop"
        );
        assert!(
            driver_done.load(std::sync::atomic::Ordering::SeqCst),
            "shutdown did not wait for a driver"
        );
        for w in writers {
            w.await.expect("a writer stops at the first refused write");
        }
        assert!(
            state.tasks.is_closed() && state.tasks.is_empty(),
            "loops left running: {}",
            state.tasks.len()
        );
        assert!(
            state.drivers.is_closed() && state.drivers.is_empty(),
            "drivers left running: {}",
            state.drivers.len()
        );
    }
}
