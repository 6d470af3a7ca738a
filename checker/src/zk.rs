//! The `zk` model: ZooKeeper operations on znodes and ZooKeeper's consistency contract.
//!
//! Properties (names as reported):
//! - `linearizable`: writes (create, delete, setData, multi) and quorum reads are
//!   linearizable, in zxid order, against a znode tree, split into independent groups of paths;
//! - `session-fifo`: a session's replies arrive in the order its requests were sent;
//! - `session-zxid-monotonic`: the reply zxids a session sees never go back (also across
//!   reconnects to other servers);
//! - `read-your-writes`: a read is served at a zxid no older than the session's own
//!   completed writes;
//! - `read-consistent-with-zxid`: a read served at zxid z shows a znode state that was current
//!   at z: it shows no txn newer than z (`read-from-future`) and misses no acknowledged write
//!   with zxid <= z (`acked-write-lost`);
//! - `sync-then-read`: after a sync completes, the session's reads are served at a zxid no
//!   older than every write acknowledged before the sync was sent;
//! - `watch-at-most-once`: a one-shot watch fires at most once per registration;
//! - `watch-before-change`: a session with a watch on a znode is notified before any of its
//!   reads shows the change;
//! - `ephemeral-after-expiry`: after a session's expiry is observed, quorum reads and reads
//!   after a later sync no longer see its ephemeral znodes.

use crate::history::{Event, EventType, Op, Status};
use crate::report::{Report, Violation};
use crate::search::{SearchOp, SeqSpec};
use crate::{CheckOptions, Model};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// A znode in the model tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Znode {
    /// Data as canonical JSON text.
    pub data: String,
    /// Data version.
    pub version: i32,
    /// Children ever created here: ZooKeeper's stored cversion, the next
    /// sequential suffix (deletes do not move it; clients see creates plus
    /// deletes as `cversion`).
    pub child_creates: i32,
    /// Owner session if ephemeral, else 0.
    pub owner: i64,
}

/// The model state of one part: the znodes of its paths and the last write zxid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tree {
    /// Znodes by path.
    pub nodes: BTreeMap<String, Znode>,
    /// Zxid of the last successful write with a known zxid.
    pub last_zxid: i64,
    /// Sessions whose expiry (synthetic `Expire` op) has been linearized: they create no
    /// more ephemerals.
    pub closed: BTreeSet<i64>,
}

/// A znode operation with its observed outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum ZkKind {
    /// create; `created` is the returned path (sequential name), if known.
    Create {
        /// Requested path.
        path: String,
        /// Data (canonical JSON).
        data: String,
        /// Ephemeral owner session, 0 if persistent.
        owner: i64,
        /// Sequential mode.
        sequential: bool,
        /// Returned path.
        created: Option<String>,
    },
    /// delete with expected version (-1 any).
    Delete {
        /// Path.
        path: String,
        /// Expected version.
        version: i32,
    },
    /// setData with expected version; `new_version` from the returned stat.
    SetData {
        /// Path.
        path: String,
        /// Data.
        data: String,
        /// Expected version.
        version: i32,
        /// Returned stat's version.
        new_version: Option<i32>,
    },
    /// multi-op check.
    Check {
        /// Path.
        path: String,
        /// Expected version.
        version: i32,
    },
    /// getData / exists: `None` = the znode did not exist.
    Read {
        /// Path.
        path: String,
        /// Data and version seen (data `None` for exists).
        seen: Option<(Option<String>, Option<i32>)>,
    },
    /// getChildren.
    Children {
        /// Path.
        path: String,
        /// Sorted child names, `None` = NoNode.
        seen: Option<Vec<String>>,
    },
    /// All or nothing.
    Multi(Vec<ZkKind>),
    /// Synthetic: the owner's session ends and its ephemeral at `path` is deleted.
    Expire {
        /// Path.
        path: String,
        /// Session.
        owner: i64,
    },
}

/// One zk op for the search.
#[derive(Debug, Clone, PartialEq)]
pub struct ZkOp {
    /// What it does.
    pub kind: ZkKind,
    /// Error code name on an ok reply (the op had no effect and its precondition failed).
    pub error: Option<String>,
    /// False when the outcome is unknown (any error, or success with any output).
    pub known: bool,
    /// Reply zxid of a successful write.
    pub zxid: Option<i64>,
}

/// The sequential ZooKeeper specification (DataTree semantics).
#[derive(Debug, Clone, Default)]
pub struct ZkSpec;

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn exists(t: &Tree, p: &str) -> bool {
    p == "/" || t.nodes.contains_key(p)
}

