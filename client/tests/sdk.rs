//! The SDK against fake nodes (tests/fake): leader hints, retries with one write id,
//! deadlines, typed errors, scan paging, admin routing. Each test is a sequence of phases.

mod fake;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fake::{FakeNode, Fault, not_leader};
use islab_client::{
    BatchOp, CasOutcome, Client, ClientConfig, Error, Member, OpResult, ReadConsistency, Scan,
};
use tonic::Status;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "islab_client=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

fn config(endpoints: &[String]) -> ClientConfig {
    ClientConfig::new(endpoints.iter().cloned())
}

/// A loopback port nothing listens on: bound once, then released.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn data_calls_round_trip() {
    init_tracing();
    let node = FakeNode::start().await;
    let client = Client::connect([node.endpoint()]).await.unwrap();

    tracing::info!("--- put, get, delete");
    assert_eq!(client.get("k").await.unwrap(), None);
    let v1 = client.put("k", "v1").await.unwrap();
    let kv = client.get("k").await.unwrap().unwrap();
    assert_eq!(
        (&kv.key[..], &kv.value[..], kv.version),
        (&b"k"[..], &b"v1"[..], v1)
    );
    let stale_ok = client
        .get_with("k", ReadConsistency::Serializable)
        .await
        .unwrap();
    assert_eq!(stale_ok, Some(kv.clone()));
    let gets: Vec<_> = node
        .seen()
        .into_iter()
        .filter(|s| s.method == "Get")
        .collect();
    let consistencies: Vec<_> = gets.iter().map(|s| s.consistency.unwrap()).collect();
    assert_eq!(consistencies, [0, 0, 1]);
    assert!(
        gets.iter().all(|s| s.grpc_timeout.is_some()),
        "attempt timeout is sent"
    );

    tracing::info!("--- ttl travels in milliseconds");
    client
        .put_with_ttl("t", "x", Duration::from_millis(1500))
        .await
        .unwrap();
    let last_put = node
        .seen()
        .into_iter()
        .rfind(|s| s.method == "Put")
        .unwrap();
    assert_eq!(last_put.ttl_ms, Some(1500));

    tracing::info!("--- compare-and-swap");
    let lost = client.cas("k", Some(v1 + 100), "no").await.unwrap();
    assert_eq!(
        lost,
        CasOutcome {
            succeeded: false,
            current_version: Some(v1)
        }
    );
    let won = client.cas("k", Some(v1), "v2").await.unwrap();
    assert!(won.succeeded);
    let created = client.cas("fresh", None, "1").await.unwrap();
    assert!(created.succeeded && created.current_version.is_some());

    tracing::info!("--- batch");
    let results = client
        .batch(vec![
            BatchOp::put("a", "1"),
            BatchOp::delete("k"),
            BatchOp::cas("b", None, "2"),
        ])
        .await
        .unwrap();
    let version = results[0].version;
    assert_eq!(
        results,
        [
            OpResult {
                version,
                existed: false
            },
            OpResult {
                version: 0,
                existed: true
            },
            OpResult {
                version,
                existed: false
            },
        ]
    );
    assert!(
        !client.delete("k").await.unwrap(),
        "already deleted by the batch"
    );
}

#[tokio::test]
async fn follows_the_leader_hint_to_a_node_it_was_not_given() {
    init_tracing();
    let leader = FakeNode::start_with(2, Box::new(|_, _| None)).await;
    let hint = leader.endpoint();
    let follower = FakeNode::start_with(
        1,
        Box::new(move |_, _| Some(Fault::Before(not_leader(&hint)))),
    )
    .await;
    let client = Client::connect([follower.endpoint()]).await.unwrap();

    tracing::info!("--- the first write is redirected");
    let version = client.put("k", "v").await.unwrap();
    assert_eq!(version, 1);
    assert_eq!((follower.count("Put"), leader.count("Put")), (1, 1));
    let id_at_follower = follower.seen()[0].write_id.unwrap();
    let id_at_leader = leader.seen()[0].write_id.unwrap();
    assert_eq!(
        id_at_follower, id_at_leader,
        "a redirected write keeps its id"
    );
    assert_eq!(id_at_leader.client_id, client.client_id());
    assert_eq!(client.leader(), Some(leader.endpoint()));
    assert_eq!(client.endpoints(), [follower.endpoint(), leader.endpoint()]);

    tracing::info!("--- later calls go straight to the leader");
    client.put("k2", "v").await.unwrap();
    assert!(client.get("k").await.unwrap().is_some());
    assert_eq!(follower.seen().len(), 1);
    assert_eq!(leader.count("Put"), 2);
}

