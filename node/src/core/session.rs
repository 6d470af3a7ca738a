//! Session tracking with expiry in tick buckets (ZooKeeper's `ExpiryQueue`).
//!
//! Pure: time arrives as a tick count. A session expires when it has not
//! been touched for its timeout; expiry is checked once per tick, and
//! sessions are grouped into buckets rounded up to the next tick so that
//! one tick expires a whole bucket at once, as ZooKeeper does.

use std::collections::BTreeMap;

use crate::types::SessionId;

/// One live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    /// Negotiated timeout in milliseconds.
    pub timeout_ms: i32,
    /// The tick at which the session expires unless touched.
    pub expires_at: u64,
    /// Set once a CloseSession txn for it is under way; it no longer expires.
    pub closing: bool,
}

/// Sessions and their expiry buckets.
#[derive(Clone, Debug)]
pub struct SessionTracker {
    tick_ms: u64,
    now: u64,
    sessions: BTreeMap<SessionId, Session>,
    /// expiry tick -> sessions due then.
    buckets: BTreeMap<u64, Vec<SessionId>>,
}

impl SessionTracker {
    /// A tracker whose ticks are `tick_ms` milliseconds long.
    pub fn new(tick_ms: u64) -> SessionTracker {
        assert!(tick_ms > 0, "tick_ms must be positive");
        SessionTracker {
            tick_ms,
            now: 0,
            sessions: BTreeMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    /// The current tick.
    pub fn now(&self) -> u64 {
        self.now
    }

    fn expiry_for(&self, timeout_ms: i32) -> u64 {
        let ticks = (timeout_ms.max(0) as u64).div_ceil(self.tick_ms);
        self.now + ticks.max(1) + 1
    }

    /// Starts tracking a session (or restarts its clock if already known).
    pub fn add(&mut self, id: SessionId, timeout_ms: i32) {
        let expires_at = self.expiry_for(timeout_ms);
        if let Some(old) = self.sessions.insert(
            id,
            Session {
                id,
                timeout_ms,
                expires_at,
                closing: false,
            },
        ) {
            self.unbucket(id, old.expires_at);
        }
        self.buckets.entry(expires_at).or_default().push(id);
    }

    fn unbucket(&mut self, id: SessionId, at: u64) {
        if let Some(b) = self.buckets.get_mut(&at) {
            b.retain(|s| *s != id);
            if b.is_empty() {
                self.buckets.remove(&at);
            }
        }
    }

    /// Records activity on a session; false if the session is unknown or closing.
    pub fn touch(&mut self, id: SessionId) -> bool {
        let Some(s) = self.sessions.get(&id) else {
            return false;
        };
        if s.closing {
            return false;
        }
        let (old, timeout) = (s.expires_at, s.timeout_ms);
        let new = self.expiry_for(timeout);
        if new != old {
            self.unbucket(id, old);
            self.buckets.entry(new).or_default().push(id);
            if let Some(s) = self.sessions.get_mut(&id) {
                s.expires_at = new;
            }
        }
        true
    }

    /// Marks a session as closing: it will not be reported as expired again.
    pub fn set_closing(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.closing = true;
            let at = s.expires_at;
            self.unbucket(id, at);
        }
    }

    /// Re-arms every closing session with a fresh timeout: after a leadership change a
    /// CloseSession proposal may have been lost, and a session left closing would never
    /// expire again (its ephemerals would outlive it). As ZooKeeper, whose new leader
    /// tracks every session afresh; one whose close did commit is removed when applied.
    pub fn reopen_closing(&mut self) {
        let closing: Vec<(SessionId, i32)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.closing)
            .map(|(id, s)| (*id, s.timeout_ms))
            .collect();
        for (id, timeout) in closing {
            let expires_at = self.expiry_for(timeout);
            if let Some(s) = self.sessions.get_mut(&id) {
                s.closing = false;
                s.expires_at = expires_at;
            }
            self.buckets.entry(expires_at).or_default().push(id);
        }
    }

    /// Forgets a session (its CloseSession txn has been applied).
    pub fn remove(&mut self, id: SessionId) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        self.unbucket(id, s.expires_at);
        Some(s)
    }

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn contains(&self, id: SessionId) -> bool {
        self.sessions.get(&id).is_some_and(|s| !s.closing)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Every session in id order.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Every session and its timeout, in id order, as a snapshot holds them.
    pub fn timeouts(&self) -> Vec<(SessionId, i32)> {
        self.sessions().map(|s| (s.id, s.timeout_ms)).collect()
    }

    /// Advances one tick; returns the sessions that expired, in id order.
    /// They are marked closing: the caller issues their CloseSession txns.
    pub fn tick(&mut self) -> Vec<SessionId> {
        self.now += 1;
        let mut expired = Vec::new();
        while let Some((&at, _)) = self.buckets.first_key_value() {
            if at > self.now {
                break;
            }
            if let Some(ids) = self.buckets.remove(&at) {
                expired.extend(ids);
            }
        }
        expired.sort_unstable();
        expired.dedup();
        for id in &expired {
            if let Some(s) = self.sessions.get_mut(id) {
                s.closing = true;
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_session_expires_after_its_timeout() {
        let mut t = SessionTracker::new(100);
        t.add(1, 1000);
        let mut expired_at = None;
        for i in 1..=20 {
            if t.tick() == vec![1] {
                expired_at = Some(i);
                break;
            }
        }
        // 1000 ms = 10 ticks, plus the rounding tick.
        assert_eq!(expired_at, Some(11));
        assert!(!t.contains(1));
        assert!(!t.touch(1), "a closing session cannot be revived");
    }

    #[test]
    fn touching_keeps_a_session_alive() {
        let mut t = SessionTracker::new(100);
        t.add(7, 400);
        for _ in 0..50 {
            assert!(t.tick().is_empty());
            assert!(t.touch(7));
        }
        t.remove(7);
        assert!(t.is_empty());
        for _ in 0..10 {
            assert!(t.tick().is_empty());
        }
    }

    #[test]
    fn buckets_expire_together_in_id_order() {
        let mut t = SessionTracker::new(50);
        t.add(3, 200);
        t.add(1, 200);
        t.add(2, 10_000);
        let mut all = Vec::new();
        for _ in 0..10 {
            all.extend(t.tick());
        }
        assert_eq!(all, vec![1, 3]);
        assert!(t.contains(2));
    }

    /// Regression (sim `mixed` seed 100): a leader marked an expired session closing,
    /// its CloseSession proposal was lost with its leadership, and the session never
    /// expired again, so its ephemeral outlived it.
    #[test]
    fn closing_sessions_reopen_and_expire_again() {
        let mut t = SessionTracker::new(100);
        t.add(3, 300);
        let expired: Vec<SessionId> = (0..10).flat_map(|_| t.tick()).collect();
        assert_eq!(expired, vec![3]);
        assert!(!t.contains(3), "closing");
        assert!(
            (0..20).all(|_| t.tick().is_empty()),
            "never again while closing"
        );
        t.reopen_closing();
        assert!(t.contains(3));
        let again: Vec<SessionId> = (0..10).flat_map(|_| t.tick()).collect();
        assert_eq!(again, vec![3], "expires again after a fresh timeout");
    }
}
