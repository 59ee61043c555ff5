//! A fake IsLabDB node for the SDK's tests: a real tonic server on `127.0.0.1:0` that serves
//! `Kv` and `Admin` from a small in-memory map, records every call it receives, and runs a
//! script that can answer a call with an error instead of serving it (or after serving it,
//! to simulate an answer lost on the way back).
//!
//! Only what the SDK's behaviour depends on is modelled: versions are a per-node counter,
//! puts are deduplicated by `WriteId`, scans page by `limit` (capped at `page_max`) and
//! continue at `last key + \0`.

#![allow(dead_code)] // each test uses part of the fake

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use islab_proto::LEADER_METADATA;
use islab_proto::v1::admin_server::{Admin, AdminServer};
use islab_proto::v1::batch_op::Op;
use islab_proto::v1::kv_server::{Kv, KvServer};
use islab_proto::v1::*;
use tokio::sync::oneshot;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// What the script tells the node to do with a call.
pub enum Fault {
    /// Answer with this status without serving the call.
    Before(Status),
    /// Serve the call, then answer with this status (the answer is "lost").
    After(Status),
}

/// `script(method, calls of that method seen before this one)`.
pub type Script = Box<dyn Fn(&'static str, usize) -> Option<Fault> + Send + Sync>;

/// One call as the node received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: &'static str,
    pub write_id: Option<WriteId>,
    pub remote: Option<SocketAddr>,
    /// The `grpc-timeout` header, if the client sent one.
    pub grpc_timeout: Option<String>,
    pub scan: Option<ScanRequest>,
    pub consistency: Option<i32>,
    pub ttl_ms: Option<u64>,
}

#[derive(Default)]
struct Store {
    map: BTreeMap<Bytes, (Bytes, u64)>,
    index: u64,
    applied_puts: HashMap<(u64, u64), u64>,
    members: Vec<Member>,
}

pub struct State {
    pub node_id: u64,
    pub page_max: usize,
    script: Mutex<Option<Script>>,
    seen: Mutex<Vec<Seen>>,
    store: Mutex<Store>,
    addr: Mutex<String>,
}

/// A running fake node; stops when dropped.
pub struct FakeNode {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeNode {
    /// A node that serves everything.
    pub async fn start() -> FakeNode {
        FakeNode::start_with(1, Box::new(|_, _| None)).await
    }

