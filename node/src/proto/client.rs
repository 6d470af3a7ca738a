//! ZooKeeper 3.8's client protocol, byte for byte (`zookeeper.jute`).
//!
//! A client connection carries length-prefixed frames ([`decode_frame`],
//! [`encode_frame`]). The first frame from the client is a
//! [`ConnectRequest`], answered by a [`ConnectResponse`]; after that every
//! client frame is a [`RequestHeader`] followed by the request record
//! ([`decode_request`], [`Request::encode`]) and every server frame is a
//! [`ReplyHeader`] followed by the reply record ([`encode_reply`],
//! [`decode_reply`], [`decode_response`]) or, for watch notifications, a
//! [`WatcherEvent`] ([`encode_event`]).
//!
//! Functions named `encode*` that produce a whole message return it *framed*
//! (length prefix included), ready to be written to the socket. Functions
//! named `decode*` take one frame's payload (length prefix already removed by
//! [`decode_frame`]). Like ZooKeeper's jute deserializers, decoders ignore
//! trailing bytes after a record.
//!
//! Decoding never panics: malformed input is a [`JuteError`] or a
//! [`FrameError`].
//!
//! Facts checked against a real ZooKeeper 3.8.0 server with kazoo 2.11 and
//! the 3.8.0 Java client (the captured frames are in
//! `client/testdata/zk380_traffic.txt` and re-encode byte for byte):
//! - an error reply is the reply header alone (`err` != 0, no body);
//! - a failed multi still has `err` 0 in its header, and one
//!   [`MultiResult::Error`] per op: 0 for the ops before the failing one, its
//!   code for the failing op, `RuntimeInconsistency` (-2) for the ops after;
//! - a create2 op inside a multi is answered as a plain create
//!   ([`MultiResult::Create`], no stat);
//! - addWatch's reply body is `ErrorResponse { err: 0 }`
//!   ([`Response::ErrorResponse`]);
//! - watch notifications carry zxid -1 in their reply header;
//! - the 3.8 Java client sends setWatches/setWatches2 with an ordinary xid
//!   (not -8), so a server must answer with the request's own xid;
//! - the Java client sends a null data buffer (length -1) for a create
//!   without data; this codec reads null buffers as empty.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::proto::jute::{JuteError, Reader, Writer};
use crate::types::{opcode, xid, Acl, Stat};

/// ZooKeeper's default `jute.maxbuffer` (0xfffff bytes), the largest frame
/// payload a server accepts by default.
pub const DEFAULT_MAX_FRAME_LEN: usize = 0xfffff;

/// Why a frame's length prefix was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is negative.
    #[error("negative frame length {0}")]
    Negative(i32),
    /// The length prefix exceeds the configured maximum.
    #[error("frame length {len} exceeds the maximum {max}")]
    TooLarge {
        /// The announced payload length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// Takes one whole frame off the front of `buf`.
///
/// A frame is a 4-byte big-endian payload length followed by the payload.
/// Returns `Ok(None)` until the whole frame is buffered (nothing is consumed
/// then), and the payload (without its length prefix) once it is. A negative
/// length or one above `max_len` is an error; the caller should then close
/// the connection, as ZooKeeper does.
pub fn decode_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 {
        return Err(FrameError::Negative(len));
    }
    let len = len as usize;
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Prefixes `payload` with its 4-byte big-endian length.
pub fn encode_frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + payload.len());
    b.put_i32(payload.len() as i32);
    b.put_slice(payload);
    b.freeze()
}

/// Frames the bytes written so far into `w`, whose first 4 bytes were
/// reserved as a placeholder for the length.
fn finish_frame(w: Writer) -> Bytes {
    let mut b = w.into_inner();
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

/// A writer whose first 4 bytes are a placeholder for the frame length.
fn frame_writer() -> Writer {
    let mut w = Writer::with_capacity(64);
    w.write_int(0);
    w
}

/// The four-letter-word admin commands ZooKeeper 3.8 recognises.
const FOUR_LETTER_WORDS: [&str; 17] = [
    "ruok", "srvr", "stat", "mntr", "conf", "cons", "crst", "srst", "envi", "wchs", "wchc", "wchp",
    "dump", "isro", "dirs", "gtmk", "stmk",
];

/// Recognises a four-letter-word command in the first 4 bytes of a
/// connection.
///
/// ZooKeeper reads those bytes as the first frame's length; if they spell a
/// known command it answers the command and closes the connection instead.
pub fn four_letter_word(first4: &[u8; 4]) -> Option<&'static str> {
    FOUR_LETTER_WORDS
        .iter()
        .copied()
        .find(|w| w.as_bytes() == first4)
}

/// The first frame a client sends (`ConnectRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Always 0 in ZooKeeper 3.x.
    pub protocol_version: i32,
    /// The highest zxid the client has seen; a server behind it refuses the
    /// connection.
    pub last_zxid_seen: i64,
    /// Requested session timeout in milliseconds.
    pub timeout: i32,
    /// 0 for a new session, else the session being resumed.
    pub session_id: i64,
    /// The session password (16 bytes), empty or zeros for a new session.
    pub passwd: Vec<u8>,
    /// Whether the client accepts a read-only server.
    pub read_only: bool,
    /// Whether the trailing `readOnly` byte was on the wire. Clients older
    /// than ZooKeeper 3.4 omit it and must get a [`ConnectResponse`] without
    /// it too.
    pub read_only_present: bool,
}

