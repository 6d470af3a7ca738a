//! Model test for the znode tree: random write sequences go through the
//! real pipeline (`Prepper::prepare` for a batch of writes, then
//! `DataTree::apply` for each, then `Prepper::applied`) and through a
//! deliberately simple sequential model of ZooKeeper's semantics written
//! here. Results, stats, data, ACLs and children must be identical.

use std::collections::BTreeMap;

use proptest::prelude::*;
use zabkeeper::state::acl::digest;
use zabkeeper::state::path::validate_path;
use zabkeeper::state::prep::{Prepper, WriteOp};
use zabkeeper::state::tree::{DataTree, OpResult};
use zabkeeper::state::txn::{EphemeralType, Txn};
use zabkeeper::types::{perms, Acl, CreateMode, ErrorCode, Id, SessionId, Stat, Zxid};

const SESSIONS: [SessionId; 2] = [0x0100_0000_0000_0001, 0x0100_0000_0000_0002];
const TTL_MAX: i64 = 0x00ff_ffff_ffff;

fn bob() -> Id {
    Id::new("digest", &digest("bob:secret"))
}

/// Session 0 is authenticated as bob, session 1 as nobody.
fn auth_of(session: SessionId) -> Vec<Id> {
    if session == SESSIONS[0] {
        vec![bob()]
    } else {
        vec![]
    }
}

// ------------------------------------------------------------------ model

#[derive(Clone, Debug, PartialEq)]
struct MNode {
    data: Vec<u8>,
    acl: Vec<Acl>,
    czxid: Zxid,
    mzxid: Zxid,
    pzxid: Zxid,
    ctime: i64,
    mtime: i64,
    version: i32,
    cversion: i32,
    aversion: i32,
    owner: i64,
}

/// The result shape both sides are compared in.
#[derive(Clone, Debug, PartialEq)]
enum R {
    Create(String, Stat),
    Delete,
    SetData(Stat),
    SetAcl(Stat),
    Check,
    Multi(Vec<Result<R, ErrorCode>>),
    Close,
}

#[derive(Clone, Debug, Default)]
struct Model {
    nodes: BTreeMap<String, MNode>,
}

fn parent_of(path: &str) -> Option<String> {
    if path.contains('\0') {
        return None;
    }
    let i = path.rfind('/')?;
    Some(if i == 0 {
        "/".to_string()
    } else {
        path[..i].to_string()
    })
}

fn is_normal_ephemeral(owner: i64) -> bool {
    owner != 0 && owner != i64::MIN && (owner as u64 >> 56) != 0xff
}

fn allowed(acl: &[Acl], perm: i32, auth: &[Id]) -> bool {
    acl.iter()
        .any(|a| a.perms & perm != 0 && (a.id == Id::anyone() || auth.contains(&a.id)))
}

fn fixup(acl: &[Acl], auth: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut out: Vec<Acl> = Vec::new();
    let mut seen: Vec<&Acl> = Vec::new();
    for a in acl {
        if seen.contains(&a) {
            continue;
        }
        seen.push(a);
        if a.id.scheme == "auth" {
            if auth.is_empty() {
                return Err(ErrorCode::InvalidAcl);
            }
            out.extend(auth.iter().map(|id| Acl {
                perms: a.perms,
                id: id.clone(),
            }));
        } else {
            out.push(a.clone());
        }
    }
    if out.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    Ok(out)
}

fn bump(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        Err(ErrorCode::BadVersion)
    } else {
        Ok(current + 1)
    }
}

impl Model {
    fn new() -> Model {
        let mut m = Model::default();
        let node = |acl| MNode {
            data: vec![],
            acl,
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            owner: 0,
        };
        for p in ["/", "/zookeeper", "/zookeeper/quota"] {
            m.nodes.insert(p.into(), node(Acl::open_unsafe()));
        }
        let ro = vec![Acl {
            perms: perms::READ,
            id: Id::anyone(),
        }];
        // ZooKeeper's addConfigNode: aversion -1.
        let mut config = node(ro);
        config.aversion = -1;
        m.nodes.insert("/zookeeper/config".into(), config);
        m
    }

