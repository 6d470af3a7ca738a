//! Local sessions (ZooKeeper's `localSessionsEnabled`, and the sessions of read-only
//! mode): held by the server the client connected to, in [`Pipeline::local`], never
//! proposed. A local session is made, resumed, touched, expired and closed on its
//! server alone (no txn), so a client that reconnects to another server is told it
//! expired, and local sessions do not outlive a change of the server's role (every
//! connection is closed then, as for any role change).
//!
//! Its writes go to the leader like any other; the leader takes writes of a session it
//! does not know when local sessions are enabled and the session is its own local one
//! or another server's (ZooKeeper's `LeaderSessionTracker.checkSession` rule). A local
//! session that creates an ephemeral (a create, or a multi with one) is first upgraded:
//! its server submits a CreateSession for it, ahead of the create in the same FIFO to
//! the leader, so the ephemeral's owner is a global session when the create commits
//! (`localSessionsUpgradingEnabled`; off, as by default in the running Apache ZooKeeper
//! 3.8, the create is answered EphemeralOnLocalSession). Once its CreateSession is applied the session is global.

use crate::core::session::SessionTracker;
use crate::proto::client::{CreateRequest, MultiOp, Request};
use crate::types::{opcode, CreateMode, ErrorCode, SessionId};

use super::request::error_reply;
use super::session::session_password;
use super::{ConnId, Fatal, Forwarded, Pipeline};

/// Whether a create's flags ask for an ephemeral node.
fn ephemeral(c: &CreateRequest) -> bool {
    CreateMode::from_flag(c.flags).is_some_and(CreateMode::is_ephemeral)
}

/// Whether a client request creates an ephemeral node (itself, or one of its multi's
/// ops): ZooKeeper's `checkUpgradeSession`.
fn creates_ephemeral(req: &Request) -> bool {
    match req {
        Request::Create(c) | Request::Create2(c) => ephemeral(c),
        Request::Multi(ops) => ops
            .iter()
            .any(|op| matches!(op, MultiOp::Create(c) | MultiOp::Create2(c) if ephemeral(c))),
        _ => false,
    }
}

/// What became of a request of a local session.
pub(super) enum LocalRequest {
    /// Answered here.
    Answered,
    /// It goes on as any session's request.
    Continue(Request),
}

impl Pipeline {
    /// A new local session for a handshake: made here, answered at once.
    pub(super) fn make_local_session(&mut self, conn: ConnId, requested_timeout: i32) {
        let timeout_ms = self.config.negotiate_session_timeout(requested_timeout);
        let session = self.next_session;
        self.next_session += 1;
        self.local.add(session, timeout_ms);
        tracing::debug!("made local session 0x{session:x}");
        self.observe(|_| super::Observation::LocalSessionMade { session });
        self.attach_local(conn, session, timeout_ms);
    }

    /// Puts a session this server answers for itself on connection `conn` (a new or
    /// resumed local session, or a global one resumed in read-only mode) and answers
    /// the handshake.
    pub(super) fn attach_local(&mut self, conn: ConnId, session: SessionId, timeout_ms: i32) {
        self.local.touch(session);
        self.bind_session(conn, session, timeout_ms, session_password(session));
    }

    /// A local session's close: it ends here (no txn), is answered, and its connection
    /// closed.
    pub(super) fn close_local_session(&mut self, conn: ConnId, session: SessionId, xid: i32) {
        self.local.remove(session);
        self.session_conn.remove(&session);
        tracing::debug!("closed local session 0x{session:x}");
        let zxid = self.tree.last_processed_zxid();
        self.reply(conn, xid, error_reply(xid, zxid, ErrorCode::Ok));
        self.close_conn(conn);
    }

    /// The server's role changed: its local sessions are forgotten (as ZooKeeper's,
    /// they do not outlive the server's role; the caller closes every connection).
    pub(super) fn forget_local_sessions(&mut self) {
        self.local = SessionTracker::new(self.config.tick_time_ms);
        self.upgrading.clear();
        self.creating.clear();
    }

    /// A request of a local session (not in read-only mode): its close ends it here, an
    /// ephemeral create first upgrades it (or fails), anything else goes on.
    pub(super) fn local_request(
        &mut self,
        conn: ConnId,
        session: SessionId,
        xid: i32,
        op: i32,
        req: Request,
    ) -> Result<LocalRequest, Fatal> {
        self.local.touch(session);
        let upgrading = self.upgrading.contains(&session);
        if op == opcode::CLOSE_SESSION && !upgrading {
            self.close_local_session(conn, session, xid);
            return Ok(LocalRequest::Answered);
        }
        if upgrading || !creates_ephemeral(&req) {
            return Ok(LocalRequest::Continue(req));
        }
        // Deliberately broken (sim bites test): no upgrade before the ephemeral.
        #[cfg(madsim)]
        if crate::broken::active(crate::broken::Bug::EphemeralWithoutUpgrade)
            && self.config.local_sessions_upgrading_enabled
        {
            return Ok(LocalRequest::Continue(req));
        }
        if !self.config.local_sessions_upgrading_enabled {
            if op == opcode::MULTI {
                // The leader fails the op inside the multi (per-op results).
                return Ok(LocalRequest::Continue(req));
            }
            let zxid = self.tree.last_processed_zxid();
            let frame = error_reply(xid, zxid, ErrorCode::EphemeralOnLocalSession);
            self.reply(conn, xid, frame);
            return Ok(LocalRequest::Answered);
        }
        let timeout_ms = self.local.get(session).map_or(0, |s| s.timeout_ms);
        tracing::info!("upgrading local session 0x{session:x} to a global one");
        self.upgrading.insert(session);
        self.submit(Forwarded::CreateSession { timeout_ms }, session, 0, None)?;
        Ok(LocalRequest::Continue(req))
    }

    /// A local session's CreateSession was applied: it is global now.
    pub(super) fn local_session_upgraded(&mut self, session: SessionId) {
        self.local.remove(session);
        self.upgrading.remove(&session);
        self.creating.remove(&session);
    }

    /// Leader: whether a session its table does not hold may write, as a local session
    /// (ZooKeeper's `LeaderSessionTracker.checkSession`): with local sessions enabled,
    /// its own local sessions and any session another server made. `Some(code)`: it
    /// may, and an ephemeral create fails with `code` (EphemeralOnLocalSession for its
    /// own, SessionExpired for another server's, as ZooKeeper 3.8 answers them);
    /// `None`: the session is expired.
    pub(super) fn local_session_at_leader(&self, session: SessionId) -> Option<ErrorCode> {
        if !self.config.local_sessions_enabled {
            return None;
        }
        if self.local.contains(session) {
            return Some(ErrorCode::EphemeralOnLocalSession);
        }
        let mine = (session as u64 >> 56) == (self.config.my_id & 0xff);
        (!mine).then_some(ErrorCode::SessionExpired)
    }

    /// Every whole tickTime: local sessions that went silent expire here (no txn); their
    /// connection is closed.
    pub(super) fn local_tick(&mut self) {
        for session in self.local.tick() {
            if self.upgrading.contains(&session) {
                // Its CreateSession is on its way: the leader expires it from now on.
                continue;
            }
            tracing::info!("expiring local session 0x{session:x}");
            self.local.remove(session);
            if let Some(conn) = self.session_conn.remove(&session) {
                self.close_conn(conn);
            }
        }
    }
}
