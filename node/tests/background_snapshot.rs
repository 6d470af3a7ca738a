//! "Snapshots represent exactly one zxid and are taken without stopping writes."
//!
//! The server runs in-process over the real file storage, wrapped so that every snapshot
//! writer blocks at a gate until the test opens it. With the gate closed, real ZooKeeper
//! clients (the `zookeeper-client` crate) keep writing (creates, setData with versions,
//! multis) well past `snapCount`: every write is answered while the snapshot is provably
//! not yet written. Then the gate opens, and each snapshot file is compared with the
//! state rebuilt by replaying the log from the empty tree up to the snapshot's zxid:
//! tree and session table must be exactly that state, with none of the writes made while
//! the snapshot was in flight. Finally a restart recovers from the snapshot plus the log.

#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{persistent, temp_dir, wait_for};
use zabkeeper::runtime::{self, recovery, ServerConfig, SystemClock};
use zabkeeper::state::tree::DataTree;
use zabkeeper::state::txn::{Txn, TxnBody};
use zabkeeper::storage::{
    format, snapshot_files_in, FileStorage, FileStorageOptions, RealFs, SnapshotWriter, Storage,
    StorageError, StorageLayer,
};
use zabkeeper::types::{SessionId, Zxid};

/// A gate every snapshot writer waits at, and the zxids of the snapshots begun.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    open: bool,
    begun: Vec<Zxid>,
    waiting: usize,
}

impl Gate {
    fn open(&self) {
        self.state.lock().unwrap().open = true;
        self.changed.notify_all();
    }
    fn begun(&self) -> Vec<Zxid> {
        self.state.lock().unwrap().begun.clone()
    }
    fn waiting(&self) -> usize {
        self.state.lock().unwrap().waiting
    }
}

/// Opens the gate when dropped, so that a failing test unwinds instead of leaving the
/// snapshot thread (and a processor waiting for it) blocked forever.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// A snapshot writer held at the gate.
struct GatedWriter {
    inner: Box<dyn SnapshotWriter>,
    gate: Arc<Gate>,
}

impl SnapshotWriter for GatedWriter {
    fn zxid(&self) -> Zxid {
        self.inner.zxid()
    }
    fn write(self: Box<Self>, bytes: &[u8]) -> Result<(), StorageError> {
        let mut g = self.gate.state.lock().unwrap();
        g.waiting += 1;
        while !g.open {
            g = self.gate.changed.wait(g).unwrap();
        }
        g.waiting -= 1;
        drop(g);
        self.inner.write(bytes)
    }
}

/// The file storage, with gated snapshot writers.
struct GatedStorage {
    inner: FileStorage<RealFs>,
    gate: Arc<Gate>,
}

