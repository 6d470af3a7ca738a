//! Transcript tests of the sans-IO server pipeline (`zabkeeper::server::Pipeline`), in the
//! style of `core_transcripts.rs`. Each file under `scenarios/server/` is a list of
//! blocks (`# comment` lines, a command, `----`, the exact output), separated by blank
//! lines. `REWRITE=1 cargo test -p zabkeeper --test server_transcripts` (or `make
//! rewrite`) rewrites the expected output from the actual one: read the diff.
//!
//! The harness is the runtime's driver with nothing real under it: per server a
//! `Pipeline`, a log that records what it was asked to persist, FIFO links between
//! servers, and client connections that are only names. After every command it runs
//! every server until nothing is left to do (persist actions executed and reported
//! durable, outputs taken, peer messages delivered), printing what each server did in
//! order. A server under `hold` writes one batch of what it is asked to persist and then
//! holds its fsync: it reports nothing durable and takes no next batch, so what waits on
//! the fsync stays back and what does not goes out.
//!
//! Commands:
//! - `new standalone` | `new 1 2 3 [observers=4]`, optional `quorumReads`, optional
//!   `coreTicks=N` (N core ticks per tickTime; `tick` is then one core tick), optional
//!   `readOnly` (`readonlymode.enabled`), optional `localSessions`
//!   (`localSessionsEnabled`, with `localSessionsUpgradingEnabled`)
//! - `connect <sid> <conn> [session=<name>] [seen=<e.c>] [timeout=<ms>] [ro]`: a
//!   handshake on a new connection (a session named by an earlier ConnectResponse is
//!   resumed; `ro`: the client allows a read-only session)
//! - `send <sid> <conn> <xid> <op> [args]`, with op one of `create <path> <data>
//!   [ephemeral|sequential|container]`, `delete <path> <version>`, `set <path> <data>
//!   <version>`, `get <path> [watch]`, `exists <path> [watch]`, `children <path>
//!   [watch]`, `sync <path>`, `ping`, `close`, `auth <scheme> <secret>`, `garbage`
//!   (an undecodable body)
//!   A data word `<c>*<n>` is n copies of the byte c, `null` a null buffer; data over
//!   32 bytes prints as `<n bytes>`.
//! - `drop <sid> <conn>`: the connection ended (a connection the server closes ends
//!   at once)
//! - `delivered <sid> <conn> <bytes>`: the runtime wrote that many bytes of the
//!   connection's frames to its socket (its credit comes back)
//! - `tick [N]`: N ticks (default 1) on every server
//! - `4lw <sid> <word>`: a four-letter word's answer (uptime lines left out)
//! - `hold <sid>`, `release <sid>`: hold its fsync, then let it finish
//! - `partition <sid>` / `heal`: cut a server off (its links drop what they carry)
//!
//! Notation: zxids are `epoch.counter`, sessions `S1`, `S2`... in the order they are
//! first granted; `sN cM` is connection M on server N; peer messages print as
//! `a->b NAME`, persistence as `sN persist ...` and `sN fsync`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use zabkeeper::config::{ServerConfig, ServerSpec};
use zabkeeper::core::{PersistAction, PersistedState, Zab, ZabConfig};
use zabkeeper::proto::client::{
    decode_event, decode_reply, decode_response, ConnectRequest, ConnectResponse, CreateRequest,
    Request, Response,
};
use zabkeeper::proto::peer::{PeerMessage, Sid};
use zabkeeper::server::{session_password, HostFacts, Output, Pipeline, TreeSource};
use zabkeeper::state::tree::DataTree;
use zabkeeper::types::{zxid_counter, zxid_epoch, Acl, ErrorCode, EventType, Zxid};

const START_MS: i64 = 1_700_000_000_000;

fn z(zxid: Zxid) -> String {
    if zxid < 0 {
        return zxid.to_string();
    }
    format!("{}.{}", zxid_epoch(zxid), zxid_counter(zxid))
}

