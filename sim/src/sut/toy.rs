//! The reference SUT: a small standalone znode-register server over simulated TCP, with a
//! crash-consistent disk model (durable vs pending records). It exists so the harness can be
//! exercised end to end before the real node lands, and it carries the deliberately broken
//! variants (cargo features `broken-*`) that prove the testbed catches real bug classes:
//!
//! - `broken-ack-before-fsync`: acknowledges and applies a write before it is durable
//!   (caught by `crash-restart`: a crash loses an acknowledged write);
//! - `broken-lost-cas-check`: `setData` ignores the expected version (caught by the
//!   register workload: a CAS that should have failed succeeds);
//! - `broken-stale-read`: reads are served from a cache refreshed every 300 ms (caught by
//!   linearizability of reads).
//!
//! Wire protocol: one JSON object per line each way (`ToyRequest` / `ToyReply`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{DataReply, OpError, SetReply, CLIENT_PORT};
use crate::fault::DiskFault;
use crate::judge::{Observed, Observer};
use zabkeeper::hash::fnv1a;

/// One durable log record: a setData/create txn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    zxid: i64,
    path: String,
    data: String,
    version: i32,
    /// Checksum over the other fields (bit rot detection).
    crc: u64,
}

impl Record {
    fn new(zxid: i64, path: &str, data: &str, version: i32) -> Record {
        let mut r = Record {
            zxid,
            path: path.to_string(),
            data: data.to_string(),
            version,
            crc: 0,
        };
        r.crc = r.checksum();
        r
    }
    fn checksum(&self) -> u64 {
        fnv1a(format!("{}|{}|{}|{}", self.zxid, self.path, self.data, self.version).as_bytes())
    }
}

#[derive(Debug, Default)]
struct DiskState {
    durable: Vec<Record>,
    pending: Vec<Record>,
    eio_probability: f64,
    fsync_fail: bool,
    bytes_left: Option<u64>,
}

/// The toy server's disk: survives restarts within a run; a crash drops pending records.
#[derive(Debug, Clone)]
pub struct ToyDisk {
    state: Arc<Mutex<DiskState>>,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

/// A disk error.
#[derive(Debug, Clone, PartialEq)]
pub enum DiskError {
    /// EIO on write or sync.
    Eio,
    /// No space left.
    Full,
}

impl ToyDisk {
    /// A fresh disk whose fault randomness comes from `seed`.
    pub fn new(seed: u64) -> ToyDisk {
        ToyDisk {
            state: Arc::default(),
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        }
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().expect("rng").gen_bool(p.min(1.0))
    }

    fn append(&self, rec: Record) -> Result<(), DiskError> {
        let mut st = self.state.lock().expect("disk");
        if self.roll(st.eio_probability) {
            return Err(DiskError::Eio);
        }
        let size = 64 + rec.path.len() as u64 + rec.data.len() as u64;
        if let Some(left) = st.bytes_left.as_mut() {
            if *left < size {
                return Err(DiskError::Full);
            }
            *left -= size;
        }
        st.pending.push(rec);
        Ok(())
    }

    fn sync(&self) -> Result<(), DiskError> {
        let mut st = self.state.lock().expect("disk");
        if st.fsync_fail || self.roll(st.eio_probability) {
            st.fsync_fail = false;
            return Err(DiskError::Eio);
        }
        let pending = std::mem::take(&mut st.pending);
        st.durable.extend(pending);
        Ok(())
    }

    /// The node crashed: unsynced records are lost.
    pub fn crash(&self) {
        self.state.lock().expect("disk").pending.clear();
    }

    /// Arm a fault.
    pub fn arm(&self, fault: &DiskFault) {
        let mut st = self.state.lock().expect("disk");
        match fault {
            DiskFault::Eio { probability } => st.eio_probability = *probability,
            DiskFault::FsyncFail => st.fsync_fail = true,
            DiskFault::Full { bytes_left } => st.bytes_left = Some(*bytes_left),
        }
    }

    /// Disarm every fault.
    pub fn heal(&self) {
        let mut st = self.state.lock().expect("disk");
        st.eio_probability = 0.0;
        st.fsync_fail = false;
        st.bytes_left = None;
    }

    /// Flip a bit in one durable record (at rest).
    pub fn rot(&self) {
        let mut st = self.state.lock().expect("disk");
        if st.durable.is_empty() {
            return;
        }
        let i = self.rng.lock().expect("rng").gen_range(0..st.durable.len());
        st.durable[i].data.push('\u{1}');
    }
}

/// A request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ToyRequest {
    id: u64,
    op: String,
    path: String,
    #[serde(default)]
    data: String,
    #[serde(default)]
    version: i32,
}

/// A reply line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ToyReply {
    id: u64,
    #[serde(default)]
    err: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    version: i32,
    #[serde(default)]
    zxid: i64,
}

#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, (String, i32)>,
    last_zxid: i64,
    /// `broken-stale-read`: the cache reads are served from.
    cache: BTreeMap<String, (String, i32)>,
}