/// Issue 5: nodes in containers advertise `nodeN:7379`, a name only their network resolves; a
/// client on the host follows such a hint through its address map and never dials the name.
#[tokio::test]
async fn a_hint_naming_an_advertised_address_is_dialled_through_the_map() {
    init_tracing();
    // `.invalid` never resolves: reaching the resolver would fail the call, not redirect it.
    let advertised = "leader.islab.invalid:7379";
    let leader = FakeNode::start_with(2, Box::new(|_, _| None)).await;
    let follower = FakeNode::start_with(
        1,
        Box::new(move |_, _| Some(Fault::Before(not_leader(advertised)))),
    )
    .await;
    let client = Client::with_config(ClientConfig {
        deadline: Duration::from_secs(5),
        address_map: [(advertised.to_string(), leader.endpoint())].into(),
        ..config(&[follower.endpoint(), leader.endpoint()])
    })
    .unwrap();

    tracing::info!("--- the hint lands on the configured endpoint it maps to");
    assert_eq!(client.put("k", "v").await.unwrap(), 1);
    assert_eq!((follower.count("Put"), leader.count("Put")), (1, 1));
    assert_eq!(client.leader(), Some(leader.endpoint()));
    assert_eq!(
        client.endpoints(),
        [follower.endpoint(), leader.endpoint()],
        "no node was added under the advertised name"
    );

    tracing::info!("--- an address map entry that is not host:port is refused up front");
    let bad = Client::with_config(ClientConfig {
        address_map: [(advertised.to_string(), "127.0.0.1".to_string())].into(),
        ..config(&[follower.endpoint()])
    })
    .unwrap_err();
    assert!(matches!(bad, Error::InvalidEndpoint(_)), "{bad}");
}

#[tokio::test]
async fn retries_unavailable_without_a_hint_with_the_same_write_id() {
    init_tracing();
    let node = FakeNode::start_with(
        1,
        Box::new(|method, n| {
            (method == "Put" && n < 3).then(|| Fault::Before(Status::unavailable("no leader yet")))
        }),
    )
    .await;
    let client = Client::connect([node.endpoint()]).await.unwrap();

    let version = client.put("k", "v").await.unwrap();
    assert_eq!(version, 1);
    let ids: Vec<_> = node.seen().iter().map(|s| s.write_id.unwrap()).collect();
    assert_eq!(ids.len(), 4, "three refusals, then served");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "every attempt resends one id: {ids:?}"
    );

    tracing::info!("--- the next write takes the next id");
    client.put("k", "w").await.unwrap();
    let next = node.seen().last().unwrap().write_id.unwrap();
    assert_eq!(
        (next.client_id, next.seq),
        (ids[0].client_id, ids[0].seq + 1)
    );
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_applied_once() {
    init_tracing();
    let node = FakeNode::start_with(
        1,
        Box::new(|method, n| {
            (method == "Put" && n == 0).then(|| Fault::After(Status::unavailable("answer lost")))
        }),
    )
    .await;
    let client = Client::connect([node.endpoint()]).await.unwrap();

    let version = client.put("k", "v").await.unwrap();
    assert_eq!(node.count("Put"), 2, "resent after the lost answer");
    assert_eq!(node.applied(), 1, "but applied once");
    assert_eq!(
        version, 1,
        "and answered with the first application's version"
    );
    assert_eq!(client.put("k", "w").await.unwrap(), 2);
}