impl ConnectRequest {
    /// Decodes a connect request from a frame's payload. The trailing
    /// `readOnly` byte is optional.
    pub fn decode(payload: &[u8]) -> Result<ConnectRequest, JuteError> {
        let mut r = Reader::new(payload);
        let protocol_version = r.read_int()?;
        let last_zxid_seen = r.read_long()?;
        let timeout = r.read_int()?;
        let session_id = r.read_long()?;
        let passwd = r.read_buffer()?.to_vec();
        let (read_only, read_only_present) = if r.is_empty() {
            (false, false)
        } else {
            (r.read_bool()?, true)
        };
        Ok(ConnectRequest {
            protocol_version,
            last_zxid_seen,
            timeout,
            session_id,
            passwd,
            read_only,
            read_only_present,
        })
    }

    /// Writes the record (unframed). The `readOnly` byte is written only if
    /// `read_only_present` is set.
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.protocol_version);
        w.write_long(self.last_zxid_seen);
        w.write_int(self.timeout);
        w.write_long(self.session_id);
        w.write_buffer(&self.passwd);
        if self.read_only_present {
            w.write_bool(self.read_only);
        }
    }

    /// The framed request, ready to send.
    pub fn encode(&self) -> Bytes {
        let mut w = frame_writer();
        self.write(&mut w);
        finish_frame(w)
    }
}

/// The server's answer to a [`ConnectRequest`] (`ConnectResponse`).
///
/// A `timeout` of 0 (with session id 0) tells the client its session is
/// expired or invalid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Always 0 in ZooKeeper 3.x.
    pub protocol_version: i32,
    /// Negotiated session timeout in milliseconds; 0 means refused.
    pub timeout: i32,
    /// The session id.
    pub session_id: i64,
    /// The session password.
    pub passwd: Vec<u8>,
    /// Whether the server is read-only.
    pub read_only: bool,
    /// Whether the trailing `readOnly` byte is (or was) on the wire; set it
    /// from the request's [`ConnectRequest::read_only_present`].
    pub read_only_present: bool,
}

impl ConnectResponse {
    /// Decodes a connect response from a frame's payload. The trailing
    /// `readOnly` byte is optional.
    pub fn decode(payload: &[u8]) -> Result<ConnectResponse, JuteError> {
        let mut r = Reader::new(payload);
        let protocol_version = r.read_int()?;
        let timeout = r.read_int()?;
        let session_id = r.read_long()?;
        let passwd = r.read_buffer()?.to_vec();
        let (read_only, read_only_present) = if r.is_empty() {
            (false, false)
        } else {
            (r.read_bool()?, true)
        };
        Ok(ConnectResponse {
            protocol_version,
            timeout,
            session_id,
            passwd,
            read_only,
            read_only_present,
        })
    }

    /// Writes the record (unframed). The `readOnly` byte is written only if
    /// `read_only_present` is set.
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.protocol_version);
        w.write_int(self.timeout);
        w.write_long(self.session_id);
        w.write_buffer(&self.passwd);
        if self.read_only_present {
            w.write_bool(self.read_only);
        }
    }

    /// The framed response, ready to send.
    pub fn encode(&self) -> Bytes {
        let mut w = frame_writer();
        self.write(&mut w);
        finish_frame(w)
    }
}

/// Precedes every request after the handshake (`RequestHeader`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestHeader {
    /// The client's request id, echoed in the reply ([`xid`] for special ones).
    pub xid: i32,
    /// The request's [`opcode`] (jute field `type`).
    pub opcode: i32,
}

impl RequestHeader {
    /// Reads the header.
    pub fn read(r: &mut Reader<'_>) -> Result<RequestHeader, JuteError> {
        Ok(RequestHeader {
            xid: r.read_int()?,
            opcode: r.read_int()?,
        })
    }

    /// Writes the header.
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.xid);
        w.write_int(self.opcode);
    }
}

/// Precedes every server frame after the handshake (`ReplyHeader`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The request's xid, or [`xid::NOTIFICATION`] for a watch event.
    pub xid: i32,
    /// The zxid the server had reached when it answered.
    pub zxid: i64,
    /// 0, or an [`crate::types::ErrorCode`] value.
    pub err: i32,
}

impl ReplyHeader {
    /// Reads the header.
    pub fn read(r: &mut Reader<'_>) -> Result<ReplyHeader, JuteError> {
        Ok(ReplyHeader {
            xid: r.read_int()?,
            zxid: r.read_long()?,
            err: r.read_int()?,
        })
    }

    /// Writes the header.
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.xid);
        w.write_long(self.zxid);
        w.write_int(self.err);
    }
}

/// A watch notification (`WatcherEvent`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatcherEvent {
    /// An [`crate::types::EventType`] code.
    pub event_type: i32,
    /// A [`crate::types::keeper_state`] value.
    pub state: i32,
    /// The znode path (as the client named it, i.e. without chroot).
    pub path: String,
}

