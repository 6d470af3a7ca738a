//! Requests as ZooKeeper's PrepRequestProcessor and FinalRequestProcessor see them: which
//! opcodes write, the tree operation of a write request (with ZooKeeper's argument
//! checks), and the reply record of an applied write.

use bytes::Bytes;

use crate::proto::client::{
    encode_reply, CreateRequest, MultiOp, MultiResult, ReplyHeader, Request, Response,
};
use crate::state::prep::WriteOp;
use crate::state::tree::OpResult;
use crate::types::{opcode, CreateMode, ErrorCode, Zxid};

/// A reply frame that carries only an error code (no response record).
pub fn error_reply(xid: i32, zxid: Zxid, err: ErrorCode) -> Bytes {
    let header = ReplyHeader {
        xid,
        zxid,
        err: err.code(),
    };
    encode_reply(&header, &Response::Empty)
}

/// The tree's write operation for a client write request, with
/// ZooKeeper's argument checks (create modes, TTLs, jute.maxbuffer). Creates with a TTL
/// mode are Unimplemented unless `extended_types` (`extendedTypesEnabled`) is on, as in
/// ZooKeeper: create and create2 here, createTTL in prep.
pub(super) fn write_op_for(
    op: i32,
    req: &Request,
    jute_max_buffer: usize,
    extended_types: bool,
) -> Result<WriteOp, ErrorCode> {
    let create = |c: &CreateRequest, mode: Option<CreateMode>, ttl: i64| match mode {
        Some(mode) => Ok(WriteOp::Create {
            path: c.path.clone(),
            data: c.data.clone(),
            acl: c.acl.clone(),
            mode,
            ttl,
        }),
        None => Err(ErrorCode::BadArguments),
    };
    let plain_mode = |flags: i32| CreateMode::from_flag(flags).filter(|m| !m.is_ttl());
    let write = match req {
        // ZooKeeper checks this before the create mode's other rules. (A createTTL with
        // a TTL mode is refused by prep, as one op of a multi is; with another mode it
        // is BadArguments either way.)
        Request::Create(c) | Request::Create2(c)
            if !extended_types && CreateMode::from_flag(c.flags).is_some_and(|m| m.is_ttl()) =>
        {
            Err(ErrorCode::Unimplemented)
        }
        Request::Create(c) | Request::Create2(c) => create(c, plain_mode(c.flags), -1),
        Request::CreateContainer(c) => create(c, Some(CreateMode::Container), -1),
        Request::CreateTtl(t) => {
            let c = CreateRequest {
                path: t.path.clone(),
                data: t.data.clone(),
                acl: t.acl.clone(),
                flags: t.flags,
            };
            create(&c, CreateMode::from_flag(t.flags), t.ttl)
        }
        Request::Delete { path, version } => Ok(WriteOp::Delete {
            path: path.clone(),
            version: *version,
        }),
        Request::SetData {
            path,
            data,
            version,
        } => Ok(WriteOp::SetData {
            path: path.clone(),
            data: data.clone(),
            version: *version,
        }),
        Request::SetAcl { path, acl, version } => Ok(WriteOp::SetAcl {
            path: path.clone(),
            acl: acl.clone(),
            version: *version,
        }),
        Request::Check { path, version } => Ok(WriteOp::Check {
            path: path.clone(),
            version: *version,
        }),
        Request::Multi(ops) => multi_to_write_ops(ops),
        _ => {
            tracing::debug!("opcode {op} is not a write");
            Err(ErrorCode::BadArguments)
        }
    }?;
    if let WriteOp::Create { data, .. } | WriteOp::SetData { data, .. } = &write {
        if data.as_ref().map_or(0, Vec::len) > jute_max_buffer {
            return Err(ErrorCode::BadArguments);
        }
    }
    Ok(write)
}

