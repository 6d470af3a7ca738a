//! Sessions: a new session's handshake, a reconnect (ZooKeeper's `reopenSession`), and
//! the revalidation of a reconnect through a ZAB sync.

use crate::proto::client::{ConnectRequest, ConnectResponse};
use crate::types::SessionId;

use super::{ConnId, Fatal, Forwarded, Origin, Pipeline, Revalidation};

/// Syncs a revalidation makes while the leader's CloseSession of the session is still
/// outstanding before it gives up (the connection is closed, the client retries).
const REVALIDATION_SYNCS: u8 = 3;

/// Derives a session's password from its id, as ZooKeeper does, so any server of the
/// ensemble can check it.
pub fn session_password(session: SessionId) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(b"zabkeeper-session-secret");
    h.update(session.to_be_bytes());
    h.finalize()[..16].to_vec()
}

impl Pipeline {
    /// A handshake: a client that has seen more than this server is sent elsewhere, a
    /// server that is not serving refuses, a new session's CreateSession goes to the
    /// leader, a reconnect is checked.
    pub(super) fn on_connect(
        &mut self,
        conn: ConnId,
        request: ConnectRequest,
    ) -> Result<(), Fatal> {
        // A serving server may count what it logged: a resumed session is answered
        // only after a revalidation sync has applied it. A read-only server serves its
        // tree as it is, so only what it applied counts (a txn it logged, which a
        // client read elsewhere after its commit, may never be applied here while it
        // is cut off).
        let applied = self.tree.last_processed_zxid();
        let last = if self.zab.is_serving() {
            applied.max(self.zab.last_logged_zxid())
        } else {
            applied
        };
        // Deliberately broken (sim bites test): a read-only server takes any client.
        #[cfg(madsim)]
        let last = if self.read_only
            && crate::broken::active(crate::broken::Bug::ReadOnlyIgnoresSeenZxid)
        {
            i64::MAX
        } else {
            last
        };
        if request.last_zxid_seen > last {
            tracing::info!(
                "refusing session request: client has seen zxid 0x{:x}, our last zxid is 0x{:x}; \
                 the client must try another server",
                request.last_zxid_seen,
                last
            );
            self.close_conn(conn);
            return Ok(());
        }
        if !self.zab.is_serving() {
            // Only a read-only server takes it (`read_only.rs`).
            self.read_only_connect(conn, request);
            return Ok(());
        }
        if request.session_id != 0 {
            self.reconnect(conn, request);
            return Ok(());
        }
        if self.config.local_sessions_enabled {
            self.make_local_session(conn, request.timeout);
            return Ok(());
        }
        let timeout_ms = self.config.negotiate_session_timeout(request.timeout);
        let session = self.next_session;
        self.next_session += 1;
        let origin = Origin::NewSession {
            conn,
            timeout_ms,
            passwd: session_password(session),
        };
        self.submit(
            Forwarded::CreateSession { timeout_ms },
            session,
            0,
            Some(origin),
        )
    }

    /// A client resumes a session on a new connection.
    ///
    /// A wrong password is refused at once ("expired", as ZooKeeper answers it). The
    /// leader (a standalone server too) answers from its table, which is the committed
    /// state. A learner's table may lag behind the leader's, so it revalidates every
    /// reconnect (ZooKeeper's learner asks the leader for every global session).
    fn reconnect(&mut self, conn: ConnId, request: ConnectRequest) {
        let session = request.session_id;
        if request.passwd != session_password(session) {
            tracing::info!("invalid session 0x{session:x} for client: wrong password");
            self.refuse_session(conn);
            return;
        }
        // A local session of this server is resumed here (nowhere else knows it).
        if let Some(timeout_ms) = self.local.get(session).map(|s| s.timeout_ms) {
            self.attach_local(conn, session, timeout_ms);
            return;
        }
        let learner = !self.is_leader();
        // Deliberately broken (sim bites test): a learner resumes a session its own table
        // holds without asking.
        #[cfg(madsim)]
        let learner = learner
            && !(crate::broken::active(crate::broken::Bug::SessionsNotValidated)
                && self.sessions.contains(session));
        if self.sessions.contains(session) && !learner {
            self.resume_session(conn, session);
            return;
        }
        // Deliberately broken (sim bites test): a learner answers from its own table,
        // which may not hold a brand-new session yet.
        #[cfg(madsim)]
        if crate::broken::active(crate::broken::Bug::LearnerTrustsOwnSessions)
            && !self.sessions.contains(session)
        {
            tracing::info!("invalid session 0x{session:x} for client: not in my table");
            self.refuse_session(conn);
            return;
        }
        if learner {
            // ZooKeeper's `setOwner` at REVALIDATE: the leader learns that the session
            // is served here before this reconnect is answered. SetOwner travels ahead
            // of the revalidation's SYNC on the same peer connection, so the leader
            // holds the new owner before its SYNCDONE leaves, hence before the client
            // hears it is resumed and before anything it sends next, on any server,
            // reaches the leader: a write still coming through the server it left is
            // SessionMoved. (A session that turns out expired is not the leader's to
            // own: it ignores SetOwner for a session it does not hold.)
            if let Err(e) = self.zab.forward(session, 0, Forwarded::SetOwner.encode()) {
                tracing::debug!("cannot tell the leader that session 0x{session:x} is here: {e:?}");
            }
        }
        self.start_revalidation(Revalidation {
            conn,
            session,
            syncs: 0,
        });
    }