    fn children(&self, path: &str) -> Vec<String> {
        self.nodes
            .keys()
            .filter(|k| k.as_str() != "/" && parent_of(k).as_deref() == Some(path))
            .map(|k| k[k.rfind('/').unwrap() + 1..].to_string())
            .collect()
    }

    fn stat(&self, path: &str) -> Stat {
        let n = &self.nodes[path];
        let num_children = self.children(path).len() as i32;
        // As clients see it (DataNode.copyStat): cversion counts creates and
        // deletes, containers and TTL nodes show no owner.
        Stat {
            czxid: n.czxid,
            mzxid: n.mzxid,
            ctime: n.ctime,
            mtime: n.mtime,
            version: n.version,
            cversion: 2 * n.cversion - num_children,
            aversion: n.aversion,
            ephemeral_owner: match EphemeralType::of(n.owner) {
                EphemeralType::Normal(s) => s,
                _ => 0,
            },
            data_length: n.data.len() as i32,
            num_children,
            pzxid: n.pzxid,
        }
    }

    fn run(&mut self, s: SessionId, op: &WriteOp, zxid: Zxid, time: i64) -> Result<R, ErrorCode> {
        let auth = auth_of(s);
        match op {
            WriteOp::Create {
                path,
                data,
                acl,
                mode,
                ttl,
            } => {
                let ttl_ok = if mode.is_ttl() {
                    *ttl > 0 && *ttl <= TTL_MAX
                } else {
                    *ttl < 0
                };
                if !ttl_ok {
                    return Err(ErrorCode::BadArguments);
                }
                let parent = parent_of(path).ok_or(ErrorCode::BadArguments)?;
                let acl = fixup(acl, &auth)?;
                let p = self.nodes.get(&parent).ok_or(ErrorCode::NoNode)?;
                if !allowed(&p.acl, perms::CREATE, &auth) {
                    return Err(ErrorCode::NoAuth);
                }
                let name = if mode.is_sequential() {
                    format!("{path}{:010}", p.cversion)
                } else {
                    path.clone()
                };
                validate_path(&name)?;
                if self.nodes.contains_key(&name) {
                    return Err(ErrorCode::NodeExists);
                }
                if is_normal_ephemeral(p.owner) {
                    return Err(ErrorCode::NoChildrenForEphemerals);
                }
                let owner = match mode {
                    CreateMode::Container => i64::MIN,
                    CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl => {
                        (0xff00_0000_0000_0000_u64 as i64) | ttl
                    }
                    CreateMode::Ephemeral | CreateMode::EphemeralSequential => s,
                    _ => 0,
                };
                let p = self.nodes.get_mut(&parent).unwrap();
                p.cversion += 1;
                p.pzxid = zxid;
                self.nodes.insert(
                    name.clone(),
                    MNode {
                        data: data.clone().unwrap_or_default(),
                        acl,
                        czxid: zxid,
                        mzxid: zxid,
                        pzxid: zxid,
                        ctime: time,
                        mtime: time,
                        version: 0,
                        cversion: 0,
                        aversion: 0,
                        owner,
                    },
                );
                Ok(R::Create(name.clone(), self.stat(&name)))
            }
            WriteOp::Delete { path, version } => {
                if ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"]
                    .contains(&path.as_str())
                {
                    return Err(ErrorCode::BadArguments);
                }
                let parent = parent_of(path).ok_or(ErrorCode::BadArguments)?;
                let p = self.nodes.get(&parent).ok_or(ErrorCode::NoNode)?;
                if !allowed(&p.acl, perms::DELETE, &auth) {
                    return Err(ErrorCode::NoAuth);
                }
                let n = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
                bump(n.version, *version)?;
                if !self.children(path).is_empty() {
                    return Err(ErrorCode::NotEmpty);
                }
                self.nodes.remove(path);
                self.nodes.get_mut(&parent).unwrap().pzxid = zxid;
                Ok(R::Delete)
            }
            WriteOp::SetData {
                path,
                data,
                version,
            } => {
                validate_path(path)?;
                let n = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
                if !allowed(&n.acl, perms::WRITE, &auth) {
                    return Err(ErrorCode::NoAuth);
                }
                let v = bump(n.version, *version)?;
                let n = self.nodes.get_mut(path).unwrap();
                n.version = v;
                n.data = data.clone().unwrap_or_default();
                n.mzxid = zxid;
                n.mtime = time;
                Ok(R::SetData(self.stat(path)))
            }
            WriteOp::SetAcl { path, acl, version } => {
                validate_path(path)?;
                let acl = fixup(acl, &auth)?;
                let n = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
                if !allowed(&n.acl, perms::ADMIN, &auth) {
                    return Err(ErrorCode::NoAuth);
                }
                let v = bump(n.aversion, *version)?;
                let n = self.nodes.get_mut(path).unwrap();
                n.aversion = v;
                n.acl = acl;
                Ok(R::SetAcl(self.stat(path)))
            }
            WriteOp::Check { path, version } => {
                validate_path(path)?;
                let n = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
                if !allowed(&n.acl, perms::READ, &auth) {
                    return Err(ErrorCode::NoAuth);
                }
                bump(n.version, *version)?;
                Ok(R::Check)
            }
            WriteOp::Multi(ops) => {
                let mut scratch = self.clone();
                let mut results = Vec::new();
                for (i, o) in ops.iter().enumerate() {
                    match scratch.run(s, o, zxid, time) {
                        Ok(r) => results.push(Ok(r)),
                        Err(e) => {
                            let mut errs = vec![Err(ErrorCode::Ok); i];
                            errs.push(Err(e));
                            errs.resize(ops.len(), Err(ErrorCode::RuntimeInconsistency));
                            return Ok(R::Multi(errs));
                        }
                    }
                }
                *self = scratch;
                Ok(R::Multi(results))
            }
            WriteOp::DeleteContainer { .. } => unreachable!("not generated"),
        }
    }

