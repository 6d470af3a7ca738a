//! Transactions: the replicated, deterministic form of a write.
//!
//! A [`Txn`] carries everything a replica needs to apply a write to its
//! [`DataTree`](super::tree::DataTree) and reach the same state as every
//! other replica: the zxid, the leader's clock, the session, and a body
//! whose outcome was decided when the leader prepared it.
//!
//! The encoding follows ZooKeeper's log layout: a `TxnHeader` (clientId,
//! cxid, zxid, time, type) followed by the txn record for that type
//! (`CreateTxn`, `CreateContainerTxn`, `CreateTTLTxn`, `DeleteTxn`,
//! `SetDataTxn`, `SetACLTxn`, `CheckVersionTxn`, `CreateSessionTxn`,
//! `CloseSessionTxn`, `ErrorTxn`, `MultiTxn`), all in jute.

use crate::proto::jute::{JuteError, Reader, Writer};
use crate::types::{opcode, Acl, ErrorCode, SessionId, Zxid};

/// `ephemeralOwner` of a container node (`EphemeralType.CONTAINER_EPHEMERAL_OWNER`).
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// Largest TTL in milliseconds (`EphemeralType.TTL.maxValue()`, 40 bits).
pub const TTL_MAX: i64 = 0x00ff_ffff_ffff;
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;

/// Opcode used in the encoding for a create whose owner is neither none,
/// the txn's session, a container nor a TTL (ZooKeeper never produces one;
/// kept so that every [`Txn`] round-trips).
const CREATE_WITH_OWNER: i32 = 1001;
/// How deeply `Multi` may nest in decoded input.
const MAX_MULTI_DEPTH: usize = 4;

/// The kind of node an `ephemeralOwner` value denotes (`EphemeralType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EphemeralType {
    /// A persistent node (`ephemeralOwner == 0`).
    Void,
    /// An ephemeral node owned by this session.
    Normal(SessionId),
    /// A container node.
    Container,
    /// A persistent node with this TTL in milliseconds.
    Ttl(i64),
}

impl EphemeralType {
    /// Classifies an `ephemeralOwner` value.
    pub fn of(owner: i64) -> EphemeralType {
        if owner == 0 {
            EphemeralType::Void
        } else if owner == CONTAINER_EPHEMERAL_OWNER {
            EphemeralType::Container
        } else if owner & EXTENDED_MASK == EXTENDED_MASK && owner & RESERVED_BITS_MASK == 0 {
            EphemeralType::Ttl(owner & TTL_MAX)
        } else {
            EphemeralType::Normal(owner)
        }
    }

    /// The `ephemeralOwner` value for this kind.
    pub fn owner(self) -> i64 {
        match self {
            EphemeralType::Void => 0,
            EphemeralType::Normal(s) => s,
            EphemeralType::Container => CONTAINER_EPHEMERAL_OWNER,
            EphemeralType::Ttl(ttl) => ttl_ephemeral_owner(ttl),
        }
    }
}

/// `EphemeralType.TTL.toEphemeralOwner`: `0xFF << 56 | ttl` (ttl truncated to 40 bits).
pub fn ttl_ephemeral_owner(ttl: i64) -> i64 {
    EXTENDED_MASK | (ttl & TTL_MAX)
}

/// A transaction: one write, decided by the leader, applied by every replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// The zxid the leader assigned.
    pub zxid: Zxid,
    /// The leader's wall clock when it prepared the write, ms since the epoch.
    pub time: i64,
    /// The session that issued the write (ZooKeeper's `clientId`).
    pub session: SessionId,
    /// The client's request id.
    pub cxid: i32,
    /// What the write does.
    pub body: TxnBody,
}

