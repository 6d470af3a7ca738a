//! The client against a real ZooKeeper 3.8 server (byte compatibility of
//! the codec in both directions). Ignored by default; run with
//! `ZK_CONNECT=127.0.0.1:2181 cargo test -p zabkeeper live_ -- --ignored`.

use std::time::Duration;

use super::*;
use crate::types::{keeper_state, perms, watch_mode, watcher_type, Id};

fn connect_string() -> String {
    std::env::var("ZK_CONNECT").expect("set ZK_CONNECT to a ZooKeeper 3.8 server")
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<WatchedEvent>) -> WatchedEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("event in time")
        .expect("event")
}

#[tokio::test]
#[ignore = "needs a ZooKeeper server in ZK_CONNECT"]
async fn live_every_operation_against_zookeeper() {
    let open = Acl::open_unsafe();
    let root_client = Client::connect(
        &connect_string(),
        ClientOptions::with_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let root = format!("/proto-live-{:x}", root_client.session_id());
    root_client
        .create(&root, b"r", &open, CreateMode::Persistent)
        .await
        .unwrap();

    // A chrooted client does the work.
    let c = Client::connect(
        &format!("{}{root}", connect_string()),
        ClientOptions::with_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let mut events = c.take_events().unwrap();
    assert_eq!(
        next_event(&mut events).await.state,
        keeper_state::SYNC_CONNECTED
    );

    // exists watch on a missing node, then create it.
    assert_eq!(c.exists("/a", true).await.unwrap(), None);
    let (path, stat) = c
        .create("/a", b"hello", &open, CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(path, "/a");
    assert_eq!(stat.data_length, 5);
    assert_eq!(stat.czxid, stat.mzxid);
    assert_eq!(
        next_event(&mut events).await,
        WatchedEvent {
            event_type: EventType::NodeCreated,
            state: keeper_state::SYNC_CONNECTED,
            path: "/a".into()
        }
    );
    assert!(c.last_zxid_seen() >= stat.czxid);

    // Data, versions, errors.
    let (data, st) = c.get_data("/a", true).await.unwrap();
    assert_eq!((data.as_slice(), st), (&b"hello"[..], stat));
    assert_eq!(
        c.set_data("/a", b"x", 7).await,
        Err(Error::Keeper(ErrorCode::BadVersion))
    );
    let st2 = c.set_data("/a", b"world", 0).await.unwrap();
    assert_eq!(st2.version, 1);
    assert_eq!(
        next_event(&mut events).await.event_type,
        EventType::NodeDataChanged
    );
    assert_eq!(
        c.create("/a", b"", &open, CreateMode::Persistent).await,
        Err(Error::Keeper(ErrorCode::NodeExists))
    );
    assert_eq!(
        c.get_data("/nope", false).await,
        Err(Error::Keeper(ErrorCode::NoNode))
    );

    // Children, sequential and ephemeral nodes.
    assert!(c.get_children("/a", true).await.unwrap().is_empty());
    let (s1, _) = c
        .create("/a/s-", b"", &open, CreateMode::EphemeralSequential)
        .await
        .unwrap();
    assert_eq!(s1, "/a/s-0000000000");
    assert_eq!(
        next_event(&mut events).await.event_type,
        EventType::NodeChildrenChanged
    );
    let (kids, st) = c.get_children2("/a", false).await.unwrap();
    assert_eq!(
        (kids, st.num_children),
        (vec!["s-0000000000".to_string()], 1)
    );
    assert_eq!(c.get_ephemerals("/").await.unwrap(), vec![s1.clone()]);
    assert_eq!(c.get_all_children_number("/a").await.unwrap(), 1);

    // ACLs and auth.
    c.add_auth("digest", b"bob:secret").await.unwrap();
    let who = c.who_am_i().await.unwrap();
    assert!(
        who.iter()
            .any(|i| i.auth_scheme == "digest" && i.user == "bob"),
        "{who:?}"
    );
    let (acl, _) = c.get_acl("/a").await.unwrap();
    assert_eq!(acl, open);
    let creator_all = vec![Acl {
        perms: perms::ALL,
        id: Id::new("auth", ""),
    }];
    let (_, _) = c
        .create("/secret", b"s", &creator_all, CreateMode::Persistent)
        .await
        .unwrap();
    let (acl, _) = c.get_acl("/secret").await.unwrap();
    assert_eq!(acl[0].id.scheme, "digest");
    let read_only = vec![Acl {
        perms: perms::READ,
        id: Id::anyone(),
    }];
    let st = c.set_acl("/secret", &read_only, 0).await.unwrap();
    assert_eq!(st.aversion, 1);
    assert_eq!(
        c.set_data("/secret", b"no", -1).await,
        Err(Error::Keeper(ErrorCode::NoAuth))
    );

    // Multi: success and failure.
    let results = c
        .multi(vec![
            MultiOp::Create(CreateRequest {
                path: "/m".into(),
                data: Some(b"1".to_vec()),
                acl: open.clone(),
                flags: 0,
            }),
            MultiOp::Create2(CreateRequest {
                path: "/m/c".into(),
                data: Some(vec![]),
                acl: open.clone(),
                flags: 0,
            }),
            MultiOp::Check {
                path: "/m".into(),
                version: 0,
            },
            MultiOp::SetData {
                path: "/m".into(),
                data: Some(b"2".to_vec()),
                version: 0,
            },
            MultiOp::Delete {
                path: "/m/c".into(),
                version: 0,
            },
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0], MultiResult::Create { path: "/m".into() });
    // ZooKeeper 3.8 decodes a create2 op inside a multi as a plain create
    // (MultiOperationRecord), so its result has no stat.
    assert_eq!(
        results[1],
        MultiResult::Create {
            path: "/m/c".into()
        },
        "{results:?}"
    );
    assert_eq!(results[2], MultiResult::Check);
    assert!(matches!(results[3], MultiResult::SetData { stat } if stat.version == 1));
    assert_eq!(results[4], MultiResult::Delete);
    let failed = c
        .multi(vec![
            MultiOp::SetData {
                path: "/m".into(),
                data: Some(b"3".to_vec()),
                version: 1,
            },
            MultiOp::Check {
                path: "/m".into(),
                version: 99,
            },
            MultiOp::Delete {
                path: "/m".into(),
                version: -1,
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        failed,
        vec![
            MultiResult::Error { err: 0 },
            MultiResult::Error {
                err: ErrorCode::BadVersion.code()
            },
            MultiResult::Error {
                err: ErrorCode::RuntimeInconsistency.code()
            },
        ]
    );
    let reads = c
        .multi_read(vec![
            MultiOp::GetData {
                path: "/m".into(),
                watch: false,
            },
            MultiOp::GetChildren {
                path: "/".into(),
                watch: false,
            },
            MultiOp::GetData {
                path: "/zz".into(),
                watch: false,
            },
        ])
        .await
        .unwrap();
    assert!(
        matches!(&reads[0], MultiResult::GetData { data, .. } if data.as_deref() == Some(&b"2"[..]))
    );
    assert!(matches!(&reads[1], MultiResult::GetChildren { children } if children.len() == 3));
    assert_eq!(
        reads[2],
        MultiResult::Error {
            err: ErrorCode::NoNode.code()
        }
    );

    // TTL and container nodes, sync.
    let (p, _) = c
        .create_ttl(
            "/ttl",
            b"",
            &open,
            CreateMode::PersistentWithTtl,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(p, "/ttl");
    let (p, _) = c
        .create("/box", b"", &open, CreateMode::Container)
        .await
        .unwrap();
    assert_eq!(p, "/box");
    c.sync("/").await.unwrap();

    // Persistent recursive watch, then removal; checkWatches.
    c.add_watch("/m", watch_mode::PERSISTENT_RECURSIVE)
        .await
        .unwrap();
    c.create("/m/deep", b"", &open, CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        WatchedEvent {
            event_type: EventType::NodeCreated,
            state: keeper_state::SYNC_CONNECTED,
            path: "/m/deep".into()
        }
    );
    c.set_data("/m/deep", b"v", -1).await.unwrap();
    assert_eq!(
        next_event(&mut events).await.event_type,
        EventType::NodeDataChanged
    );
    c.check_watches("/m", watcher_type::ANY).await.unwrap();
    c.remove_watches("/m", watcher_type::ANY).await.unwrap();
    assert_eq!(
        next_event(&mut events).await.event_type,
        EventType::PersistentWatchRemoved
    );
    assert_eq!(
        c.check_watches("/m", watcher_type::ANY).await,
        Err(Error::Keeper(ErrorCode::NoWatcher))
    );

    // Raw submit carries the zxid of the write.
    let reply = c
        .submit(Request::Delete {
            path: "/m/deep".into(),
            version: -1,
        })
        .await
        .unwrap();
    assert_eq!(reply.err, 0);
    assert!(reply.zxid > 0 && reply.zxid == c.last_zxid_seen());

    // Closing removes the ephemeral node.
    c.close().await.unwrap();
    assert_eq!(c.state(), SessionState::Closed);
    assert_eq!(
        root_client
            .exists(&format!("{root}{s1}"), false)
            .await
            .unwrap(),
        None
    );

    // Clean up.
    for p in ["/secret", "/m", "/ttl", "/box", "/a"] {
        root_client.delete(&format!("{root}{p}"), -1).await.unwrap();
    }
    root_client.delete(&root, -1).await.unwrap();
    root_client.close().await.unwrap();
}