struct Server {
    pipeline: Pipeline,
    held: bool,
    /// A batch written and not yet fsynced (and whether it appended).
    unsynced: Option<bool>,
    /// Opcode of each request sent, per connection and xid, to decode its reply.
    sent: BTreeMap<(u64, i32), i32>,
    /// Connections that have had their ConnectResponse.
    answered: BTreeSet<u64>,
}

struct Harness {
    servers: BTreeMap<Sid, Server>,
    links: BTreeMap<(Sid, Sid), VecDeque<PeerMessage>>,
    cut: BTreeSet<Sid>,
    now: i64,
    tick_ms: i64,
    sessions: Vec<i64>,
    out: String,
}

fn remote(conn: u64) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000 + conn as u16))
}

impl Harness {
    fn new(args: &[&str]) -> Harness {
        let quorum_reads = args.contains(&"quorumReads");
        let mut config = ServerConfig::standalone(2181, "/nonexistent");
        config.quorum_reads = quorum_reads;
        config.read_only_mode = args.contains(&"readOnly");
        config.local_sessions_enabled = args.contains(&"localSessions");
        config.local_sessions_upgrading_enabled = args.contains(&"localSessions");
        config.four_letter_words = vec!["*".into()];
        // Unless `coreTicks=N` says otherwise, a transcript's `tick` is one tickTime (the
        // core ticks once per tickTime); with it, a `tick` is one of N core ticks.
        config.core_ticks = Some(
            args.iter()
                .find_map(|a| a.strip_prefix("coreTicks="))
                .map_or(1, |n| n.parse().unwrap()),
        );
        let mut ids: Vec<Sid> = Vec::new();
        let mut observers: Vec<Sid> = Vec::new();
        for a in args {
            if let Some(list) = a.strip_prefix("observers=") {
                observers = list.split(',').map(|s| s.parse().unwrap()).collect();
            } else if let Ok(id) = a.parse() {
                ids.push(id);
            }
        }
        if args.first() != Some(&"standalone") {
            for &id in ids.iter().chain(&observers) {
                config.servers.push(ServerSpec {
                    id,
                    host: "127.0.0.1".into(),
                    quorum_port: 2888,
                    election_port: 3888,
                    observer: observers.contains(&id),
                    client_addr: None,
                });
            }
        } else {
            ids = vec![1];
        }
        let mut servers = BTreeMap::new();
        for &id in ids.iter().chain(&observers) {
            let mut c = config.clone();
            c.my_id = id;
            let voters: Vec<Sid> = if c.servers.is_empty() {
                vec![id]
            } else {
                ids.clone()
            };
            let mut zc = ZabConfig::new(id, voters, observers.clone());
            zc.quorum_reads = quorum_reads;
            c.set_core_timers(&mut zc);
            let zab = Zab::new(zc, PersistedState::default()).unwrap();
            let pipeline = Pipeline::new(c, zab, DataTree::new(), Vec::new(), START_MS, false);
            servers.insert(
                id,
                Server {
                    pipeline,
                    held: false,
                    unsynced: None,
                    sent: BTreeMap::new(),
                    answered: BTreeSet::new(),
                },
            );
        }
        let mut h = Harness {
            tick_ms: config.core_tick_ms() as i64,
            servers,
            links: BTreeMap::new(),
            cut: BTreeSet::new(),
            now: START_MS,
            sessions: Vec::new(),
            out: String::new(),
        };
        let ids: Vec<Sid> = h.servers.keys().copied().collect();
        for &a in &ids {
            for &b in &ids {
                if a != b {
                    h.server(a).pipeline.peer_connected(b).unwrap();
                }
            }
        }
        h
    }

    fn server(&mut self, sid: Sid) -> &mut Server {
        self.servers
            .get_mut(&sid)
            .unwrap_or_else(|| panic!("no server {sid}"))
    }

    fn session_name(&mut self, id: i64) -> String {
        if id == 0 {
            return "0".into();
        }
        let n = match self.sessions.iter().position(|s| *s == id) {
            Some(i) => i + 1,
            None => {
                self.sessions.push(id);
                self.sessions.len()
            }
        };
        format!("S{n}")
    }