pub(super) fn multi_to_write_ops(ops: &[MultiOp]) -> Result<WriteOp, ErrorCode> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let create = |c: &CreateRequest, mode: Option<CreateMode>, ttl: i64| {
            Ok::<_, ErrorCode>(WriteOp::Create {
                path: c.path.clone(),
                data: c.data.clone(),
                acl: c.acl.clone(),
                mode: mode.ok_or(ErrorCode::BadArguments)?,
                ttl,
            })
        };
        out.push(match op {
            MultiOp::Create(c) | MultiOp::Create2(c) => create(
                c,
                CreateMode::from_flag(c.flags).filter(|m| !m.is_ttl()),
                -1,
            )?,
            MultiOp::CreateContainer(c) => create(c, Some(CreateMode::Container), -1)?,
            MultiOp::CreateTtl(t) => WriteOp::Create {
                path: t.path.clone(),
                data: t.data.clone(),
                acl: t.acl.clone(),
                mode: CreateMode::from_flag(t.flags).ok_or(ErrorCode::BadArguments)?,
                ttl: t.ttl,
            },
            MultiOp::Delete { path, version } => WriteOp::Delete {
                path: path.clone(),
                version: *version,
            },
            MultiOp::SetData {
                path,
                data,
                version,
            } => WriteOp::SetData {
                path: path.clone(),
                data: data.clone(),
                version: *version,
            },
            MultiOp::Check { path, version } => WriteOp::Check {
                path: path.clone(),
                version: *version,
            },
            // Reads belong in multiRead (22).
            MultiOp::GetData { .. } | MultiOp::GetChildren { .. } => {
                return Err(ErrorCode::BadArguments)
            }
        });
    }
    Ok(WriteOp::Multi(out))
}

/// The reply record for an applied write.
pub(super) fn write_response(op: i32, result: OpResult) -> Response {
    match result {
        OpResult::Create { path, stat, .. } => {
            if op == opcode::CREATE {
                Response::Create { path }
            } else {
                Response::Create2 { path, stat }
            }
        }
        OpResult::SetData { stat } | OpResult::SetAcl { stat } => Response::Stat { stat },
        OpResult::Multi(results) => Response::Multi(
            results
                .into_iter()
                .map(|r| match r {
                    // ZooKeeper 3.8 (the running server) answers create and create2
                    // inside a multi as a plain create (path only), and
                    // createContainer and createTTL as create2 (path and Stat).
                    Ok(OpResult::Create {
                        path,
                        stat,
                        extended: true,
                    }) => MultiResult::Create2 { path, stat },
                    Ok(OpResult::Create { path, .. }) => MultiResult::Create { path },
                    Ok(OpResult::Delete) => MultiResult::Delete,
                    Ok(OpResult::SetData { stat }) => MultiResult::SetData { stat },
                    Ok(OpResult::Check) => MultiResult::Check,
                    Ok(_) => MultiResult::Error {
                        err: ErrorCode::RuntimeInconsistency.code(),
                    },
                    Err(e) => MultiResult::Error { err: e.code() },
                })
                .collect(),
        ),
        _ => Response::Empty,
    }
}

/// ZooKeeper's short names for the `cons` listing.
pub(super) fn op_name(op: i32) -> &'static str {
    match op {
        opcode::CREATE | opcode::CREATE2 | opcode::CREATE_CONTAINER | opcode::CREATE_TTL => "CREA",
        opcode::DELETE => "DELE",
        opcode::EXISTS => "EXIS",
        opcode::GET_DATA => "GETD",
        opcode::SET_DATA => "SETD",
        opcode::GET_ACL => "GETA",
        opcode::SET_ACL => "SETA",
        opcode::GET_CHILDREN => "GETC",
        opcode::GET_CHILDREN2 => "GETC",
        opcode::SYNC => "SYNC",
        opcode::PING => "PING",
        opcode::MULTI => "MULT",
        opcode::MULTI_READ => "MLTR",
        opcode::SET_WATCHES | opcode::SET_WATCHES2 => "SETW",
        opcode::ADD_WATCH => "ADDW",
        opcode::CLOSE_SESSION => "CLOS",
        _ => "NA",
    }
}

/// Reads that `quorumReads` makes linearizable (each one waits for a sync
/// that a quorum confirmed).
pub fn is_quorum_read(op: i32) -> bool {
    matches!(
        op,
        opcode::EXISTS
            | opcode::GET_DATA
            | opcode::GET_CHILDREN
            | opcode::GET_CHILDREN2
            | opcode::GET_ACL
            | opcode::MULTI_READ
            | opcode::GET_ALL_CHILDREN_NUMBER
    )
}

/// Whether a client opcode is a write that goes through ZAB.
pub fn is_write(op: i32) -> bool {
    matches!(
        op,
        opcode::CREATE
            | opcode::CREATE2
            | opcode::CREATE_CONTAINER
            | opcode::CREATE_TTL
            | opcode::DELETE
            | opcode::SET_DATA
            | opcode::SET_ACL
            | opcode::CHECK
            | opcode::MULTI
            | opcode::CLOSE_SESSION
    )
}
