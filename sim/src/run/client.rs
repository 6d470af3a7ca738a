//! A simulated client: its session, its share of the workload (registers, queue, lock,
//! members, multis), and how each request and reply becomes a history event.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::*;
use crate::history::{EventType, ZkStat};
use crate::sut::OpError;
use zabkeeper::client::Reply;
use zabkeeper::proto::client::{CreateRequest, MultiOp, MultiResult, Request, Response};
use zabkeeper::types::{Acl, CreateMode, ErrorCode};

/// A client's view of the registers it last read: path -> (data, version).
type Known = std::collections::BTreeMap<String, (String, i32)>;

/// Paths of the register znodes.
fn keys(opts: &RunOptions) -> Vec<String> {
    (0..opts.workload.keys).map(|k| format!("/r{k}")).collect()
}

/// Parent of the sequential queue.
const QUEUE: &str = "/q";
/// The ephemeral lock node.
const LOCK: &str = "/lock";
/// Parent of the ephemeral membership nodes.
const MEMBERS: &str = "/members";

/// Error codes that answer a request whose precondition failed: the operation ran and
/// had no effect (the checker verifies the precondition).
const PRECONDITION_ERRORS: [ErrorCode; 5] = [
    ErrorCode::NoNode,
    ErrorCode::NodeExists,
    ErrorCode::BadVersion,
    ErrorCode::NotEmpty,
    ErrorCode::NoChildrenForEphemerals,
];

fn code_name(err: i32) -> String {
    ErrorCode::from_code(err).map_or_else(|| format!("error {err}"), |c| format!("{c:?}"))
}

fn zk_stat(s: &zabkeeper::types::Stat) -> ZkStat {
    ZkStat {
        czxid: s.czxid,
        mzxid: s.mzxid,
        version: s.version,
        cversion: s.cversion,
        ephemeral_owner: s.ephemeral_owner,
        num_children: s.num_children,
    }
}

/// The completion of `inv` from the server's reply, in the checker's fields: the header
/// zxid, the error code's name, and what the body carries (data and stat of a read,
/// children, the created path, a multi's per-op results).
fn completion(inv: &Event, reply: &Reply, now_ns: u64) -> Event {
    let mut ev = Event {
        kind: EventType::Ok,
        time: Some(now_ns),
        zxid: Some(reply.zxid),
        value: if inv.f == "getData" || inv.f == "getChildren" {
            Value::Null
        } else {
            inv.value.clone()
        },
        ..inv.clone()
    };
    if reply.err != 0 {
        ev.error = Some(code_name(reply.err));
    }
    match &reply.response {
        Response::Create { path } => ev.result = Some(json!(path)),
        Response::Create2 { path, stat } => {
            ev.result = Some(json!(path));
            ev.stat = Some(zk_stat(stat));
        }
        Response::Stat { stat } => ev.stat = Some(zk_stat(stat)),
        Response::GetData { data, stat } => {
            ev.value = match data {
                Some(d) => json!(String::from_utf8_lossy(d)),
                None => serde_json::Value::Null,
            };
            ev.stat = Some(zk_stat(stat));
        }
        Response::GetChildren { children } | Response::GetChildren2 { children, .. } => {
            let mut c = children.clone();
            c.sort();
            ev.value = json!(c);
        }
        Response::Multi(results) => {
            // A failed multi answers an error per op (the failing op's code, then
            // RuntimeInconsistency for the others): all or nothing.
            let failing = results.iter().find_map(|r| match r {
                MultiResult::Error { err }
                    if *err != 0 && *err != ErrorCode::RuntimeInconsistency.code() =>
                {
                    Some(*err)
                }
                _ => None,
            });
            if let Some(err) = failing {
                ev.error = Some(code_name(err));
            }
            ev.result = Some(Value::Array(
                results
                    .iter()
                    .map(|r| match r {
                        MultiResult::Create { path } | MultiResult::Create2 { path, .. } => {
                            json!(path)
                        }
                        _ => Value::Null,
                    })
                    .collect(),
            ));
        }
        _ => {}
    }
    ev
}

struct ClientCtx {
    j: usize,
    sh: Shared,
    rng: ChaCha8Rng,
    conn: Option<Conn>,
    process: u64,
    generation: u64,
    counter: u64,
    known: Known,
    /// The session for which this client's ephemeral member node was created.
    joined: Option<i64>,
    /// The last session whose expiry this client recorded.
    expired: Option<i64>,
}