/// What a transaction does; every field needed to apply it deterministically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnBody {
    /// A new global session.
    CreateSession {
        /// The negotiated session timeout.
        timeout_ms: i32,
    },
    /// A session closes or expires; its ephemerals are deleted.
    CloseSession {
        /// The ephemeral nodes to delete, as the leader saw them.
        ephemerals: Vec<String>,
    },
    /// Creates a node (the final name, sequence suffix included).
    Create {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        /// 0 for persistent, the session for ephemeral,
        /// [`CONTAINER_EPHEMERAL_OWNER`], or a [`ttl_ephemeral_owner`] value.
        ephemeral_owner: i64,
        /// The parent's cversion once this create is applied.
        parent_cversion: i32,
    },
    /// Deletes a node (also used for container and TTL expiry).
    Delete { path: String },
    /// Replaces a node's data.
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        /// The node's new data version.
        version: i32,
    },
    /// Replaces a node's ACL.
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        /// The node's new ACL version.
        version: i32,
    },
    /// A version check inside a multi (changes nothing).
    Check { path: String, version: i32 },
    /// Several operations applied atomically. When any entry is an
    /// `Error`, nothing is applied.
    Multi(Vec<TxnBody>),
    /// A failed operation: applies nothing, reports `err`.
    Error { err: ErrorCode },
}

impl TxnBody {
    /// ZooKeeper's txn type for this body (the header's `type`).
    pub fn opcode(&self, session: SessionId) -> i32 {
        match self {
            TxnBody::CreateSession { .. } => opcode::CREATE_SESSION,
            TxnBody::CloseSession { .. } => opcode::CLOSE_SESSION,
            TxnBody::Create {
                ephemeral_owner, ..
            } => match EphemeralType::of(*ephemeral_owner) {
                EphemeralType::Container => opcode::CREATE_CONTAINER,
                EphemeralType::Ttl(_) => opcode::CREATE_TTL,
                EphemeralType::Void => opcode::CREATE,
                EphemeralType::Normal(s) if s == session => opcode::CREATE,
                EphemeralType::Normal(_) => CREATE_WITH_OWNER,
            },
            TxnBody::Delete { .. } => opcode::DELETE,
            TxnBody::SetData { .. } => opcode::SET_DATA,
            TxnBody::SetAcl { .. } => opcode::SET_ACL,
            TxnBody::Check { .. } => opcode::CHECK,
            TxnBody::Multi(_) => opcode::MULTI,
            TxnBody::Error { .. } => opcode::ERROR,
        }
    }

    /// Writes the txn record (without header) for this body.
    fn encode_record(&self, session: SessionId, w: &mut Writer) {
        match self {
            TxnBody::CreateSession { timeout_ms } => w.write_int(*timeout_ms),
            TxnBody::CloseSession { ephemerals } => w.write_string_vec(ephemerals),
            TxnBody::Create {
                path,
                data,
                acl,
                ephemeral_owner,
                parent_cversion,
            } => {
                w.write_string(path);
                w.write_buffer_opt(data.as_deref());
                w.write_acl_vec(acl);
                match EphemeralType::of(*ephemeral_owner) {
                    EphemeralType::Container => w.write_int(*parent_cversion),
                    EphemeralType::Ttl(ttl) => {
                        w.write_int(*parent_cversion);
                        w.write_long(ttl);
                    }
                    EphemeralType::Void => {
                        w.write_bool(false);
                        w.write_int(*parent_cversion);
                    }
                    EphemeralType::Normal(s) if s == session => {
                        w.write_bool(true);
                        w.write_int(*parent_cversion);
                    }
                    EphemeralType::Normal(s) => {
                        w.write_long(s);
                        w.write_int(*parent_cversion);
                    }
                }
            }
            TxnBody::Delete { path } => w.write_string(path),
            TxnBody::SetData {
                path,
                data,
                version,
            } => {
                w.write_string(path);
                w.write_buffer_opt(data.as_deref());
                w.write_int(*version);
            }
            TxnBody::SetAcl { path, acl, version } => {
                w.write_string(path);
                w.write_acl_vec(acl);
                w.write_int(*version);
            }
            TxnBody::Check { path, version } => {
                w.write_string(path);
                w.write_int(*version);
            }
            TxnBody::Multi(ops) => {
                w.write_int(ops.len() as i32);
                for op in ops {
                    w.write_int(op.opcode(session));
                    let mut sub = Writer::new();
                    op.encode_record(session, &mut sub);
                    w.write_buffer(sub.as_slice());
                }
            }
            TxnBody::Error { err } => w.write_int(err.code()),
        }
    }