    /// Runs every server until nothing is left to do.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            let ids: Vec<Sid> = self.servers.keys().copied().collect();
            for sid in ids {
                busy |= self.run_server(sid);
            }
            let links: Vec<(Sid, Sid)> = self
                .links
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, _)| *k)
                .collect();
            for (a, b) in links {
                let msgs: Vec<PeerMessage> =
                    self.links.get_mut(&(a, b)).unwrap().drain(..).collect();
                for m in msgs {
                    busy = true;
                    self.server(b).pipeline.peer_message(a, m).unwrap();
                }
            }
            if !busy {
                return;
            }
        }
        panic!("the servers never settled");
    }

    /// One server's outputs and persistence; true if it did anything.
    fn run_server(&mut self, sid: Sid) -> bool {
        let mut busy = self.drain(sid);
        loop {
            // The fsync of the last written batch, unless held; no new batch before it.
            if let Some(appended) = self.server(sid).unsynced {
                if self.server(sid).held {
                    break;
                }
                self.server(sid).unsynced = None;
                if appended {
                    let _ = writeln!(self.out, "s{sid} fsync");
                }
                let now = self.now;
                self.server(sid).pipeline.durable(now).unwrap();
                self.drain(sid);
                busy = true;
            }
            let Some(actions) = self.server(sid).pipeline.take_persist() else {
                break;
            };
            busy = true;
            let mut appended = false;
            for a in actions {
                let line = match &a {
                    PersistAction::AppendTxn { zxid, .. } => {
                        appended = true;
                        format!("append {}", z(*zxid))
                    }
                    PersistAction::Truncate { zxid } => format!("truncate after {}", z(*zxid)),
                    PersistAction::ReloadTree { zxid } => format!("reload tree at {}", z(*zxid)),
                    PersistAction::SetAcceptedEpoch(e) => format!("acceptedEpoch={e}"),
                    PersistAction::SetCurrentEpoch(e) => format!("currentEpoch={e}"),
                    PersistAction::ApplySnapshot { zxid, .. } => {
                        format!("snapshot at {}", z(*zxid))
                    }
                };
                let _ = writeln!(self.out, "s{sid} persist {line}");
                if let PersistAction::ApplySnapshot { snapshot, .. } = a {
                    let (tree, sessions) =
                        zabkeeper::runtime::recovery::decode_snapshot(&snapshot).unwrap();
                    self.server(sid)
                        .pipeline
                        .replace_tree(tree, sessions, TreeSource::Snap);
                }
            }
            self.server(sid).pipeline.written();
            self.drain(sid);
            self.server(sid).unsynced = Some(appended);
        }
        busy
    }

    fn drain(&mut self, sid: Sid) -> bool {
        let mut busy = false;
        while let Some(o) = self.server(sid).pipeline.poll_output() {
            busy = true;
            match o {
                Output::Frame { conn, frame } => {
                    let line = self.frame(sid, conn, &frame[4..]);
                    let _ = writeln!(self.out, "s{sid} c{conn} {line}");
                }
                Output::Close { conn } => {
                    // The runtime closes the connection; its reader reports it closed.
                    let _ = writeln!(self.out, "s{sid} c{conn} close");
                    self.server(sid).pipeline.closed(conn);
                }
                Output::Send { to, msg } => {
                    if self.cut.contains(&sid) || self.cut.contains(&to) {
                        continue;
                    }
                    if !matches!(msg, PeerMessage::Ping { .. }) {
                        let _ = writeln!(self.out, "{sid}->{to} {}", describe(&msg));
                    }
                    self.links.entry((sid, to)).or_default().push_back(msg);
                }
                Output::Disconnect { peer } => {
                    let _ = writeln!(self.out, "{sid} disconnect {peer}");
                    self.links.remove(&(sid, peer));
                    self.links.remove(&(peer, sid));
                }
                Output::SerializeSnap {
                    to,
                    tree,
                    sessions,
                    zxid,
                } => {
                    let _ = writeln!(self.out, "s{sid} serialize SNAP for {to} at {}", z(zxid));
                    let bytes = zabkeeper::runtime::recovery::encode_frozen(&tree, &sessions);
                    self.server(sid).pipeline.snap_serialized(to, Ok(bytes));
                }
                Output::Observe(_) => {}
            }
        }
        busy
    }

    /// Describes a frame sent to a client.
    fn frame(&mut self, sid: Sid, conn: u64, payload: &[u8]) -> String {
        if self.server(sid).answered.insert(conn) {
            let r = ConnectResponse::decode(payload).unwrap();
            let name = self.session_name(r.session_id);
            let ro = if r.read_only { " readOnly" } else { "" };
            return format!("ConnectResponse session={name} timeout={}{ro}", r.timeout);
        }
        let (h, body) = decode_reply(payload).unwrap();
        if h.xid == -1 {
            let ev = decode_event(body).unwrap();
            let ty = EventType::from_code(ev.event_type)
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|| ev.event_type.to_string());
            return format!("event {ty} {}", ev.path);
        }
        let op = self.server(sid).sent.remove(&(conn, h.xid)).unwrap_or(-1);
        let err = ErrorCode::from_code(h.err)
            .map(|e| format!("{e:?}"))
            .unwrap_or_else(|| h.err.to_string());
        let mut line = format!("reply xid={} zxid={} {err}", h.xid, z(h.zxid));
        if h.err == 0 && op >= 0 {
            if let Ok(resp) = decode_response(op, body) {
                line.push_str(&response(&resp));
            }
        }
        line
    }

    fn run(&mut self, cmd: &str) -> String {
        self.out.clear();
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let num = |i: usize| -> u64 { words[i].trim_start_matches(['s', 'c']).parse().unwrap() };
        match words[0] {
            "connect" => {
                let (sid, conn) = (num(1), num(2));
                let mut req = ConnectRequest {
                    protocol_version: 0,
                    last_zxid_seen: 0,
                    timeout: 4000,
                    session_id: 0,
                    passwd: vec![0; 16],
                    read_only: false,
                    read_only_present: true,
                };
                for w in &words[3..] {
                    if let Some(name) = w.strip_prefix("session=") {
                        let i: usize = name.trim_start_matches('S').parse().unwrap();
                        req.session_id = self.sessions[i - 1];
                        req.passwd = session_password(req.session_id);
                    } else if let Some(seen) = w.strip_prefix("seen=") {
                        let (e, c) = seen.split_once('.').unwrap();
                        req.last_zxid_seen =
                            zabkeeper::types::make_zxid(e.parse().unwrap(), c.parse().unwrap());
                    } else if let Some(t) = w.strip_prefix("timeout=") {
                        req.timeout = t.parse().unwrap();
                    } else if *w == "ro" {
                        req.read_only = true;
                    } else if *w == "badpassword" {
                        req.passwd = vec![7; 16];
                    }
                }
                let now = self.now;
                self.server(sid)
                    .pipeline
                    .connect(conn, req, remote(conn), now)
                    .unwrap();
            }
            "send" => {
                let (sid, conn) = (num(1), num(2));
                let xid: i32 = words[3].parse().unwrap();
                let now = self.now;
                if words[4] == "garbage" {
                    self.server(sid).pipeline.undecodable(conn, xid, now);
                } else {
                    let req = request(&words[4..]);
                    let op = req.opcode();
                    self.server(sid).sent.insert((conn, xid), op);
                    self.server(sid)
                        .pipeline
                        .request(conn, xid, op, req, now)
                        .unwrap();
                }
            }
            "drop" => {
                let (sid, conn) = (num(1), num(2));
                self.server(sid).pipeline.closed(conn);
            }
            "delivered" => {
                let (sid, conn) = (num(1), num(2));
                let bytes: usize = words[3].parse().unwrap();
                let now = self.now;
                self.server(sid)
                    .pipeline
                    .delivered(conn, bytes, now)
                    .unwrap();
            }
            "tick" => {
                let n = words.get(1).map(|w| w.parse().unwrap()).unwrap_or(1);
                for _ in 0..n {
                    self.now += self.tick_ms;
                    let now = self.now;
                    let ids: Vec<Sid> = self.servers.keys().copied().collect();
                    for sid in ids {
                        self.server(sid).pipeline.tick(now).unwrap();
                    }
                    self.settle();
                }
            }
            "4lw" => {
                let (sid, word) = (num(1), words[2]);
                let now = self.now;
                let text = self.server(sid).pipeline.four_letter_word(
                    word,
                    remote(0),
                    HostFacts::default(),
                    now,
                );
                for line in text.lines().filter(|l| !l.contains("uptime")) {
                    let _ = writeln!(self.out, "s{sid} {word}: {line}");
                }
            }
            "hold" => self.server(num(1)).held = true,
            "release" => self.server(num(1)).held = false,
            "partition" => {
                let sid = num(1);
                self.cut.insert(sid);
                let peers: Vec<Sid> = self.servers.keys().copied().filter(|p| *p != sid).collect();
                for p in peers {
                    self.links.remove(&(sid, p));
                    self.links.remove(&(p, sid));
                    self.server(sid).pipeline.peer_disconnected(p).unwrap();
                    self.server(p).pipeline.peer_disconnected(sid).unwrap();
                }
            }
            "heal" => {
                let cut = std::mem::take(&mut self.cut);
                for sid in cut {
                    let peers: Vec<Sid> =
                        self.servers.keys().copied().filter(|p| *p != sid).collect();
                    for p in peers {
                        self.server(sid).pipeline.peer_connected(p).unwrap();
                        self.server(p).pipeline.peer_connected(sid).unwrap();
                    }
                }
            }
            "status" => {
                let ids: Vec<Sid> = self.servers.keys().copied().collect();
                for sid in ids {
                    let s = self.server(sid);
                    let line = format!(
                        "s{sid} {} zxid={} sessions={} znodes={}\n",
                        s.pipeline.mode_name(),
                        z(s.pipeline.tree().last_processed_zxid()),
                        s.pipeline.sessions().len(),
                        s.pipeline.tree().node_count()
                    );
                    self.out.push_str(&line);
                }
                return std::mem::take(&mut self.out);
            }
            other => panic!("unknown command {other}"),
        }
        self.settle();
        std::mem::take(&mut self.out)
    }
}

