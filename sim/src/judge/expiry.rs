//! Session expiry against the servers' observations: a client is told its session expired
//! only after some server applied that session's committed CloseSession.

use std::collections::BTreeMap;

use super::observations::{Observation, Observed};
use super::{violation, Verdict};
use crate::history::{Event, EventType};

/// Where a client was told its session expired: an `expired` session notification, or a
/// completion with the `SessionExpired` error (a reconnect the server refused).
fn told_expired(e: &Event) -> bool {
    (e.kind == EventType::Event && e.f == "session" && e.event.as_deref() == Some("expired"))
        || (e.kind != EventType::Invoke && e.error.as_deref() == Some("SessionExpired"))
}

/// Session-expiry check (`expired-only-after-close`): a client is told its session expired
/// only if some server had applied that session's committed CloseSession by then
/// ([`Observed::SessionClosed`]). A server that answers a reconnect "expired" from a
/// session table that lags behind the ensemble (a learner that has not applied the
/// session's CreateSession yet) ends a live session: its ephemerals vanish and the locks
/// and elections built on them break, with no CloseSession anywhere.
///
/// The history records the expiry when the client's next operation completes, so the
/// recorded time is at or after the server's answer; the answer in turn comes after the
/// commit, so the check never blames a correct server.
///
/// A local session (`localSessionsEnabled`, read-only mode) is held by one server: any
/// other server, or its own after it forgot it (an expiry there, a role change), answers
/// it "expired" with no CloseSession anywhere, as ZooKeeper does. Such a session is
/// exempt until a CreateSession for it (its upgrade) is applied somewhere: from then on
/// it is global and the rule holds.
pub fn check(history: &[Event], observations: &[Observation]) -> Verdict {
    let mut closed_at: BTreeMap<i64, u64> = BTreeMap::new();
    let mut local: BTreeMap<i64, u64> = BTreeMap::new();
    let mut created_at: BTreeMap<i64, u64> = BTreeMap::new();
    for o in observations {
        match &o.what {
            Observed::SessionClosed { session, .. } => {
                closed_at.entry(*session).or_insert(o.at_ms);
            }
            Observed::LocalSessionMade { session } => {
                local.entry(*session).or_insert(o.at_ms);
            }
            Observed::SessionCreated { session, .. } => {
                created_at.entry(*session).or_insert(o.at_ms);
            }
            _ => {}
        }
    }
    for (pos, e) in history.iter().enumerate() {
        if !told_expired(e) {
            continue;
        }
        let Some(session) = e.session else {
            continue;
        };
        let told_ms = e.time.unwrap_or(0) / 1_000_000;
        if local.contains_key(&session) && created_at.get(&session).is_none_or(|&at| at > told_ms) {
            continue;
        }
        let when = match closed_at.get(&session) {
            Some(&at) if at <= told_ms => continue,
            Some(&at) => format!("before any server applied its CloseSession ({at}ms)"),
            None => "but no server ever applied its CloseSession".to_string(),
        };
        return violation(
            "expired-only-after-close",
            format!("session {session:#x} was told it expired (event {pos}, {told_ms}ms) {when}"),
        );
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(at_ms: u64, session: i64) -> Observation {
        Observation {
            at_ms,
            server: 1,
            what: Observed::SessionClosed { session, zxid: 7 },
        }
    }

    #[test]
    fn expired_only_after_a_committed_close() {
        let invoke = Event {
            f: "getData".into(),
            session: Some(1),
            ..Event::default()
        };
        let expired = Event {
            kind: EventType::Info,
            error: Some("SessionExpired".into()),
            time: Some(5_000_000), // 5 ms
            ..invoke.clone()
        };
        let h = vec![invoke.clone(), expired.clone()];
        let is_violation = |v: Verdict| matches!(v, Verdict::Violation { check, .. } if check == "expired-only-after-close");
        // Closed (by any server) before the client heard of it: fine, also at the same ms.
        assert_eq!(check(&h, &[closed(3, 1)]), Verdict::Pass);
        assert_eq!(check(&h, &[closed(5, 1)]), Verdict::Pass);
        // Never closed, closed only later, or another session closed: a live session was
        // told it expired.
        assert!(is_violation(check(&h, &[])));
        assert!(is_violation(check(&h, &[closed(6, 1)])));
        assert!(is_violation(check(&h, &[closed(3, 2)])));
        // The session notification counts the same.
        let note = Event {
            kind: EventType::Event,
            f: "session".into(),
            event: Some("expired".into()),
            session: Some(1),
            time: Some(5_000_000),
            ..Event::default()
        };
        assert!(is_violation(check(std::slice::from_ref(&note), &[])));
        assert_eq!(
            check(std::slice::from_ref(&note), &[closed(4, 1)]),
            Verdict::Pass
        );
        // A local session may be told it expired with no CloseSession, until it is
        // upgraded (its CreateSession applied before the client was told).
        let made = |at_ms| Observation {
            at_ms,
            server: 2,
            what: Observed::LocalSessionMade { session: 1 },
        };
        let created = |at_ms| Observation {
            at_ms,
            server: 3,
            what: Observed::SessionCreated {
                session: 1,
                zxid: 9,
            },
        };
        assert_eq!(
            check(std::slice::from_ref(&note), &[made(1)]),
            Verdict::Pass
        );
        assert_eq!(
            check(std::slice::from_ref(&note), &[made(1), created(6)]),
            Verdict::Pass
        );
        assert!(is_violation(check(
            std::slice::from_ref(&note),
            &[made(1), created(4)]
        )));
        assert!(is_violation(check(&[note], &[created(4)])));
        // Other errors, and expiries without a known session, impose nothing.
        let lost = Event {
            error: Some("ConnectionLoss".into()),
            ..expired.clone()
        };
        assert_eq!(check(&[invoke, lost], &[]), Verdict::Pass);
        let anonymous = Event {
            session: None,
            ..expired
        };
        assert_eq!(check(&[anonymous], &[]), Verdict::Pass);
    }
}
