//! The observation hook: start-up recovery reports the recovered tree.

#![cfg(not(madsim))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use zabkeeper::client::{Client, ClientOptions};
use zabkeeper::runtime::{
    start_observed, Observation, ObserverFn, ServerConfig, SystemClock, TreeSource,
};
use zabkeeper::state::tree::DataTree;
use zabkeeper::storage::{FileStorage, FileStorageOptions, RealFs};
use zabkeeper::types::{Acl, CreateMode};

/// Start-up recovery reports the recovered tree: empty on a fresh data dir, and on a
/// restart the tree with the txns logged before it, at their zxid. A standalone server
/// is an ensemble of one, so it also reports its leadership of each new epoch.
#[tokio::test]
async fn startup_reports_the_recovered_tree() {
    let dir = std::env::temp_dir().join(format!("zabkeeper-observe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let seen: Arc<Mutex<Vec<Observation>>> = Arc::default();
    let start = || {
        let seen = Arc::clone(&seen);
        let hook: ObserverFn = Arc::new(move |o| seen.lock().unwrap().push(o));
        let storage = FileStorage::open(RealFs, FileStorageOptions::new(&dir, &dir)).unwrap();
        start_observed(
            ServerConfig::standalone(0, &dir),
            Box::new(storage),
            Arc::new(SystemClock),
            Some(hook),
        )
    };
    let take = || std::mem::take(&mut *seen.lock().unwrap());
    let loaded = |obs: &[Observation]| -> Vec<(TreeSource, i64, u64)> {
        obs.iter()
            .filter_map(|o| match o {
                Observation::TreeLoaded {
                    source,
                    zxid,
                    digest,
                } => Some((*source, *zxid, *digest)),
                _ => None,
            })
            .collect()
    };

    let server = start().await.unwrap();
    let client = Client::connect(
        &server.local_addr().to_string(),
        ClientOptions::with_timeout(Duration::from_secs(4)),
    )
    .await
    .unwrap();
    let first = take();
    assert_eq!(
        loaded(&first),
        vec![(TreeSource::Startup, 0, DataTree::new().digest())]
    );
    assert!(
        first.contains(&Observation::Leading { epoch: 1 }),
        "{first:?}"
    );
    let (_, stat) = client
        .create("/x", b"1", &Acl::open_unsafe(), CreateMode::Persistent)
        .await
        .unwrap();
    server.shutdown().await.unwrap();
    drop(client);
    take();

    let server = start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = take();
    match loaded(&second).as_slice() {
        [(TreeSource::Startup, zxid, digest)] => {
            assert!(*zxid >= stat.czxid, "recovered 0x{zxid:x}");
            assert_ne!(*digest, DataTree::new().digest());
        }
        other => panic!("expected one start-up TreeLoaded, got {other:?}"),
    }
    assert!(
        second.contains(&Observation::Leading { epoch: 2 }),
        "{second:?}"
    );
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