fn has_children(t: &Tree, p: &str) -> bool {
    let prefix = if p == "/" {
        "/".to_string()
    } else {
        format!("{p}/")
    };
    t.nodes
        .range(prefix.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&prefix))
}

fn children(t: &Tree, p: &str) -> Vec<String> {
    let prefix = if p == "/" {
        "/".to_string()
    } else {
        format!("{p}/")
    };
    t.nodes
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| !k[prefix.len()..].contains('/') && k.len() > prefix.len())
        .map(|(k, _)| k[prefix.len()..].to_string())
        .collect()
}

fn count_child_create(t: &mut Tree, p: &str) {
    if let Some(n) = t.nodes.get_mut(p) {
        n.child_creates += 1;
    }
}

/// Applies one op to `t`: Ok(()) if it succeeds, Err(error code) if ZooKeeper rejects it.
/// `known` outputs (created names, versions) are checked by the caller via `check_output`.
fn apply(t: &mut Tree, k: &ZkKind) -> Result<(), &'static str> {
    match k {
        ZkKind::Create {
            path,
            data,
            owner,
            sequential,
            created,
        } => {
            let par = parent(path);
            if !exists(t, par) {
                return Err("NoNode");
            }
            if *owner != 0 && t.closed.contains(owner) {
                return Err("SessionExpired");
            }
            if t.nodes.get(par).is_some_and(|n| n.owner != 0) {
                return Err("NoChildrenForEphemerals");
            }
            let cv = t.nodes.get(par).map(|n| n.child_creates).unwrap_or(0);
            let name = if *sequential {
                format!("{path}{cv:010}")
            } else {
                path.clone()
            };
            if exists(t, &name) {
                return Err("NodeExists");
            }
            if let Some(c) = created {
                if *c != name {
                    return Err("(wrong name)");
                }
            }
            t.nodes.insert(
                name,
                Znode {
                    data: data.clone(),
                    version: 0,
                    child_creates: 0,
                    owner: *owner,
                },
            );
            count_child_create(t, par);
            Ok(())
        }
        ZkKind::Delete { path, version } => {
            let Some(n) = t.nodes.get(path) else {
                return Err("NoNode");
            };
            if *version != -1 && n.version != *version {
                return Err("BadVersion");
            }
            if has_children(t, path) {
                return Err("NotEmpty");
            }
            t.nodes.remove(path);
            Ok(())
        }
        ZkKind::SetData {
            path,
            data,
            version,
            new_version,
        } => {
            let Some(n) = t.nodes.get_mut(path) else {
                return Err("NoNode");
            };
            if *version != -1 && n.version != *version {
                return Err("BadVersion");
            }
            if new_version.is_some_and(|v| v != n.version + 1) {
                return Err("(wrong version)");
            }
            n.version += 1;
            n.data = data.clone();
            Ok(())
        }
        ZkKind::Check { path, version } => {
            let Some(n) = t.nodes.get(path) else {
                return Err("NoNode");
            };
            if *version != -1 && n.version != *version {
                return Err("BadVersion");
            }
            Ok(())
        }
        ZkKind::Read { .. } | ZkKind::Children { .. } => check_read(t, k),
        ZkKind::Multi(ks) => {
            let mut c = t.clone();
            for k in ks {
                apply(&mut c, k)?;
            }
            *t = c;
            Ok(())
        }
        ZkKind::Expire { path, owner } => {
            t.closed.insert(*owner);
            if t.nodes.get(path).is_some_and(|n| n.owner == *owner) && !has_children(t, path) {
                t.nodes.remove(path);
            }
            Ok(())
        }
    }
}

/// Checks a read against `t` without changing it.
fn check_read(t: &Tree, k: &ZkKind) -> Result<(), &'static str> {
    match k {
        ZkKind::Read { path, seen } => match (t.nodes.get(path), seen) {
            (None, None) if path != "/" => Ok(()),
            (Some(n), Some((d, v))) => {
                if d.as_ref().is_some_and(|d| *d != n.data) || v.is_some_and(|v| v != n.version) {
                    Err("(wrong data)")
                } else {
                    Ok(())
                }
            }
            _ => Err("(wrong existence)"),
        },
        ZkKind::Children { path, seen } => {
            if !exists(t, path) {
                return if seen.is_none() {
                    Ok(())
                } else {
                    Err("(wrong existence)")
                };
            }
            match seen {
                Some(s) if *s == children(t, path) => Ok(()),
                _ => Err("(wrong children)"),
            }
        }
        _ => Ok(()),
    }
}

fn is_read(k: &ZkKind) -> bool {
    matches!(k, ZkKind::Read { .. } | ZkKind::Children { .. })
}

