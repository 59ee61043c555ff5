//! Server-side gathering against real nodes: writes arriving on many independent connections
//! (plain gRPC clients, no SDK and so no client-side coalescing) share Raft entries on the
//! shard leader, linearizable reads share read-index rounds, and every request keeps its own meaning — its own version, its
//! own compare-and-swap outcome, exactly-once under retries, atomic batches — on every replica
//! and across a kill -9 of every node (the gathered entries are replayed from the WAL and a
//! checkpoint).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use islab_cluster_tests::{Cluster, data_group, entry_index, init_tracing};
use islab_proto::v1 as proto;
use islab_proto::v1::kv_client::KvClient;
use tonic::transport::Channel;

/// `n` clients on `n` connections of their own to `addr`.
async fn connections(addr: &str, n: usize) -> Vec<KvClient<Channel>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        clients.push(KvClient::new(channel));
    }
    clients
}

/// (entries proposed, requests they carried) by the data shard's leader `addr`.
async fn proposed(cluster: &Cluster, addr: &str) -> (u64, u64) {
    let status = cluster.status(addr).await.unwrap();
    let g = data_group(&status).unwrap();
    (g.write_entries, g.write_requests)
}

/// Read-index rounds the data shard's leader `addr` ran.
async fn read_rounds(cluster: &Cluster, addr: &str) -> u64 {
    let status = cluster.status(addr).await.unwrap();
    data_group(&status).unwrap().read_rounds
}