    fn close(&mut self, s: SessionId, zxid: Zxid) {
        let mine: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.owner == s)
            .map(|(p, _)| p.clone())
            .collect();
        for p in mine {
            self.nodes.remove(&p);
            let parent = parent_of(&p).unwrap();
            self.nodes.get_mut(&parent).unwrap().pzxid = zxid;
        }
    }
}

// ------------------------------------------------------------- generation

const FIXED: &[&str] = &[
    "/a",
    "/b",
    "/a/x",
    "/a/y",
    "/b/x",
    "/a/x/z",
    "/zookeeper",
    "/",
    "/a/",
];
const SEQ_BASES: &[&str] = &["/a/s-", "/b/", "/q-"];

/// A path chosen when the op runs: a fixed one, or one of the nodes that
/// exist in the model at that moment (so sequential names get hit too).
#[derive(Clone, Debug)]
enum PathSel {
    Fixed(usize),
    Existing(usize),
    /// A child named `c0`..`c2` of an existing node.
    ChildOf(usize, u8),
}

#[derive(Clone, Debug)]
enum VersionSel {
    Any,
    Exact(i32),
    Current,
}

#[derive(Clone, Debug)]
enum GenOp {
    Create {
        path: PathSel,
        seq_base: Option<usize>,
        acl: usize,
        mode: CreateMode,
        ttl: i64,
        data: u8,
    },
    Delete {
        path: PathSel,
        version: VersionSel,
    },
    SetData {
        path: PathSel,
        version: VersionSel,
        data: u8,
    },
    SetAcl {
        path: PathSel,
        version: VersionSel,
        acl: usize,
    },
    Check {
        path: PathSel,
        version: VersionSel,
    },
    Multi(Vec<GenOp>),
}

#[derive(Clone, Debug)]
enum Step {
    Op {
        session: usize,
        op: GenOp,
    },
    Close {
        session: usize,
    },
    /// Deletes an existing node, then its parent, pipelined.
    DeleteUp {
        session: usize,
        node: usize,
    },
    /// Apply everything prepared so far.
    Flush,
}

fn acl_choice(i: usize) -> Vec<Acl> {
    let world = |p| Acl {
        perms: p,
        id: Id::anyone(),
    };
    match i % 5 {
        0 => Acl::open_unsafe(),
        1 => vec![world(perms::READ)],
        2 => vec![Acl {
            perms: perms::ALL,
            id: bob(),
        }],
        3 => vec![Acl {
            perms: perms::ALL,
            id: Id::new("auth", ""),
        }],
        _ => vec![
            world(perms::READ | perms::CREATE),
            Acl {
                perms: perms::ALL,
                id: bob(),
            },
        ],
    }
}

