//! "The standalone server replies to a write only after the txn is durable (forceSync on)."
//!
//! The server runs in-process (`zabkeeper::runtime::start`) over a [`Storage`] wrapper that
//! journals every `append` and `sync` and can hold `sync` at a gate or make it fail. A real
//! ZooKeeper client (the `zookeeper-client` crate) journals each reply as it arrives. The
//! journal is one mutex-ordered sequence, so "reply before the covering fsync" would show
//! up as a `Reply(z)` with no earlier `SyncDone(>= z)`.

#![cfg(not(madsim))]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{persistent, temp_dir, wait_for};
use zabkeeper::runtime::{self, ServerConfig, SystemClock};
use zabkeeper::storage::{
    FileStorage, FileStorageOptions, RealFs, Storage, StorageError, StorageLayer,
};
use zabkeeper::types::Zxid;

/// What happened, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// `append(zxid)` was called (buffered, not durable).
    Append(Zxid),
    /// `sync` was entered.
    SyncStart,
    /// `sync` returned: everything up to this zxid is durable.
    SyncDone(Zxid),
    /// The client received the successful reply of the write with this zxid.
    Reply(Zxid),
}

#[derive(Default)]
struct GateState {
    /// `sync` blocks while this is true.
    closed: bool,
    /// `sync` fails (as a failed fsync would) while this is true.
    fail: bool,
}

/// The journal and the gate, shared by the storage (server side) and the test (client side).
#[derive(Default)]
struct Shared {
    journal: Mutex<Vec<Event>>,
    gate: Mutex<GateState>,
    gate_changed: Condvar,
}

impl Shared {
    fn record(&self, e: Event) {
        self.journal.lock().unwrap().push(e);
    }

    fn journal(&self) -> Vec<Event> {
        self.journal.lock().unwrap().clone()
    }

    fn set_gate(&self, closed: bool, fail: bool) {
        *self.gate.lock().unwrap() = GateState { closed, fail };
        self.gate_changed.notify_all();
    }
}

/// Opens the gate when dropped, so that a failing test does not leave the server's
/// blocking `sync` waiting forever (the runtime's shutdown would wait for it).
struct OpenGateOnDrop(Arc<Shared>);

impl Drop for OpenGateOnDrop {
    fn drop(&mut self) {
        self.0.set_gate(false, false);
    }
}

/// [`FileStorage`] on the real file system, journalled and gated.
struct JournaledStorage {
    inner: FileStorage<RealFs>,
    shared: Arc<Shared>,
}

impl StorageLayer for JournaledStorage {
    type Inner = FileStorage<RealFs>;

    fn inner(&self) -> &Self::Inner {
        &self.inner
    }

    fn inner_mut(&mut self) -> &mut Self::Inner {
        &mut self.inner
    }

    fn append(&mut self, zxid: Zxid, txn: &[u8]) -> Result<(), StorageError> {
        self.shared.record(Event::Append(zxid));
        self.inner.append(zxid, txn)
    }

    fn fsync(&mut self) -> Result<Zxid, StorageError> {
        self.shared.record(Event::SyncStart);
        let fail = {
            let mut g = self.shared.gate.lock().unwrap();
            while g.closed {
                g = self.shared.gate_changed.wait(g).unwrap();
            }
            g.fail
        };
        if fail {
            return Err(StorageError::Failed("injected fsync failure".into()));
        }
        let durable = self.inner.fsync()?;
        self.shared.record(Event::SyncDone(durable));
        Ok(durable)
    }
}

fn config(dir: &PathBuf) -> ServerConfig {
    let mut config = ServerConfig::standalone(0, dir);
    config.tick_time_ms = 200;
    config.min_session_timeout_ms = 400;
    config.max_session_timeout_ms = 4000;
    assert!(config.force_sync, "forceSync is on by default");
    config.four_letter_words = vec!["*".to_string()];
    config
}