fn describe(m: &PeerMessage) -> String {
    match m {
        PeerMessage::Proposal { zxid, .. }
        | PeerMessage::Ack { zxid }
        | PeerMessage::Commit { zxid }
        | PeerMessage::Inform { zxid, .. } => format!("{} {}", m.name(), z(*zxid)),
        PeerMessage::Request { session, cxid, .. } => {
            format!(
                "{} session-cxid={cxid} from-session-bits={}",
                m.name(),
                session >> 56
            )
        }
        _ => m.name().to_string(),
    }
}

fn response(r: &Response) -> String {
    match r {
        Response::Create { path } => format!(" path={path}"),
        Response::Create2 { path, stat } => {
            format!(
                " path={path} czxid={} owner={}",
                z(stat.czxid),
                stat.ephemeral_owner != 0
            )
        }
        Response::Stat { stat } => format!(" version={} mzxid={}", stat.version, z(stat.mzxid)),
        Response::GetData { data, stat } => format!(
            " data={} version={} mzxid={}",
            match data {
                None => "null".to_string(),
                Some(d) if d.len() > 32 => format!("<{} bytes>", d.len()),
                Some(d) => String::from_utf8_lossy(d).into_owned(),
            },
            stat.version,
            z(stat.mzxid)
        ),
        Response::GetChildren { children } => format!(" children={}", children.join(",")),
        Response::GetChildren2 { children, stat } => {
            format!(
                " children={} cversion={}",
                children.join(","),
                stat.cversion
            )
        }
        Response::Sync { path } => format!(" path={path}"),
        _ => String::new(),
    }
}

