//! The Rust `zookeeper-client` crate (an independent implementation of the
//! ZooKeeper protocol) doing a round trip against an in-process server, or, with
//! `ZABKEEPER_TEST_CONNECT=host:port,...` set, against that server or ensemble
//! (`tests/integration/test_rust_clients.py`).

#![cfg(not(madsim))]

use std::sync::Arc;

use zabkeeper::runtime::{self, ServerConfig, SystemClock};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("zabkeeper-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_client_round_trip() {
    let external = std::env::var("ZABKEEPER_TEST_CONNECT").ok();
    let (server, dir) = match &external {
        Some(_) => (None, None),
        None => {
            let dir = temp_dir("zkclient");
            let mut config = ServerConfig::standalone(0, &dir);
            config.tick_time_ms = 200;
            config.min_session_timeout_ms = 400;
            config.max_session_timeout_ms = 4000;
            let storage = runtime::open_file_storage(&config).unwrap();
            let server = runtime::start(config, storage, Arc::new(SystemClock))
                .await
                .unwrap();
            (Some(server), Some(dir))
        }
    };
    let addr = external.unwrap_or_else(|| server.as_ref().unwrap().local_addr().to_string());

    let client = zookeeper_client::Client::connect(&addr).await.unwrap();
    let create =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    let (stat, seq) = client.create("/smoke", b"hello", &create).await.unwrap();
    assert_eq!(stat.version, 0);
    assert_eq!(seq.into_i64(), -1);
    let (data, stat) = client.get_data("/smoke").await.unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(stat.data_length, 5);
    let stat = client.set_data("/smoke", b"world", Some(0)).await.unwrap();
    assert_eq!(stat.version, 1);
    assert!(matches!(
        client.set_data("/smoke", b"x", Some(0)).await,
        Err(zookeeper_client::Error::BadVersion)
    ));
    let eph = zookeeper_client::CreateMode::EphemeralSequential
        .with_acls(zookeeper_client::Acls::anyone_all());
    let (_, seq) = client.create("/smoke/e-", b"", &eph).await.unwrap();
    assert_eq!(seq.into_i64(), 0);
    let children = client.list_children("/smoke").await.unwrap();
    assert_eq!(children, vec!["e-0000000000".to_string()]);
    client.delete("/smoke/e-0000000000", None).await.unwrap();
    client.delete("/smoke", None).await.unwrap();
    assert!(client.check_stat("/smoke").await.unwrap().is_none());
    drop(client);

    if let (Some(server), Some(dir)) = (server, dir) {
        server.shutdown().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