impl WatcherEvent {
    /// Reads the event record.
    pub fn read(r: &mut Reader<'_>) -> Result<WatcherEvent, JuteError> {
        Ok(WatcherEvent {
            event_type: r.read_int()?,
            state: r.read_int()?,
            path: r.read_string()?,
        })
    }

    /// Writes the event record.
    pub fn write(&self, w: &mut Writer) {
        w.write_int(self.event_type);
        w.write_int(self.state);
        w.write_string(&self.path);
    }
}

/// `CreateRequest`: the record of create (1), create2 (15) and
/// createContainer (19).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateRequest {
    /// The path to create (for sequential modes, the prefix).
    pub path: String,
    /// The initial data (`None`: a null buffer, which reads back as null).
    pub data: Option<Vec<u8>>,
    /// The node's ACL.
    pub acl: Vec<Acl>,
    /// A [`crate::types::CreateMode`] flag.
    pub flags: i32,
}

impl CreateRequest {
    fn read(r: &mut Reader<'_>) -> Result<CreateRequest, JuteError> {
        Ok(CreateRequest {
            path: r.read_string()?,
            data: r.read_buffer_opt()?.map(<[u8]>::to_vec),
            acl: r.read_acl_vec()?,
            flags: r.read_int()?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.write_string(&self.path);
        w.write_buffer_opt(self.data.as_deref());
        w.write_acl_vec(&self.acl);
        w.write_int(self.flags);
    }
}

/// `CreateTTLRequest`: the record of createTTL (21).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateTtlRequest {
    /// The path to create.
    pub path: String,
    /// The initial data.
    pub data: Option<Vec<u8>>,
    /// The node's ACL.
    pub acl: Vec<Acl>,
    /// A [`crate::types::CreateMode`] flag (5 or 6 for TTL modes).
    pub flags: i32,
    /// Time to live in milliseconds.
    pub ttl: i64,
}

impl CreateTtlRequest {
    fn read(r: &mut Reader<'_>) -> Result<CreateTtlRequest, JuteError> {
        Ok(CreateTtlRequest {
            path: r.read_string()?,
            data: r.read_buffer_opt()?.map(<[u8]>::to_vec),
            acl: r.read_acl_vec()?,
            flags: r.read_int()?,
            ttl: r.read_long()?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.write_string(&self.path);
        w.write_buffer_opt(self.data.as_deref());
        w.write_acl_vec(&self.acl);
        w.write_int(self.flags);
        w.write_long(self.ttl);
    }
}

/// One operation inside a multi (14) or multiRead (22) request, as
/// `MultiOperationRecord` frames it. ZooKeeper's decoder accepts the same op
/// types in both; which are allowed where is the server's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create (1).
    Create(CreateRequest),
    /// create2 (15).
    Create2(CreateRequest),
    /// createContainer (19).
    CreateContainer(CreateRequest),
    /// createTTL (21).
    CreateTtl(CreateTtlRequest),
    /// delete (2).
    Delete { path: String, version: i32 },
    /// setData (5).
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    /// check (13).
    Check { path: String, version: i32 },
    /// getChildren (8), in multiRead.
    GetChildren { path: String, watch: bool },
    /// getData (4), in multiRead.
    GetData { path: String, watch: bool },
}

impl MultiOp {
    /// The op's opcode, as written in its `MultiHeader`.
    pub fn opcode(&self) -> i32 {
        match self {
            MultiOp::Create(_) => opcode::CREATE,
            MultiOp::Create2(_) => opcode::CREATE2,
            MultiOp::CreateContainer(_) => opcode::CREATE_CONTAINER,
            MultiOp::CreateTtl(_) => opcode::CREATE_TTL,
            MultiOp::Delete { .. } => opcode::DELETE,
            MultiOp::SetData { .. } => opcode::SET_DATA,
            MultiOp::Check { .. } => opcode::CHECK,
            MultiOp::GetChildren { .. } => opcode::GET_CHILDREN,
            MultiOp::GetData { .. } => opcode::GET_DATA,
        }
    }

    /// The path the op acts on.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(c) | MultiOp::Create2(c) | MultiOp::CreateContainer(c) => &c.path,
            MultiOp::CreateTtl(c) => &c.path,
            MultiOp::Delete { path, .. }
            | MultiOp::SetData { path, .. }
            | MultiOp::Check { path, .. }
            | MultiOp::GetChildren { path, .. }
            | MultiOp::GetData { path, .. } => path,
        }
    }