fn path_sel() -> impl Strategy<Value = PathSel> {
    prop_oneof![
        1 => (0..FIXED.len()).prop_map(PathSel::Fixed),
        3 => (0usize..64).prop_map(PathSel::Existing),
        3 => (0usize..64, 0u8..5).prop_map(|(i, n)| PathSel::ChildOf(i, n)),
    ]
}

fn version_sel() -> impl Strategy<Value = VersionSel> {
    prop_oneof![
        2 => Just(VersionSel::Any),
        1 => (0i32..3).prop_map(VersionSel::Exact),
        2 => Just(VersionSel::Current),
    ]
}

fn mode() -> impl Strategy<Value = CreateMode> {
    (0i32..7).prop_map(|f| CreateMode::from_flag(f).unwrap())
}

fn simple_op() -> impl Strategy<Value = GenOp> {
    prop_oneof![
        7 => (path_sel(), proptest::option::of(0..SEQ_BASES.len()), 0usize..8, mode(), 0u8..16, 0u8..3)
            .prop_map(|(path, seq_base, acl, mode, t, data)| {
                let ttl = match (mode.is_ttl(), t) {
                    (true, 0) => 0,
                    (true, 1) => TTL_MAX + 1,
                    (true, _) => 100,
                    (false, 0) => 0,
                    (false, _) => -1,
                };
                GenOp::Create { path, seq_base, acl, mode, ttl, data }
            }),
        3 => (path_sel(), version_sel()).prop_map(|(path, version)| GenOp::Delete { path, version }),
        3 => (path_sel(), version_sel(), 0u8..3).prop_map(|(path, version, data)| GenOp::SetData { path, version, data }),
        1 => (path_sel(), version_sel()).prop_map(|(path, version)| GenOp::Check { path, version }),
    ]
}

fn gen_op() -> impl Strategy<Value = GenOp> {
    prop_oneof![
        8 => simple_op(),
        1 => (path_sel(), version_sel(), 0usize..8).prop_map(|(path, version, acl)| GenOp::SetAcl { path, version, acl }),
        2 => proptest::collection::vec(simple_op(), 0..4).prop_map(GenOp::Multi),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => (0usize..2, gen_op()).prop_map(|(session, op)| Step::Op { session, op }),
        1 => (0usize..2).prop_map(|session| Step::Close { session }),
        1 => (0usize..2, 0usize..64).prop_map(|(session, node)| Step::DeleteUp { session, node }),
        3 => Just(Step::Flush),
    ]
}

/// The nodes clients made, or just `/` when there are none.
fn user_nodes(model: &Model) -> Vec<&String> {
    let mut v: Vec<&String> = model
        .nodes
        .keys()
        .filter(|k| !k.starts_with("/zookeeper") && k.as_str() != "/")
        .collect();
    if v.is_empty() {
        v = model.nodes.keys().filter(|k| k.as_str() == "/").collect();
    }
    v
}