#[tokio::test]
async fn gives_up_at_the_deadline_naming_the_last_error() {
    init_tracing();
    let node = FakeNode::start_with(
        1,
        Box::new(|_, _| Some(Fault::Before(Status::unavailable("election in progress")))),
    )
    .await;
    let deadline = Duration::from_millis(800);
    let client = Client::with_config(ClientConfig {
        deadline,
        ..config(&[node.endpoint()])
    })
    .unwrap();

    let started = Instant::now();
    let err = client.put("k", "v").await.unwrap_err();
    let took = started.elapsed();
    let Error::Timeout {
        after,
        attempts,
        ref last,
    } = err
    else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(
        after >= deadline && took >= deadline,
        "gave up early: {after:?}"
    );
    assert!(
        took < deadline + Duration::from_secs(5),
        "gave up late: {took:?}"
    );
    assert!(attempts >= 2, "retried: {attempts}");
    assert_eq!(node.count("Put"), attempts as usize);
    assert!(last.contains("election in progress"), "{last}");
    assert!(last.contains(&node.endpoint()), "{last}");
    assert!(err.is_retryable());
    let ids: HashSet<_> = node.seen().iter().map(|s| s.write_id.unwrap()).collect();
    assert_eq!(ids.len(), 1, "one write id across all attempts");
}

#[tokio::test]
async fn max_attempts_gives_up_before_the_deadline() {
    init_tracing();
    let node = FakeNode::start_with(
        1,
        Box::new(|_, _| Some(Fault::Before(Status::unavailable("no leader")))),
    )
    .await;
    let client = Client::with_config(ClientConfig {
        max_attempts: Some(3),
        deadline: Duration::from_secs(60),
        ..config(&[node.endpoint()])
    })
    .unwrap();
    let err = client.get("k").await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(node.count("Get"), 3);
}

#[tokio::test]
async fn refusals_are_typed_and_not_retried() {
    init_tracing();
    let node = FakeNode::start_with(
        1,
        Box::new(|method, _| {
            let status = match method {
                "Put" => Status::invalid_argument("key too long"),
                "Delete" => Status::resource_exhausted("value over 1 MiB"),
                "Batch" => Status::failed_precondition("op 1: cas failed"),
                "Get" => Status::permission_denied("nope"),
                _ => return None,
            };
            Some(Fault::Before(status))
        }),
    )
    .await;
    let client = Client::connect([node.endpoint()]).await.unwrap();

    let err = client.put("k", "v").await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m == "key too long"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let err = client.delete("k").await.unwrap_err();
    assert!(
        matches!(&err, Error::TooLarge(m) if m.contains("1 MiB")),
        "{err:?}"
    );
    let err = client
        .batch([BatchOp::cas("k", Some(1), "v")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Rejected(m) if m.contains("cas failed")),
        "{err:?}"
    );
    let err = client.get("k").await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Server {
                code: islab_client::Code::PermissionDenied,
                ..
            }
        ),
        "{err:?}"
    );
    for method in ["Put", "Delete", "Batch", "Get"] {
        assert_eq!(node.count(method), 1, "{method} was retried");
    }
}

