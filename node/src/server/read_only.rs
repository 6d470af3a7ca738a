//! Read-only mode (ZooKeeper's `readonlymode.enabled`, its `ReadOnlyZooKeeperServer`).
//!
//! An ensemble member that has served in broadcast since it started and has then been
//! looking for a quorum for max(2 s, tickTime) serves
//! clients whose ConnectRequest allows read-only sessions: reads are answered from the
//! tree it has applied (it may be behind the ensemble, never behind what the client has
//! seen: a client that has seen a later zxid is refused, as on any server), and every
//! request that would need the leader (writes, `sync`, `check`, `multi`, `reconfig`)
//! is answered NotReadOnly. Clients that do not allow read-only sessions are refused,
//! and `isro` answers `ro`. When the server takes a role again (its election ends) it
//! leaves read-only mode: every connection is closed (as for any role change), the
//! clients move on to a read-write server.
//!
//! Only a server that has served since it started becomes read-only: a server that
//! restarted has replayed its whole log, which may end in txns it logged but that were
//! never committed (a deposed leader's, or a learner's last PROPOSALs); once it has
//! synced with a leader its tree holds the committed history only, and after that it
//! applies nothing but COMMITs. Apache ZooKeeper 3.8 serves read-only from the replayed
//! log right after a restart, uncommitted txns included.
//!
//! Sessions made in read-only mode are local: this server holds them in a table of its
//! own (`Pipeline::local`, as with `localSessionsEnabled`), never proposes them, expires them itself, and
//! forgets them when it leaves read-only mode, so a client that comes back with one is
//! told its session expired and makes a new one (as with ZooKeeper, whose read-only
//! server makes local sessions). Apache ZooKeeper 3.8 makes a new session in read-only
//! mode only with `localSessionsEnabled=true`; without it the handshake is answered with
//! a bare NotReadOnly reply header that no client can decode. zabkeeper makes local
//! read-only sessions either way. A global session this server's table holds is resumed
//! in read-only mode (ZooKeeper 3.8 answers it "expired", ending a session the leader
//! may still hold); its ephemerals stay, and it is not expired here: only a leader
//! expires global sessions.

use crate::core::Role;
use crate::proto::client::ConnectRequest;
use crate::proto::client::Request;
use crate::types::{opcode, ErrorCode, SessionId};

use super::request::{error_reply, is_write};
use super::session::session_password;
use super::{ConnId, Pipeline};

/// How long a server looks for a quorum before it serves read-only clients (ZooKeeper's
/// `QuorumPeer`: max(2000 ms, tickTime)).
pub const READ_ONLY_DELAY_MS: i64 = 2000;

/// Whether a request of a read-only session needs the leader: such requests are
/// answered NotReadOnly (ZooKeeper's `ReadOnlyRequestProcessor`), a global session's
/// close among them.
fn needs_leader(op: i32) -> bool {
    is_write(op)
        || matches!(
            op,
            opcode::SYNC | opcode::RECONFIG | opcode::DELETE_CONTAINER
        )
}

impl Pipeline {
    /// Enters read-only mode once the server has looked for a quorum long enough (called
    /// on every core tick).
    pub(super) fn check_read_only(&mut self) {
        if self.read_only
            || !self.served
            || !self.config.read_only_mode
            || self.config.servers.is_empty()
        {
            return;
        }
        let Some(since) = self.looking_since else {
            return;
        };
        let delay = READ_ONLY_DELAY_MS.max(self.config.tick_time_ms as i64);
        if self.zab.role() == Role::Looking && self.now - since >= delay {
            tracing::info!(
                "no quorum for {} ms: serving read-only clients (read-only mode)",
                self.now - since
            );
            self.read_only = true;
        }
    }

    /// The server's role changed: read-only mode ends (the caller closes every
    /// connection), and a server that is looking again starts counting.
    pub(super) fn leave_read_only(&mut self, role: Role) {
        if self.read_only {
            tracing::info!("leaving read-only mode: role {role:?}");
        }
        self.read_only = false;
        self.looking_since = (role == Role::Looking).then_some(self.now);
    }

    /// A handshake while not serving: only a read-only server takes it, and only from a
    /// client that allows read-only sessions.
    pub(super) fn read_only_connect(&mut self, conn: ConnId, request: ConnectRequest) {
        if !self.read_only || self.zab.role() != Role::Looking {
            tracing::debug!("refusing a client connection: not serving (no quorum yet)");
            self.close_conn(conn);
            return;
        }
        if !request.read_only {
            tracing::info!(
                "refusing a client that does not allow read-only sessions: read-only mode"
            );
            self.close_conn(conn);
            return;
        }
        if request.session_id == 0 {
            self.make_local_session(conn, request.timeout);
            return;
        }
        let session = request.session_id;
        let timeout_ms = if request.passwd != session_password(session) {
            tracing::info!("invalid session 0x{session:x} for client: wrong password");
            None
        } else if let Some(s) = self.local.get(session) {
            Some(s.timeout_ms)
        } else {
            self.sessions
                .get(session)
                .filter(|s| !s.closing)
                .map(|s| s.timeout_ms)
        };
        match timeout_ms {
            Some(timeout_ms) => self.attach_local(conn, session, timeout_ms),
            None => {
                tracing::info!("invalid session 0x{session:x} for client: expired");
                self.refuse_session(conn);
            }
        }
    }

    /// A request of a session served in read-only mode: reads are answered from this
    /// server's tree, what needs the leader is answered NotReadOnly, and a local
    /// session's close ends it here. Returns the request if it is a read to answer.
    pub(super) fn read_only_request(
        &mut self,
        conn: ConnId,
        session: SessionId,
        xid: i32,
        op: i32,
        req: Request,
    ) -> Option<Request> {
        self.local.touch(session);
        if op == opcode::CLOSE_SESSION && self.local.get(session).is_some() {
            self.close_local_session(conn, session, xid);
            return None;
        }
        if needs_leader(op) {
            let zxid = self.tree.last_processed_zxid();
            self.reply(conn, xid, error_reply(xid, zxid, ErrorCode::NotReadOnly));
            return None;
        }
        Some(req)
    }
}