struct Server {
    index: usize,
    tree: Mutex<Tree>,
    disk: ToyDisk,
    observer: Observer,
    start: madsim::time::Instant,
    /// Serialises writes (one txn in flight: prep, log, fsync, apply).
    write_lock: tokio::sync::Mutex<()>,
    /// Set when an fsync failed: the server stops.
    failed: Mutex<bool>,
}

impl Server {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn apply(&self, rec: &Record) {
        let mut t = self.tree.lock().expect("tree");
        t.nodes
            .insert(rec.path.clone(), (rec.data.clone(), rec.version));
        t.last_zxid = rec.zxid;
        drop(t);
        self.observer.observe(
            self.now_ms(),
            self.index,
            Observed::Committed {
                zxid: rec.zxid,
                txn_hash: rec.crc,
            },
        );
    }

    async fn handle(&self, req: ToyRequest) -> ToyReply {
        let mut reply = ToyReply {
            id: req.id,
            ..ToyReply::default()
        };
        match req.op.as_str() {
            "get" => {
                let t = self.tree.lock().expect("tree");
                let source = if cfg!(feature = "broken-stale-read") {
                    &t.cache
                } else {
                    &t.nodes
                };
                match source.get(&req.path) {
                    Some((d, v)) => {
                        reply.data = Some(d.clone());
                        reply.version = *v;
                    }
                    None => reply.err = Some("NoNode".into()),
                }
                reply.zxid = t.last_zxid;
            }
            "sync" => {
                let _w = self.write_lock.lock().await;
                reply.zxid = self.tree.lock().expect("tree").last_zxid;
            }
            "set" | "create" => {
                let _w = self.write_lock.lock().await;
                let (current, zxid) = {
                    let t = self.tree.lock().expect("tree");
                    (t.nodes.get(&req.path).cloned(), t.last_zxid + 1)
                };
                let version = match (req.op.as_str(), &current) {
                    ("create", Some(_)) => {
                        reply.err = Some("NodeExists".into());
                        return reply;
                    }
                    ("create", None) => 0,
                    (_, None) => {
                        reply.err = Some("NoNode".into());
                        return reply;
                    }
                    (_, Some((_, v))) => {
                        let check = !cfg!(feature = "broken-lost-cas-check");
                        if check && req.version != -1 && req.version != *v {
                            reply.err = Some("BadVersion".into());
                            return reply;
                        }
                        v + 1
                    }
                };
                let rec = Record::new(zxid, &req.path, &req.data, version);
                if let Err(e) = self.disk.append(rec.clone()) {
                    // Not logged: a definite failure.
                    reply.err = Some(format!("{e:?}"));
                    return reply;
                }
                if cfg!(feature = "broken-ack-before-fsync") {
                    // BUG (deliberate): apply and acknowledge before the txn is durable;
                    // the background syncer makes it durable later.
                    self.apply(&rec);
                } else {
                    // fsync latency, then durable, then apply and reply.
                    madsim::time::sleep(Duration::from_millis(2)).await;
                    if self.disk.sync().is_err() {
                        *self.failed.lock().expect("failed") = true;
                        reply.err = Some("FsyncFailed".into());
                        return reply;
                    }
                    self.apply(&rec);
                }
                reply.version = version;
                reply.zxid = zxid;
            }
            other => reply.err = Some(format!("Unimplemented {other}")),
        }
        reply
    }
}