#[tokio::test]
async fn scan_follows_next_start_until_the_limit() {
    init_tracing();
    let node = FakeNode::start().await; // at most 10 items per page
    for i in 0..25 {
        node.insert(&format!("user/{i:02}"), &format!("v{i}"));
    }
    node.insert("other/1", "x");
    node.insert("zzz", "x");
    let client = Client::connect([node.endpoint()]).await.unwrap();
    let keys = |items: &[islab_client::KeyValue]| -> Vec<String> {
        items
            .iter()
            .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
            .collect()
    };

    tracing::info!("--- a whole prefix takes three pages");
    let all = client.scan(Scan::prefix("user/")).await.unwrap();
    let want: Vec<String> = (0..25).map(|i| format!("user/{i:02}")).collect();
    assert_eq!(keys(&all), want);
    let scans: Vec<_> = node.seen().into_iter().filter_map(|s| s.scan).collect();
    assert_eq!(scans.len(), 3);
    assert!(scans[0].start.is_empty());
    assert_eq!(
        &scans[1].start[..],
        b"user/09\0",
        "continues at the server's next_start"
    );
    assert_eq!(&scans[2].start[..], b"user/19\0");
    assert!(scans.iter().all(|s| &s.prefix[..] == b"user/"));

    tracing::info!("--- a limit stops the paging and shrinks the last request");
    let before = node.count("Scan");
    let some = client.scan(Scan::prefix("user/").limit(15)).await.unwrap();
    assert_eq!(keys(&some), want[..15]);
    let limits: Vec<u32> = node.seen()[before..]
        .iter()
        .filter_map(|s| s.scan.as_ref().map(|r| r.limit))
        .collect();
    assert_eq!(limits, [15, 5]);

    tracing::info!("--- one page at a time");
    let page = client.scan_page(&Scan::all().page_size(4)).await.unwrap();
    assert_eq!(
        keys(&page.items),
        ["other/1", "user/00", "user/01", "user/02"]
    );
    let next = page.next.expect("more to come");
    let page = client.scan_page(&next).await.unwrap();
    assert_eq!(
        keys(&page.items),
        ["user/03", "user/04", "user/05", "user/06"]
    );

    tracing::info!("--- a range, read serializably");
    let range = Scan::range("user/05".."user/08").consistency(ReadConsistency::Serializable);
    let items = client.scan(range).await.unwrap();
    assert_eq!(keys(&items), ["user/05", "user/06", "user/07"]);
    assert_eq!(node.seen().last().unwrap().consistency, Some(1));
}

#[tokio::test]
async fn a_closed_port_times_out_within_the_deadline_and_fails_over() {
    init_tracing();
    let closed = closed_port().to_string();
    let deadline = Duration::from_secs(1);

    tracing::info!("--- nothing listens: a timeout that says why");
    let client = Client::with_config(ClientConfig {
        deadline,
        ..config(std::slice::from_ref(&closed))
    })
    .unwrap();
    let started = Instant::now();
    let err = client.put("k", "v").await.unwrap_err();
    let took = started.elapsed();
    let Error::Timeout {
        ref last, attempts, ..
    } = err
    else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(5),
        "{took:?}"
    );
    assert!(attempts >= 2, "{attempts}");
    assert!(
        last.contains(&closed) && last.contains("Unavailable"),
        "{last}"
    );
    tracing::info!(%err, "the error a user sees");

    tracing::info!("--- a live node after the dead one serves the call");
    let live = FakeNode::start().await;
    let client = Client::connect([closed.clone(), live.endpoint()])
        .await
        .unwrap();
    assert_eq!(client.put("k", "v").await.unwrap(), 1);
    assert_eq!(client.leader(), Some(live.endpoint()));
}

#[tokio::test]
async fn a_silent_node_is_cut_off_by_the_attempt_timeout() {
    init_tracing();
    // Accepts TCP connections (the kernel does, into the backlog) but never speaks.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let short = ClientConfig {
        request_timeout: Duration::from_millis(300),
        deadline: Duration::from_secs(1),
        ..config(std::slice::from_ref(&silent_addr))
    };

    tracing::info!("--- only the silent node: timeout naming the unanswered attempt");
    let client = Client::with_config(short.clone()).unwrap();
    let started = Instant::now();
    let err = client.get("k").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(6));
    let Error::Timeout { ref last, .. } = err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(
        last.contains(&silent_addr) && last.contains("no answer"),
        "{last}"
    );

    tracing::info!("--- silent node first, live node second: served by the live one");
    let live = FakeNode::start().await;
    let client = Client::with_config(ClientConfig {
        deadline: Duration::from_secs(10),
        endpoints: vec![silent_addr.clone(), live.endpoint()],
        ..short
    })
    .unwrap();
    assert_eq!(client.put("k", "v").await.unwrap(), 1);
    assert_eq!(client.leader(), Some(live.endpoint()));
    drop(silent);
}