/// A data word: its bytes, `<c>*<n>` for n copies of the byte c, or `null`.
fn data(w: &str) -> Option<Vec<u8>> {
    if w == "null" {
        return None;
    }
    Some(match w.split_once('*') {
        Some((c, n)) if c.len() == 1 => c.as_bytes().repeat(n.parse().unwrap()),
        _ => w.as_bytes().to_vec(),
    })
}

fn request(w: &[&str]) -> Request {
    let watch = |i: usize| w.get(i) == Some(&"watch");
    match w[0] {
        "create" => {
            let flags = match w.get(3).copied() {
                Some("ephemeral") => 1,
                Some("sequential") => 2,
                Some("container") => 4,
                _ => 0,
            };
            let c = CreateRequest {
                path: w[1].into(),
                data: data(w[2]),
                acl: Acl::open_unsafe(),
                flags: if flags == 4 { 0 } else { flags },
            };
            if flags == 4 {
                Request::CreateContainer(c)
            } else {
                Request::Create(c)
            }
        }
        "delete" => Request::Delete {
            path: w[1].into(),
            version: w[2].parse().unwrap(),
        },
        "set" => Request::SetData {
            path: w[1].into(),
            data: data(w[2]),
            version: w[3].parse().unwrap(),
        },
        "get" => Request::GetData {
            path: w[1].into(),
            watch: watch(2),
        },
        "exists" => Request::Exists {
            path: w[1].into(),
            watch: watch(2),
        },
        "children" => Request::GetChildren2 {
            path: w[1].into(),
            watch: watch(2),
        },
        "sync" => Request::Sync { path: w[1].into() },
        "ping" => Request::Ping,
        "close" => Request::CloseSession,
        "auth" => Request::Auth {
            auth_type: 0,
            scheme: w[1].into(),
            auth: w[2].as_bytes().to_vec(),
        },
        other => panic!("unknown op {other}"),
    }
}

