//! Bad input never hurts a node: an empty key, a key over 4 KiB, a value over the limit
//! (configurable), a gRPC call whose body is not the message it should be, Raft messages from
//! another cluster, for an unknown group or that do not decode, garbage bytes and HTTP/1 on
//! the gRPC port, and a node started on another cluster's data directory — each gets a clear error, the node keeps serving, nothing is lost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use islab_cluster_tests::{Cluster, data_group, init_tracing};
use islab_proto::raft::v1::RaftRequest;
use islab_proto::raft::v1::transport_client::TransportClient;
use islab_proto::v1::PutRequest;
use islab_proto::v1::kv_client::KvClient;
use tonic::Code;

async fn raw_kv(addr: &str) -> KvClient<tonic::transport::Channel> {
    KvClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20)
}

fn put(key: Vec<u8>, value: Vec<u8>) -> PutRequest {
    PutRequest {
        id: None,
        key: key.into(),
        value: value.into(),
        ttl_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_the_node_keeps_serving() {
    init_tracing();
    let mut cluster = Cluster::start_with(3, &["--max-value-bytes", "4096"]).await;
    let client = cluster.client();
    for i in 0..50 {
        client
            .put(format!("keep{i}"), format!("v{i}"))
            .await
            .unwrap();
    }
    let leader = cluster.leader().await;
    let addr = cluster.node(leader).addr();
    let mut kv = raw_kv(&addr).await;

    tracing::info!("--- an empty key");
    let e = kv.put(put(vec![], b"v".to_vec())).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("empty"), "{}", e.message());

    tracing::info!("--- a key over 4 KiB");
    let e = kv
        .put(put(vec![b'k'; 4097], b"v".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("4097") && e.message().contains("4096"),
        "{}",
        e.message()
    );

    tracing::info!("--- a value over the configured limit (4096 here)");
    let e = kv
        .put(put(b"big".to_vec(), vec![0; 5000]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("5000") && e.message().contains("4096"),
        "{}",
        e.message()
    );

    tracing::info!("--- a message far over any limit is refused by the transport");
    let e = kv
        .put(put(b"huge".to_vec(), vec![0; 40 << 20]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::Internal | Code::Unknown
        ),
        "{e:?}"
    );

    tracing::info!("--- a Put whose body is another message (field 1 a varint, not bytes)");
    let mut grpc = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    grpc.ready().await.unwrap();
    let e = grpc
        .unary(
            tonic::Request::new(islab_proto::v1::TransferLeaderRequest { shard: 7, to: 9 }),
            "/islab.v1.Kv/Put".parse().unwrap(),
            tonic_prost::ProstCodec::<
                islab_proto::v1::TransferLeaderRequest,
                islab_proto::v1::PutResponse,
            >::default(),
        )
        .await
        .unwrap_err();
    assert!(
        e.message().to_lowercase().contains("decode"),
        "a malformed body is named: {e:?}"
    );

    tracing::info!("--- Raft messages from another cluster, for no group, that do not decode");
    let cluster_id = cluster.status(&addr).await.unwrap().cluster_id;
    let mut transport = TransportClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let raft = |cluster_id: &str, group_id: u64, payload: &[u8]| RaftRequest {
        cluster_id: cluster_id.to_string(),
        group_id,
        from: 99,
        payload: bytes::Bytes::copy_from_slice(payload),
    };
    for (request, want) in [
        (raft("another-cluster", 1, b""), "another-cluster"),
        (raft(&cluster_id, 9999, b""), "no group 9999"),
        (raft(&cluster_id, 1, &[0xff; 64]), "append entries"),
    ] {
        let reply = transport
            .append_entries(request)
            .await
            .unwrap()
            .into_inner();
        assert!(
            reply.error.contains(want),
            "refusal names {want:?}: {:?}",
            reply.error
        );
        assert!(reply.payload.is_empty());
    }
    let reply = transport
        .vote(raft(&cluster_id, 1, b"\x01\x02"))
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.error.is_empty(), "a garbage vote is refused");

    tracing::info!("--- garbage bytes, then HTTP/1, on the gRPC port");
    for payload in [
        (0..65536u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
        b"GET / HTTP/1.1\r\nHost: islab\r\n\r\n".to_vec(),
    ] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&payload);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf); // the server answers with an error or closes
    }

    tracing::info!("--- the node still serves, and nothing was lost");
    let v = client.put("after", "bad input").await.unwrap();
    assert!(v > 0);
    for i in 0..50 {
        let kv = client.get(format!("keep{i}")).await.unwrap().unwrap();
        assert_eq!(kv.value, format!("v{i}"));
    }
    assert!(client.get("big").await.unwrap().is_none());

    tracing::info!("--- a node started on another cluster's data directory is refused");
    let victim = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let foreign_parent = tempfile::tempdir().unwrap();
    let mut foreign = islab_cluster_tests::NodeProcess::new(victim, foreign_parent.path(), &[]);
    foreign.start();
    let foreign_cluster = client
        .admin()
        .init_at(
            &foreign.addr(),
            [islab_client::Member {
                id: victim,
                addr: foreign.addr(),
                voter: true,
            }],
        )
        .await
        .unwrap();
    assert!(foreign.stop());
    let node = cluster.node(victim);
    node.kill();
    let own_dir = node.data_dir.clone();
    let saved = own_dir.with_extension("saved");
    std::fs::rename(&own_dir, &saved).unwrap();
    copy_dir(&foreign.data_dir, &own_dir);
    node.start();
    let victim_addr = node.addr();
    let s = cluster.status(&victim_addr).await.unwrap();
    assert_eq!(
        s.cluster_id, foreign_cluster,
        "the node runs on the foreign directory"
    );

    tracing::info!("--- the majority keeps serving; the foreign node takes none of its log");
    for i in 0..20 {
        client.put(format!("during{i}"), "x").await.unwrap();
    }
    let majority_applied = cluster
        .status(&addr)
        .await
        .unwrap()
        .groups
        .iter()
        .find(|g| g.group_id == islab_cluster_tests::DATA_SHARD)
        .unwrap()
        .applied_index;
    let s = cluster.status(&victim_addr).await.unwrap();
    assert_eq!(
        s.cluster_id, foreign_cluster,
        "it never adopted the other cluster's id"
    );
    assert!(
        data_group(&s).unwrap().applied_index < majority_applied,
        "the foreign node applied the other cluster's log: {:?}",
        data_group(&s).unwrap()
    );

    tracing::info!("--- a data directory of another node id is refused at start");
    let out = std::process::Command::new(islab_cluster_tests::islab_binary())
        .args([
            "server",
            "--id",
            "99",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("belongs to node {victim}, not node 99")),
        "{stderr}"
    );

    tracing::info!("--- put the node's own directory back: it catches up, nothing lost");
    cluster.node(victim).kill();
    std::fs::remove_dir_all(&own_dir).unwrap();
    std::fs::rename(&saved, &own_dir).unwrap();
    cluster.node(victim).start();
    cluster.converged(majority_applied).await;
    for i in 0..20 {
        assert!(client.get(format!("during{i}")).await.unwrap().is_some());
    }
    assert_eq!(client.get("keep7").await.unwrap().unwrap().value, "v7");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