impl ClientCtx {
    /// An invoke of this client's process and session on `path`.
    fn invoke(&self, f: &str, path: &str, value: Value) -> Event {
        Event {
            process: self.process,
            kind: EventType::Invoke,
            f: f.to_string(),
            path: Some(path.to_string()),
            value,
            time: Some(self.sh.now_ns()),
            session: self.conn.as_ref().map(Conn::session),
            ..Event::default()
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.sh.opts.workload.op_timeout_ms)
    }

    /// Whether reads are linearizable as served: a standalone server serves every read
    /// from the one copy of the tree.
    fn standalone(&self) -> bool {
        self.sh.opts.total_servers() == 1
    }

    /// Whether this client allows read-only sessions (the even clients, in runs with
    /// read-only mode). Such a client sets no watches: a session begun on a read-only
    /// server is replaced by a new one on the first read-write server (ZooKeeper's
    /// `seenRwServerBefore`), which the checker would see as watches moving between
    /// sessions.
    fn read_only(&self) -> bool {
        self.sh.opts.read_only && self.j.is_multiple_of(2)
    }

    async fn conn(&mut self) -> Result<&mut Conn, OpError> {
        if self.conn.is_none() {
            let n = self.sh.opts.total_servers();
            let timeout = self.timeout();
            let connect: Vec<String> = (0..n).map(|i| server_addr(i).to_string()).collect();
            let session = Duration::from_millis(self.sh.opts.session_timeout_ms);
            let seed = self.rng.gen();
            let conn = NodeConn::connect(
                &connect.join(","),
                session,
                seed,
                timeout.max(session),
                self.read_only(),
            )
            .await?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    /// After a lost connection, wait (bounded by the session timeout) until the session is
    /// connected again before issuing more operations, as a well-behaved client does. A
    /// session that ended (a server answered its reconnect "expired") is not waited for:
    /// the next operation reports the expiry at once, close to the server's answer.
    async fn await_connected(&mut self) {
        let deadline = Duration::from_millis(self.sh.opts.session_timeout_ms);
        let t0 = Instant::now();
        while self
            .conn
            .as_ref()
            .is_some_and(|c| !c.is_connected() && !c.is_dead())
            && t0.elapsed() < deadline
            && self.sh.phase() < PHASE_DONE
        {
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After an indeterminate result, the process is "crashed" (Jepsen): continue with a
    /// fresh process id so one operation is in flight per process.
    fn lost(&mut self) {
        if self.conn.as_ref().is_none_or(Conn::is_dead) {
            self.conn = None;
        }
        self.generation += 1;
        self.process = self.j as u64 + self.sh.opts.clients as u64 * self.generation;
    }

    /// Record that `session` was told it expired (once per session): the checker's
    /// `session` notification, after which none of its ephemerals may be seen.
    fn record_expired(&mut self, session: i64) {
        if self.expired == Some(session) {
            return;
        }
        self.expired = Some(session);
        self.sh.recorder.record(Event {
            process: self.process,
            kind: EventType::Event,
            f: "session".into(),
            event: Some("expired".into()),
            session: Some(session),
            time: Some(self.sh.now_ns()),
            ..Event::default()
        });
    }

    /// Record the notifications the client handed over so far, before the completion
    /// being recorded (the server sends a notification before any later reply; one that
    /// came after this reply may be recorded first, which the checker allows for the
    /// watch this very read set): watch events, and the session's expiry.
    fn record_notifications(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let session = conn.session();
        let events = conn.drain_events();
        for e in events {
            if e.event_type == zabkeeper::types::EventType::None {
                if e.state == zabkeeper::types::keeper_state::EXPIRED {
                    self.record_expired(session);
                }
                continue;
            }
            self.sh.recorder.record(Event {
                process: self.process,
                kind: EventType::Event,
                f: "watch".into(),
                path: Some(e.path),
                event: Some(format!("{:?}", e.event_type)),
                session: Some(session),
                time: Some(self.sh.now_ns()),
                ..Event::default()
            });
        }
    }

    /// Run `requests` in order on one connection as one history operation `inv` (a sync
    /// and the read behind it, or a single request): connect first (a failed connect
    /// issues nothing and records nothing), record the invoke, then the completion made
    /// from the last reply. A precondition error is an answer (`ok` with `error`); an
    /// error of an earlier request fails the operation; a lost connection, an expired
    /// session, a timeout or any other error leave it unknown (`info`). Returns the
    /// recorded completion.
    async fn op(&mut self, mut inv: Event, requests: Vec<Request>) -> Option<Event> {
        let t = self.timeout();
        if let Err(e) = self.conn().await {
            let _ = e;
            return None;
        }
        inv.session = self.conn.as_ref().map(Conn::session);
        inv.time = Some(self.sh.now_ns());
        self.sh.recorder.record(inv.clone());
        let last = requests.len().saturating_sub(1);
        let mut outcome: Result<Reply, OpError> = Err(OpError::Definite("no request".into()));
        for (i, request) in requests.into_iter().enumerate() {
            let conn = self.conn.as_mut().expect("connected");
            outcome = conn.submit(request, t).await;
            match &outcome {
                Ok(reply) if reply.err != 0 && i < last => {
                    outcome = Err(OpError::Definite(code_name(reply.err)));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let now = self.sh.now_ns();
        let session = inv.session.unwrap_or(0);
        let mut ev = match &outcome {
            Ok(reply) => completion(&inv, reply, now),
            Err(_) => Event {
                time: Some(now),
                value: Value::Null,
                ..inv.clone()
            },
        };
        match outcome {
            Ok(reply)
                if reply.err == 0
                    || PRECONDITION_ERRORS.iter().any(|c| c.code() == reply.err)
                    // A multi that failed on one of its ops (per-op results): known,
                    // nothing applied. A multi answered by an error alone (such as
                    // ConnectionLoss from a leader whose zxid counter is spent) is not.
                    || ev.error.is_some()
                        && inv.f == "multi"
                        && matches!(reply.response, Response::Multi(_)) => {}
            // A read-only server refused it (a write, or a sync), or a local session may
            // not own an ephemeral: nothing was applied.
            Ok(reply)
                if reply.err == ErrorCode::NotReadOnly.code()
                    || reply.err == ErrorCode::EphemeralOnLocalSession.code() =>
            {
                ev.kind = EventType::Fail;
                ev.zxid = None;
                ev.stat = None;
                ev.error = Some(code_name(reply.err));
            }
            Ok(reply) => {
                ev.kind = EventType::Info;
                ev.zxid = None;
                ev.stat = None;
                if reply.err == ErrorCode::SessionExpired.code() {
                    self.record_expired(session);
                }
            }
            Err(OpError::Definite(e)) => {
                ev.kind = EventType::Fail;
                ev.error = Some(e);
            }
            Err(OpError::Indeterminate(e)) => {
                ev.kind = EventType::Info;
                if e == "SessionExpired" {
                    self.record_expired(session);
                }
                ev.error = Some(e);
            }
        }
        self.record_notifications();
        self.sh.recorder.record(ev.clone());
        match ev.kind {
            EventType::Ok => {
                self.sh.ops.fetch_add(1, Ordering::SeqCst);
            }
            EventType::Info => self.lost(),
            _ => {
                if self.conn.as_ref().is_none_or(Conn::is_dead) {
                    self.conn = None;
                }
            }
        }
        Some(ev)
    }

    /// getData (after a sync if asked, as one operation), leaving a data watch if asked.
    /// Linearizable (`quorum`) when synced first, served by a standalone server, or
    /// served under `quorumReads`.
    async fn read(&mut self, key: &str, sync_first: bool, watch: bool) -> bool {
        let mut inv = self.invoke("getData", key, Value::Null);
        inv.watch = watch;
        inv.quorum = sync_first || self.standalone() || self.sh.opts.quorum_reads;
        let mut requests = Vec::new();
        if sync_first {
            requests.push(Request::Sync { path: key.into() });
        }
        requests.push(Request::GetData {
            path: key.into(),
            watch,
        });
        let Some(ev) = self.op(inv, requests).await else {
            return false;
        };
        if ev.kind != EventType::Ok {
            return false;
        }
        match (ev.value.as_str(), ev.stat) {
            (Some(data), Some(stat)) if ev.error.is_none() => {
                self.known
                    .insert(key.to_string(), (data.to_string(), stat.version));
            }
            _ => {
                self.known.remove(key);
            }
        }
        true
    }

    /// setData: a conditional one (cas) with the last-read version when asked and known,
    /// else a blind one (version -1).
    async fn write(&mut self, key: &str, cas: bool) {
        self.counter += 1;
        let new = format!("c{}-{}", self.j, self.counter);
        let version = match (cas, self.known.get(key)) {
            (true, Some((_, v))) => *v,
            _ => -1,
        };
        let mut inv = self.invoke("setData", key, json!(new));
        inv.version = Some(version);
        let request = Request::SetData {
            path: key.into(),
            data: Some(new.clone().into_bytes()),
            version,
        };
        let ev = self.op(inv, vec![request]).await;
        match ev
            .as_ref()
            .and_then(|e| e.stat.filter(|_| e.error.is_none()))
        {
            Some(stat) => {
                self.known.insert(key.to_string(), (new, stat.version));
            }
            None => {
                self.known.remove(key);
            }
        }
    }

    /// create with a mode; returns the completion.
    async fn create(&mut self, path: &str, data: &str, mode: CreateMode) -> Option<Event> {
        let mut inv = self.invoke("create", path, json!(data));
        inv.mode = Some(
            match mode {
                CreateMode::Persistent => "persistent",
                CreateMode::Ephemeral => "ephemeral",
                CreateMode::PersistentSequential => "persistent_sequential",
                CreateMode::EphemeralSequential => "ephemeral_sequential",
                _ => "persistent",
            }
            .to_string(),
        );
        let request = Request::Create(CreateRequest {
            path: path.into(),
            data: Some(data.as_bytes().to_vec()),
            acl: Acl::open_unsafe(),
            flags: mode.flag(),
        });
        self.op(inv, vec![request]).await
    }

    /// Enqueue: create a PERSISTENT_SEQUENTIAL child of the queue.
    async fn enqueue(&mut self) {
        self.counter += 1;
        let payload = format!("c{}-{}", self.j, self.counter);
        self.create(
            &format!("{QUEUE}/item-"),
            &payload,
            CreateMode::PersistentSequential,
        )
        .await;
    }

    /// List a parent's children after a sync, as one linearizable operation.
    async fn list(&mut self, parent: &str) -> bool {
        let mut inv = self.invoke("getChildren", parent, Value::Null);
        inv.quorum = true;
        let requests = vec![
            Request::Sync {
                path: parent.into(),
            },
            Request::GetChildren {
                path: parent.into(),
                watch: false,
            },
        ];
        self.op(inv, requests)
            .await
            .is_some_and(|e| e.kind == EventType::Ok && e.error.is_none())
    }

    /// Once per session: create this client's ephemeral member node.
    async fn ensure_member(&mut self) {
        let Some(session) = self.conn.as_ref().map(Conn::session) else {
            return;
        };
        if self.joined == Some(session) {
            return;
        }
        self.counter += 1;
        let path = format!("{MEMBERS}/c{}-{}", self.j, self.counter);
        let ev = self.create(&path, "", CreateMode::Ephemeral).await;
        if ev.is_some_and(|e| {
            e.kind == EventType::Ok && e.error.is_none() && e.session == Some(session)
        }) {
            self.joined = Some(session);
        }
    }

    /// A multi setting two registers, each conditional on its last-read version: all or
    /// nothing.
    async fn multi(&mut self, keys: &[String]) {
        let (a, b) = (keys[0].clone(), keys[1].clone());
        let (Some((_, ver_a)), Some((_, ver_b))) =
            (self.known.get(&a).cloned(), self.known.get(&b).cloned())
        else {
            self.read(&a, false, false).await;
            return;
        };
        self.counter += 1;
        let sets = [
            (a.clone(), format!("c{}-{}a", self.j, self.counter), ver_a),
            (b.clone(), format!("c{}-{}b", self.j, self.counter), ver_b),
        ];
        let subs: Vec<Value> = sets
            .iter()
            .map(|(path, data, version)| {
                json!({"op": "setData", "path": path, "value": data, "version": version})
            })
            .collect();
        let inv = self.invoke("multi", &a, Value::Array(subs));
        let request = Request::Multi(
            sets.iter()
                .map(|(path, data, version)| MultiOp::SetData {
                    path: path.clone(),
                    data: Some(data.clone().into_bytes()),
                    version: *version,
                })
                .collect(),
        );
        let done = self
            .op(inv, vec![request])
            .await
            .is_some_and(|e| e.kind == EventType::Ok && e.error.is_none());
        for (path, data, version) in sets {
            if done {
                self.known.insert(path, (data, version + 1));
            } else {
                self.known.remove(&path);
            }
        }
    }

    /// Try to take the ephemeral lock, hold it a while, release it.
    async fn lock_cycle(&mut self) {
        let owner = format!("c{}", self.j);
        let acquired = self
            .create(LOCK, &owner, CreateMode::Ephemeral)
            .await
            .is_some_and(|e| e.kind == EventType::Ok && e.error.is_none());
        if !acquired {
            return;
        }
        let hold = self.rng.gen_range(10..300);
        madsim::time::sleep(Duration::from_millis(hold)).await;
        let mut inv = self.invoke("delete", LOCK, Value::Null);
        inv.version = Some(-1);
        let request = Request::Delete {
            path: LOCK.into(),
            version: -1,
        };
        self.op(inv, vec![request]).await;
    }

    /// Create a persistent znode until the server answers (created, or there already from
    /// an attempt whose reply was lost).
    async fn create_until_answered(&mut self, path: &str, data: &str) {
        loop {
            let answered = self
                .create(path, data, CreateMode::Persistent)
                .await
                .is_some_and(|e| e.kind == EventType::Ok);
            if answered {
                return;
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub(super) async fn client_main(j: usize, sh: Shared) {
    let opts = Arc::clone(&sh.opts);
    let mut cx = ClientCtx {
        j,
        rng: ChaCha8Rng::seed_from_u64(opts.seed.wrapping_mul(31).wrapping_add(j as u64 + 1)),
        sh: sh.clone(),
        conn: None,
        process: j as u64,
        generation: 0,
        counter: 0,
        known: Known::new(),
        joined: None,
        expired: None,
    };
    let keys = keys(&opts);
    if j == 0 {
        // Setup: every register with its initial data, the queue and the members parent.
        for key in &keys {
            cx.create_until_answered(key, "init").await;
        }
        for parent in [QUEUE, MEMBERS] {
            cx.create_until_answered(parent, "").await;
        }
        sh.setup_done.store(1, Ordering::SeqCst);
    }
    while sh.phase() == PHASE_SETUP {
        madsim::time::sleep(Duration::from_millis(5)).await;
    }
    let w = opts.workload.clone();
    let weights = [
        w.register.max(1) * 2,
        w.register,
        w.sync_read,
        w.queue,
        w.lock,
        if keys.len() >= 2 { w.multi } else { 0 },
        w.watch,
    ];
    let total: u32 = weights.iter().sum();
    while sh.phase() == PHASE_SAFETY {
        if sh.ops.load(Ordering::SeqCst) as usize >= opts.max_ops {
            madsim::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        cx.await_connected().await;
        cx.ensure_member().await;
        let key = keys[cx.rng.gen_range(0..keys.len())].clone();
        let mut pick = cx.rng.gen_range(0..total);
        let choice = weights
            .iter()
            .position(|&wt| {
                if pick < wt {
                    true
                } else {
                    pick -= wt;
                    false
                }
            })
            .unwrap_or(0);
        match choice {
            0 => {
                let cas = cx.rng.gen_bool(0.7);
                cx.write(&key, cas).await
            }
            1 => {
                cx.read(&key, false, false).await;
            }
            2 => {
                cx.read(&key, true, false).await;
            }
            3 => cx.enqueue().await,
            4 => cx.lock_cycle().await,
            6 => {
                let watch = !cx.read_only();
                cx.read(&key, false, watch).await;
            }
            _ => {
                let mut two = keys.clone();
                let first = cx.rng.gen_range(0..two.len());
                two.swap(0, first);
                let second = cx.rng.gen_range(1..two.len());
                two.swap(1, second);
                cx.multi(&two).await
            }
        }
        let think = cx.rng.gen_range(w.think_ms[0]..=w.think_ms[1]);
        madsim::time::sleep(Duration::from_millis(think)).await;
    }
    // Liveness: sync + read every key, then list the queue and the members, retrying
    // until all succeed or the run ends.
    let mut pending: Vec<String> = keys.clone();
    while sh.phase() == PHASE_LIVENESS && !pending.is_empty() {
        cx.await_connected().await;
        let key = pending[0].clone();
        if cx.read(&key, true, false).await {
            pending.remove(0);
        } else {
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut listed = false;
    while sh.phase() == PHASE_LIVENESS && !listed {
        cx.await_connected().await;
        listed = cx.list(QUEUE).await && cx.list(MEMBERS).await;
        if !listed {
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if pending.is_empty() && listed {
        sh.live_done.lock().expect("live").insert(j);
    }
    std::future::pending::<()>().await;
}