/// Sends a four-letter word and returns the answer.
async fn four_letter(addr: std::net::SocketAddr, cmd: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(cmd.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of `key` in `mntr` output.
fn mntr_value(mntr: &str, key: &str) -> f64 {
    mntr.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('\t'))
        .unwrap_or_else(|| panic!("no {key} in {mntr}"))
        .parse()
        .unwrap()
}

async fn start(dir: &PathBuf, shared: &Arc<Shared>) -> runtime::ServerHandle {
    let config = config(dir);
    let inner = FileStorage::open(RealFs, FileStorageOptions::new(dir, dir)).unwrap();
    let storage = JournaledStorage {
        inner,
        shared: shared.clone(),
    };
    runtime::start(config, Box::new(storage), Arc::new(SystemClock))
        .await
        .unwrap()
}

/// Checks that every reply follows a completed sync covering its zxid, and that the zxid
/// was appended before that sync started. Returns the number of replies checked.
fn assert_replies_follow_their_sync(journal: &[Event]) -> usize {
    let mut replies = 0;
    for (i, e) in journal.iter().enumerate() {
        let Event::Reply(z) = *e else { continue };
        replies += 1;
        let sync_done = journal[..i]
            .iter()
            .position(|e| matches!(*e, Event::SyncDone(d) if d >= z))
            .unwrap_or_else(|| {
                panic!("reply for 0x{z:x} at #{i} precedes every sync covering it: {journal:?}")
            });
        let appended = journal[..sync_done]
            .iter()
            .position(|e| *e == Event::Append(z))
            .unwrap_or_else(|| panic!("0x{z:x} was not appended before its sync: {journal:?}"));
        assert!(appended < sync_done);
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_reply_waits_for_the_fsync_of_its_txn() {
    let dir = temp_dir("durable-reply-gate");
    let shared = Arc::new(Shared::default());
    let server = start(&dir, &shared).await;
    let client = zookeeper_client::Client::connect(&server.local_addr().to_string())
        .await
        .unwrap();

    // Hold the next fsync and issue a write.
    let _open_on_exit = OpenGateOnDrop(shared.clone());
    shared.set_gate(true, false);
    let before = shared.journal().len();
    let write = tokio::spawn({
        let client = client.clone();
        let shared = shared.clone();
        async move {
            let (stat, _) = client.create("/durable", b"v", &persistent()).await?;
            shared.record(Event::Reply(stat.czxid));
            Ok::<_, zookeeper_client::Error>(stat.czxid)
        }
    });
    wait_for("the write's txn to reach sync", || {
        let j = shared.journal();
        let new = &j[before..];
        new.iter().any(|e| matches!(e, Event::Append(_))) && new.contains(&Event::SyncStart)
    })
    .await;
    // The txn is appended and the fsync is in progress (held): no reply may go out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "the server replied before the fsync");
    assert!(!shared.journal()[before..]
        .iter()
        .any(|e| matches!(e, Event::Reply(_) | Event::SyncDone(_))));

    shared.set_gate(false, false);
    let zxid = tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("the reply comes once the fsync completes")
        .unwrap()
        .unwrap();
    let journal = shared.journal();
    let tail = &journal[before..];
    assert!(tail.contains(&Event::Append(zxid)));
    assert_eq!(assert_replies_follow_their_sync(&journal), 1);
    drop(client);
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mntr` and `srvr` report request latency: a write held 300 ms at its fsync shows up
/// as the maximum; `srst` resets the counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_letter_words_report_the_latency_of_a_write_held_at_fsync() {
    let dir = temp_dir("durable-reply-latency");
    let shared = Arc::new(Shared::default());
    let server = start(&dir, &shared).await;
    let addr = server.local_addr();
    let client = zookeeper_client::Client::connect(&addr.to_string())
        .await
        .unwrap();
    client.create("/fast", b"", &persistent()).await.unwrap();
    let before = four_letter(addr, "mntr").await;
    assert!(mntr_value(&before, "zk_max_latency") < 300.0, "{before}");

    let _open_on_exit = OpenGateOnDrop(shared.clone());
    shared.set_gate(true, false);
    let write = tokio::spawn({
        let client = client.clone();
        async move { client.create("/slow", b"", &persistent()).await }
    });
    wait_for("the write to reach its fsync", || {
        shared.journal().ends_with(&[Event::SyncStart])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.set_gate(false, false);
    write.await.unwrap().unwrap();

    let mntr = four_letter(addr, "mntr").await;
    let (min, avg, max) = (
        mntr_value(&mntr, "zk_min_latency"),
        mntr_value(&mntr, "zk_avg_latency"),
        mntr_value(&mntr, "zk_max_latency"),
    );
    assert!(max >= 300.0, "{mntr}");
    assert!(min <= avg && avg <= max && avg > 0.0, "{mntr}");
    let srvr = four_letter(addr, "srvr").await;
    assert!(
        srvr.contains(&format!("Latency min/avg/max: {min}/")),
        "{srvr}"
    );
    assert_eq!(four_letter(addr, "srst").await, "Server stats reset.\n");
    let after = four_letter(addr, "mntr").await;
    assert_eq!(mntr_value(&after, "zk_max_latency"), 0.0, "{after}");
    assert_eq!(mntr_value(&after, "zk_packets_received"), 0.0, "{after}");
    drop(client);
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_concurrent_write_reply_follows_the_sync_covering_it() {
    let dir = temp_dir("durable-reply-load");
    let shared = Arc::new(Shared::default());
    let server = start(&dir, &shared).await;
    let addr = server.local_addr().to_string();

    let mut tasks = Vec::new();
    for w in 0..4 {
        let addr = addr.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let client = zookeeper_client::Client::connect(&addr).await.unwrap();
            let path = format!("/w{w}");
            let (stat, _) = client.create(&path, b"0", &persistent()).await.unwrap();
            shared.record(Event::Reply(stat.czxid));
            for v in 1..=25i32 {
                let stat = client
                    .set_data(&path, v.to_string().as_bytes(), Some(v - 1))
                    .await
                    .unwrap();
                shared.record(Event::Reply(stat.mzxid));
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap()
            .unwrap();
    }
    let journal = shared.journal();
    assert_eq!(assert_replies_follow_their_sync(&journal), 4 * 26);
    server.shutdown().await.unwrap();

    // And the acknowledged writes are what a restart recovers.
    let mut storage = FileStorage::open(RealFs, FileStorageOptions::new(&dir, &dir)).unwrap();
    let recovered = runtime::recovery::recover(&mut storage).unwrap();
    for w in 0..4 {
        let (data, stat) = recovered.tree.get_data(&format!("/w{w}")).unwrap();
        assert_eq!((&data.unwrap()[..], stat.version), (&b"25"[..], 25));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_server_without_a_success_reply() {
    let dir = temp_dir("durable-reply-fail");
    let shared = Arc::new(Shared::default());
    let server = start(&dir, &shared).await;
    let client = zookeeper_client::Client::connect(&server.local_addr().to_string())
        .await
        .unwrap();
    client.create("/before", b"", &persistent()).await.unwrap();

    shared.set_gate(false, true);
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        client.create("/lost", b"", &persistent()),
    )
    .await;
    assert!(
        !matches!(res, Ok(Ok(_))),
        "a write whose fsync failed was acknowledged"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("a failed fsync stops the server");
    let err = stopped.expect_err("the server reports the failed fsync");
    assert!(err.to_string().contains("fsync"), "{err}");
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_is_granted_only_after_its_create_session_txn_is_durable() {
    let dir = temp_dir("durable-reply-session");
    let shared = Arc::new(Shared::default());
    let server = start(&dir, &shared).await;
    let _open_on_exit = OpenGateOnDrop(shared.clone());
    shared.set_gate(true, false);

    let addr = server.local_addr().to_string();
    let connect = tokio::spawn(async move { zookeeper_client::Client::connect(&addr).await });
    wait_for("the createSession txn to reach sync", || {
        let j = shared.journal();
        j.iter().any(|e| matches!(e, Event::Append(_))) && j.contains(&Event::SyncStart)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !connect.is_finished(),
        "the session was granted before its createSession txn was durable"
    );

    shared.set_gate(false, false);
    let client = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("the session is granted once the fsync completes")
        .unwrap()
        .unwrap();
    let journal = shared.journal();
    // A standalone server is an ensemble of one: its first txn opens epoch 1.
    let first = zabkeeper::types::make_zxid(1, 1);
    assert!(
        matches!(
            journal[..],
            [Event::Append(a), Event::SyncStart, Event::SyncDone(d), ..] if a == first && d == first
        ),
        "{journal:?}"
    );
    client.create("/after", b"", &persistent()).await.unwrap();
    drop(client);
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
