//! The Rust `zookeeper` crate 0.8 (blocking, an independent implementation of the
//! protocol) against an in-process zabkeeper. It writes its first request in the same
//! send as the ConnectRequest: that call must be answered, not time out with
//! ConnectionLoss (issue 12 item 1). Then CRUD, sequential and ephemeral nodes, and a
//! watch. With `ZABKEEPER_TEST_CONNECT=host:port,...` set, the same calls go to that
//! server or ensemble instead (`tests/integration/test_rust_clients.py` points them at a
//! zabkeeper 3-server ensemble and at Apache ZooKeeper 3.8).

#![cfg(not(madsim))]

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use zabkeeper::runtime::{self, ServerConfig, SystemClock};
use zookeeper::{Acl, CreateMode, WatchedEvent, WatchedEventType, ZooKeeper};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_crate_round_trip() {
    let dir = std::env::temp_dir().join(format!("zabkeeper-zkcrate-{}", std::process::id()));
    let external = std::env::var("ZABKEEPER_TEST_CONNECT").ok();
    let server = match &external {
        Some(_) => None,
        None => {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let config = ServerConfig::standalone(0, &dir);
            let storage = runtime::open_file_storage(&config).unwrap();
            Some(
                runtime::start(config, storage, Arc::new(SystemClock))
                    .await
                    .unwrap(),
            )
        }
    };
    let addr = external.unwrap_or_else(|| server.as_ref().unwrap().local_addr().to_string());

    tokio::task::spawn_blocking(move || {
        let zk = ZooKeeper::connect(&addr, Duration::from_secs(10), |_: WatchedEvent| {})
            .expect("connect");
        // The first call rides behind the ConnectRequest.
        assert!(zk.exists("/", false).expect("first call").is_some());
        let path = zk
            .create(
                "/crate",
                b"one".to_vec(),
                Acl::open_unsafe().clone(),
                CreateMode::Persistent,
            )
            .unwrap();
        assert_eq!(path, "/crate");
        let (tx, rx) = mpsc::channel();
        let (data, stat) = zk
            .get_data_w("/crate", move |e: WatchedEvent| {
                let _ = tx.send(e.event_type);
            })
            .unwrap();
        assert_eq!((data.as_slice(), stat.version), (&b"one"[..], 0));
        let stat = zk.set_data("/crate", b"two".to_vec(), Some(0)).unwrap();
        assert_eq!(stat.version, 1);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            WatchedEventType::NodeDataChanged
        );
        assert!(zk.set_data("/crate", b"x".to_vec(), Some(0)).is_err());
        let seq = zk
            .create(
                "/crate/s-",
                Vec::new(),
                Acl::open_unsafe().clone(),
                CreateMode::EphemeralSequential,
            )
            .unwrap();
        assert_eq!(seq, "/crate/s-0000000000");
        assert_eq!(
            zk.get_children("/crate", false).unwrap(),
            vec!["s-0000000000".to_string()]
        );
        zk.delete(&seq, None).unwrap();
        zk.delete("/crate", Some(1)).unwrap();
        assert!(zk.exists("/crate", false).unwrap().is_none());
        zk.close().unwrap();
    })
    .await
    .unwrap();

    if let Some(server) = server {
        server.shutdown().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