impl SeqSpec for ZkSpec {
    type State = Tree;
    type Op = ZkOp;
    fn init(&mut self) -> Tree {
        Tree {
            nodes: BTreeMap::new(),
            last_zxid: 0,
            closed: BTreeSet::new(),
        }
    }
    fn step(&mut self, s: &Tree, op: &ZkOp) -> Option<Tree> {
        if op.known && op.error.is_none() && is_read(&op.kind) {
            return check_read(s, &op.kind).ok().map(|_| s.clone());
        }
        if !op.known {
            let mut t = s.clone();
            return apply(&mut t, &op.kind).ok().map(|_| t);
        }
        let mut t = s.clone();
        match (&op.error, apply(&mut t, &op.kind)) {
            (None, Ok(())) => {
                if let Some(z) = op.zxid {
                    if z <= s.last_zxid {
                        return None;
                    }
                    t.last_zxid = z;
                }
                Some(t)
            }
            (Some(want), Err(got)) if want == got => Some(s.clone()),
            // A multi reports the first failing op's code; tolerate other codes only if
            // the whole op fails too (the exact code is checked when the op is simple).
            (Some(_), Err(_)) if matches!(op.kind, ZkKind::Multi(_)) => Some(s.clone()),
            _ => None,
        }
    }
    fn read_only(&self, op: &ZkOp) -> bool {
        op.known
            && (op.error.is_some() || is_read(&op.kind) || matches!(op.kind, ZkKind::Check { .. }))
    }
    fn relax(&self, op: &ZkOp) -> Option<ZkOp> {
        if is_read(&op.kind) || matches!(op.kind, ZkKind::Check { .. }) {
            return None;
        }
        let kind = match &op.kind {
            ZkKind::Create {
                path,
                data,
                owner,
                sequential,
                ..
            } => ZkKind::Create {
                path: path.clone(),
                data: data.clone(),
                owner: *owner,
                sequential: *sequential,
                created: None,
            },
            ZkKind::SetData {
                path,
                data,
                version,
                ..
            } => ZkKind::SetData {
                path: path.clone(),
                data: data.clone(),
                version: *version,
                new_version: None,
            },
            k => k.clone(),
        };
        Some(ZkOp {
            kind,
            error: None,
            known: false,
            zxid: None,
        })
    }
}

fn data_text(v: &Value) -> String {
    v.to_string()
}

fn sub_kind(v: &Value, session: i64, created: Option<&Value>) -> Option<ZkKind> {
    let path = v.get("path")?.as_str()?.to_string();
    let version = v.get("version").and_then(Value::as_i64).unwrap_or(-1) as i32;
    let data = data_text(v.get("value").unwrap_or(&Value::Null));
    Some(match v.get("op")?.as_str()? {
        "create" => {
            let mode = v
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or("persistent");
            ZkKind::Create {
                path,
                data,
                owner: if mode.starts_with("ephemeral") {
                    session
                } else {
                    0
                },
                sequential: mode.ends_with("sequential"),
                created: created.and_then(|c| {
                    c.as_str()
                        .map(str::to_string)
                        .or_else(|| c.get("path")?.as_str().map(str::to_string))
                }),
            }
        }
        "delete" => ZkKind::Delete { path, version },
        "setData" => ZkKind::SetData {
            path,
            data,
            version,
            new_version: None,
        },
        "check" => ZkKind::Check { path, version },
        _ => return None,
    })
}