fn run_file(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut harness: Option<Harness> = None;
    let mut rewritten = String::new();
    for block in text.split("\n\n") {
        if block.trim().is_empty() {
            continue;
        }
        let mut comments = String::new();
        let mut cmd = None;
        for line in block.lines() {
            if cmd.is_none() {
                if line.starts_with('#') {
                    comments.push_str(line);
                    comments.push('\n');
                } else if !line.trim().is_empty() {
                    cmd = Some(line.trim().to_string());
                }
            }
        }
        let Some(cmd) = cmd else {
            rewritten.push_str(block.trim_end());
            rewritten.push_str("\n\n");
            continue;
        };
        let output = if let Some(args) = cmd.strip_prefix("new ") {
            let args: Vec<&str> = args.split_whitespace().collect();
            let mut h = Harness::new(&args);
            h.settle();
            let out = std::mem::take(&mut h.out);
            harness = Some(h);
            out
        } else {
            harness.as_mut().expect("`new` first").run(&cmd)
        };
        let _ = write!(rewritten, "{comments}{cmd}\n----\n{output}\n");
    }
    (text, rewritten.trim_end().to_string() + "\n")
}

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/server");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

#[test]
fn server_transcripts() {
    let rewrite = std::env::var_os("REWRITE").is_some();
    let files = files();
    assert!(files.len() >= 3, "too few transcripts: {files:?}");
    let mut failed = Vec::new();
    for f in files {
        let (expected, actual) = run_file(&f);
        if rewrite {
            std::fs::write(&f, &actual).unwrap();
        } else if expected != actual {
            failed.push(f.display().to_string());
            eprintln!(
                "--- {} expected\n{expected}\n--- actual\n{actual}",
                f.display()
            );
        }
    }
    assert!(
        failed.is_empty(),
        "transcripts differ (REWRITE=1 to accept): {failed:?}"
    );
}
