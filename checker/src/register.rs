//! The register-family models: `register`, `cas-register` and `kv`, split by key.

use crate::history::{Event, Op, Status};
use crate::search::{Reset, SearchOp, SeqSpec};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Interned value id; 0 is `null` (never written).
pub type ValId = u32;

/// Maps JSON values (by canonical text) to dense ids.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    ids: HashMap<String, ValId>,
    vals: Vec<Value>,
    /// Results of appends already computed: (state, appended) -> state.
    appends: HashMap<(ValId, ValId), ValId>,
}

impl Interner {
    /// A new interner with `null` as id 0.
    pub fn new() -> Self {
        let mut i = Interner::default();
        i.intern(&Value::Null);
        i
    }
    /// The id of `v`.
    pub fn intern(&mut self, v: &Value) -> ValId {
        let key = v.to_string();
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.vals.len() as ValId;
        self.ids.insert(key, id);
        self.vals.push(v.clone());
        id
    }
    /// The value of `id`.
    pub fn value(&self, id: ValId) -> &Value {
        &self.vals[id as usize]
    }
}

/// A register operation with its observed output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegOp {
    /// A read that returned the value.
    Read(ValId),
    /// A write of the value.
    Write(ValId),
    /// A compare-and-set that matched (or may have matched, if unknown).
    Cas {
        /// Expected value.
        expected: ValId,
        /// New value.
        new: ValId,
    },
    /// A compare-and-set that ran and did not match (`result:false`).
    CasMismatch(ValId),
    /// String append (`null` acts as `""`).
    Append(ValId),
}

/// The sequential register specification.
#[derive(Debug, Clone)]
pub struct RegisterSpec {
    /// Value interner (appends intern new strings).
    pub interner: Interner,
}

impl SeqSpec for RegisterSpec {
    type State = ValId;
    type Op = RegOp;
    fn init(&mut self) -> ValId {
        0
    }
    fn step(&mut self, s: &ValId, op: &RegOp) -> Option<ValId> {
        match *op {
            RegOp::Read(v) => (v == *s).then_some(*s),
            RegOp::Write(v) => Some(v),
            RegOp::Cas { expected, new } => (expected == *s).then_some(new),
            RegOp::CasMismatch(e) => (e != *s).then_some(*s),
            RegOp::Append(a) => {
                if let Some(&r) = self.interner.appends.get(&(*s, a)) {
                    return Some(r);
                }
                let cur = match self.interner.value(*s) {
                    Value::Null => "",
                    Value::String(x) => x.as_str(),
                    _ => return None,
                };
                let Value::String(add) = self.interner.value(a) else {
                    return None;
                };
                let joined = Value::String(format!("{cur}{add}"));
                let r = self.interner.intern(&joined);
                self.interner.appends.insert((*s, a), r);
                Some(r)
            }
        }
    }
    fn read_only(&self, op: &RegOp) -> bool {
        matches!(op, RegOp::Read(_) | RegOp::CasMismatch(_))
    }
    fn relax(&self, op: &RegOp) -> Option<RegOp> {
        (!self.read_only(op)).then_some(*op)
    }
    fn wanted(&self, op: &RegOp) -> Option<ValId> {
        match *op {
            RegOp::Read(v) => Some(v),
            RegOp::Cas { expected, .. } => Some(expected),
            _ => None,
        }
    }
    fn resets(&self, op: &RegOp) -> Reset<ValId> {
        match *op {
            RegOp::Write(v) => Reset::To(v),
            RegOp::Cas { new, .. } => Reset::To(new),
            _ => Reset::No,
        }
    }
    fn grows_to(&self, from: &ValId, to: &ValId) -> bool {
        if from == to {
            return true;
        }
        match (self.interner.value(*from), self.interner.value(*to)) {
            (Value::Null, Value::String(_)) => true,
            (Value::String(a), Value::String(b)) => b.starts_with(a.as_str()),
            _ => false,
        }
    }
    fn blind(&self, op: &RegOp) -> Option<ValId> {
        match *op {
            RegOp::Write(v) => Some(v),
            _ => None,
        }
    }
}

/// Which register-family model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegKind {
    /// read, write.
    Register,
    /// read, write, cas.
    CasRegister,
    /// read, write, cas, append; keyed.
    Kv,
}