    /// A node with this id and script.
    pub async fn start_with(node_id: u64, script: Script) -> FakeNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            node_id,
            page_max: 10,
            script: Mutex::new(Some(script)),
            seen: Mutex::new(Vec::new()),
            store: Mutex::new(Store::default()),
            addr: Mutex::new(addr.to_string()),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let service = Fake(state.clone());
        tokio::spawn(async move {
            Server::builder()
                .add_service(KvServer::new(service.clone()))
                .add_service(AdminServer::new(service))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        FakeNode {
            addr,
            state,
            shutdown: Some(tx),
        }
    }

    /// `host:port` of the node.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Replaces the script.
    pub fn script(&self, script: Script) {
        *self.state.script.lock().unwrap() = Some(script);
    }

    /// Every call received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Calls of `method` received so far.
    pub fn count(&self, method: &str) -> usize {
        self.seen().iter().filter(|s| s.method == method).count()
    }

    /// Stores a key directly, as if written earlier.
    pub fn insert(&self, key: &str, value: &str) {
        let mut store = self.state.store.lock().unwrap();
        store.index += 1;
        let version = store.index;
        store.map.insert(
            Bytes::copy_from_slice(key.as_bytes()),
            (Bytes::copy_from_slice(value.as_bytes()), version),
        );
    }

    /// The node's log index: how many writes it applied.
    pub fn applied(&self) -> u64 {
        self.state.store.lock().unwrap().index
    }

    /// The members the node knows.
    pub fn members(&self) -> Vec<Member> {
        self.state.store.lock().unwrap().members.clone()
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// UNAVAILABLE with the leader hint, as a follower answers.
pub fn not_leader(leader: &str) -> Status {
    let mut status = Status::unavailable("not the leader");
    status
        .metadata_mut()
        .insert(LEADER_METADATA, leader.parse().unwrap());
    status
}

#[derive(Clone)]
struct Fake(Arc<State>);

impl Fake {
    /// Records the call and asks the script what to do with it.
    fn enter<T>(&self, method: &'static str, request: &Request<T>, seen: Seen) -> Option<Fault> {
        let mut all = self.0.seen.lock().unwrap();
        let before = all.iter().filter(|s| s.method == method).count();
        all.push(Seen {
            method,
            remote: request.remote_addr(),
            grpc_timeout: request
                .metadata()
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            ..seen
        });
        drop(all);
        let script = self.0.script.lock().unwrap();
        script.as_ref().and_then(|s| s(method, before))
    }

    /// Runs `serve` unless the script says otherwise.
    fn run<T, R>(
        &self,
        method: &'static str,
        request: &Request<T>,
        seen: Seen,
        serve: impl FnOnce(&mut Store) -> Result<R, Status>,
    ) -> Result<Response<R>, Status> {
        let fault = self.enter(method, request, seen);
        if let Some(Fault::Before(status)) = fault {
            return Err(status);
        }
        let result = serve(&mut self.0.store.lock().unwrap());
        match fault {
            Some(Fault::After(status)) => Err(status),
            _ => result.map(Response::new),
        }
    }
}

fn seen(method: &'static str) -> Seen {
    Seen {
        method,
        write_id: None,
        remote: None,
        grpc_timeout: None,
        scan: None,
        consistency: None,
        ttl_ms: None,
    }
}

#[tonic::async_trait]
impl Kv for Fake {
    /// The fake is a cluster of one unsharded group: no map, so the SDK sends every call
    /// unrouted (not recorded, so call counts stay about the data calls).
    async fn get_shard_map(
        &self,
        _request: Request<GetShardMapRequest>,
    ) -> Result<Response<GetShardMapResponse>, Status> {
        Ok(Response::new(GetShardMapResponse { map: None }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = request.get_ref().clone();
        let s = Seen {
            write_id: r.id,
            ttl_ms: Some(r.ttl_ms),
            ..seen("Put")
        };
        self.run("Put", &request, s, |store| {
            let id = r.id.map(|id| (id.client_id, id.seq));
            if let Some(version) = id.and_then(|id| store.applied_puts.get(&id)) {
                return Ok(PutResponse { version: *version });
            }
            store.index += 1;
            let version = store.index;
            store.map.insert(r.key, (r.value, version));
            if let Some(id) = id {
                store.applied_puts.insert(id, version);
            }
            Ok(PutResponse { version })
        })
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let r = request.get_ref().clone();
        let s = Seen {
            consistency: Some(r.consistency),
            ..seen("Get")
        };
        self.run("Get", &request, s, |store| {
            Ok(match store.map.get(&r.key) {
                Some((value, version)) => GetResponse {
                    found: true,
                    value: value.clone(),
                    version: *version,
                },
                None => GetResponse::default(),
            })
        })
    }

    async fn get_many(
        &self,
        request: Request<GetManyRequest>,
    ) -> Result<Response<GetManyResponse>, Status> {
        let r = request.get_ref().clone();
        let s = Seen {
            consistency: Some(r.consistency),
            ..seen("GetMany")
        };
        self.run("GetMany", &request, s, |store| {
            let items = r
                .keys
                .iter()
                .map(|key| match store.map.get(key) {
                    Some((value, version)) => GetResponse {
                        found: true,
                        value: value.clone(),
                        version: *version,
                    },
                    None => GetResponse::default(),
                })
                .collect();
            Ok(GetManyResponse { items })
        })
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let r = request.get_ref().clone();
        let s = Seen {
            write_id: r.id,
            ..seen("Delete")
        };
        self.run("Delete", &request, s, |store| {
            store.index += 1;
            Ok(DeleteResponse {
                existed: store.map.remove(&r.key).is_some(),
            })
        })
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let r = request.get_ref().clone();
        let page_max = self.0.page_max;
        let s = Seen {
            scan: Some(r.clone()),
            consistency: Some(r.consistency),
            ..seen("Scan")
        };
        self.run("Scan", &request, s, |store| {
            let limit = match r.limit as usize {
                0 => page_max,
                n => n.min(page_max),
            };
            let mut matching = store
                .map
                .range(r.start.clone()..)
                .filter(|(k, _)| r.end.is_empty() || **k < r.end)
                .filter(|(k, _)| k.starts_with(&r.prefix));
            let items: Vec<KeyValue> = matching
                .by_ref()
                .take(limit)
                .map(|(k, (v, version))| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                    version: *version,
                })
                .collect();
            let more = matching.next().is_some();
            let next_start = match (more, items.last()) {
                (true, Some(last)) => {
                    let mut next = last.key.to_vec();
                    next.push(0);
                    Bytes::from(next)
                }
                _ => Bytes::new(),
            };
            Ok(ScanResponse {
                items,
                more,
                next_start,
            })
        })
    }

    async fn batch(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResponse>, Status> {
        let r = request.get_ref().clone();
        let s = Seen {
            write_id: r.id,
            ..seen("Batch")
        };
        self.run("Batch", &request, s, |store| {
            for (i, op) in r.ops.iter().enumerate() {
                if let Some(Op::Cas(cas)) = &op.op {
                    let current = store.map.get(&cas.key).map(|(_, v)| *v);
                    if current != cas.expected_version {
                        return Err(Status::failed_precondition(format!("op {i}: cas failed")));
                    }
                }
            }
            store.index += 1;
            let version = store.index;
            let results = r
                .ops
                .into_iter()
                .map(|op| match op.op {
                    Some(Op::Put(p)) => {
                        store.map.insert(p.key, (p.value, version));
                        OpResult {
                            version,
                            existed: false,
                        }
                    }
                    Some(Op::Cas(c)) => {
                        store.map.insert(c.key, (c.value, version));
                        OpResult {
                            version,
                            existed: false,
                        }
                    }
                    Some(Op::Delete(d)) => OpResult {
                        version: 0,
                        existed: store.map.remove(&d.key).is_some(),
                    },
                    None => OpResult::default(),
                })
                .collect();
            Ok(BatchResponse { results, version })
        })
    }

    async fn compare_and_swap(
        &self,
        request: Request<CompareAndSwapRequest>,
    ) -> Result<Response<CompareAndSwapResponse>, Status> {
        let r = request.get_ref().clone();
        let s = Seen {
            write_id: r.id,
            ttl_ms: Some(r.ttl_ms),
            ..seen("CompareAndSwap")
        };
        self.run("CompareAndSwap", &request, s, |store| {
            let current = store.map.get(&r.key).map(|(_, v)| *v);
            if current != r.expected_version {
                return Ok(CompareAndSwapResponse {
                    succeeded: false,
                    current_version: current,
                });
            }
            store.index += 1;
            let version = store.index;
            store.map.insert(r.key, (r.value, version));
            Ok(CompareAndSwapResponse {
                succeeded: true,
                current_version: Some(version),
            })
        })
    }
}

#[tonic::async_trait]
impl Admin for Fake {
    async fn shard_list(
        &self,
        _request: Request<ShardListRequest>,
    ) -> Result<Response<ShardListResponse>, Status> {
        Err(Status::unimplemented("the fake has no shards"))
    }

    async fn transfer_leader(
        &self,
        _request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        Err(Status::unimplemented("the fake has no shards"))
    }

    async fn move_replica(
        &self,
        _request: Request<MoveReplicaRequest>,
    ) -> Result<Response<MoveReplicaResponse>, Status> {
        Err(Status::unimplemented("the fake has no shards"))
    }

    async fn create_shards(
        &self,
        _request: Request<CreateShardsRequest>,
    ) -> Result<Response<CreateShardsResponse>, Status> {
        Err(Status::unimplemented("the fake has no shards"))
    }

    async fn set_failpoint(
        &self,
        _request: Request<SetFailpointRequest>,
    ) -> Result<Response<SetFailpointResponse>, Status> {
        Err(Status::unimplemented("the fake has no failpoints"))
    }

    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let members = request.get_ref().members.clone();
        self.run("Init", &request, seen("Init"), |store| {
            if !store.members.is_empty() {
                return Err(Status::failed_precondition("already initialised"));
            }
            store.members = members;
            Ok(InitResponse {
                cluster_id: "fake-cluster".into(),
            })
        })
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let node_id = self.0.node_id;
        self.run("MemberList", &request, seen("MemberList"), |store| {
            Ok(MemberListResponse {
                members: store.members.clone(),
                leader_id: node_id,
            })
        })
    }

    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let r = request.get_ref().clone();
        self.run("MemberAdd", &request, seen("MemberAdd"), |store| {
            store.members.push(Member {
                id: r.id,
                addr: r.addr,
                voter: false,
            });
            Ok(MemberAddResponse {
                members: store.members.clone(),
            })
        })
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = request.get_ref().id;
        self.run("MemberPromote", &request, seen("MemberPromote"), |store| {
            let m = store.members.iter_mut().find(|m| m.id == id);
            m.ok_or_else(|| Status::not_found("no such member"))?.voter = true;
            Ok(MemberPromoteResponse {
                members: store.members.clone(),
            })
        })
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = request.get_ref().id;
        self.run("MemberRemove", &request, seen("MemberRemove"), |store| {
            store.members.retain(|m| m.id != id);
            Ok(MemberRemoveResponse {
                members: store.members.clone(),
            })
        })
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let node_id = self.0.node_id;
        let addr = self.0.addr.lock().unwrap().clone();
        self.run("Status", &request, seen("Status"), |store| {
            Ok(StatusResponse {
                node_id,
                addr,
                cluster_id: "fake-cluster".into(),
                durability: "sync".into(),
                wal_bytes: store.index,
                ..Default::default()
            })
        })
    }
}