/// Resolves a generated op against the model's current state.
fn resolve(model: &Model, op: &GenOp) -> WriteOp {
    let path = |sel: &PathSel| -> String {
        match sel {
            PathSel::Fixed(i) => FIXED[*i].to_string(),
            PathSel::Existing(i) => {
                let all = user_nodes(model);
                all[*i % all.len()].clone()
            }
            PathSel::ChildOf(i, n) => {
                let all = user_nodes(model);
                let parent = all[*i % all.len()];
                if parent == "/" {
                    format!("/c{n}")
                } else {
                    format!("{parent}/c{n}")
                }
            }
        }
    };
    let version = |sel: &VersionSel, p: &str, acl: bool| match sel {
        VersionSel::Any => -1,
        VersionSel::Exact(v) => *v,
        VersionSel::Current => model
            .nodes
            .get(p)
            .map(|n| if acl { n.aversion } else { n.version })
            .unwrap_or(0),
    };
    match op {
        GenOp::Create {
            path: p,
            seq_base,
            acl,
            mode,
            ttl,
            data,
        } => {
            let path = match seq_base {
                Some(b) if mode.is_sequential() => SEQ_BASES[*b].to_string(),
                _ => path(p),
            };
            WriteOp::Create {
                path,
                data: Some(vec![*data; *data as usize]),
                acl: acl_choice(*acl),
                mode: *mode,
                ttl: *ttl,
            }
        }
        GenOp::Delete {
            path: p,
            version: v,
        } => {
            let p = path(p);
            WriteOp::Delete {
                version: version(v, &p, false),
                path: p,
            }
        }
        GenOp::SetData {
            path: p,
            version: v,
            data,
        } => {
            let p = path(p);
            WriteOp::SetData {
                version: version(v, &p, false),
                path: p,
                data: Some(vec![*data; 3]),
            }
        }
        GenOp::SetAcl {
            path: p,
            version: v,
            acl,
        } => {
            let p = path(p);
            WriteOp::SetAcl {
                version: version(v, &p, true),
                path: p,
                acl: acl_choice(*acl),
            }
        }
        GenOp::Check {
            path: p,
            version: v,
        } => {
            let p = path(p);
            WriteOp::Check {
                version: version(v, &p, false),
                path: p,
            }
        }
        GenOp::Multi(ops) => {
            // Sub-ops resolve against the state before the multi: good enough
            // to produce both successes and failures.
            WriteOp::Multi(ops.iter().map(|o| resolve(model, o)).collect())
        }
    }
}

fn to_r(r: &OpResult) -> R {
    match r {
        OpResult::Create { path, stat, .. } => R::Create(path.clone(), *stat),
        OpResult::Delete => R::Delete,
        OpResult::SetData { stat } => R::SetData(*stat),
        OpResult::SetAcl { stat } => R::SetAcl(*stat),
        OpResult::Check => R::Check,
        OpResult::Multi(rs) => R::Multi(
            rs.iter()
                .map(|r| r.as_ref().map(to_r).map_err(|e| *e))
                .collect(),
        ),
        OpResult::CreateSession => panic!("unexpected CreateSession"),
        OpResult::CloseSession => R::Close,
    }
}

// ------------------------------------------------------------------ driver

type Key = (usize, usize);

struct Real {
    tree: DataTree,
    prep: Prepper,
    /// Prepared, not yet applied, keyed by (step, op within the step).
    pending: Vec<(Key, Txn)>,
    results: BTreeMap<Key, Result<R, ErrorCode>>,
}

impl Real {
    fn flush(&mut self) {
        for (i, t) in std::mem::take(&mut self.pending) {
            let out = self.tree.apply(&t);
            self.prep.applied(t.zxid);
            self.results
                .insert(i, out.result.as_ref().map(to_r).map_err(|e| *e));
        }
        assert_eq!(
            self.prep.outstanding(),
            0,
            "applied() must drop every record"
        );
    }
}

fn time_of(zxid: Zxid) -> i64 {
    1_700_000_000_000 + zxid * 7
}