/// One independent part of a register-family history.
#[derive(Debug, Clone)]
pub struct RegPart {
    /// The key (`None`: the single register).
    pub key: Option<String>,
    /// Ops of this part for the search (ids are history op indices).
    pub ops: Vec<SearchOp<RegOp>>,
    /// All op indices of this part, including ones the search does not need.
    pub all_ops: Vec<usize>,
    /// The spec with its interner.
    pub spec: RegisterSpec,
}

/// Splits a register-family history by key and translates ops. Errors name the event.
pub fn build_parts(
    kind: RegKind,
    events: &[Event],
    ops: &[Op],
) -> Result<Vec<RegPart>, (usize, String)> {
    let mut by_key: BTreeMap<Option<String>, RegPart> = BTreeMap::new();
    for op in ops {
        let inv = op.inv(events);
        let comp = op.comp(events);
        let part = by_key.entry(inv.key.clone()).or_insert_with(|| RegPart {
            key: inv.key.clone(),
            ops: Vec::new(),
            all_ops: Vec::new(),
            spec: RegisterSpec {
                interner: Interner::new(),
            },
        });
        part.all_ops.push(op.index);
        if op.status == Status::Fail {
            continue;
        }
        let it = &mut part.spec.interner;
        let ok = op.status == Status::Ok;
        let rop = match inv.f.as_str() {
            "read" => {
                if !ok {
                    continue; // an unknown read constrains nothing
                }
                RegOp::Read(it.intern(&comp.expect("ok has completion").value))
            }
            "write" => RegOp::Write(it.intern(&inv.value)),
            "cas" if kind != RegKind::Register => {
                let Some([e, n]) = inv.value.as_array().map(|a| a.as_slice()).and_then(|a| {
                    if a.len() == 2 {
                        Some([&a[0], &a[1]])
                    } else {
                        None
                    }
                }) else {
                    return Err((op.invoke, "cas value must be [expected, new]".into()));
                };
                let mismatch =
                    ok && comp.and_then(|c| c.result.as_ref()) == Some(&Value::Bool(false));
                if mismatch {
                    RegOp::CasMismatch(it.intern(e))
                } else {
                    RegOp::Cas {
                        expected: it.intern(e),
                        new: it.intern(n),
                    }
                }
            }
            "append" if kind == RegKind::Kv => {
                if !inv.value.is_string() {
                    return Err((op.invoke, "append value must be a string".into()));
                }
                RegOp::Append(it.intern(&inv.value))
            }
            f => {
                return Err((
                    op.invoke,
                    format!("operation {f:?} is not part of this model"),
                ));
            }
        };
        part.ops.push(SearchOp {
            id: op.index,
            call: op.invoke,
            ret: if ok { op.complete } else { None },
            op: rop,
        });
    }
    Ok(by_key.into_values().collect())
}

/// A cheap exact pre-check: an ok read (or matched cas) of a value that no write, cas or
/// initial state could have produced by the time it returned cannot be linearized, and is on
/// its own a minimal counterexample (every other op relaxed still never writes the value).
/// Returns the op id of the earliest such op. Parts with appends are skipped.
pub fn impossible_observation(part: &RegPart) -> Option<usize> {
    if part.ops.iter().any(|o| matches!(o.op, RegOp::Append(_))) {
        return None;
    }
    // Earliest call of an op that can produce each value.
    let mut first_writer: HashMap<ValId, usize> = HashMap::new();
    first_writer.insert(0, 0);
    for o in &part.ops {
        let v = match o.op {
            RegOp::Write(v) => v,
            RegOp::Cas { new, .. } => new,
            _ => continue,
        };
        let e = first_writer.entry(v).or_insert(o.call);
        *e = (*e).min(o.call);
    }
    part.ops
        .iter()
        .filter_map(|o| {
            let need = match o.op {
                RegOp::Read(v) => v,
                RegOp::Cas { expected, .. } if o.ret.is_some() => expected,
                _ => return None,
            };
            let ret = o.ret?;
            let possible = first_writer.get(&need).is_some_and(|&c| c < ret);
            (!possible).then_some((ret, o.id))
        })
        .min()
        .map(|(_, id)| id)
}