/// Run the toy server `index` on the current simulated node until it is killed or an fsync
/// fails (a failed fsync stops the node).
pub async fn serve(index: usize, disk: ToyDisk, observer: Observer, start: madsim::time::Instant) {
    // Recover: replay the durable log; stop at the first corrupt record (and refuse to
    // serve if anything follows it).
    let mut tree = Tree::default();
    {
        let st = disk.state.lock().expect("disk");
        for (i, r) in st.durable.iter().enumerate() {
            if r.crc != r.checksum() {
                tracing::warn!(
                    server = index,
                    record = i,
                    "corrupt log record; refusing to start"
                );
                return;
            }
            tree.nodes
                .insert(r.path.clone(), (r.data.clone(), r.version));
            tree.last_zxid = r.zxid;
        }
    }
    tree.cache = tree.nodes.clone();
    let server = Arc::new(Server {
        index,
        tree: Mutex::new(tree),
        disk,
        observer,
        start,
        write_lock: tokio::sync::Mutex::new(()),
        failed: Mutex::new(false),
    });
    let last = server.tree.lock().expect("tree").last_zxid;
    server
        .observer
        .observe(server.now_ms(), index, Observed::Recovered { zxid: last });
    if cfg!(feature = "broken-ack-before-fsync") {
        let s = Arc::clone(&server);
        tokio::spawn(async move {
            loop {
                madsim::time::sleep(Duration::from_millis(200)).await;
                let _ = s.disk.sync();
            }
        });
    }
    if cfg!(feature = "broken-stale-read") {
        let s = Arc::clone(&server);
        tokio::spawn(async move {
            loop {
                madsim::time::sleep(Duration::from_millis(300)).await;
                let mut t = s.tree.lock().expect("tree");
                t.cache = t.nodes.clone();
            }
        });
    }
    let listener = match TcpListener::bind(("0.0.0.0", CLIENT_PORT)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(server = index, "bind failed: {e}");
            return;
        }
    };
    loop {
        if *server.failed.lock().expect("failed") {
            tracing::warn!(server = index, "fsync failed: stopping");
            return;
        }
        let accept = madsim::time::timeout(Duration::from_millis(100), listener.accept()).await;
        let Ok(Ok((stream, _))) = accept else {
            continue;
        };
        let s = Arc::clone(&server);
        tokio::spawn(async move {
            let (rd, mut wr) = tokio::io::split(stream);
            let mut lines = BufReader::new(rd).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(req) = serde_json::from_str::<ToyRequest>(&line) else {
                    return;
                };
                let reply = s.handle(req).await;
                if *s.failed.lock().expect("failed") {
                    return; // the node stops; the connection dies with it
                }
                let mut out = serde_json::to_string(&reply).expect("reply serialises");
                out.push('\n');
                if wr.write_all(out.as_bytes()).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A client connection to a toy server (one request in flight).
pub struct ToyConn {
    lines: tokio::io::Lines<BufReader<tokio::io::ReadHalf<TcpStream>>>,
    wr: tokio::io::WriteHalf<TcpStream>,
    next_id: u64,
    timeout: Duration,
}

impl ToyConn {
    /// Connect to `addr` within `timeout`.
    pub async fn connect(
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> Result<ToyConn, OpError> {
        let stream = madsim::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| OpError::Definite("ConnectTimeout".into()))?
            .map_err(|e| OpError::Definite(format!("Connect: {e}")))?;
        let (rd, wr) = tokio::io::split(stream);
        Ok(ToyConn {
            lines: BufReader::new(rd).lines(),
            wr,
            next_id: 1,
            timeout,
        })
    }

    async fn call(
        &mut self,
        op: &str,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<ToyReply, OpError> {
        let req = ToyRequest {
            id: self.next_id,
            op: op.into(),
            path: path.into(),
            data: data.into(),
            version,
        };
        self.next_id += 1;
        let mut line = serde_json::to_string(&req).expect("request serialises");
        line.push('\n');
        let io = async {
            self.wr.write_all(line.as_bytes()).await?;
            self.wr.flush().await?;
            self.lines.next_line().await
        };
        match madsim::time::timeout(self.timeout, io).await {
            Err(_) => Err(OpError::Indeterminate("Timeout".into())),
            Ok(Err(e)) => Err(OpError::Indeterminate(format!("ConnectionLoss: {e}"))),
            Ok(Ok(None)) => Err(OpError::Indeterminate("ConnectionLoss: closed".into())),
            Ok(Ok(Some(l))) => serde_json::from_str(&l)
                .map_err(|e| OpError::Indeterminate(format!("BadReply: {e}"))),
        }
    }

    /// getData.
    pub async fn get_data(&mut self, path: &str) -> Result<DataReply, OpError> {
        let r = self.call("get", path, "", -1).await?;
        match r.err.as_deref() {
            None => Ok(DataReply {
                data: r.data,
                version: r.version,
                zxid: r.zxid,
            }),
            Some("NoNode") => Ok(DataReply {
                data: None,
                version: -1,
                zxid: r.zxid,
            }),
            Some(e) => Err(OpError::Definite(e.into())),
        }
    }

    /// setData with an expected version (-1: any).
    pub async fn set_data(
        &mut self,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<SetReply, OpError> {
        let r = self.call("set", path, data, version).await?;
        match r.err.as_deref() {
            None => Ok(SetReply::Ok {
                version: r.version,
                zxid: r.zxid,
            }),
            Some("BadVersion") => Ok(SetReply::BadVersion),
            Some("NoNode") => Ok(SetReply::NoNode),
            Some("FsyncFailed") => Err(OpError::Indeterminate("FsyncFailed".into())),
            Some(e) => Err(OpError::Definite(e.into())),
        }
    }

    /// create (persistent); `Ok(false)` if it already existed.
    pub async fn create(&mut self, path: &str, data: &str) -> Result<(bool, i64), OpError> {
        let r = self.call("create", path, data, 0).await?;
        match r.err.as_deref() {
            None => Ok((true, r.zxid)),
            Some("NodeExists") => Ok((false, r.zxid)),
            Some("FsyncFailed") => Err(OpError::Indeterminate("FsyncFailed".into())),
            Some(e) => Err(OpError::Definite(e.into())),
        }
    }

    /// sync: returns once every write before it is applied.
    pub async fn sync(&mut self, path: &str) -> Result<i64, OpError> {
        let r = self.call("sync", path, "", -1).await?;
        match r.err {
            None => Ok(r.zxid),
            Some(e) => Err(OpError::Definite(e)),
        }
    }
}