impl StorageLayer for GatedStorage {
    type Inner = FileStorage<RealFs>;
    fn inner(&self) -> &Self::Inner {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut Self::Inner {
        &mut self.inner
    }
    fn begin_snapshot(&mut self, zxid: Zxid) -> Result<Box<dyn SnapshotWriter>, StorageError> {
        let inner = self.inner.begin_snapshot(zxid)?;
        self.gate.state.lock().unwrap().begun.push(zxid);
        Ok(Box::new(GatedWriter {
            inner,
            gate: self.gate.clone(),
        }))
    }
}

fn open_storage(dir: &Path) -> FileStorage<RealFs> {
    FileStorage::open(RealFs, FileStorageOptions::new(dir, dir)).unwrap()
}

/// One writer: creates its node, then alternates setData (with the expected version) and
/// multis (a create and a setData in one txn).
async fn write_load(addr: String, w: usize, rounds: i32) {
    let client = zookeeper_client::Client::connect(&addr).await.unwrap();
    let base = format!("/w{w}");
    client.create(&base, b"0", &persistent()).await.unwrap();
    for v in 1..=rounds {
        if v % 2 == 1 {
            client
                .set_data(&base, v.to_string().as_bytes(), Some(v - 1))
                .await
                .unwrap();
        } else {
            let mut multi = client.new_multi_writer();
            multi
                .add_create(&format!("{base}/m{v}"), b"m", &persistent())
                .unwrap();
            multi
                .add_set_data(&base, v.to_string().as_bytes(), Some(v - 1))
                .unwrap();
            multi.commit().await.unwrap();
        }
    }
}

/// The tree and session table after replaying the log from the empty tree up to `upto`.
fn replay(txns: &[(Zxid, Vec<u8>)], upto: Zxid) -> (DataTree, Vec<(SessionId, i32)>) {
    let mut tree = DataTree::new();
    let mut sessions = BTreeMap::new();
    for (zxid, bytes) in txns.iter().filter(|(z, _)| *z <= upto) {
        let txn = Txn::decode(bytes).unwrap();
        assert_eq!(txn.zxid, *zxid);
        match &txn.body {
            TxnBody::CreateSession { timeout_ms } => {
                sessions.insert(txn.session, *timeout_ms);
            }
            TxnBody::CloseSession { .. } => {
                sessions.remove(&txn.session);
            }
            _ => {}
        }
        tree.apply(&txn);
    }
    (tree, sessions.into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_while_a_snapshot_is_written_and_it_holds_exactly_one_zxid() {
    let dir = temp_dir("background-snapshot");
    let gate = Arc::new(Gate::default());
    let _open_on_exit = OpenOnDrop(gate.clone());
    let mut config = ServerConfig::standalone(0, &dir);
    config.tick_time_ms = 100;
    // A snapshot every 10 to 19 txns (ZooKeeper randomises within snapCount/2..snapCount).
    config.snap_count = 20;
    let storage = GatedStorage {
        inner: open_storage(&dir),
        gate: gate.clone(),
    };
    let server = runtime::start(config, Box::new(storage), Arc::new(SystemClock))
        .await
        .unwrap();
    let addr = server.local_addr().to_string();

    // Four writers, 4 * 41 txns plus their sessions: far past snapCount while the first
    // snapshot is held at the gate. Every write must be answered meanwhile.
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(write_load(addr.clone(), w, 40)))
        .collect();
    for t in writers {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("writes were held up by the snapshot in flight")
            .unwrap();
    }
    let begun = gate.begun();
    assert_eq!(begun.len(), 1, "one snapshot at a time: {begun:?}");
    wait_for("the snapshot thread to reach the gate", || {
        gate.waiting() == 1
    })
    .await;
    assert!(
        snapshot_files_in(&dir).unwrap().is_empty(),
        "no snapshot may be written while the gate is closed"
    );
    let frozen_at = begun[0];
    let last_write = {
        let client = zookeeper_client::Client::connect(&addr).await.unwrap();
        let (_, stat) = client.get_data("/w3").await.unwrap();
        stat.mzxid
    };
    assert!(
        last_write > frozen_at + 100,
        "writes went on after the freeze at 0x{frozen_at:x} (last 0x{last_write:x})"
    );

    // Release it: the snapshot is written, and later ones follow as writes go on.
    gate.open();
    wait_for("the first snapshot file", || {
        !snapshot_files_in(&dir).unwrap().is_empty()
    })
    .await;
    let client = zookeeper_client::Client::connect(&addr).await.unwrap();
    for i in 0..40 {
        client
            .create(&format!("/after{i}"), b"", &persistent())
            .await
            .unwrap();
    }
    drop(client);
    server.shutdown().await.unwrap();

    // Every snapshot is exactly the state at its zxid.
    let mut storage = open_storage(&dir);
    let txns = storage.read_txns_after(0).unwrap();
    let files = storage.snapshot_files().unwrap();
    assert!(files.len() >= 2, "{files:?}");
    let mut zxids = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let (zxid, body) = format::decode_snapshot(&bytes).unwrap();
        let (tree, sessions) = recovery::decode_snapshot(body).unwrap();
        assert_eq!(tree.last_processed_zxid(), zxid, "{}", file.display());
        let (expected_tree, expected_sessions) = replay(&txns, zxid);
        assert_eq!(
            tree.digest(),
            expected_tree.digest(),
            "{}: tree differs from the log at 0x{zxid:x}",
            file.display()
        );
        assert_eq!(
            tree.paths().collect::<Vec<_>>(),
            expected_tree.paths().collect::<Vec<_>>()
        );
        for p in expected_tree.paths() {
            assert_eq!(tree.get_data(p), expected_tree.get_data(p), "{p}");
        }
        assert_eq!(sessions, expected_sessions, "{}", file.display());
        zxids.push(zxid);
    }
    assert_eq!(zxids[0], frozen_at);

    // A restart starts from the newest snapshot plus the log after it.
    let rec = recovery::recover(&mut storage).unwrap();
    let (full, _) = replay(&txns, Zxid::MAX);
    assert_eq!(rec.tree.digest(), full.digest());
    for w in 0..4 {
        let (data, stat) = rec.tree.get_data(&format!("/w{w}")).unwrap();
        assert_eq!((&data.unwrap()[..], stat.version), (&b"40"[..], 40));
        assert_eq!(
            rec.tree.get_children(&format!("/w{w}")).unwrap().0.len(),
            20
        );
    }
    assert!(rec.tree.get_data("/after39").is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