/// Translates one history op; `Ok(None)` for ops the linearizability check does not use.
fn translate(events: &[Event], op: &Op) -> Result<Option<ZkOp>, String> {
    let inv = op.inv(events);
    let comp = op.comp(events).filter(|_| op.status == Status::Ok);
    let known = op.status == Status::Ok;
    let path = || {
        inv.path
            .clone()
            .ok_or_else(|| format!("{} needs a path", inv.f))
    };
    let session = inv.session.unwrap_or(0);
    let error = comp.and_then(|c| c.error.clone());
    let kind = match inv.f.as_str() {
        "create" => {
            let mode = inv.mode.as_deref().unwrap_or("persistent");
            ZkKind::Create {
                path: path()?,
                data: data_text(&inv.value),
                owner: if mode.starts_with("ephemeral") {
                    session
                } else {
                    0
                },
                sequential: mode.ends_with("sequential"),
                created: comp
                    .and_then(|c| c.result.as_ref())
                    .and_then(|r| r.as_str())
                    .map(str::to_string),
            }
        }
        "delete" => ZkKind::Delete {
            path: path()?,
            version: inv.version.unwrap_or(-1),
        },
        "setData" => ZkKind::SetData {
            path: path()?,
            data: data_text(&inv.value),
            version: inv.version.unwrap_or(-1),
            new_version: comp.and_then(|c| c.stat).map(|s| s.version),
        },
        "multi" => {
            let subs = inv
                .value
                .as_array()
                .ok_or("multi value must be an array of ops")?;
            let results = comp
                .and_then(|c| c.result.as_ref())
                .and_then(Value::as_array);
            let mut ks = Vec::new();
            for (i, s) in subs.iter().enumerate() {
                ks.push(
                    sub_kind(s, session, results.and_then(|r| r.get(i)))
                        .ok_or_else(|| format!("bad multi op {s}"))?,
                );
            }
            ZkKind::Multi(ks)
        }
        "getData" | "exists" | "getChildren" => {
            if !inv.quorum || !known {
                return Ok(None);
            }
            let c = comp.expect("ok op has a completion");
            let gone =
                c.error.as_deref() == Some("NoNode") || (inv.f == "exists" && c.stat.is_none());
            let k = if inv.f == "getChildren" {
                let seen = if gone {
                    None
                } else {
                    let mut v: Vec<String> = c
                        .value
                        .as_array()
                        .ok_or("getChildren value must be an array")?
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| x.to_string())
                        })
                        .collect();
                    v.sort();
                    Some(v)
                };
                ZkKind::Children {
                    path: path()?,
                    seen,
                }
            } else {
                let seen = (!gone).then(|| {
                    (
                        (inv.f == "getData").then(|| data_text(&c.value)),
                        c.stat.map(|s| s.version),
                    )
                });
                ZkKind::Read {
                    path: path()?,
                    seen,
                }
            };
            return Ok(Some(ZkOp {
                kind: k,
                error: None,
                known: true,
                zxid: None,
            }));
        }
        _ => return Ok(None),
    };
    if op.status == Status::Fail {
        return Ok(None);
    }
    let zxid = if error.is_none() {
        comp.and_then(|c| c.zxid)
    } else {
        None
    };
    Ok(Some(ZkOp {
        kind,
        error,
        known,
        zxid,
    }))
}

fn paths_of(k: &ZkKind, out: &mut Vec<String>) {
    match k {
        ZkKind::Create { path, .. }
        | ZkKind::Delete { path, .. }
        | ZkKind::SetData { path, .. }
        | ZkKind::Check { path, .. }
        | ZkKind::Read { path, .. }
        | ZkKind::Children { path, .. }
        | ZkKind::Expire { path, .. } => out.push(path.clone()),
        ZkKind::Multi(ks) => ks.iter().for_each(|k| paths_of(k, out)),
    }
}