    /// Answers a reconnect "session expired" (timeout 0, session 0) and closes.
    pub(super) fn refuse_session(&mut self, conn: ConnId) {
        self.send_connect_response(conn, 0, 0, vec![0; 16]);
        self.close_conn(conn);
    }

    /// Puts `session` on connection `conn` (a connection it had before is closed) and
    /// answers the handshake; requests held behind it go on. Every established session
    /// (new, resumed, local) comes through here.
    pub(super) fn bind_session(
        &mut self,
        conn: ConnId,
        session: SessionId,
        timeout_ms: i32,
        passwd: Vec<u8>,
    ) {
        if let Some(old) = self.session_conn.insert(session, conn) {
            if old != conn {
                tracing::info!("session 0x{session:x} moved to a new connection");
                self.close_conn(old);
                self.closed(old);
                self.session_conn.insert(session, conn);
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = session;
            c.timeout_ms = timeout_ms;
            if !c.held.is_empty() {
                self.held_ready.insert(conn);
            }
        }
        self.send_connect_response(conn, timeout_ms, session, passwd);
    }

    /// Moves a live session to connection `conn` and answers its reconnect. A leader
    /// notes itself as the session's owner here; a learner told the leader before its
    /// revalidation sync ([`Pipeline::reconnect`]).
    fn resume_session(&mut self, conn: ConnId, session: SessionId) {
        if self.is_leader() {
            let me = self.zab.sid();
            self.owners.insert(session, me);
        }
        self.sessions.touch(session);
        // A learner's leader hears of the reconnect with the next touches (as ZooKeeper's
        // leader touches a revalidated session).
        self.touched.insert(session);
        let timeout = self
            .sessions
            .get(session)
            .map(|s| s.timeout_ms)
            .unwrap_or(0);
        self.bind_session(conn, session, timeout, session_password(session));
    }

    /// A new session's CreateSession was applied: the handshake is answered.
    pub(super) fn session_created(
        &mut self,
        conn: ConnId,
        session: SessionId,
        timeout_ms: i32,
        passwd: Vec<u8>,
    ) -> Result<(), Fatal> {
        if !self.conns.contains_key(&conn) {
            // The client went away before its session was made: close it again.
            return self.submit(Forwarded::CloseSession, session, 0, None);
        }
        self.bind_session(conn, session, timeout_ms, passwd);
        Ok(())
    }

    /// Starts (another) sync for a revalidation, or closes its connection if it cannot.
    ///
    /// A learner's table lags behind the leader's: a brand-new session's CreateSession
    /// may be committed, and the client answered by another server, before this server
    /// applies it. Answering "expired" from such a table ends a live session (its
    /// ephemerals vanish, locks and elections built on them break), and resuming a
    /// session from it can revive one the leader already closed. ZooKeeper asks the
    /// leader (`Learner.validateSession`, a REVALIDATE packet). Here the server starts a
    /// `sync` instead, the one the client's `sync` uses: its `SyncDone` comes after every
    /// txn the leader proposed before the sync reached it has been committed and applied
    /// here, so the session's CreateSession (committed before the client ever got its
    /// id) or CloseSession is in this server's table by then, and the table answers. No
    /// new peer message and no session state in the core are needed, and the leader
    /// takes the same path for a session it holds as closing.
    ///
    /// If the sync cannot start, or the role changes before it completes, the connection
    /// is closed without an answer: the client tries again (perhaps elsewhere), and is
    /// never told "expired" by a server that does not know. A deposed leader that has not
    /// noticed yet answers syncs from its own history, as ZooKeeper's leader answers
    /// REVALIDATE; with `quorumReads` on the sync also waits for a quorum's heartbeat
    /// round, which a deposed leader does not get.
    fn start_revalidation(&mut self, mut rv: Revalidation) {
        let id = self.next_sync;
        self.next_sync += 1;
        rv.syncs += 1;
        match self.zab.sync(id) {
            Ok(()) => {
                tracing::debug!(
                    "revalidating session 0x{:x} (sync {id}, attempt {})",
                    rv.session,
                    rv.syncs
                );
                self.revalidations.insert(id, rv);
            }
            Err(e) => {
                tracing::info!(
                    "cannot revalidate session 0x{:x} now ({e:?}): closing the connection",
                    rv.session
                );
                self.close_conn(rv.conn);
            }
        }
    }

    /// Answers a revalidated reconnect from the session table, now that every txn
    /// committed before its sync has been applied.
    pub(super) fn finish_revalidation(&mut self, rv: Revalidation) {
        if !self.conns.contains_key(&rv.conn) {
            return;
        }
        let session = rv.session;
        if self.sessions.contains(session) {
            self.resume_session(rv.conn, session);
        } else if self.sessions.get(session).is_none() {
            tracing::info!("invalid session 0x{session:x} for client: expired");
            self.refuse_session(rv.conn);
        } else if rv.syncs < REVALIDATION_SYNCS {
            // Closing: the leader is proposing its CloseSession; answer once it is
            // committed (or the session reopened, if the proposal is lost).
            self.start_revalidation(rv);
        } else {
            tracing::info!("session 0x{session:x} is still closing: closing the connection");
            self.close_conn(rv.conn);
        }
    }

    pub(super) fn send_connect_response(
        &mut self,
        conn: ConnId,
        timeout: i32,
        session: SessionId,
        passwd: Vec<u8>,
    ) {
        let read_only_present = self.conns.get(&conn).is_some_and(|c| c.read_only_present);
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: session,
            passwd,
            read_only: self.read_only,
            read_only_present,
        };
        self.send(conn, resp.encode());
    }
}