    /// Reads the txn record of type `ty`.
    fn decode_record(
        ty: i32,
        session: SessionId,
        r: &mut Reader<'_>,
        depth: usize,
    ) -> Result<TxnBody, JuteError> {
        Ok(match ty {
            opcode::CREATE_SESSION => TxnBody::CreateSession {
                timeout_ms: r.read_int()?,
            },
            opcode::CLOSE_SESSION => TxnBody::CloseSession {
                ephemerals: r.read_string_vec()?,
            },
            opcode::CREATE | opcode::CREATE2 => {
                let (path, data, acl) = read_create_common(r)?;
                let ephemeral = r.read_bool()?;
                let parent_cversion = r.read_int()?;
                let ephemeral_owner = if ephemeral { session } else { 0 };
                TxnBody::Create {
                    path,
                    data,
                    acl,
                    ephemeral_owner,
                    parent_cversion,
                }
            }
            opcode::CREATE_CONTAINER => {
                let (path, data, acl) = read_create_common(r)?;
                let parent_cversion = r.read_int()?;
                let ephemeral_owner = CONTAINER_EPHEMERAL_OWNER;
                TxnBody::Create {
                    path,
                    data,
                    acl,
                    ephemeral_owner,
                    parent_cversion,
                }
            }
            opcode::CREATE_TTL => {
                let (path, data, acl) = read_create_common(r)?;
                let parent_cversion = r.read_int()?;
                let ttl = r.read_long()?;
                if !(0..=TTL_MAX).contains(&ttl) {
                    return Err(JuteError::Invalid(format!("ttl {ttl} out of range")));
                }
                let ephemeral_owner = ttl_ephemeral_owner(ttl);
                TxnBody::Create {
                    path,
                    data,
                    acl,
                    ephemeral_owner,
                    parent_cversion,
                }
            }
            CREATE_WITH_OWNER => {
                let (path, data, acl) = read_create_common(r)?;
                let ephemeral_owner = r.read_long()?;
                let parent_cversion = r.read_int()?;
                TxnBody::Create {
                    path,
                    data,
                    acl,
                    ephemeral_owner,
                    parent_cversion,
                }
            }
            opcode::DELETE | opcode::DELETE_CONTAINER => TxnBody::Delete {
                path: r.read_string()?,
            },
            opcode::SET_DATA => TxnBody::SetData {
                path: r.read_string()?,
                data: r.read_buffer_opt()?.map(<[u8]>::to_vec),
                version: r.read_int()?,
            },
            opcode::SET_ACL => TxnBody::SetAcl {
                path: r.read_string()?,
                acl: r.read_acl_vec()?,
                version: r.read_int()?,
            },
            opcode::CHECK => TxnBody::Check {
                path: r.read_string()?,
                version: r.read_int()?,
            },
            opcode::MULTI => {
                if depth >= MAX_MULTI_DEPTH {
                    return Err(JuteError::Invalid("multi nested too deeply".into()));
                }
                // Each entry is at least a type and a buffer length.
                let ops = r.read_vec(8, |r| {
                    let ty = r.read_int()?;
                    let data = r.read_buffer()?;
                    let mut sub = Reader::new(data);
                    let body = TxnBody::decode_record(ty, session, &mut sub, depth + 1)?;
                    expect_end(&sub)?;
                    Ok(body)
                })?;
                TxnBody::Multi(ops)
            }
            opcode::ERROR => {
                let code = r.read_int()?;
                let err = ErrorCode::from_code(code)
                    .ok_or_else(|| JuteError::Invalid(format!("unknown error code {code}")))?;
                TxnBody::Error { err }
            }
            other => return Err(JuteError::Invalid(format!("unknown txn type {other}"))),
        })
    }
}