struct Dsu(Vec<usize>);
impl Dsu {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut y = x;
        while self.0[y] != r {
            let n = self.0[y];
            self.0[y] = r;
            y = n;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// Splits the zk linearizability ops into independent groups of paths.
fn partition(ops: Vec<SearchOp<ZkOp>>) -> Vec<(String, Vec<SearchOp<ZkOp>>)> {
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut touched: Vec<Vec<String>> = Vec::new();
    let mut root_linked = false;
    for o in &ops {
        let mut ps = Vec::new();
        paths_of(&o.op.kind, &mut ps);
        let mut seq_or_children = false;
        let mut stack = vec![&o.op.kind];
        while let Some(k) = stack.pop() {
            match k {
                ZkKind::Create {
                    path,
                    sequential: true,
                    ..
                } if parent(path) == "/" => seq_or_children = true,
                ZkKind::Children { path, .. } if path == "/" => seq_or_children = true,
                ZkKind::Multi(ks) => stack.extend(ks.iter()),
                _ => {}
            }
        }
        root_linked |= seq_or_children;
        touched.push(ps);
    }
    for ps in &touched {
        for p in ps {
            let n = ids.len();
            ids.entry(p.clone()).or_insert(n);
            let q = parent(p).to_string();
            let n = ids.len();
            ids.entry(q).or_insert(n);
        }
    }
    let mut dsu = Dsu((0..ids.len()).collect());
    for ps in &touched {
        for w in ps.windows(2) {
            dsu.union(ids[&w[0]], ids[&w[1]]);
        }
        for p in ps {
            let q = parent(p);
            if p != "/" && (q != "/" || root_linked) {
                dsu.union(ids[p], ids[q]);
            }
        }
    }
    let mut groups: BTreeMap<usize, (BTreeSet<String>, Vec<SearchOp<ZkOp>>)> = BTreeMap::new();
    for (o, ps) in ops.into_iter().zip(touched) {
        let g = dsu.find(ids[&ps[0]]);
        let e = groups.entry(g).or_default();
        e.0.extend(ps);
        e.1.push(o);
    }
    groups
        .into_values()
        .map(|(ps, ops)| {
            let mut name: Vec<&str> = ps.iter().map(String::as_str).take(4).collect();
            if ps.len() > 4 {
                name.push("...");
            }
            (format!("paths {}", name.join(" ")), ops)
        })
        .collect()
}

/// Checks a zk history: linearizability of writes and quorum reads, then the session
/// contract.
pub fn check(
    events: &[Event],
    ops: &[Op],
    opts: &CheckOptions,
    deadline: Option<Instant>,
) -> Report {
    let mut report = Report::new(Model::Zk);
    let mut lin_ops = Vec::new();
    // Ephemeral creates per (session, path), for the synthetic expiry ops.
    let mut eph: BTreeMap<(i64, String), usize> = BTreeMap::new();
    for op in ops {
        match translate(events, op) {
            Ok(Some(z)) => {
                let mut k = vec![&z.kind];
                while let Some(k1) = k.pop() {
                    match k1 {
                        ZkKind::Create {
                            path,
                            owner,
                            sequential,
                            created,
                            ..
                        } if *owner != 0 => {
                            let p = if *sequential {
                                created.clone()
                            } else {
                                Some(path.clone())
                            };
                            if let Some(p) = p {
                                eph.entry((*owner, p)).or_insert(op.invoke);
                            }
                        }
                        ZkKind::Multi(ks) => k.extend(ks.iter()),
                        _ => {}
                    }
                }
                lin_ops.push(SearchOp {
                    id: op.index,
                    call: op.invoke,
                    ret: if z.known { op.complete } else { None },
                    op: z,
                });
            }
            Ok(None) => {}
            Err(msg) => {
                return Report::error(
                    Model::Zk,
                    format!("event {} (line {}): {msg}", op.invoke, op.invoke + 1),
                )
            }
        }
    }
    // Observed expiries: the session's ephemerals are gone before the client learns of it.
    let mut expired: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if e.kind == EventType::Event && e.f == "session" && e.event.as_deref() == Some("expired") {
            if let Some(s) = e.session {
                expired.entry(s).or_insert(i);
            }
        }
    }
    for (synth, ((owner, path), call)) in (ops.len()..).zip(eph) {
        lin_ops.push(SearchOp {
            id: synth,
            call,
            ret: expired.get(&owner).copied().filter(|&e| e > call),
            op: ZkOp {
                kind: ZkKind::Expire { path, owner },
                error: None,
                known: true,
                zxid: None,
            },
        });
    }
    let parts = partition(lin_ops);
    let results = crate::check_parts(&parts, |_| &ZkSpec, |p| &p.1, opts, deadline);
    for ((name, pops), (out, stats, cex)) in parts.iter().zip(results) {
        let real = pops.iter().filter(|o| o.id < ops.len()).count();
        let cex = cex.map(|v| v.into_iter().filter(|&i| i < ops.len()).collect());
        report.add_part(name, real, stats.configs, out, cex);
    }
    report.violations.extend(contract(events, ops));
    report
}

fn is_write(f: &str) -> bool {
    matches!(f, "create" | "delete" | "setData" | "multi")
}

fn is_plain_read(f: &str) -> bool {
    matches!(f, "getData" | "exists" | "getChildren")
}

/// Acknowledged successful writes per path: (zxid, op index, kind, data, ephemeral).
type PathWrites = BTreeMap<String, Vec<(i64, usize, &'static str, String, bool)>>;

fn acked_writes(events: &[Event], ops: &[Op]) -> (PathWrites, BTreeMap<String, Vec<usize>>) {
    let mut w: PathWrites = BTreeMap::new();
    let mut unknown: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for op in ops {
        let inv = op.inv(events);
        if !is_write(&inv.f) {
            continue;
        }
        let comp = op.comp(events);
        let ok = op.status == Status::Ok && comp.is_some_and(|c| c.error.is_none());
        let subs: Vec<Value> = if inv.f == "multi" {
            inv.value.as_array().cloned().unwrap_or_default()
        } else {
            vec![
                serde_json::json!({"op": inv.f, "path": inv.path, "value": inv.value, "mode": inv.mode}),
            ]
        };
        let results = comp.and_then(|c| c.result.as_ref());
        for (i, s) in subs.iter().enumerate() {
            let f = s.get("op").and_then(Value::as_str).unwrap_or("");
            let mut path = s
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mode = s
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or("persistent");
            if f == "create" && mode.ends_with("sequential") {
                let r = if inv.f == "multi" {
                    results.and_then(|r| r.get(i))
                } else {
                    results
                };
                match r.and_then(|r| r.as_str().or_else(|| r.get("path")?.as_str())) {
                    Some(p) => path = p.to_string(),
                    None => continue,
                }
            }
            let kind: &'static str = match f {
                "create" => "create",
                "delete" => "delete",
                "setData" => "setData",
                _ => continue,
            };
            match (ok, op.status, comp.and_then(|c| c.zxid)) {
                (true, _, Some(z)) => w.entry(path).or_default().push((
                    z,
                    op.index,
                    kind,
                    data_text(s.get("value").unwrap_or(&Value::Null)),
                    mode.starts_with("ephemeral"),
                )),
                (_, Status::Info, _) | (true, _, None) => {
                    unknown.entry(path).or_default().push(op.index)
                }
                _ => {}
            }
        }
    }
    for v in w.values_mut() {
        v.sort();
    }
    (w, unknown)
}

/// A zxid and the op that produced it.
type ZxidOp = (i64, usize);
/// After a sync: (bound zxid, the write that set it, the sync op).
type SyncBound = (i64, Option<usize>, usize);
/// A watch: (session, path, child watch?).
type WatchKey = (i64, String, bool);
/// An armed watch: (registering op, its zxid, what it saw).
type Armed = (usize, i64, Option<ZkSeen>);

/// The session contract checks on plain (possibly stale) reads and notifications.
fn contract(events: &[Event], ops: &[Op]) -> Vec<Violation> {
    let mut out = Vec::new();
    let (writes, unknown) = acked_writes(events, ops);
    let op_at: BTreeMap<usize, usize> = ops
        .iter()
        .flat_map(|o| {
            [(o.invoke, o.index)]
                .into_iter()
                .chain(o.complete.map(|c| (c, o.index)))
        })
        .collect();
    let mut max_acked: (i64, Option<usize>) = (0, None); // zxid, op
    let mut last_seen: BTreeMap<i64, (i64, usize)> = BTreeMap::new(); // session -> (zxid, op)
    let mut own_write: BTreeMap<i64, (i64, usize)> = BTreeMap::new();
    let mut sync_bound_at_invoke: BTreeMap<usize, (i64, Option<usize>)> = BTreeMap::new();
    let mut sync_bound: BTreeMap<i64, (i64, Option<usize>, usize)> = BTreeMap::new(); // session -> (zxid, write op, sync op)
    let mut read_bound: BTreeMap<usize, (Option<ZxidOp>, Option<SyncBound>)> = BTreeMap::new();
    let mut completed_order: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    // Watches: (session, path, child?) -> (registering op, zxid, what it saw).
    let mut armed: BTreeMap<WatchKey, Armed> = BTreeMap::new();
    // Watch-setting reads in flight, and those whose watch already fired: a client may
    // hand over a notification before it completes the read that set the watch (the
    // server sends the reply first, but the recorder can see the event first).
    let mut arming: BTreeMap<WatchKey, usize> = BTreeMap::new();
    let mut fired_early: BTreeSet<usize> = BTreeSet::new();
    let mut expired_at: BTreeMap<i64, usize> = BTreeMap::new();
    let mut sync_after_expiry: BTreeMap<i64, usize> = BTreeMap::new(); // session -> sync invoke event
    let mut sync_invoke: BTreeMap<usize, usize> = BTreeMap::new();

    for (i, e) in events.iter().enumerate() {
        let session = e.session;
        match e.kind {
            EventType::Invoke => {
                let Some(&oi) = op_at.get(&i) else { continue };
                if e.f == "sync" {
                    sync_bound_at_invoke.insert(oi, max_acked);
                    sync_invoke.insert(oi, i);
                }
                if is_plain_read(&e.f) {
                    if let (Some(s), Some(p), true) = (session, &e.path, e.watch) {
                        arming.insert((s, p.clone(), e.f == "getChildren"), oi);
                    }
                    if let Some(s) = session {
                        read_bound.insert(
                            oi,
                            (own_write.get(&s).copied(), sync_bound.get(&s).copied()),
                        );
                    }
                }
            }
            EventType::Ok | EventType::Fail => {
                let Some(&oi) = op_at.get(&i) else { continue };
                let inv = ops[oi].inv(events);
                let s = inv.session.or(session);
                if let Some(s) = s {
                    completed_order.entry(s).or_default().push(oi);
                }
                if e.kind != EventType::Ok {
                    continue;
                }
                let z = e.zxid;
                if let (Some(s), Some(z)) = (s, z) {
                    if let Some(&(pz, po)) = last_seen.get(&s) {
                        if z < pz {
                            out.push(Violation::new(
                                "session-zxid-monotonic",
                                vec![po, oi],
                                format!(
                                    "session {s:#x} saw zxid {pz:#x} and then an older zxid {z:#x}"
                                ),
                            ));
                        }
                    }
                    let cur = last_seen.get(&s).map(|x| x.0).unwrap_or(i64::MIN);
                    if z >= cur {
                        last_seen.insert(s, (z, oi));
                    }
                }
                if is_write(&inv.f) && e.error.is_none() {
                    if let Some(z) = z {
                        if z > max_acked.0 {
                            max_acked = (z, Some(oi));
                        }
                        if let Some(s) = s {
                            if own_write.get(&s).is_none_or(|w| w.0 < z) {
                                own_write.insert(s, (z, oi));
                            }
                        }
                    }
                }
                if inv.f == "sync" {
                    if let (Some(s), Some(&(bz, bw))) = (s, sync_bound_at_invoke.get(&oi)) {
                        sync_bound.insert(s, (bz, bw, oi));
                        let si = sync_invoke[&oi];
                        if expired_at.values().any(|&x| x < si) {
                            sync_after_expiry.insert(s, si);
                        }
                    }
                }
                if is_plain_read(&inv.f) {
                    let seen = zk_seen(inv, e);
                    if let (Some(s), Some(z)) = (s, z) {
                        let (own, sb) = read_bound.get(&oi).copied().unwrap_or((None, None));
                        if let Some((wz, wo)) = own {
                            if z < wz {
                                out.push(Violation::new(
                                    "read-your-writes",
                                    vec![wo, oi],
                                    format!("read served at zxid {z:#x}, older than the session's own write at {wz:#x}"),
                                ));
                            }
                        }
                        if let Some((bz, bw, so)) = sb {
                            if z < bz {
                                let mut v = vec![so, oi];
                                v.extend(bw);
                                v.sort_unstable();
                                out.push(Violation::new(
                                    "sync-then-read",
                                    v,
                                    format!("read after sync served at zxid {z:#x}, older than write {bz:#x} acknowledged before the sync"),
                                ));
                            }
                        }
                        if let Some(p) = &inv.path {
                            if !inv.quorum {
                                zxid_consistency(&writes, &unknown, p, z, &seen, oi, &mut out);
                            }
                            // Watches: a read while a watch is armed must not show a change.
                            let child = inv.f == "getChildren";
                            if let Some((ro, _, Some(before))) = armed.get(&(s, p.clone(), child)) {
                                if seen.as_ref().is_some_and(|now| now.changed_from(before)) {
                                    out.push(Violation::new(
                                        "watch-before-change",
                                        vec![*ro, oi],
                                        format!("session {s:#x} read a change to {p} before its watch fired"),
                                    ));
                                }
                            }
                            if arming.get(&(s, p.clone(), child)) == Some(&oi) {
                                arming.remove(&(s, p.clone(), child));
                            }
                            if inv.watch && !fired_early.contains(&oi) {
                                armed.insert((s, p.clone(), child), (oi, z, seen.clone()));
                            }
                        }
                    }
                    // Ephemerals of expired sessions must be gone from fresh reads.
                    if let (Some(st), Some(s)) = (e.stat, s) {
                        if let Some(&ex) = expired_at.get(&st.ephemeral_owner) {
                            let fresh = (inv.quorum && ops[oi].invoke > ex)
                                || sync_after_expiry.get(&s).is_some_and(|&si| si > ex);
                            if fresh {
                                let mut v = Violation::new(
                                    "ephemeral-after-expiry",
                                    vec![oi],
                                    format!(
                                        "read shows an ephemeral of session {:#x} after its expiry was observed",
                                        st.ephemeral_owner
                                    ),
                                );
                                v.events.push(ex);
                                out.push(v);
                            }
                        }
                    }
                }
            }
            EventType::Info => {}
            EventType::Event => {
                let Some(s) = session else { continue };
                if e.f == "session" && e.event.as_deref() == Some("expired") {
                    expired_at.entry(s).or_insert(i);
                }
                if e.f != "watch" {
                    continue;
                }
                let Some(p) = &e.path else { continue };
                let ev = e.event.as_deref().unwrap_or("");
                let kinds: &[bool] = match ev {
                    "NodeChildrenChanged" => &[true],
                    "NodeDeleted" => &[false, true],
                    _ => &[false],
                };
                let mut fired = false;
                for &child in kinds {
                    let key = (s, p.clone(), child);
                    if armed.remove(&key).is_some() {
                        fired = true;
                    } else if let Some(oi) = arming.remove(&key) {
                        fired_early.insert(oi);
                        fired = true;
                    }
                }
                if !fired {
                    let mut v = Violation::new(
                        "watch-at-most-once",
                        Vec::new(),
                        format!("session {s:#x} got {ev} for {p} without an armed watch (fired twice or never set)"),
                    );
                    v.events.push(i);
                    out.push(v);
                }
            }
        }
    }
    // FIFO: per session, completion order equals invoke order.
    for (s, order) in completed_order {
        let mut max: Option<usize> = None;
        for oi in order {
            if let Some(m) = max {
                if ops[oi].invoke < ops[m].invoke {
                    out.push(Violation::new(
                        "session-fifo",
                        vec![oi.min(m), oi.max(m)],
                        format!("session {s:#x} got the reply to a later request first"),
                    ));
                    continue;
                }
            }
            max = Some(oi);
        }
    }
    out
}

/// What a plain read saw.
#[derive(Debug, Clone, PartialEq)]
struct ZkSeen {
    exists: bool,
    mzxid: Option<i64>,
    czxid: Option<i64>,
    data: String,
    children: Option<Vec<String>>,
}

impl ZkSeen {
    fn changed_from(&self, before: &ZkSeen) -> bool {
        if self.exists != before.exists {
            return true;
        }
        if let (Some(a), Some(b)) = (&self.children, &before.children) {
            return a != b;
        }
        matches!((self.mzxid, before.mzxid), (Some(a), Some(b)) if a > b)
            || matches!((self.czxid, before.czxid), (Some(a), Some(b)) if a > b)
    }
}

fn zk_seen(inv: &Event, c: &Event) -> Option<ZkSeen> {
    let gone = c.error.as_deref() == Some("NoNode") || (inv.f == "exists" && c.stat.is_none());
    if c.error.is_some() && !gone {
        return None;
    }
    let children = (inv.f == "getChildren" && !gone).then(|| {
        let mut v: Vec<String> = c
            .value
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    });
    Some(ZkSeen {
        exists: !gone,
        mzxid: c.stat.map(|s| s.mzxid),
        czxid: c.stat.map(|s| s.czxid),
        data: if inv.f == "getData" {
            data_text(&c.value)
        } else {
            String::new()
        },
        children,
    })
}

fn zxid_consistency(
    writes: &PathWrites,
    unknown: &BTreeMap<String, Vec<usize>>,
    path: &str,
    z: i64,
    seen: &Option<ZkSeen>,
    oi: usize,
    out: &mut Vec<Violation>,
) {
    let Some(seen) = seen else { return };
    if seen.children.is_some() {
        return;
    }
    let ws = writes.get(path).map(Vec::as_slice).unwrap_or(&[]);
    if let Some(m) = seen.mzxid {
        if m > z {
            out.push(Violation::new(
                "read-from-future",
                vec![oi],
                format!("read served at zxid {z:#x} shows a change at {m:#x}"),
            ));
            return;
        }
    }
    let last = ws.iter().rev().find(|w| w.0 <= z);
    let Some(&(wz, wo, kind, ref data, ephemeral)) = last else {
        return;
    };
    let unknown_here = unknown.get(path).is_some_and(|u| u.iter().any(|&u| u < oi));
    match (seen.exists, kind) {
        (true, "create" | "setData") => {
            if let Some(m) = seen.mzxid {
                if m < wz {
                    out.push(Violation::new(
                        "acked-write-lost",
                        vec![wo, oi],
                        format!("read served at zxid {z:#x} shows {path} as of {m:#x}, missing the acknowledged write at {wz:#x}"),
                    ));
                } else if m == wz && !seen.data.is_empty() && seen.data != *data {
                    out.push(Violation::new(
                        "read-consistent-with-zxid",
                        vec![wo, oi],
                        format!(
                            "read shows data {} at mzxid {m:#x}, but that write set {data}",
                            seen.data
                        ),
                    ));
                }
            }
        }
        // Deleted at wz: only a re-create after wz explains existence.
        (true, _) if seen.czxid.is_some_and(|c| c < wz) && !unknown_here => {
            out.push(Violation::new(
                "acked-write-lost",
                vec![wo, oi],
                format!("read served at zxid {z:#x} shows {path}, deleted by the acknowledged write at {wz:#x}"),
            ));
        }
        (false, "create" | "setData") if !ephemeral && !unknown_here && ws.iter().all(|w| !w.4) => {
            out.push(Violation::new(
                "acked-write-lost",
                vec![wo, oi],
                format!("read served at zxid {z:#x} finds no {path}, but the acknowledged write at {wz:#x} made it exist"),
            ));
        }
        _ => {}
    }
}