fn put(key: &str, value: &str, id: Option<(u64, u64)>) -> proto::PutRequest {
    proto::PutRequest {
        key: key.to_string().into(),
        value: value.to_string().into(),
        ttl_ms: 0,
        id: id.map(|(client_id, seq)| proto::WriteId { client_id, seq }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_independent_connections_share_entries_and_keep_their_meaning() {
    init_tracing();
    let cluster = Cluster::start(3).await;
    let addr = cluster.leader_addr().await;
    let clients = connections(&addr, 200).await;
    let mut first = clients[0].clone();
    first.put(put("warm-up", "x", None)).await.unwrap();

    tracing::info!("--- 200 puts at once, one per connection, each with its own write id");
    let before = proposed(&cluster, &addr).await;
    let puts = clients.iter().enumerate().map(|(i, c)| {
        let mut c = c.clone();
        async move {
            let r = c
                .put(put(
                    &format!("p{i:03}"),
                    &format!("v{i}"),
                    Some((1000 + i as u64, 1)),
                ))
                .await;
            (i, r.map(|r| r.into_inner().version))
        }
    });
    let mut versions = HashMap::new();
    for (i, r) in futures::future::join_all(puts).await {
        versions.insert(i, r.unwrap_or_else(|e| panic!("put {i}: {e}")));
    }
    let after = proposed(&cluster, &addr).await;
    let (entries, requests) = (after.0 - before.0, after.1 - before.1);
    tracing::info!(entries, requests, "gathered");
    assert_eq!(
        requests, 200,
        "every put went through the leader's gatherer"
    );
    assert!(
        entries <= 100,
        "200 concurrent puts from 200 connections took {entries} entries: not gathered"
    );
    let distinct: HashSet<u64> = versions.values().copied().collect();
    assert_eq!(distinct.len(), 200, "every request has its own version");
    let mut reader = clients[1].clone();
    for (i, version) in &versions {
        let got = reader
            .get(proto::GetRequest {
                key: format!("p{i:03}").into(),
                consistency: proto::ReadConsistency::Linearizable as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(got.found, "p{i:03}");
        assert_eq!(got.value, format!("v{i}"));
        assert_eq!(
            got.version, *version,
            "p{i:03} reads the version its put was told"
        );
    }

    tracing::info!("--- 200 linearizable gets at once, one per connection: shared read rounds");
    let before = read_rounds(&cluster, &addr).await;
    let gets = clients.iter().enumerate().map(|(i, c)| {
        let mut c = c.clone();
        async move {
            let r = c
                .get(proto::GetRequest {
                    key: format!("p{i:03}").into(),
                    consistency: proto::ReadConsistency::Linearizable as i32,
                })
                .await
                .unwrap_or_else(|e| panic!("get {i}: {e}"))
                .into_inner();
            (i, r)
        }
    });
    for (i, got) in futures::future::join_all(gets).await {
        assert_eq!(
            (got.value, got.version),
            (format!("v{i}").into(), versions[&i])
        );
    }
    let rounds = read_rounds(&cluster, &addr).await - before;
    tracing::info!(rounds, "read-index rounds for 200 concurrent gets");
    assert!(
        (1..=100).contains(&rounds),
        "200 concurrent linearizable gets from 200 connections took {rounds} read rounds"
    );

    tracing::info!("--- the same write id on 20 connections at once: applied once, one answer");
    let retries = clients[..20].iter().map(|c| {
        let mut c = c.clone();
        async move {
            c.put(put("dup", "once", Some((77, 1))))
                .await
                .unwrap()
                .into_inner()
                .version
        }
    });
    let answers: HashSet<u64> = futures::future::join_all(retries)
        .await
        .into_iter()
        .collect();
    assert_eq!(answers.len(), 1, "one answer for one write: {answers:?}");
    // A later write of the key, then the old retry again: still the first answer, and the
    // retry does not overwrite the later value.
    let later = first
        .put(put("dup", "later", None))
        .await
        .unwrap()
        .into_inner()
        .version;
    let again = first
        .put(put("dup", "once", Some((77, 1))))
        .await
        .unwrap()
        .into_inner()
        .version;
    assert_eq!(Some(&again), answers.iter().next());
    let got = reader
        .get(proto::GetRequest {
            key: "dup".into(),
            consistency: proto::ReadConsistency::Linearizable as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.value, got.version), ("later".into(), later));

    tracing::info!("--- 50 connections CAS one key from the same version: exactly one wins");
    let mut current = first
        .put(put("cas", "start", None))
        .await
        .unwrap()
        .into_inner()
        .version;
    for round in 0..3 {
        let before = proposed(&cluster, &addr).await;
        let swaps = clients[..50].iter().enumerate().map(|(i, c)| {
            let mut c = c.clone();
            async move {
                c.compare_and_swap(proto::CompareAndSwapRequest {
                    key: "cas".into(),
                    expected_version: Some(current),
                    value: format!("r{round}-c{i}").into(),
                    ttl_ms: 0,
                    id: None,
                })
                .await
                .unwrap()
                .into_inner()
            }
        });
        let results = futures::future::join_all(swaps).await;
        let winners: Vec<_> = results.iter().filter(|r| r.succeeded).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let won = winners[0].current_version.unwrap();
        assert!(won > current, "a new version above the expected one");
        for r in results.iter().filter(|r| !r.succeeded) {
            // Gathered with the winner or after it: each loser sees a version at or after it.
            assert!(
                r.current_version.is_some_and(|v| v >= won),
                "round {round}: a loser saw {:?}, the winner wrote {won}",
                r.current_version
            );
        }
        let after = proposed(&cluster, &addr).await;
        assert!(
            after.0 - before.0 < 50,
            "round {round}: 50 concurrent CAS took {} entries",
            after.0 - before.0
        );
        current = won;
    }

    tracing::info!("--- concurrent batches stay atomic, each on its own");
    let batches = clients[..40].iter().enumerate().map(|(i, c)| {
        let mut c = c.clone();
        async move {
            let op = |key: String, value: String| proto::BatchOp {
                op: Some(proto::batch_op::Op::Put(proto::PutOp {
                    key: key.into(),
                    value: value.into(),
                    ttl_ms: 0,
                })),
            };
            let mut ops = vec![
                op(format!("b{i}-x"), "1".into()),
                op(format!("b{i}-y"), "2".into()),
            ];
            if i % 2 == 1 {
                // Odd batches carry a CAS that cannot hold: none of their ops may apply.
                ops.push(proto::BatchOp {
                    op: Some(proto::batch_op::Op::Cas(proto::CasOp {
                        key: "cas".into(),
                        expected_version: Some(1),
                        value: "never".into(),
                        ttl_ms: 0,
                    })),
                });
            }
            (i, c.batch(proto::BatchRequest { ops, id: None }).await)
        }
    });
    for (i, result) in futures::future::join_all(batches).await {
        let x = reader
            .get(proto::GetRequest {
                key: format!("b{i}-x").into(),
                consistency: proto::ReadConsistency::Linearizable as i32,
            })
            .await
            .unwrap()
            .into_inner();
        match (i % 2, result) {
            (0, Ok(r)) => {
                let r = r.into_inner();
                assert!(
                    r.results.iter().all(|o| o.version == r.version),
                    "batch {i}"
                );
                assert_eq!(x.version, r.version, "batch {i}: its ops share its version");
            }
            (1, Err(status)) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                assert!(!x.found, "batch {i} was refused, yet b{i}-x is there");
            }
            (_, other) => panic!("batch {i}: {other:?}"),
        }
    }

    tracing::info!("--- every replica holds the same versions");
    let applied = cluster.converged(0).await;
    assert!(entry_index(current) <= applied);
    for node in &cluster.nodes {
        let mut c = connections(&node.addr(), 1).await.remove(0);
        for (i, version) in versions.iter().take(50) {
            let got = c
                .get(proto::GetRequest {
                    key: format!("p{i:03}").into(),
                    consistency: proto::ReadConsistency::Serializable as i32,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(got.version, *version, "node {} p{i:03}", node.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gathered_entries_survive_kill_9_of_every_node_and_replay_identically() {
    init_tracing();
    // Frequent checkpoints: recovery is a checkpoint taken mid-load plus the WAL's tail.
    let mut cluster = Cluster::start_with(3, &["--snapshot-after-entries", "20"]).await;
    let addr = cluster.leader_addr().await;
    let clients = connections(&addr, 64).await;

    tracing::info!("--- 64 connections write 20 keys each, overwriting as they go");
    let writers = clients.iter().enumerate().map(|(c, client)| {
        let mut client = client.clone();
        async move {
            let mut acked = Vec::new();
            for n in 0..20u64 {
                let key = format!("w{c:02}-{}", n % 7);
                let value = format!("c{c}-n{n}");
                let r = client
                    .put(put(&key, &value, Some((5000 + c as u64, n + 1))))
                    .await
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
                acked.push((key, value, r.into_inner().version));
            }
            acked
        }
    });
    let acked: Vec<(String, String, u64)> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let (entries, requests) = proposed(&cluster, &addr).await;
    tracing::info!(entries, requests, "gathered before the crash");
    assert!(
        requests >= 1280 && entries < requests,
        "{entries} entries, {requests} requests"
    );
    // The last acknowledged write of each key is what it must hold.
    let mut last: HashMap<String, (String, u64)> = HashMap::new();
    for (key, value, version) in &acked {
        let entry = last.entry(key.clone()).or_insert((value.clone(), *version));
        if *version > entry.1 {
            *entry = (value.clone(), *version);
        }
    }
    let status = cluster.status(&addr).await.unwrap();
    let checkpoint = data_group(&status).unwrap().checkpoint_index;
    assert!(checkpoint > 0, "a checkpoint was taken during the load");

    tracing::info!("--- kill -9 every node, then start them all again");
    for id in 1..=3 {
        cluster.node(id).kill();
    }
    for id in 1..=3 {
        cluster.node(id).start();
    }
    cluster.leader().await;
    let finals: Vec<(String, String, u64)> = last
        .into_iter()
        .map(|(key, (value, version))| (key, value, version))
        .collect();
    cluster.assert_acked(&finals).await;

    tracing::info!("--- every replica replayed the gathered entries to the same versions");
    cluster.converged(0).await;
    for node in &cluster.nodes {
        let mut c = connections(&node.addr(), 1).await.remove(0);
        for (key, value, version) in &finals {
            let got = tokio::time::timeout(
                Duration::from_secs(30),
                c.get(proto::GetRequest {
                    key: key.clone().into(),
                    consistency: proto::ReadConsistency::Serializable as i32,
                }),
            )
            .await
            .unwrap()
            .unwrap()
            .into_inner();
            assert_eq!(
                (&got.value[..], got.version),
                (value.as_bytes(), *version),
                "node {} {key}",
                node.id
            );
        }
    }
    tracing::info!("--- a retry of an acknowledged write after the restart: the first answer");
    let (key, value, version) = &acked[0];
    let mut c = connections(&cluster.leader_addr().await, 1).await.remove(0);
    let again = c
        .put(put(key, value, Some((5000, 1))))
        .await
        .unwrap()
        .into_inner()
        .version;
    assert_eq!(again, *version);
}
