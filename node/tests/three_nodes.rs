//! Three in-process nodes over real loopback sockets: init, replicated writes, linearizable and
//! serializable reads, redirects from followers, and a leader that stops. (The multi-process
//! versions, with kill -9, live in cluster-tests.)

use std::time::{Duration, Instant};

use islab_node::{Node, NodeConfig, NodeHandle};
use islab_proto::v1::admin_client::AdminClient;
use islab_proto::v1::kv_client::KvClient;
use islab_proto::v1::{
    GetRequest, InitRequest, Member, PutRequest, ReadConsistency, StatusRequest, WriteId,
};
use tonic::Code;
use tonic::transport::Channel;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn start(id: u64, dir: &std::path::Path) -> NodeHandle {
    let mut config = NodeConfig {
        id,
        data_dir: dir.join(format!("n{id}")),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    // Long enough that a loaded machine does not trigger elections mid-test (the test talks to
    // the leader it found with plain gRPC calls, no retries).
    config.raft.heartbeat_ms = 100;
    config.raft.election_timeout_min_ms = 1000;
    config.raft.election_timeout_max_ms = 2000;
    Node::start(config).await.expect("node starts")
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Waits until some node reports itself leader of the data shard (group 1); returns its index.
async fn leader(nodes: &[&NodeHandle]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, n) in nodes.iter().enumerate() {
            let mut admin = AdminClient::new(channel(n.advertise_addr()).await);
            if let Ok(s) = admin.status(StatusRequest {}).await
                && s.get_ref()
                    .groups
                    .iter()
                    .any(|g| g.group_id == 1 && g.role == "leader")
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_and_redirect() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let n1 = start(1, dir.path()).await;
    let n2 = start(2, dir.path()).await;
    let n3 = start(3, dir.path()).await;
    let nodes = [&n1, &n2, &n3];

    tracing::info!("--- before init, data requests are refused clearly");
    let mut kv = KvClient::new(channel(n1.advertise_addr()).await);
    let err = kv
        .get(GetRequest {
            key: "k".into(),
            consistency: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("cluster init"), "{err:?}");

    tracing::info!("--- init the cluster through node 1");
    let members = nodes
        .iter()
        .map(|n| Member {
            id: n.id(),
            addr: n.advertise_addr().to_string(),
            voter: true,
        })
        .collect();
    let mut admin = AdminClient::new(channel(n1.advertise_addr()).await);
    let cluster = admin
        .init(InitRequest {
            members,
            shards: 1,
            replication: 3,
        })
        .await
        .unwrap()
        .into_inner()
        .cluster_id;
    assert_eq!(cluster.len(), 32);
    let l = leader(&nodes).await;

    tracing::info!("--- write through the leader, 100 keys");
    let mut kv = KvClient::new(channel(nodes[l].advertise_addr()).await);
    let mut last = 0;
    for i in 0..100u64 {
        let v = kv
            .put(PutRequest {
                id: Some(WriteId {
                    client_id: 42,
                    seq: i + 1,
                }),
                key: format!("key-{i}").into(),
                value: format!("value-{i}").into(),
                ttl_ms: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .version;
        assert!(v > last);
        last = v;
    }
    let got = kv
        .get(GetRequest {
            key: "key-7".into(),
            consistency: ReadConsistency::Linearizable as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.found);
    assert_eq!(got.value, "value-7");

    tracing::info!("--- a follower redirects writes with the leader's address");
    let f = (l + 1) % 3;
    let mut follower = KvClient::new(channel(nodes[f].advertise_addr()).await);
    let err = follower
        .put(PutRequest {
            id: None,
            key: "x".into(),
            value: "y".into(),
            ttl_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let hint = err.metadata().get(islab_proto::LEADER_METADATA).unwrap();
    assert_eq!(hint.to_str().unwrap(), nodes[l].advertise_addr());

    tracing::info!("--- every follower applies everything (serializable reads see it)");
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in nodes {
        let mut kv = KvClient::new(channel(n.advertise_addr()).await);
        loop {
            let r = kv
                .get(GetRequest {
                    key: "key-99".into(),
                    consistency: ReadConsistency::Serializable as i32,
                })
                .await
                .unwrap()
                .into_inner();
            if r.found {
                break;
            }
            assert!(Instant::now() < deadline, "node {} never applied", n.id());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    tracing::info!("--- bad input gets a clear error and the node keeps serving");
    let err = kv
        .put(PutRequest {
            id: None,
            key: vec![b'k'; 5000].into(),
            value: "v".into(),
            ttl_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("5000"), "{}", err.message());

    tracing::info!("--- stop the leader: the others elect a new one and keep every write");
    let mut rest: Vec<NodeHandle> = Vec::new();
    let mut stopped = None;
    for (i, n) in [n1, n2, n3].into_iter().enumerate() {
        if i == l {
            stopped = Some(n);
        } else {
            rest.push(n);
        }
    }
    stopped.unwrap().shutdown().await.unwrap();
    let refs: Vec<&NodeHandle> = rest.iter().collect();
    let l2 = leader(&refs).await;
    let mut kv = KvClient::new(channel(refs[l2].advertise_addr()).await);
    for i in 0..100u64 {
        let r = kv
            .get(GetRequest {
                key: format!("key-{i}").into(),
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.found, "key-{i} lost");
    }
    for n in rest {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_list_every_service() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().unwrap();
    let node = start(1, dir.path()).await;
    let ch = channel(node.advertise_addr()).await;

    let health = HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: "islab.v1.Kv".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "islab.v1.Kv",
        "islab.v1.Admin",
        "islab.raft.v1.Transport",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    node.shutdown().await.unwrap();
}