type CreateCommon = (String, Option<Vec<u8>>, Vec<Acl>);

fn read_create_common(r: &mut Reader<'_>) -> Result<CreateCommon, JuteError> {
    Ok((
        r.read_string()?,
        r.read_buffer_opt()?.map(<[u8]>::to_vec),
        r.read_acl_vec()?,
    ))
}

fn expect_end(r: &Reader<'_>) -> Result<(), JuteError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(JuteError::Invalid(format!(
            "{} trailing bytes after txn record",
            r.remaining()
        )))
    }
}

impl Txn {
    /// Encodes as ZooKeeper's `TxnHeader` followed by the txn record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.write_long(self.session);
        w.write_int(self.cxid);
        w.write_long(self.zxid);
        w.write_long(self.time);
        w.write_int(self.body.opcode(self.session));
        self.body.encode_record(self.session, &mut w);
        w.into_inner().to_vec()
    }

    /// Decodes what [`Txn::encode`] wrote. Any malformed, truncated or
    /// trailing input is an error; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Txn, JuteError> {
        Txn::decode_as(bytes, false)
    }

    /// Decodes one txn of an Apache ZooKeeper 3.x log: [`Txn::decode`]'s layout, which
    /// may be followed by ZooKeeper's `TxnDigest` (a version and a tree digest, 12
    /// bytes), and a closeSession may have no body (before 3.6, or with
    /// `zookeeper.closeSessionTxn.enabled=false`): then its ephemerals are left empty
    /// for the caller to fill from its tree.
    pub fn decode_zookeeper(bytes: &[u8]) -> Result<Txn, JuteError> {
        Txn::decode_as(bytes, true)
    }

    fn decode_as(bytes: &[u8], zookeeper: bool) -> Result<Txn, JuteError> {
        let mut r = Reader::new(bytes);
        let session = r.read_long()?;
        let cxid = r.read_int()?;
        let zxid = r.read_long()?;
        let time = r.read_long()?;
        let ty = r.read_int()?;
        let body = if zookeeper && ty == opcode::CLOSE_SESSION && r.is_empty() {
            TxnBody::CloseSession {
                ephemerals: Vec::new(),
            }
        } else {
            TxnBody::decode_record(ty, session, &mut r, 0)?
        };
        if !(zookeeper && r.remaining() == 12) {
            expect_end(&r)?;
        }
        Ok(Txn {
            zxid,
            time,
            session,
            cxid,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{perms, Id};
    use proptest::prelude::*;

    fn sample_txns() -> Vec<Txn> {
        let acl = vec![Acl {
            perms: perms::READ,
            id: Id::new("digest", "bob:x"),
        }];
        let create = |owner: i64| TxnBody::Create {
            path: "/a".into(),
            data: Some(b"hi".to_vec()),
            acl: acl.clone(),
            ephemeral_owner: owner,
            parent_cversion: 3,
        };
        let bodies = vec![
            TxnBody::CreateSession { timeout_ms: 30_000 },
            TxnBody::CloseSession {
                ephemerals: vec!["/e1".into(), "/e2".into()],
            },
            create(0),
            create(0x55),
            create(CONTAINER_EPHEMERAL_OWNER),
            create(ttl_ephemeral_owner(1000)),
            create(0x77),
            TxnBody::Delete { path: "/a".into() },
            TxnBody::SetData {
                path: "/a".into(),
                data: Some(vec![]),
                version: 7,
            },
            // Null data (a buffer of length -1) is not empty data.
            TxnBody::SetData {
                path: "/a".into(),
                data: None,
                version: 8,
            },
            TxnBody::Create {
                path: "/null".into(),
                data: None,
                acl: acl.clone(),
                ephemeral_owner: 0,
                parent_cversion: 4,
            },
            TxnBody::SetAcl {
                path: "/a".into(),
                acl: Acl::open_unsafe(),
                version: 2,
            },
            TxnBody::Check {
                path: "/a".into(),
                version: 1,
            },
            TxnBody::Error {
                err: ErrorCode::NoNode,
            },
            TxnBody::Multi(vec![
                create(0x55),
                TxnBody::Delete { path: "/b".into() },
                TxnBody::Error { err: ErrorCode::Ok },
            ]),
            TxnBody::Multi(vec![]),
        ];
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Txn {
                zxid: 0x1_0000_0000 + i as i64,
                time: 1_700_000_000_000,
                session: 0x55,
                cxid: i as i32,
                body,
            })
            .collect()
    }

    #[test]
    fn every_kind_round_trips() {
        for t in sample_txns() {
            let b = t.encode();
            assert_eq!(Txn::decode(&b).as_ref(), Ok(&t));
            // Every strict prefix is an error, not a panic.
            for n in 0..b.len() {
                assert!(Txn::decode(&b[..n]).is_err(), "prefix {n} of {t:?}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert!(Txn::decode(&longer).is_err());
        }
    }

    #[test]
    fn zookeeper_layout_for_create() {
        let t = Txn {
            zxid: 5,
            time: 6,
            session: 7,
            cxid: 8,
            body: TxnBody::Create {
                path: "/x".into(),
                data: Some(vec![1]),
                acl: vec![],
                ephemeral_owner: 7,
                parent_cversion: 1,
            },
        };
        let b = t.encode();
        let mut expect = Vec::new();
        expect.extend_from_slice(&7i64.to_be_bytes());
        expect.extend_from_slice(&8i32.to_be_bytes());
        expect.extend_from_slice(&5i64.to_be_bytes());
        expect.extend_from_slice(&6i64.to_be_bytes());
        expect.extend_from_slice(&1i32.to_be_bytes()); // OpCode.create
        expect.extend_from_slice(&2i32.to_be_bytes());
        expect.extend_from_slice(b"/x");
        expect.extend_from_slice(&1i32.to_be_bytes());
        expect.push(1);
        expect.extend_from_slice(&0i32.to_be_bytes()); // empty acl vector
        expect.push(1); // ephemeral
        expect.extend_from_slice(&1i32.to_be_bytes());
        assert_eq!(b, expect);
    }

    #[test]
    fn ephemeral_types() {
        assert_eq!(EphemeralType::of(0), EphemeralType::Void);
        assert_eq!(EphemeralType::of(i64::MIN), EphemeralType::Container);
        assert_eq!(
            EphemeralType::of(ttl_ephemeral_owner(500)),
            EphemeralType::Ttl(500)
        );
        assert_eq!(ttl_ephemeral_owner(500) as u64, 0xff00_0000_0000_01f4);
        assert_eq!(
            EphemeralType::of(0x0100_0000_0000_0001),
            EphemeralType::Normal(0x0100_0000_0000_0001)
        );
        for t in [
            EphemeralType::Void,
            EphemeralType::Container,
            EphemeralType::Ttl(TTL_MAX),
            EphemeralType::Normal(9),
        ] {
            assert_eq!(EphemeralType::of(t.owner()), t);
        }
    }

    #[test]
    fn hostile_inputs_are_errors() {
        let mut b = sample_txns()[0].encode();
        // Unknown txn type.
        b[28..32].copy_from_slice(&999i32.to_be_bytes());
        assert!(Txn::decode(&b).is_err());
        // Deeply nested multi.
        let mut body = TxnBody::Multi(vec![]);
        for _ in 0..10 {
            body = TxnBody::Multi(vec![body]);
        }
        let t = Txn {
            zxid: 1,
            time: 1,
            session: 1,
            cxid: 1,
            body,
        };
        assert!(Txn::decode(&t.encode()).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Txn::decode(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(i in 0usize..14, pos in 0usize..200, byte in any::<u8>()) {
            let mut b = sample_txns()[i].encode();
            let p = pos % b.len();
            b[p] = byte;
            if let Ok(t) = Txn::decode(&b) {
                // Whatever decodes survives another round trip unchanged.
                prop_assert_eq!(Txn::decode(&t.encode()), Ok(t));
            }
        }
    }
}