    fn read(op: i32, r: &mut Reader<'_>) -> Result<MultiOp, JuteError> {
        Ok(match op {
            opcode::CREATE => MultiOp::Create(CreateRequest::read(r)?),
            opcode::CREATE2 => MultiOp::Create2(CreateRequest::read(r)?),
            opcode::CREATE_CONTAINER => MultiOp::CreateContainer(CreateRequest::read(r)?),
            opcode::CREATE_TTL => MultiOp::CreateTtl(CreateTtlRequest::read(r)?),
            opcode::DELETE => MultiOp::Delete {
                path: r.read_string()?,
                version: r.read_int()?,
            },
            opcode::SET_DATA => MultiOp::SetData {
                path: r.read_string()?,
                data: r.read_buffer_opt()?.map(<[u8]>::to_vec),
                version: r.read_int()?,
            },
            opcode::CHECK => MultiOp::Check {
                path: r.read_string()?,
                version: r.read_int()?,
            },
            opcode::GET_CHILDREN => MultiOp::GetChildren {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            opcode::GET_DATA => MultiOp::GetData {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            other => {
                return Err(JuteError::Invalid(format!(
                    "invalid op type {other} in multi"
                )))
            }
        })
    }

    fn write(&self, w: &mut Writer) {
        match self {
            MultiOp::Create(c) | MultiOp::Create2(c) | MultiOp::CreateContainer(c) => c.write(w),
            MultiOp::CreateTtl(c) => c.write(w),
            MultiOp::Delete { path, version } | MultiOp::Check { path, version } => {
                w.write_string(path);
                w.write_int(*version);
            }
            MultiOp::SetData {
                path,
                data,
                version,
            } => {
                w.write_string(path);
                w.write_buffer_opt(data.as_deref());
                w.write_int(*version);
            }
            MultiOp::GetChildren { path, watch } | MultiOp::GetData { path, watch } => {
                w.write_string(path);
                w.write_bool(*watch);
            }
        }
    }
}

/// The `MultiHeader` that ends a multi request or response.
const MULTI_END: MultiHeader = MultiHeader {
    op: -1,
    done: true,
    err: -1,
};

/// `MultiHeader { type, done, err }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MultiHeader {
    op: i32,
    done: bool,
    err: i32,
}

impl MultiHeader {
    fn read(r: &mut Reader<'_>) -> Result<MultiHeader, JuteError> {
        Ok(MultiHeader {
            op: r.read_int()?,
            done: r.read_bool()?,
            err: r.read_int()?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.write_int(self.op);
        w.write_bool(self.done);
        w.write_int(self.err);
    }
}

fn read_multi_ops(r: &mut Reader<'_>) -> Result<Vec<MultiOp>, JuteError> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(ops);
        }
        ops.push(MultiOp::read(h.op, r)?);
    }
}

fn write_multi_ops(ops: &[MultiOp], w: &mut Writer) {
    for op in ops {
        MultiHeader {
            op: op.opcode(),
            done: false,
            err: -1,
        }
        .write(w);
        op.write(w);
    }
    MULTI_END.write(w);
}

/// A client request after the handshake, one variant per ZooKeeper 3.8
/// client opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create (1): answered with [`Response::Create`].
    Create(CreateRequest),
    /// create2 (15): answered with [`Response::Create2`].
    Create2(CreateRequest),
    /// createContainer (19): answered with [`Response::Create2`].
    CreateContainer(CreateRequest),
    /// createTTL (21): answered with [`Response::Create2`].
    CreateTtl(CreateTtlRequest),
    /// delete (2).
    Delete { path: String, version: i32 },
    /// exists (3).
    Exists { path: String, watch: bool },
    /// getData (4).
    GetData { path: String, watch: bool },
    /// setData (5).
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    /// getACL (6).
    GetAcl { path: String },
    /// setACL (7).
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// getChildren (8).
    GetChildren { path: String, watch: bool },
    /// sync (9).
    Sync { path: String },
    /// ping (11), sent with xid [`xid::PING`].
    Ping,
    /// getChildren2 (12).
    GetChildren2 { path: String, watch: bool },
    /// check (13).
    Check { path: String, version: i32 },
    /// multi (14).
    Multi(Vec<MultiOp>),
    /// reconfig (16): decoded so a server without dynamic reconfiguration
    /// can answer it with a clean error.
    Reconfig {
        joining_servers: String,
        leaving_servers: String,
        new_members: String,
        cur_config_id: i64,
    },
    /// checkWatches (17).
    CheckWatches { path: String, watcher_type: i32 },
    /// removeWatches (18).
    RemoveWatches { path: String, watcher_type: i32 },
    /// multiRead (22).
    MultiRead(Vec<MultiOp>),
    /// auth (100), `AuthPacket`, sent with xid [`xid::AUTH`].
    Auth {
        auth_type: i32,
        scheme: String,
        auth: Vec<u8>,
    },
    /// setWatches (101), sent with xid [`xid::SET_WATCHES`].
    SetWatches {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
    },
    /// sasl (102), `GetSASLRequest`.
    Sasl { token: Vec<u8> },
    /// getEphemerals (103).
    GetEphemerals { prefix_path: String },
    /// getAllChildrenNumber (104).
    GetAllChildrenNumber { path: String },
    /// setWatches2 (105), sent with xid [`xid::SET_WATCHES`].
    SetWatches2 {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        persistent_recursive: Vec<String>,
    },
    /// addWatch (106), with a [`crate::types::watch_mode`]. Answered with
    /// [`Response::ErrorResponse`] `{ err: 0 }`: ZooKeeper 3.8 sends that
    /// body and the Java client fails to read a reply without it.
    AddWatch { path: String, mode: i32 },
    /// whoAmI (107).
    WhoAmI,
    /// closeSession (-11).
    CloseSession,
    /// An opcode this codec does not know. The header was valid, so the
    /// server can still answer the xid (ZooKeeper answers `Unimplemented`).
    Unknown { opcode: i32 },
}