#[tokio::test]
async fn nodes_naming_each_other_do_not_spin_the_client() {
    init_tracing();
    let a = FakeNode::start().await;
    let b = FakeNode::start().await;
    let (a_addr, b_addr) = (a.endpoint(), b.endpoint());
    a.script(Box::new(move |_, _| {
        Some(Fault::Before(not_leader(&b_addr)))
    }));
    b.script(Box::new(move |_, _| {
        Some(Fault::Before(not_leader(&a_addr)))
    }));
    let client = Client::with_config(ClientConfig {
        deadline: Duration::from_secs(1),
        ..config(&[a.endpoint()])
    })
    .unwrap();
    let err = client.put("k", "v").await.unwrap_err();
    let Error::Timeout {
        attempts, ref last, ..
    } = err
    else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(last.contains("not the leader"), "{last}");
    assert!(
        attempts < 100,
        "redirect ping-pong must back off: {attempts} attempts"
    );
}

#[tokio::test]
async fn concurrent_calls_share_one_connection() {
    init_tracing();
    let node = FakeNode::start().await;
    let client = Client::connect([node.endpoint()]).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.put(format!("k{i}"), "v").await })
        })
        .collect();
    let mut versions = HashSet::new();
    for task in tasks {
        versions.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(versions.len(), 32);
    let seen = node.seen();
    let remotes: HashSet<_> = seen.iter().map(|s| s.remote.unwrap()).collect();
    assert_eq!(
        remotes.len(),
        1,
        "one HTTP/2 connection for all calls: {remotes:?}"
    );
    let seqs: HashSet<_> = seen.iter().map(|s| s.write_id.unwrap().seq).collect();
    assert_eq!(seqs.len(), 32, "every write has its own seq");
}

#[tokio::test]
async fn admin_calls_route_to_the_leader_or_the_named_node() {
    init_tracing();
    let leader = FakeNode::start_with(2, Box::new(|_, _| None)).await;
    let hint = leader.endpoint();
    let follower = FakeNode::start_with(
        1,
        Box::new(move |method, _| {
            method
                .starts_with("Member")
                .then(|| Fault::Before(not_leader(&hint)))
        }),
    )
    .await;
    let client = Client::connect([follower.endpoint()]).await.unwrap();
    let admin = client.admin();

    tracing::info!("--- init goes to the first configured node");
    let voter = |id, addr: &str| Member {
        id,
        addr: addr.into(),
        voter: true,
    };
    let cluster = admin
        .init([voter(1, &follower.endpoint()), voter(2, &leader.endpoint())])
        .await
        .unwrap();
    assert_eq!(cluster, "fake-cluster");
    assert_eq!(follower.count("Init"), 1);
    let again = admin
        .init([voter(1, &follower.endpoint())])
        .await
        .unwrap_err();
    assert!(matches!(again, Error::Rejected(_)), "{again:?}");

    tracing::info!("--- membership changes follow the hint to the leader");
    let members = admin.member_add(3, "10.0.0.3:7379").await.unwrap();
    assert_eq!(members.last().unwrap().id, 3);
    assert!(!members.last().unwrap().voter);
    assert_eq!(
        (follower.count("MemberAdd"), leader.count("MemberAdd")),
        (1, 1)
    );
    let members = admin.member_promote(3).await.unwrap();
    assert!(members.iter().any(|m| m.id == 3 && m.voter));
    assert!(admin.member_remove(3).await.unwrap().is_empty());
    assert_eq!(
        follower.count("MemberPromote") + follower.count("MemberRemove"),
        0
    );
    assert_eq!(admin.member_list().await.unwrap().leader_id, 2);

    tracing::info!("--- status of a chosen node");
    let status = admin.status_of(&follower.endpoint()).await.unwrap();
    assert_eq!((status.node_id, status.addr), (1, follower.endpoint()));
    let status = admin.status().await.unwrap();
    assert_eq!(status.node_id, 2, "status asks the known leader");
}