fn run_steps(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let mut real = Real {
        tree: DataTree::new(),
        prep: Prepper::new(),
        pending: vec![],
        results: BTreeMap::new(),
    };
    let mut expected: BTreeMap<Key, Result<R, ErrorCode>> = BTreeMap::new();
    let mut zxid: Zxid = 0x1_0000_0000;
    for (i, st) in steps.iter().enumerate() {
        let (s, ops) = match st {
            Step::Flush => {
                real.flush();
                continue;
            }
            Step::Close { session } => {
                let s = SESSIONS[*session];
                zxid += 1;
                let body = real.prep.close_session_txn(&real.tree, s, zxid);
                let txn = Txn {
                    zxid,
                    time: time_of(zxid),
                    session: s,
                    cxid: i as i32,
                    body,
                };
                real.pending.push(((i, 0), txn));
                model.close(s, zxid);
                expected.insert((i, 0), Ok(R::Close));
                continue;
            }
            Step::Op { session, op } => (SESSIONS[*session], vec![resolve(&model, op)]),
            Step::DeleteUp { session, node } => {
                let all = user_nodes(&model);
                let leaf = all[*node % all.len()].clone();
                let mut ops = vec![WriteOp::Delete {
                    path: leaf.clone(),
                    version: -1,
                }];
                if let Some(parent) = zabkeeper::state::path::parent(&leaf) {
                    ops.push(WriteOp::Delete {
                        path: parent.to_string(),
                        version: -1,
                    });
                }
                (SESSIONS[*session], ops)
            }
        };
        for (j, op) in ops.iter().enumerate() {
            let next = zxid + 1;
            let want = model.run(s, op, next, time_of(next));
            match real
                .prep
                .prepare(&real.tree, s, &auth_of(s), op, next, time_of(next))
            {
                Ok(body) => {
                    zxid = next;
                    let txn = Txn {
                        zxid,
                        time: time_of(zxid),
                        session: s,
                        cxid: i as i32,
                        body,
                    };
                    real.pending.push(((i, j), txn));
                }
                Err(e) => {
                    real.results.insert((i, j), Err(e));
                }
            }
            expected.insert((i, j), want);
        }
    }
    real.flush();
    for (k, want) in &expected {
        prop_assert_eq!(
            real.results.get(k),
            Some(want),
            "step {:?} {:?}",
            k,
            steps[k.0]
        );
    }
    // The trees agree node for node.
    let real_paths: Vec<&str> = real.tree.paths().collect();
    let model_paths: Vec<&str> = model.nodes.keys().map(String::as_str).collect();
    prop_assert_eq!(real_paths, model_paths);
    for (p, n) in &model.nodes {
        let (data, stat) = real.tree.get_data(p).unwrap();
        prop_assert_eq!(stat, model.stat(p), "stat of {}", p);
        prop_assert_eq!(&data.unwrap_or_default()[..], &n.data[..]);
        prop_assert_eq!(&real.tree.get_acl(p).unwrap().0, &n.acl);
        prop_assert_eq!(real.tree.get_children(p).unwrap().0, model.children(p));
    }
    for s in SESSIONS {
        let mine: Vec<String> = model
            .nodes
            .iter()
            .filter(|(_, n)| n.owner == s)
            .map(|(p, _)| p.clone())
            .collect();
        prop_assert_eq!(real.tree.ephemerals(s), mine);
    }
    real.tree.check_invariants().map_err(TestCaseError::fail)?;
    let back = DataTree::deserialize_snapshot(&real.tree.serialize_snapshot()).unwrap();
    prop_assert_eq!(back.digest(), real.tree.digest());
    prop_assert!(back == real.tree);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn pipelined_prep_and_apply_match_the_model(steps in proptest::collection::vec(step(), 1..60)) {
        run_steps(&steps)?;
    }
}

#[test]
fn model_sanity_run() {
    // A fixed sequence that exercises pipelining, sequential names and close.
    let steps = vec![
        Step::Op {
            session: 0,
            op: GenOp::Create {
                path: PathSel::Fixed(0),
                seq_base: None,
                acl: 0,
                mode: CreateMode::Persistent,
                ttl: -1,
                data: 1,
            },
        },
        Step::Op {
            session: 0,
            op: GenOp::Create {
                path: PathSel::Fixed(0),
                seq_base: Some(0),
                acl: 0,
                mode: CreateMode::EphemeralSequential,
                ttl: -1,
                data: 1,
            },
        },
        Step::Op {
            session: 0,
            op: GenOp::Create {
                path: PathSel::Fixed(0),
                seq_base: Some(0),
                acl: 3,
                mode: CreateMode::PersistentSequential,
                ttl: -1,
                data: 2,
            },
        },
        Step::Close { session: 0 },
        Step::Op {
            session: 1,
            op: GenOp::Delete {
                path: PathSel::Fixed(0),
                version: VersionSel::Any,
            },
        },
        Step::Flush,
        Step::Op {
            session: 1,
            op: GenOp::Multi(vec![
                GenOp::Create {
                    path: PathSel::Fixed(1),
                    seq_base: None,
                    acl: 0,
                    mode: CreateMode::Container,
                    ttl: -1,
                    data: 0,
                },
                GenOp::Create {
                    path: PathSel::Fixed(4),
                    seq_base: None,
                    acl: 0,
                    mode: CreateMode::Persistent,
                    ttl: -1,
                    data: 0,
                },
            ]),
        },
    ];
    run_steps(&steps).unwrap();
}