impl Request {
    /// The request's opcode.
    pub fn opcode(&self) -> i32 {
        match self {
            Request::Create(_) => opcode::CREATE,
            Request::Create2(_) => opcode::CREATE2,
            Request::CreateContainer(_) => opcode::CREATE_CONTAINER,
            Request::CreateTtl(_) => opcode::CREATE_TTL,
            Request::Delete { .. } => opcode::DELETE,
            Request::Exists { .. } => opcode::EXISTS,
            Request::GetData { .. } => opcode::GET_DATA,
            Request::SetData { .. } => opcode::SET_DATA,
            Request::GetAcl { .. } => opcode::GET_ACL,
            Request::SetAcl { .. } => opcode::SET_ACL,
            Request::GetChildren { .. } => opcode::GET_CHILDREN,
            Request::Sync { .. } => opcode::SYNC,
            Request::Ping => opcode::PING,
            Request::GetChildren2 { .. } => opcode::GET_CHILDREN2,
            Request::Check { .. } => opcode::CHECK,
            Request::Multi(_) => opcode::MULTI,
            Request::Reconfig { .. } => opcode::RECONFIG,
            Request::CheckWatches { .. } => opcode::CHECK_WATCHES,
            Request::RemoveWatches { .. } => opcode::REMOVE_WATCHES,
            Request::MultiRead(_) => opcode::MULTI_READ,
            Request::Auth { .. } => opcode::AUTH,
            Request::SetWatches { .. } => opcode::SET_WATCHES,
            Request::Sasl { .. } => opcode::SASL,
            Request::GetEphemerals { .. } => opcode::GET_EPHEMERALS,
            Request::GetAllChildrenNumber { .. } => opcode::GET_ALL_CHILDREN_NUMBER,
            Request::SetWatches2 { .. } => opcode::SET_WATCHES2,
            Request::AddWatch { .. } => opcode::ADD_WATCH,
            Request::WhoAmI => opcode::WHO_AM_I,
            Request::CloseSession => opcode::CLOSE_SESSION,
            Request::Unknown { opcode } => *opcode,
        }
    }

    /// The framed request (header with `xid`, then the record), ready to
    /// send.
    pub fn encode(&self, xid: i32) -> Bytes {
        let mut w = frame_writer();
        RequestHeader {
            xid,
            opcode: self.opcode(),
        }
        .write(&mut w);
        self.write_body(&mut w);
        finish_frame(w)
    }

    /// Writes the request record alone (no header, no frame).
    pub fn write_body(&self, w: &mut Writer) {
        match self {
            Request::Create(c) | Request::Create2(c) | Request::CreateContainer(c) => c.write(w),
            Request::CreateTtl(c) => c.write(w),
            Request::Delete { path, version } | Request::Check { path, version } => {
                w.write_string(path);
                w.write_int(*version);
            }
            Request::Exists { path, watch }
            | Request::GetData { path, watch }
            | Request::GetChildren { path, watch }
            | Request::GetChildren2 { path, watch } => {
                w.write_string(path);
                w.write_bool(*watch);
            }
            Request::SetData {
                path,
                data,
                version,
            } => {
                w.write_string(path);
                w.write_buffer_opt(data.as_deref());
                w.write_int(*version);
            }
            Request::GetAcl { path }
            | Request::Sync { path }
            | Request::GetAllChildrenNumber { path }
            | Request::GetEphemerals { prefix_path: path } => w.write_string(path),
            Request::SetAcl { path, acl, version } => {
                w.write_string(path);
                w.write_acl_vec(acl);
                w.write_int(*version);
            }
            Request::Ping | Request::WhoAmI | Request::CloseSession | Request::Unknown { .. } => {}
            Request::Multi(ops) | Request::MultiRead(ops) => write_multi_ops(ops, w),
            Request::Reconfig {
                joining_servers,
                leaving_servers,
                new_members,
                cur_config_id,
            } => {
                w.write_string(joining_servers);
                w.write_string(leaving_servers);
                w.write_string(new_members);
                w.write_long(*cur_config_id);
            }
            Request::CheckWatches { path, watcher_type }
            | Request::RemoveWatches { path, watcher_type } => {
                w.write_string(path);
                w.write_int(*watcher_type);
            }
            Request::Auth {
                auth_type,
                scheme,
                auth,
            } => {
                w.write_int(*auth_type);
                w.write_string(scheme);
                w.write_buffer(auth);
            }
            Request::SetWatches {
                relative_zxid,
                data,
                exist,
                child,
            } => {
                w.write_long(*relative_zxid);
                w.write_string_vec(data);
                w.write_string_vec(exist);
                w.write_string_vec(child);
            }
            Request::SetWatches2 {
                relative_zxid,
                data,
                exist,
                child,
                persistent,
                persistent_recursive,
            } => {
                w.write_long(*relative_zxid);
                w.write_string_vec(data);
                w.write_string_vec(exist);
                w.write_string_vec(child);
                w.write_string_vec(persistent);
                w.write_string_vec(persistent_recursive);
            }
            Request::Sasl { token } => w.write_buffer(token),
            Request::AddWatch { path, mode } => {
                w.write_string(path);
                w.write_int(*mode);
            }
        }
    }

