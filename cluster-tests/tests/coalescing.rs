//! SDK write coalescing against real nodes: concurrent writes of one client share batches
//! (fewer log entries than writes), each write keeps its own answer, and one bad write in a
//! gathered batch fails alone.

use std::time::Duration;

use islab_client::{Client, ClientConfig, Error};
use islab_cluster_tests::{Cluster, data_group, init_tracing, wait_for};

async fn applied(cluster: &Cluster) -> u64 {
    let leader = cluster.leader().await;
    let addr = cluster
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .unwrap()
        .addr();
    data_group(&cluster.status(&addr).await.unwrap())
        .unwrap()
        .applied_index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_batches_and_keep_their_answers() {
    init_tracing();
    let cluster = Cluster::start_with(3, &["--max-value-bytes", "1024"]).await;
    let client = cluster.client();
    client.put("warm-up", "x").await.unwrap();

    tracing::info!("--- 2000 puts, 200 at a time, from one client");
    let before = applied(&cluster).await;
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
    let entries = applied(&cluster).await - before;
    tracing::info!(entries, "log entries for 2000 puts");
    assert!(
        entries < 1000,
        "2000 concurrent puts took {entries} log entries: not coalesced"
    );
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
async fn a_client_without_coalescing_sends_each_write_alone() {
    init_tracing();
    let cluster = Cluster::start(3).await;
    let mut config = ClientConfig::new(cluster.endpoints());
    config.coalesce_writes = false;
    config.deadline = Duration::from_secs(30);
    let client = Client::with_config(config).unwrap();
    client.put("warm-up", "x").await.unwrap();
    let before = applied(&cluster).await;
    let puts = (0..100).map(|i| {
        let client = client.clone();
        async move { client.put(format!("alone-{i}"), "v").await.unwrap() }
    });
    futures::future::join_all(puts).await;
    let after = wait_for(
        "the leader to apply 100 entries",
        Duration::from_secs(30),
        || async {
            let now = applied(&cluster).await;
            if now >= before + 100 {
                Ok(now)
            } else {
                Err(format!("applied {now}"))
            }
        },
    )
    .await;
    assert!(after - before >= 100, "one entry per write");
}
