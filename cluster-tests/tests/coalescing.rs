//! SDK coalescing against real nodes: concurrent writes of one client share batches (fewer
//! write requests reach the leader than writes were made; the server's own gathering of
//! requests into entries is `gathering.rs`), concurrent gets share GetMany calls (fewer read requests than gets),
//! each write and get keeps its own answer, and one bad request in a gathered batch fails
//! alone.

use std::time::Duration;

use islab_client::{BatchOp, Client, ClientConfig, Error, ReadConsistency};
use islab_cluster_tests::{Cluster, data_group, init_tracing, wait_for};
use islab_proto::v1 as proto;
use islab_proto::v1::kv_client::KvClient;

async fn applied(cluster: &Cluster) -> u64 {
    cluster.leader_group().await.applied_index
}

/// Write requests the data shard's leader proposed (whatever entries the server gathered them
/// into): what the SDK sent.
async fn write_requests(cluster: &Cluster) -> u64 {
    cluster.leader_group().await.write_requests
}

/// (read requests, keys read) of the data shard, summed over every node.
async fn reads(cluster: &Cluster) -> (u64, u64) {
    let mut total = (0, 0);
    for node in &cluster.nodes {
        let status = cluster.status(&node.addr()).await.unwrap();
        let group = data_group(&status).unwrap();
        total.0 += group.read_requests;
        total.1 += group.keys_read;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_share_get_many_calls_and_keep_their_answers() {
    init_tracing();
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    // Every even key of r0000..r1999 exists, with its version known.
    let mut versions = std::collections::HashMap::new();
    let evens: Vec<u32> = (0..2000).step_by(2).collect();
    for chunk in evens.chunks(100) {
        let ops: Vec<BatchOp> = chunk
            .iter()
            .map(|i| BatchOp::put(format!("r{i:04}"), format!("v{i}")))
            .collect();
        let results = client.batch(ops).await.unwrap();
        for (i, r) in chunk.iter().zip(results) {
            versions.insert(*i, r.version);
        }
    }

    // Serializable gets may be answered by any replica: let every one apply the writes.
    cluster.converged(0).await;
    for consistency in [ReadConsistency::Linearizable, ReadConsistency::Serializable] {
        tracing::info!(
            ?consistency,
            "--- 2000 gets, 200 at a time, from one client"
        );
        let before = reads(&cluster).await;
        for round in 0..10u32 {
            let gets = (round * 200..(round + 1) * 200).map(|i| {
                let client = client.clone();
                async move { (i, client.get_with(format!("r{i:04}"), consistency).await) }
            });
            for (i, got) in futures::future::join_all(gets).await {
                match (i % 2, got.unwrap()) {
                    (0, Some(kv)) => {
                        assert_eq!(kv.key, format!("r{i:04}"));
                        assert_eq!(kv.value, format!("v{i}"));
                        assert_eq!(kv.version, versions[&i], "r{i:04}: its own version");
                    }
                    (1, None) => {}
                    (_, other) => panic!("r{i:04} ({consistency:?}): {other:?}"),
                }
            }
        }
        let after = reads(&cluster).await;
        let (requests, keys) = (after.0 - before.0, after.1 - before.1);
        tracing::info!(requests, keys, "read requests for 2000 gets");
        assert!(keys >= 2000, "2000 gets asked for {keys} keys");
        assert!(
            requests < 1000,
            "2000 concurrent gets took {requests} read requests: not coalesced"
        );
    }

    tracing::info!("--- a linearizable get queued behind others sees a write acked before it");
    for round in 0..10 {
        let key = format!("fresh-{round}");
        // 200 gets keep the shard's turn busy, so the get after the put is queued.
        let busy = (0..200).map(|i| {
            let client = client.clone();
            async move { client.get(format!("r{:04}", i * 2)).await.unwrap() }
        });
        let write_then_read = {
            let client = client.clone();
            let key = key.clone();
            async move {
                tokio::task::yield_now().await;
                client.put(key.clone(), "new").await.unwrap();
                client.get(key).await.unwrap()
            }
        };
        let (_, seen) = tokio::join!(futures::future::join_all(busy), write_then_read);
        assert_eq!(seen.map(|kv| kv.value), Some("new".into()), "{key}");
    }

    tracing::info!("--- callers that give up while holding a shard's turn do not stall the rest");
    for i in 0..20 {
        let _ = tokio::time::timeout(Duration::from_micros(300), client.get("r0000")).await;
        let put = client.put(format!("given-up-{i}"), "x");
        let _ = tokio::time::timeout(Duration::from_micros(300), put).await;
    }
    let gets = (0..50).map(|i| {
        let client = client.clone();
        async move { client.get(format!("r{:04}", i * 2)).await.unwrap() }
    });
    let puts = (0..50).map(|i| {
        let client = client.clone();
        async move { client.put(format!("after-{i}"), "y").await.unwrap() }
    });
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join(
            futures::future::join_all(gets),
            futures::future::join_all(puts),
        ),
    )
    .await
    .expect("gets and puts after cancelled callers must not wait for a lost turn");
    assert!(done.0.iter().all(Option::is_some));

    tracing::info!("--- one key over the server's limit among 100 gets fails alone");
    let gets = (0..101).map(|i| {
        let client = client.clone();
        async move {
            let key = if i == 50 {
                "k".repeat(5000)
            } else {
                format!("r{:04}", i * 2)
            };
            (i, client.get(key).await)
        }
    });
    for (i, result) in futures::future::join_all(gets).await {
        match (i, result) {
            (50, Err(Error::InvalidArgument(m))) => assert!(m.contains("5000"), "{m}"),
            (50, other) => panic!("the oversize key: {other:?}"),
            (_, Err(e)) => panic!("get {i} failed with its batch: {e}"),
            (_, Ok(kv)) => assert_eq!(kv.unwrap().value, format!("v{}", i * 2)),
        }
    }

    tracing::info!("--- get_many: answers in the order asked, repeats and misses included");
    let keys = ["r0004", "r0003", "r0004", "nothing", "r1998"];
    let got = client
        .get_many(keys, ReadConsistency::Linearizable)
        .await
        .unwrap();
    let values: Vec<Option<String>> = got
        .iter()
        .map(|kv| {
            kv.as_ref()
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        })
        .collect();
    assert_eq!(
        values,
        [Some("v4"), None, Some("v4"), None, Some("v1998")].map(|v| v.map(String::from))
    );
    let err = client
        .get_many(["ok", ""], ReadConsistency::Linearizable)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");

    tracing::info!("--- GetMany refusals name what was wrong");
    let mut raw = KvClient::connect(format!("http://{}", cluster.endpoints()[0]))
        .await
        .unwrap();
    let status = raw
        .get_many(proto::GetManyRequest {
            keys: vec!["r0000".into(), "k".repeat(5000).into()],
            consistency: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("GetMany key #1") && status.message().contains("5000"),
        "{status:?}"
    );

    tracing::info!("--- an answer over the size limit is refused; the SDK then reads key by key");
    let big = "b".repeat(1_000_000);
    client.put("big", big.clone()).await.unwrap();
    // The raw client reads node 1's replica (serializable): wait until it has the value.
    wait_for(
        "node 1 to hold the big value",
        Duration::from_secs(30),
        || {
            let mut raw = raw.clone();
            async move {
                let r = raw
                    .get(proto::GetRequest {
                        key: "big".into(),
                        consistency: 1,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if r.get_ref().found {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            }
        },
    )
    .await;
    let status = raw
        .get_many(proto::GetManyRequest {
            keys: vec!["big".into(); 20],
            consistency: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("fewer keys"), "{status:?}");
    let got = client
        .get_many(vec!["big"; 20], ReadConsistency::Serializable)
        .await
        .unwrap();
    assert!(got.iter().all(|kv| kv.as_ref().unwrap().value == big));
    let gets = (0..20).map(|_| {
        let client = client.clone();
        async move { client.get("big").await }
    });
    for got in futures::future::join_all(gets).await {
        assert_eq!(
            got.unwrap().unwrap().value,
            big,
            "a coalesced get of a big value"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_batches_and_keep_their_answers() {
    init_tracing();
    let cluster = Cluster::start_with(3, &["--max-value-bytes", "1024"]).await;
    let client = cluster.client();
    client.put("warm-up", "x").await.unwrap();

    tracing::info!("--- 2000 puts, 200 at a time, from one client");
    let before = (applied(&cluster).await, write_requests(&cluster).await);
    let mut answers = Vec::new();
    for round in 0..10 {
        let puts = (0..200).map(|i| {
            let client = client.clone();
            let key = format!("k{round:02}-{i:03}");
            async move {
                let version = client.put(key.clone(), format!("v-{key}")).await.unwrap();
                (key, version)
            }
        });
        answers.extend(futures::future::join_all(puts).await);
    }
    let entries = applied(&cluster).await - before.0;
    let requests = write_requests(&cluster).await - before.1;
    tracing::info!(
        requests,
        entries,
        "write requests and log entries for 2000 puts"
    );
    assert!(
        requests < 1000,
        "2000 concurrent puts took {requests} write requests: not coalesced by the SDK"
    );
    assert!(entries <= requests, "the server gathers, never splits");
    for (key, version) in &answers {
        let kv = client.get(key.clone()).await.unwrap().unwrap();
        assert_eq!(kv.value, format!("v-{key}"));
        assert_eq!(kv.version, *version, "{key}: the answer names its write");
    }

    tracing::info!("--- deletes coalesce too, each saying whether its key existed");
    let deletes = answers.iter().take(300).map(|(key, _)| {
        let client = client.clone();
        let key = key.clone();
        async move { client.delete(key).await.unwrap() }
    });
    assert!(
        futures::future::join_all(deletes)
            .await
            .into_iter()
            .all(|e| e)
    );
    let again = answers.iter().take(10).map(|(key, _)| {
        let client = client.clone();
        let key = key.clone();
        async move { client.delete(key).await.unwrap() }
    });
    assert!(
        futures::future::join_all(again)
            .await
            .into_iter()
            .all(|e| !e)
    );

    tracing::info!("--- one value over the limit among 100 fails alone");
    let writes = (0..101).map(|i| {
        let client = client.clone();
        async move {
            let value = if i == 50 {
                "x".repeat(2000)
            } else {
                "ok".into()
            };
            (i, client.put(format!("mixed-{i:03}"), value).await)
        }
    });
    for (i, result) in futures::future::join_all(writes).await {
        match (i, result) {
            (50, Err(Error::TooLarge(m))) => assert!(m.contains("2000"), "{m}"),
            (50, other) => panic!("the oversize write: {other:?}"),
            (_, Err(e)) => panic!("write {i} failed with its batch: {e}"),
            (_, Ok(_)) => {}
        }
    }
    assert!(client.get("mixed-050").await.unwrap().is_none());
    assert_eq!(client.get("mixed-051").await.unwrap().unwrap().value, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_coalescing_sends_each_request_alone() {
    init_tracing();
    let cluster = Cluster::start(3).await;
    let mut config = ClientConfig::new(cluster.endpoints());
    config.coalesce_writes = false;
    config.coalesce_reads = false;
    config.deadline = Duration::from_secs(30);
    let client = Client::with_config(config).unwrap();
    client.put("warm-up", "x").await.unwrap();
    let before = write_requests(&cluster).await;
    let puts = (0..100).map(|i| {
        let client = client.clone();
        async move { client.put(format!("alone-{i}"), "v").await.unwrap() }
    });
    futures::future::join_all(puts).await;
    // The server may still gather them into fewer entries (gathering.rs): what matters here is
    // that the SDK sent each write as a request of its own.
    let after = write_requests(&cluster).await;
    assert!(
        after - before >= 100,
        "one request per write, got {}",
        after - before
    );

    let before = reads(&cluster).await;
    let gets = (0..100).map(|i| {
        let client = client.clone();
        async move { client.get(format!("alone-{i}")).await.unwrap() }
    });
    assert!(
        futures::future::join_all(gets)
            .await
            .iter()
            .all(Option::is_some)
    );
    let after = reads(&cluster).await;
    assert!(after.0 - before.0 >= 100, "one read request per get");
}