    /// Reads the record of a request with opcode `op`.
    pub fn read_body(op: i32, r: &mut Reader<'_>) -> Result<Request, JuteError> {
        Ok(match op {
            opcode::CREATE => Request::Create(CreateRequest::read(r)?),
            opcode::CREATE2 => Request::Create2(CreateRequest::read(r)?),
            opcode::CREATE_CONTAINER => Request::CreateContainer(CreateRequest::read(r)?),
            opcode::CREATE_TTL => Request::CreateTtl(CreateTtlRequest::read(r)?),
            opcode::DELETE => Request::Delete {
                path: r.read_string()?,
                version: r.read_int()?,
            },
            opcode::EXISTS => Request::Exists {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            opcode::GET_DATA => Request::GetData {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            opcode::SET_DATA => Request::SetData {
                path: r.read_string()?,
                data: r.read_buffer_opt()?.map(<[u8]>::to_vec),
                version: r.read_int()?,
            },
            opcode::GET_ACL => Request::GetAcl {
                path: r.read_string()?,
            },
            opcode::SET_ACL => Request::SetAcl {
                path: r.read_string()?,
                acl: r.read_acl_vec()?,
                version: r.read_int()?,
            },
            opcode::GET_CHILDREN => Request::GetChildren {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            opcode::SYNC => Request::Sync {
                path: r.read_string()?,
            },
            opcode::PING => Request::Ping,
            opcode::GET_CHILDREN2 => Request::GetChildren2 {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            opcode::CHECK => Request::Check {
                path: r.read_string()?,
                version: r.read_int()?,
            },
            opcode::MULTI => Request::Multi(read_multi_ops(r)?),
            opcode::RECONFIG => Request::Reconfig {
                joining_servers: r.read_string()?,
                leaving_servers: r.read_string()?,
                new_members: r.read_string()?,
                cur_config_id: r.read_long()?,
            },
            opcode::CHECK_WATCHES => Request::CheckWatches {
                path: r.read_string()?,
                watcher_type: r.read_int()?,
            },
            opcode::REMOVE_WATCHES => Request::RemoveWatches {
                path: r.read_string()?,
                watcher_type: r.read_int()?,
            },
            opcode::MULTI_READ => Request::MultiRead(read_multi_ops(r)?),
            opcode::AUTH => Request::Auth {
                auth_type: r.read_int()?,
                scheme: r.read_string()?,
                auth: r.read_buffer()?.to_vec(),
            },
            opcode::SET_WATCHES => Request::SetWatches {
                relative_zxid: r.read_long()?,
                data: r.read_string_vec()?,
                exist: r.read_string_vec()?,
                child: r.read_string_vec()?,
            },
            opcode::SASL => Request::Sasl {
                token: r.read_buffer()?.to_vec(),
            },
            opcode::GET_EPHEMERALS => Request::GetEphemerals {
                prefix_path: r.read_string()?,
            },
            opcode::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber {
                path: r.read_string()?,
            },
            opcode::SET_WATCHES2 => Request::SetWatches2 {
                relative_zxid: r.read_long()?,
                data: r.read_string_vec()?,
                exist: r.read_string_vec()?,
                child: r.read_string_vec()?,
                persistent: r.read_string_vec()?,
                persistent_recursive: r.read_string_vec()?,
            },
            opcode::ADD_WATCH => Request::AddWatch {
                path: r.read_string()?,
                mode: r.read_int()?,
            },
            opcode::WHO_AM_I => Request::WhoAmI,
            opcode::CLOSE_SESSION => Request::CloseSession,
            other => Request::Unknown { opcode: other },
        })
    }
}

/// Decodes one request frame's payload: the header, then the record its
/// opcode calls for. Unknown opcodes decode as [`Request::Unknown`].
pub fn decode_request(frame: &[u8]) -> Result<(RequestHeader, Request), JuteError> {
    let mut r = Reader::new(frame);
    let header = RequestHeader::read(&mut r)?;
    let request = Request::read_body(header.opcode, &mut r)?;
    Ok((header, request))
}

/// `ClientInfo`: one identity in a whoAmI reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientInfo {
    /// The auth scheme, e.g. `ip`, `digest`.
    pub auth_scheme: String,
    /// The user within that scheme.
    pub user: String,
}

/// One result inside a multi (14) or multiRead (22) reply (Java's
/// `OpResult`), as `MultiResponse` frames it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// A create op's result in `CreateResponse` form (header type create).
    /// ZooKeeper 3.8 answers create *and create2* ops inside a multi this
    /// way: `MultiOperationRecord` decodes a create2 op as a plain create
    /// (checked against a real 3.8.0 server).
    Create { path: String },
    /// A create op's result in `Create2Response` form (header type create2):
    /// ZooKeeper 3.8 uses it for createTTL and createContainer ops in a
    /// multi.
    Create2 { path: String, stat: Stat },
    /// A delete op succeeded.
    Delete,
    /// A setData op's result.
    SetData { stat: Stat },
    /// A check op succeeded.
    Check,
    /// A getData op's result (multiRead).
    GetData { data: Option<Vec<u8>>, stat: Stat },
    /// A getChildren op's result (multiRead).
    GetChildren { children: Vec<String> },
    /// The op failed with this error code, or (`err` 0) was rolled back
    /// because another op of the multi failed.
    Error { err: i32 },
}

impl MultiResult {
    fn header(&self) -> MultiHeader {
        let (op, err) = match self {
            MultiResult::Create { .. } => (opcode::CREATE, 0),
            MultiResult::Create2 { .. } => (opcode::CREATE2, 0),
            MultiResult::Delete => (opcode::DELETE, 0),
            MultiResult::SetData { .. } => (opcode::SET_DATA, 0),
            MultiResult::Check => (opcode::CHECK, 0),
            MultiResult::GetData { .. } => (opcode::GET_DATA, 0),
            MultiResult::GetChildren { .. } => (opcode::GET_CHILDREN, 0),
            MultiResult::Error { err } => (opcode::ERROR, *err),
        };
        MultiHeader {
            op,
            done: false,
            err,
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            MultiResult::Create { path } => w.write_string(path),
            MultiResult::Create2 { path, stat } => {
                w.write_string(path);
                w.write_stat(stat);
            }
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::SetData { stat } => w.write_stat(stat),
            MultiResult::GetData { data, stat } => {
                w.write_buffer_opt(data.as_deref());
                w.write_stat(stat);
            }
            MultiResult::GetChildren { children } => w.write_string_vec(children),
            MultiResult::Error { err } => w.write_int(*err),
        }
    }

    fn read(op: i32, r: &mut Reader<'_>) -> Result<MultiResult, JuteError> {
        Ok(match op {
            opcode::CREATE => MultiResult::Create {
                path: r.read_string()?,
            },
            opcode::CREATE2 => MultiResult::Create2 {
                path: r.read_string()?,
                stat: r.read_stat()?,
            },
            opcode::DELETE => MultiResult::Delete,
            opcode::SET_DATA => MultiResult::SetData {
                stat: r.read_stat()?,
            },
            opcode::CHECK => MultiResult::Check,
            opcode::GET_DATA => MultiResult::GetData {
                data: r.read_buffer_opt()?.map(<[u8]>::to_vec),
                stat: r.read_stat()?,
            },
            opcode::GET_CHILDREN => MultiResult::GetChildren {
                children: r.read_string_vec()?,
            },
            opcode::ERROR => MultiResult::Error { err: r.read_int()? },
            other => {
                return Err(JuteError::Invalid(format!(
                    "invalid type {other} in multi response"
                )))
            }
        })
    }
}

fn read_multi_results(r: &mut Reader<'_>) -> Result<Vec<MultiResult>, JuteError> {
    let mut results = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(results);
        }
        results.push(MultiResult::read(h.op, r)?);
    }
}

fn write_multi_results(results: &[MultiResult], w: &mut Writer) {
    for res in results {
        res.header().write(w);
        res.write(w);
    }
    MULTI_END.write(w);
}

/// A reply record, by the shape of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// No body: delete, ping, auth, setWatches(2), closeSession,
    /// removeWatches, checkWatches, check, and every error reply.
    Empty,
    /// `ErrorResponse { err }`: the body of a successful addWatch reply
    /// (with `err` 0), as ZooKeeper 3.8 sends it.
    ErrorResponse { err: i32 },
    /// `CreateResponse` (create).
    Create { path: String },
    /// `Create2Response` (create2, createTTL, createContainer).
    Create2 { path: String, stat: Stat },
    /// `ExistsResponse` / `SetDataResponse` / `SetACLResponse`.
    Stat { stat: Stat },
    /// `GetDataResponse` (getData; also reconfig's reply).
    GetData { data: Option<Vec<u8>>, stat: Stat },
    /// `GetACLResponse`.
    GetAcl { acl: Vec<Acl>, stat: Stat },
    /// `GetChildrenResponse`.
    GetChildren { children: Vec<String> },
    /// `GetChildren2Response`.
    GetChildren2 { children: Vec<String>, stat: Stat },
    /// `SyncResponse`.
    Sync { path: String },
    /// `MultiResponse` of a multi.
    Multi(Vec<MultiResult>),
    /// `MultiResponse` of a multiRead.
    MultiRead(Vec<MultiResult>),
    /// `GetEphemeralsResponse`.
    GetEphemerals { ephemerals: Vec<String> },
    /// `GetAllChildrenNumberResponse`.
    GetAllChildrenNumber { total: i32 },
    /// `WhoAmIResponse`.
    WhoAmI { client_info: Vec<ClientInfo> },
    /// `SetSASLResponse`.
    Sasl { token: Vec<u8> },
}

impl Response {
    /// Writes the reply record alone (no header, no frame).
    pub fn write_body(&self, w: &mut Writer) {
        match self {
            Response::Empty => {}
            Response::Create { path } | Response::Sync { path } => w.write_string(path),
            Response::Create2 { path, stat } => {
                w.write_string(path);
                w.write_stat(stat);
            }
            Response::Stat { stat } => w.write_stat(stat),
            Response::GetData { data, stat } => {
                w.write_buffer_opt(data.as_deref());
                w.write_stat(stat);
            }
            Response::GetAcl { acl, stat } => {
                w.write_acl_vec(acl);
                w.write_stat(stat);
            }
            Response::GetChildren { children } => w.write_string_vec(children),
            Response::GetChildren2 { children, stat } => {
                w.write_string_vec(children);
                w.write_stat(stat);
            }
            Response::Multi(results) | Response::MultiRead(results) => {
                write_multi_results(results, w)
            }
            Response::GetEphemerals { ephemerals } => w.write_string_vec(ephemerals),
            Response::GetAllChildrenNumber { total } | Response::ErrorResponse { err: total } => {
                w.write_int(*total)
            }
            Response::WhoAmI { client_info } => w.write_vec(client_info, |w, c| {
                w.write_string(&c.auth_scheme);
                w.write_string(&c.user);
            }),
            Response::Sasl { token } => w.write_buffer(token),
        }
    }

    /// Whether the body goes on the wire even when the reply header carries
    /// an error: only multi and multiRead replies, whose body holds the
    /// per-op results.
    fn body_survives_error(&self) -> bool {
        matches!(self, Response::Multi(_) | Response::MultiRead(_))
    }
}

/// The framed reply: `header`, then `resp`'s record. When `header.err` is
/// non-zero only the header is sent, as ZooKeeper does, except for multi and
/// multiRead replies, whose per-op results are always sent.
pub fn encode_reply(header: &ReplyHeader, resp: &Response) -> Bytes {
    let mut w = frame_writer();
    header.write(&mut w);
    if header.err == 0 || resp.body_survives_error() {
        resp.write_body(&mut w);
    }
    finish_frame(w)
}

/// The framed watch notification: reply header with xid -1, zxid -1, err 0,
/// then the event.
pub fn encode_event(event: &WatcherEvent) -> Bytes {
    let mut w = frame_writer();
    ReplyHeader {
        xid: xid::NOTIFICATION,
        zxid: -1,
        err: 0,
    }
    .write(&mut w);
    event.write(&mut w);
    finish_frame(w)
}

/// Splits a server frame's payload into its reply header and body.
pub fn decode_reply(frame: &[u8]) -> Result<(ReplyHeader, &[u8]), JuteError> {
    let mut r = Reader::new(frame);
    let header = ReplyHeader::read(&mut r)?;
    Ok((header, r.read_rest()))
}

/// Decodes a watch notification's body (the part after the reply header).
pub fn decode_event(body: &[u8]) -> Result<WatcherEvent, JuteError> {
    WatcherEvent::read(&mut Reader::new(body))
}

/// Decodes the body of a successful reply to a request with `opcode`.
///
/// Call it only when the reply header's `err` is 0 (error replies have no
/// body), except for multi and multiRead, whose body is always present.
pub fn decode_response(opcode: i32, body: &[u8]) -> Result<Response, JuteError> {
    let mut r = Reader::new(body);
    let r = &mut r;
    Ok(match opcode {
        opcode::CREATE => Response::Create {
            path: r.read_string()?,
        },
        opcode::CREATE2 | opcode::CREATE_TTL | opcode::CREATE_CONTAINER => Response::Create2 {
            path: r.read_string()?,
            stat: r.read_stat()?,
        },
        opcode::EXISTS | opcode::SET_DATA | opcode::SET_ACL => Response::Stat {
            stat: r.read_stat()?,
        },
        opcode::GET_DATA | opcode::RECONFIG => Response::GetData {
            data: r.read_buffer_opt()?.map(<[u8]>::to_vec),
            stat: r.read_stat()?,
        },
        opcode::GET_ACL => Response::GetAcl {
            acl: r.read_acl_vec()?,
            stat: r.read_stat()?,
        },
        opcode::GET_CHILDREN => Response::GetChildren {
            children: r.read_string_vec()?,
        },
        opcode::GET_CHILDREN2 => Response::GetChildren2 {
            children: r.read_string_vec()?,
            stat: r.read_stat()?,
        },
        opcode::SYNC => Response::Sync {
            path: r.read_string()?,
        },
        opcode::MULTI => Response::Multi(read_multi_results(r)?),
        opcode::MULTI_READ => Response::MultiRead(read_multi_results(r)?),
        opcode::GET_EPHEMERALS => Response::GetEphemerals {
            ephemerals: r.read_string_vec()?,
        },
        opcode::GET_ALL_CHILDREN_NUMBER => Response::GetAllChildrenNumber {
            total: r.read_int()?,
        },
        opcode::WHO_AM_I => Response::WhoAmI {
            client_info: r.read_vec(8, |r| {
                Ok(ClientInfo {
                    auth_scheme: r.read_string()?,
                    user: r.read_string()?,
                })
            })?,
        },
        opcode::SASL => Response::Sasl {
            token: r.read_buffer()?.to_vec(),
        },
        opcode::ADD_WATCH => Response::ErrorResponse { err: r.read_int()? },
        opcode::DELETE
        | opcode::PING
        | opcode::AUTH
        | opcode::SET_WATCHES
        | opcode::SET_WATCHES2
        | opcode::CLOSE_SESSION
        | opcode::REMOVE_WATCHES
        | opcode::CHECK_WATCHES
        | opcode::CHECK => Response::Empty,
        other => {
            return Err(JuteError::Invalid(format!(
                "no reply record for opcode {other}"
            )))
        }
    })
}

#[cfg(test)]
mod tests;
