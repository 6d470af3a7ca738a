//! Unit tests of the core through its public inputs and outputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::types::{make_zxid, zxid_counter, zxid_epoch};

/// A minimal in-memory ensemble: FIFO links, and durability reported only
/// when a test says so. It records, per server, what was reported durable,
/// and checks every durability-dependent message against it.
struct Net {
    zabs: BTreeMap<Sid, Zab>,
    links: BTreeMap<(Sid, Sid), VecDeque<PeerMessage>>,
    /// Persist actions handed out and not yet reported durable.
    pending: BTreeMap<Sid, Vec<PersistAction>>,
    durable_txns: BTreeMap<Sid, BTreeSet<Zxid>>,
    durable_current: BTreeMap<Sid, Epoch>,
    durable_accepted: BTreeMap<Sid, Epoch>,
    auto_persist: BTreeSet<Sid>,
    acks_seen: usize,
    /// Every txn committed anywhere: a zxid must always carry the same txn.
    committed: BTreeMap<Zxid, Bytes>,
    events: BTreeMap<Sid, Vec<Event>>,
    /// Every `Outbound::Disconnect` executed: (by, peer).
    disconnects: Vec<(Sid, Sid)>,
    /// Connections closed and not yet reported to the cores.
    closed: VecDeque<(Sid, Sid)>,
}

impl Net {
    fn new(voters: &[Sid], observers: &[Sid], cfg_fn: impl Fn(&mut ZabConfig)) -> Net {
        let mut net = Net {
            zabs: BTreeMap::new(),
            links: BTreeMap::new(),
            pending: BTreeMap::new(),
            durable_txns: BTreeMap::new(),
            durable_current: BTreeMap::new(),
            durable_accepted: BTreeMap::new(),
            auto_persist: BTreeSet::new(),
            acks_seen: 0,
            committed: BTreeMap::new(),
            events: BTreeMap::new(),
            disconnects: Vec::new(),
            closed: VecDeque::new(),
        };
        for &sid in voters.iter().chain(observers) {
            let mut cfg = ZabConfig::new(sid, voters.iter().copied(), observers.iter().copied());
            cfg_fn(&mut cfg);
            net.zabs
                .insert(sid, Zab::new(cfg, PersistedState::default()).unwrap());
            net.durable_txns.insert(sid, BTreeSet::new());
            net.durable_current.insert(sid, 0);
            net.durable_accepted.insert(sid, 0);
        }
        for sid in net.zabs.keys().copied().collect::<Vec<_>>() {
            net.drain(sid);
        }
        net
    }

    fn drain(&mut self, sid: Sid) {
        loop {
            let zab = self.zabs.get_mut(&sid).unwrap();
            if !zab.has_ready() {
                break;
            }
            let ready = zab.ready();
            for (zxid, payload) in &ready.commits {
                let first = self
                    .committed
                    .entry(*zxid)
                    .or_insert_with(|| payload.clone());
                assert_eq!(
                    first, payload,
                    "server {sid} committed a different txn at {zxid:#x}"
                );
            }
            for m in ready.messages {
                let (to, msg) = match m {
                    Outbound::Disconnect { peer } => {
                        self.disconnect(sid, peer);
                        continue;
                    }
                    Outbound::Send { to, msg } => {
                        assert!(
                            !msg.requires_durability(),
                            "{} sent as a plain message",
                            msg.name()
                        );
                        (to, msg)
                    }
                    Outbound::Durable(d) => {
                        self.check_durable(sid, d.message());
                        d.into_parts()
                    }
                    Outbound::Snapshot { to, zxid } => (
                        to,
                        PeerMessage::Snap {
                            zxid,
                            snapshot: Bytes::from_static(b"tree"),
                        },
                    ),
                };
                self.links.entry((sid, to)).or_default().push_back(msg);
            }
            // This Ready's persistence is handed out now, after its messages
            // were checked: none of it can be durable yet.
            self.pending.entry(sid).or_default().extend(ready.persist);
            self.events.entry(sid).or_default().extend(ready.events);
            if self.auto_persist.contains(&sid) {
                self.persist(sid);
            }
        }
        self.report_closed();
    }

    /// As the runtime does: closing a connection loses what is queued on it
    /// both ways; both servers see it break and, the network being up,
    /// reconnect at once.
    fn disconnect(&mut self, sid: Sid, peer: Sid) {
        self.disconnects.push((sid, peer));
        for link in [(sid, peer), (peer, sid)] {
            if let Some(q) = self.links.get_mut(&link) {
                q.clear();
            }
        }
        self.closed.push_back((sid, peer));
    }

    fn report_closed(&mut self) {
        while let Some((a, b)) = self.closed.pop_front() {
            for (x, y) in [(a, b), (b, a)] {
                if let Some(z) = self.zabs.get_mut(&x) {
                    z.peer_disconnected(y);
                    self.drain(x);
                }
            }
            for (x, y) in [(a, b), (b, a)] {
                if let Some(z) = self.zabs.get_mut(&x) {
                    z.peer_connected(y);
                    self.drain(x);
                }
            }
        }
    }

    /// Rule 1, checked against what the runtime actually reported durable.
    fn check_durable(&mut self, sid: Sid, msg: &PeerMessage) {
        match msg {
            PeerMessage::Ack { zxid } if zxid_counter(*zxid) == 0 => {
                assert!(
                    self.durable_current[&sid] >= zxid_epoch(*zxid),
                    "server {sid} acked NEWLEADER {zxid:#x} before its currentEpoch was durable"
                );
                self.acks_seen += 1;
            }
            PeerMessage::Ack { zxid } => {
                assert!(
                    self.durable_txns[&sid].contains(zxid),
                    "server {sid} acked {zxid:#x} before it was durable"
                );
                self.acks_seen += 1;
            }
            PeerMessage::AckEpoch { .. } => {
                let accepted = self.zabs[&sid].accepted_epoch();
                assert!(
                    self.durable_accepted[&sid] >= accepted,
                    "server {sid} sent ACKEPOCH before acceptedEpoch {accepted} was durable"
                );
            }
            other => panic!("{} needs no durability", other.name()),
        }
    }

    fn persist(&mut self, sid: Sid) {
        let n = self.pending.get(&sid).map_or(0, |p| p.len());
        self.persist_prefix(sid, n, true);
    }

    /// Makes the first `n` pending actions of `sid` durable and reports it:
    /// with `all_persisted` when `all`, else positionally with
    /// `persisted`/`epoch_persisted` naming the last reportable action among
    /// them (a prefix ending in a Truncate or ReloadTree is cut back to the
    /// action before, which the runtime would report instead).
    fn persist_prefix(&mut self, sid: Sid, n: usize, all: bool) {
        let pending = self.pending.remove(&sid).unwrap_or_default();
        let mut n = n.min(pending.len());
        if !all {
            while n > 0
                && matches!(
                    pending[n - 1],
                    PersistAction::Truncate { .. } | PersistAction::ReloadTree { .. }
                )
            {
                n -= 1;
            }
        }
        let (done, rest) = pending.split_at(n);
        self.pending.insert(sid, rest.to_vec());
        for a in done {
            match a {
                PersistAction::AppendTxn { zxid, .. } => {
                    self.durable_txns.get_mut(&sid).unwrap().insert(*zxid);
                }
                PersistAction::Truncate { zxid } => {
                    self.durable_txns
                        .get_mut(&sid)
                        .unwrap()
                        .retain(|z| z <= zxid);
                }
                PersistAction::ApplySnapshot { .. } => {
                    self.durable_txns.get_mut(&sid).unwrap().clear();
                }
                PersistAction::SetAcceptedEpoch(e) => {
                    self.durable_accepted.insert(sid, *e);
                }
                PersistAction::SetCurrentEpoch(e) => {
                    self.durable_current.insert(sid, *e);
                }
                PersistAction::ReloadTree { .. } => {}
            }
        }
        let zab = self.zabs.get_mut(&sid).unwrap();
        if all {
            zab.all_persisted();
        } else {
            match done.last() {
                Some(PersistAction::AppendTxn { zxid, .. })
                | Some(PersistAction::ApplySnapshot { zxid, .. }) => zab.persisted(*zxid),
                Some(PersistAction::SetAcceptedEpoch(e)) => {
                    zab.epoch_persisted(EpochFile::Accepted, *e)
                }
                Some(PersistAction::SetCurrentEpoch(e)) => {
                    zab.epoch_persisted(EpochFile::Current, *e)
                }
                _ => {}
            }
        }
        self.drain(sid);
    }

    fn deliver_one(&mut self, from: Sid, to: Sid) -> bool {
        let Some(msg) = self.links.get_mut(&(from, to)).and_then(|q| q.pop_front()) else {
            return false;
        };
        if std::env::var_os("ZAB_TRACE").is_some() {
            let z = &self.zabs[&to];
            eprintln!(
                "{from}->{to} {msg:?} | to is {:?} serving={} ee={}",
                z.role(),
                z.is_serving(),
                z.election_epoch()
            );
        }
        self.zabs.get_mut(&to).unwrap().step(from, msg);
        self.drain(to);
        true
    }

    fn deliver_all(&mut self) {
        for _ in 0..10_000 {
            let links: Vec<(Sid, Sid)> = self
                .links
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, _)| *k)
                .collect();
            if links.is_empty() {
                return;
            }
            for (a, b) in links {
                self.deliver_one(a, b);
            }
        }
        panic!("messages never stopped");
    }

    fn tick_all(&mut self) {
        for sid in self.zabs.keys().copied().collect::<Vec<_>>() {
            self.zabs.get_mut(&sid).unwrap().tick();
            self.drain(sid);
        }
    }

    fn settle(&mut self) {
        for _ in 0..4 {
            self.deliver_all();
            for s in self.zabs.keys().copied().collect::<Vec<_>>() {
                self.persist(s);
            }
            self.deliver_all();
            self.tick_all();
        }
        self.deliver_all();
    }

    fn leader(&self) -> Option<Sid> {
        self.zabs
            .iter()
            .find(|(_, z)| z.role() == Role::Leading && z.is_serving())
            .map(|(s, _)| *s)
    }
}

#[test]
fn three_servers_elect_and_commit() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    assert_eq!(net.leader(), Some(3));
    let z = net
        .zabs
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from_static(b"a"))
        .unwrap();
    assert_eq!(z, make_zxid(1, 1));
    net.drain(3);
    net.settle();
    for zab in net.zabs.values() {
        assert_eq!(zab.last_committed_zxid(), z);
        assert!(zab.is_serving());
    }
}

/// An epoch whose zxid counter is spent: `next_zxid` gives no more, and once the last
/// proposal is committed the leader's next tick starts an election, which brings a new
/// epoch with a fresh counter (without it, every write would fail for good).
#[test]
fn a_spent_zxid_counter_forces_a_new_epoch() {
    let mut net = Net::new(&[1, 2, 3], &[], |c| c.zxid_counter_limit = 3);
    net.settle();
    let leader = net.leader().unwrap();
    for p in [&b"a"[..], b"b", b"c"] {
        let z = net.zabs[&leader].next_zxid().expect("counter left");
        let got = net
            .zabs
            .get_mut(&leader)
            .unwrap()
            .propose(Bytes::copy_from_slice(p))
            .unwrap();
        assert_eq!(got, z);
        net.drain(leader);
        net.settle();
    }
    assert_eq!(net.committed.len(), 3);
    assert!(net.committed.keys().all(|z| zxid_epoch(*z) == 1));
    // Settling ticked the leader with nothing outstanding: a new epoch serves.
    for _ in 0..20 {
        net.settle();
        if net.leader().is_some() && net.zabs.values().all(|z| z.is_serving()) {
            break;
        }
    }
    let leader = net.leader().expect("a leader of the new epoch");
    let z = net.zabs[&leader].next_zxid().expect("a fresh counter");
    assert_eq!(zxid_epoch(z), 2, "{z:#x}");
    assert_eq!(zxid_counter(z), 1);
    for zab in net.zabs.values() {
        assert_eq!(zab.last_committed_zxid(), make_zxid(1, 3));
    }
}

#[test]
fn a_follower_never_acks_before_persistence_is_reported() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    let leader = net.leader().unwrap();
    net.zabs
        .get_mut(&leader)
        .unwrap()
        .propose(Bytes::from_static(b"x"))
        .unwrap();
    net.drain(leader);
    let follower = *net.zabs.keys().find(|s| **s != leader).unwrap();
    net.deliver_one(leader, follower);
    // The follower logged the proposal but nobody reported it durable.
    assert_eq!(net.pending[&follower].len(), 1);
    assert!(
        net.links.get(&(follower, leader)).is_none_or_empty(),
        "no ACK yet"
    );
    assert_eq!(net.zabs[&follower].unsynced_persist_actions(), 1);
    // A report for something else releases nothing.
    net.zabs
        .get_mut(&follower)
        .unwrap()
        .persisted(make_zxid(1, 9));
    assert_eq!(net.zabs[&follower].stats().ignored_reports, 1);
    net.drain(follower);
    assert!(net.links.get(&(follower, leader)).is_none_or_empty());
    // Now the append is durable: the ACK follows.
    let before = net.acks_seen;
    net.persist(follower);
    assert_eq!(net.acks_seen, before + 1);
    assert_eq!(
        net.links[&(follower, leader)].back(),
        Some(&PeerMessage::Ack {
            zxid: make_zxid(1, 1)
        })
    );
}

trait IsNoneOrEmpty {
    fn is_none_or_empty(&self) -> bool;
}

impl IsNoneOrEmpty for Option<&VecDeque<PeerMessage>> {
    fn is_none_or_empty(&self) -> bool {
        self.map(|q| q.is_empty()).unwrap_or(true)
    }
}

#[test]
fn positional_persisted_report_releases_only_what_it_covers() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    let leader = net.leader().unwrap();
    for p in [&b"a"[..], b"b"] {
        net.zabs
            .get_mut(&leader)
            .unwrap()
            .propose(Bytes::copy_from_slice(p))
            .unwrap();
    }
    net.drain(leader);
    let follower = *net.zabs.keys().find(|s| **s != leader).unwrap();
    net.deliver_one(leader, follower);
    net.deliver_one(leader, follower);
    let f = net.zabs.get_mut(&follower).unwrap();
    f.persisted(make_zxid(1, 1));
    let r = f.ready();
    let acks: Vec<&PeerMessage> = r
        .messages
        .iter()
        .filter_map(|m| match m {
            Outbound::Durable(d) => Some(d.message()),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        vec![&PeerMessage::Ack {
            zxid: make_zxid(1, 1)
        }]
    );
    f.persisted(make_zxid(1, 2));
    let r = f.ready();
    assert!(
        matches!(&r.messages[..], [Outbound::Durable(d)] if *d.message() == PeerMessage::Ack { zxid: make_zxid(1, 2) })
    );
}

#[test]
fn observers_are_informed_and_never_count() {
    let mut net = Net::new(&[1, 2, 3], &[4], |_| {});
    net.settle();
    assert_eq!(net.zabs[&4].role(), Role::Observing { leader: 3 });
    assert!(net.zabs[&4].is_serving());
    let z = net
        .zabs
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from_static(b"a"))
        .unwrap();
    net.drain(3);
    net.settle();
    assert_eq!(net.zabs[&4].last_committed_zxid(), z);
    // An ACK from the observer is dropped, not counted.
    let dropped = net.zabs[&3].stats().dropped;
    net.zabs.get_mut(&3).unwrap().step(
        4,
        PeerMessage::Ack {
            zxid: make_zxid(1, 2),
        },
    );
    assert_eq!(net.zabs[&3].stats().dropped, dropped + 1);
}

#[test]
fn single_voter_leads_alone() {
    let mut net = Net::new(&[7], &[], |_| {});
    net.settle();
    assert_eq!(net.leader(), Some(7));
    let z = net
        .zabs
        .get_mut(&7)
        .unwrap()
        .propose(Bytes::from_static(b"a"))
        .unwrap();
    net.drain(7);
    assert_eq!(net.zabs[&7].last_committed_zxid(), 0, "not durable yet");
    net.persist(7);
    assert_eq!(net.zabs[&7].last_committed_zxid(), z);
}

#[test]
fn outstanding_proposals_are_bounded() {
    let mut net = Net::new(&[1, 2, 3], &[], |c| c.max_outstanding_proposals = 2);
    net.settle();
    let l = net.zabs.get_mut(&3).unwrap();
    l.propose(Bytes::new()).unwrap();
    l.propose(Bytes::new()).unwrap();
    assert_eq!(
        l.propose(Bytes::new()),
        Err(ProposeError::TooManyOutstanding)
    );
    assert_eq!(
        l.propose(Bytes::from(vec![0; 0x100000])),
        Err(ProposeError::TooLarge)
    );
}

#[test]
fn follower_sync_completes_after_the_leaders_commits() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    net.events.clear();
    net.zabs
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from_static(b"a"))
        .unwrap();
    net.drain(3);
    net.zabs.get_mut(&1).unwrap().sync(5).unwrap();
    net.drain(1);
    // 1's SYNC reaches the leader before anyone acked 1.1: the answer waits.
    net.deliver_one(1, 3);
    assert!(net
        .links
        .get(&(3, 1))
        .map(|q| !q.iter().any(|m| *m == PeerMessage::SyncDone { id: 5 }))
        .unwrap_or(true));
    net.settle();
    let evs = &net.events[&1];
    assert!(evs.contains(&Event::SyncDone { id: 5 }));
    assert_eq!(
        net.zabs[&1].last_committed_zxid(),
        make_zxid(1, 1),
        "applied before the sync is done"
    );
}

#[test]
fn leader_hands_forwarded_requests_to_its_runtime() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    net.zabs
        .get_mut(&1)
        .unwrap()
        .forward(42, 7, Bytes::from_static(b"w"))
        .unwrap();
    let r = net.zabs.get_mut(&1).unwrap().ready();
    let msg = match &r.messages[..] {
        [Outbound::Send { to: 3, msg }] => msg.clone(),
        other => panic!("unexpected {other:?}"),
    };
    net.zabs.get_mut(&3).unwrap().step(1, msg);
    let r = net.zabs.get_mut(&3).unwrap().ready();
    assert_eq!(
        r.events,
        vec![Event::Request {
            from: 1,
            session: 42,
            cxid: 7,
            payload: Bytes::from_static(b"w")
        }]
    );
}

#[test]
fn leader_sync_waits_for_earlier_proposals() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    net.events.clear();
    let l = net.zabs.get_mut(&3).unwrap();
    l.propose(Bytes::from_static(b"a")).unwrap();
    l.sync(9).unwrap();
    net.drain(3);
    assert!(
        !net.events[&3].contains(&Event::SyncDone { id: 9 }),
        "1.1 is not committed yet"
    );
    net.settle();
    assert!(net.events[&3].contains(&Event::SyncDone { id: 9 }));
    // With nothing in flight a sync is done at once.
    net.zabs.get_mut(&3).unwrap().sync(10).unwrap();
    net.drain(3);
    assert_eq!(net.events[&3].last(), Some(&Event::SyncDone { id: 10 }));
}

#[test]
fn quorum_reads_waits_for_a_quorum_heartbeat() {
    // quorumReads: even with nothing in flight, a sync is done only after a
    // quorum echoed a heartbeat sent after it (a deposed leader cannot answer).
    let mut net = Net::new(&[1, 2, 3], &[], |c| c.quorum_reads = true);
    net.settle();
    net.events.clear();
    net.zabs.get_mut(&3).unwrap().sync(11).unwrap();
    net.drain(3);
    let done = |net: &Net| {
        net.events
            .get(&3)
            .is_some_and(|e| e.contains(&Event::SyncDone { id: 11 }))
    };
    assert!(!done(&net), "answered before any heartbeat round");
    // A heartbeat round (tick) and its echoes complete it.
    for _ in 0..3 {
        for sid in [1, 2, 3] {
            net.zabs.get_mut(&sid).unwrap().tick();
        }
        net.settle();
    }
    assert!(done(&net), "not answered after quorum heartbeats");
}

#[test]
fn a_lost_followerinfo_is_repeated_and_discovery_completes_within_init_limit() {
    // Seen with real processes: a FOLLOWERINFO lost while a connection was being
    // replaced stalled discovery until initLimit, again and again.
    let mut net = Net::new(&[1, 2, 3], &[], |c| c.init_limit = 20);
    let mut dropped = BTreeSet::new();
    for round in 0..8 {
        for ((from, _), q) in net.links.iter_mut() {
            let before = q.len();
            if !dropped.contains(from) {
                q.retain(|m| !matches!(m, PeerMessage::FollowerInfo { .. }));
                if q.len() < before {
                    dropped.insert(*from);
                }
            }
        }
        net.deliver_all();
        for s in [1, 2, 3] {
            net.persist(s);
        }
        net.deliver_all();
        if net.leader().is_some() {
            assert!(!dropped.is_empty(), "the test dropped nothing");
            assert!(round < 8);
            return;
        }
        net.tick_all();
    }
    panic!("no serving leader within 8 ticks (initLimit is 20): FOLLOWERINFO was not repeated");
}

#[test]
fn config_validation() {
    let ok = ZabConfig::new(1, [1, 2, 3], [4]);
    assert_eq!(ok.validate(), Ok(()));
    assert!(
        ZabConfig::new(9, [1, 2, 3], []).validate().is_err(),
        "not a member"
    );
    assert!(
        ZabConfig::new(1, [1, 2], [2]).validate().is_err(),
        "voter and observer"
    );
    assert!(
        ZabConfig::new(1, Vec::<Sid>::new(), [1])
            .validate()
            .is_err(),
        "no voters"
    );
    let mut c = ok.clone();
    c.sync_limit = 0;
    assert!(c.validate().is_err());
    let mut c = ok;
    c.max_txn_bytes = c.max_frame_bytes;
    assert!(c.validate().is_err());
}

#[test]
fn new_rejects_inconsistent_persisted_state() {
    let cfg = ZabConfig::new(1, [1, 2, 3], []);
    let bad_epochs = PersistedState {
        accepted_epoch: 1,
        current_epoch: 2,
        ..Default::default()
    };
    assert!(Zab::new(cfg.clone(), bad_epochs).is_err());
    let bad_last = PersistedState {
        last_logged_zxid: make_zxid(1, 2),
        log_tail: vec![(make_zxid(1, 1), Bytes::new())],
        ..Default::default()
    };
    assert!(Zab::new(cfg, bad_last).is_err());
}

#[test]
fn strangers_and_nonsense_are_dropped_and_counted() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    let f = net.zabs.get_mut(&1).unwrap();
    let before = f.stats().dropped;
    f.step(99, PeerMessage::UpToDate); // not a member
    f.step(2, PeerMessage::Commit { zxid: 5 }); // not my leader
    f.step(3, PeerMessage::LeaderInfo { new_epoch: 9 }); // wrong phase
    f.step(
        3,
        PeerMessage::Proposal {
            zxid: make_zxid(5, 1),
            payload: Bytes::new(),
        },
    ); // future epoch
    assert_eq!(f.stats().dropped, before + 4);
    assert_eq!(f.role(), Role::Following { leader: 3 });
    // A commit of a txn it never got means a lost message: resync.
    f.step(
        3,
        PeerMessage::Commit {
            zxid: make_zxid(1, 40),
        },
    );
    assert_eq!(f.stats().dropped, before + 5);
    assert_eq!(f.role(), Role::Looking);
}

fn arb_msg() -> impl Strategy<Value = PeerMessage> {
    let zx = prop_oneof![
        Just(0i64),
        Just(make_zxid(1, 0)),
        Just(make_zxid(1, 1)),
        Just(make_zxid(2, 3)),
        any::<i64>()
    ];
    let ep = prop_oneof![Just(0u32), Just(1u32), Just(2u32), any::<u32>()];
    prop_oneof![
        (1u64..5, zx.clone(), ep.clone(), 0u64..4, 0u8..4).prop_map(
            |(leader, zxid, peer_epoch, ee, st)| {
                let state = [
                    ServerState::Looking,
                    ServerState::Following,
                    ServerState::Leading,
                    ServerState::Observing,
                ][st as usize];
                PeerMessage::Notification(Notification {
                    vote: Vote {
                        leader,
                        zxid,
                        peer_epoch,
                    },
                    election_epoch: ee,
                    state,
                })
            }
        ),
        (ep.clone(), zx.clone()).prop_map(|(accepted_epoch, last_zxid)| {
            PeerMessage::FollowerInfo {
                accepted_epoch,
                last_zxid,
            }
        }),
        (ep.clone(), zx.clone()).prop_map(|(accepted_epoch, last_zxid)| {
            PeerMessage::ObserverInfo {
                accepted_epoch,
                last_zxid,
            }
        }),
        ep.clone()
            .prop_map(|new_epoch| PeerMessage::LeaderInfo { new_epoch }),
        (ep, zx.clone()).prop_map(|(current_epoch, last_zxid)| PeerMessage::AckEpoch {
            current_epoch,
            last_zxid
        }),
        zx.clone()
            .prop_map(|last_zxid| PeerMessage::Diff { last_zxid }),
        zx.clone().prop_map(|zxid| PeerMessage::Trunc { zxid }),
        zx.clone().prop_map(|zxid| PeerMessage::Snap {
            zxid,
            snapshot: Bytes::new()
        }),
        zx.clone().prop_map(|zxid| PeerMessage::Proposal {
            zxid,
            payload: Bytes::new()
        }),
        zx.clone().prop_map(|zxid| PeerMessage::Ack { zxid }),
        zx.clone().prop_map(|zxid| PeerMessage::Commit { zxid }),
        zx.clone().prop_map(|zxid| PeerMessage::Inform {
            zxid,
            payload: Bytes::new()
        }),
        zx.prop_map(|zxid| PeerMessage::NewLeader { zxid }),
        Just(PeerMessage::UpToDate),
        any::<u64>().prop_map(|round| PeerMessage::Ping {
            round,
            touches: vec![]
        }),
        any::<u64>().prop_map(|id| PeerMessage::Sync { id }),
        any::<u64>().prop_map(|id| PeerMessage::SyncDone { id }),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Deliver(Sid, Sid),
    Tick(Sid),
    Persist(Sid),
    PersistSome(Sid, usize),
    Propose(Sid),
    Inject(Sid, Sid, PeerMessage),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..4, 1u64..4).prop_map(|(a, b)| Op::Deliver(a, b)),
        2 => (1u64..4).prop_map(Op::Tick),
        3 => (1u64..4).prop_map(Op::Persist),
        3 => (1u64..4, 1usize..4).prop_map(|(s, n)| Op::PersistSome(s, n)),
        2 => (1u64..4).prop_map(Op::Propose),
        1 => (1u64..5, 1u64..4, arb_msg()).prop_map(|(a, b, m)| Op::Inject(a, b, m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random schedules of delivery, ticks, durability reports, proposals
    /// and injected garbage: no panic, invariants hold after every step
    /// (debug assertions), and every ACK/ACKEPOCH is checked against what
    /// was reported durable; two servers never commit different txns.
    #[test]
    fn random_schedules_keep_rule_one_and_agreement(ops in proptest::collection::vec(arb_op(), 1..300)) {
        let mut net = Net::new(&[1, 2, 3], &[], |c| { c.sync_limit = 3; c.init_limit = 6; });
        let mut n = 0u32;
        for op in ops {
            match op {
                Op::Deliver(a, b) => { net.deliver_one(a, b); }
                Op::Tick(s) => { net.zabs.get_mut(&s).unwrap().tick(); net.drain(s); }
                Op::Persist(s) => net.persist(s),
                Op::PersistSome(s, n) => net.persist_prefix(s, n, false),
                Op::Propose(s) => {
                    n += 1;
                    let _ = net.zabs.get_mut(&s).unwrap().propose(Bytes::from(format!("p{n}")));
                    net.drain(s);
                }
                // A peer cannot forge the leader's messages in a crash-fault
                // model; it can send stale votes, pings and syncs.
                Op::Inject(a, b, m) => {
                    if matches!(m, PeerMessage::Notification(_) | PeerMessage::Ping { .. } | PeerMessage::Sync { .. }) {
                        net.zabs.get_mut(&b).unwrap().step(a, m);
                        net.drain(b);
                    }
                }
            }
        }
        // Then heal: everything durable, everything delivered, time passes.
        for _ in 0..12 { net.settle(); }
        let roles: Vec<(Sid, Role, bool, u64)> =
            net.zabs.iter().map(|(s, z)| (*s, z.role(), z.is_serving(), z.election_epoch())).collect();
        prop_assert!(net.leader().is_some(), "no leader after healing: {:?}", roles);
        let leader = net.leader().unwrap();
        let top = net.zabs[&leader].last_committed_zxid();
        for z in net.zabs.values() {
            prop_assert_eq!(z.last_committed_zxid(), top);
        }
    }

    /// Arbitrary messages from arbitrary members to a server in any phase
    /// never panic and never break the invariants.
    #[test]
    fn arbitrary_messages_never_panic(setup in 0usize..4, msgs in proptest::collection::vec((1u64..5, arb_msg()), 1..40)) {
        let mut net = Net::new(&[1, 2, 3], &[4], |_| {});
        for _ in 0..setup { net.settle(); }
        for (from, m) in msgs {
            for to in [1u64, 3] {
                net.zabs.get_mut(&to).unwrap().step(from, m.clone());
                let _ = net.zabs.get_mut(&to).unwrap().ready();
            }
        }
    }
}

#[test]
fn disconnects_end_following_and_leaders_forget_learners() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    net.zabs.get_mut(&1).unwrap().peer_disconnected(3);
    assert_eq!(
        net.zabs[&1].role(),
        Role::Looking,
        "a follower whose leader is gone looks"
    );
    let l = net.zabs.get_mut(&3).unwrap();
    l.peer_disconnected(1);
    l.tick();
    assert_eq!(
        l.role(),
        Role::Leading,
        "2 and the leader are still a quorum"
    );
    l.peer_disconnected(2);
    assert_eq!(
        l.role(),
        Role::Looking,
        "alone, the leader steps down at once, before its next tick"
    );
    assert_eq!(l.sync(1), Err(ProposeError::NotServing));
}

#[test]
fn a_looking_server_greets_new_connections() {
    let cfg = ZabConfig::new(1, [1, 2, 3], []);
    let mut z = Zab::new(cfg, PersistedState::default()).unwrap();
    let _ = z.ready();
    z.peer_connected(2);
    z.peer_connected(9); // not a member
    let r = z.ready();
    assert!(matches!(
        &r.messages[..],
        [Outbound::Send { to: 2, msg: PeerMessage::Notification(n) }] if n.state == ServerState::Looking
    ));
}

#[test]
fn a_restarted_server_with_a_log_tail_resumes_its_history() {
    let z = |c| make_zxid(1, c);
    let state = PersistedState {
        accepted_epoch: 1,
        current_epoch: 1,
        last_logged_zxid: z(3),
        last_committed_zxid: z(2),
        log_tail_base: z(1),
        log_tail: vec![
            (z(2), Bytes::from_static(b"b")),
            (z(3), Bytes::from_static(b"c")),
        ],
    };
    let cfg = ZabConfig::new(1, [1], []);
    let mut zab = Zab::new(cfg, state).unwrap();
    assert_eq!(
        zab.current_vote(),
        Vote {
            leader: 1,
            zxid: z(3),
            peer_epoch: 1
        }
    );
    // A single voter elects itself on the finalize tick, establishes epoch 2
    // and commits its uncommitted tail (1.3) once its epochs are durable.
    zab.tick();
    let r = zab.ready();
    assert_eq!(
        r.persist,
        vec![PersistAction::SetAcceptedEpoch(2)],
        "the new epoch is above the accepted one"
    );
    zab.all_persisted();
    let r = zab.ready();
    assert_eq!(r.persist, vec![PersistAction::SetCurrentEpoch(2)]);
    assert!(
        r.commits.is_empty(),
        "the tail waits for the current epoch to be durable"
    );
    zab.epoch_persisted(EpochFile::Current, 2);
    let r = zab.ready();
    assert_eq!(r.commits, vec![(z(3), Bytes::from_static(b"c"))]);
    assert!(r.events.contains(&Event::Serving { epoch: 2 }));
    assert_eq!(zab.propose(Bytes::new()), Ok(make_zxid(2, 1)));
}

#[test]
fn a_zero_window_still_informs_observers_with_the_txn() {
    let mut net = Net::new(&[1, 2, 3], &[4], |c| c.committed_log_window = 0);
    net.settle();
    let z = net
        .zabs
        .get_mut(&3)
        .unwrap()
        .propose(Bytes::from_static(b"a"))
        .unwrap();
    net.drain(3);
    net.settle();
    // Net checks that every server commits the same txn at each zxid.
    assert_eq!(net.zabs[&4].last_committed_zxid(), z);
    assert_eq!(net.committed.get(&z), Some(&Bytes::from_static(b"a")));
}

/// Regression (sim `rolling-restart` seed 14 with replication): the learners
/// decided for server 3 while 3 itself was still in its finalize wait, so 3
/// dropped their FOLLOWERINFO as "looking". The learners then waited for a
/// LEADERINFO that never came while 3 waited for FOLLOWERINFO, both timed out
/// and re-elected 3 with the same phase shift, forever. Learners now repeat
/// FOLLOWERINFO each tick until LEADERINFO arrives.
#[test]
fn followerinfo_that_reaches_a_still_looking_leader_counts_once_it_leads() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.deliver_all();
    // 1 and 2 finish their finalize wait first and follow 3 ...
    for _ in 0..8 {
        for sid in [1, 2] {
            if net.zabs[&sid].role() == Role::Looking {
                net.zabs.get_mut(&sid).unwrap().tick();
                net.drain(sid);
            }
        }
    }
    assert_eq!(net.zabs[&1].role(), Role::Following { leader: 3 });
    assert_eq!(net.zabs[&2].role(), Role::Following { leader: 3 });
    assert_eq!(net.zabs[&3].role(), Role::Looking);
    // ... and 3, still looking, keeps their FOLLOWERINFO rather than drop it.
    let dropped = net.zabs[&3].stats().dropped;
    net.deliver_all();
    assert_eq!(net.zabs[&3].stats().dropped, dropped);
    while net.zabs[&3].role() == Role::Looking {
        net.zabs.get_mut(&3).unwrap().tick();
        net.drain(3);
    }
    assert_eq!(net.zabs[&3].role(), Role::Leading);
    // Discovery and synchronization complete without another tick: the
    // learners need not repeat their FOLLOWERINFO.
    for _ in 0..4 {
        net.deliver_all();
        for s in [1, 2, 3] {
            net.persist(s);
        }
    }
    assert_eq!(net.leader(), Some(3));
    assert!(net.zabs.values().all(|z| z.is_serving()));
}

/// A FOLLOWERINFO kept by a looking server is forgotten once its sender says
/// it looks again or its connection breaks: the leader this server may
/// become never counts a learner that left it.
#[test]
fn a_kept_followerinfo_is_forgotten_when_its_sender_looks_again() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.deliver_all();
    for _ in 0..8 {
        for sid in [1, 2] {
            if net.zabs[&sid].role() == Role::Looking {
                net.zabs.get_mut(&sid).unwrap().tick();
                net.drain(sid);
            }
        }
    }
    assert_eq!(net.zabs[&3].role(), Role::Looking);
    let kept = |net: &Net| {
        let k: Vec<Sid> = net.zabs[&3].election.early_info.keys().copied().collect();
        k
    };
    // 1 gives up on 3 before 3 hears anything: its FOLLOWERINFO reaches 3
    // and is kept, then its LOOKING notification of a new round, which
    // forgets it. 2's FOLLOWERINFO, behind no such notification, stays.
    let z1 = net.zabs.get_mut(&1).unwrap();
    z1.peer_disconnected(3);
    assert_eq!(z1.role(), Role::Looking);
    net.drain(1);
    assert!(net.deliver_one(1, 3));
    assert_eq!(kept(&net), vec![1]);
    while let Some(PeerMessage::FollowerInfo { .. }) = net.links[&(1, 3)].front() {
        net.deliver_one(1, 3);
    }
    assert!(net.deliver_one(1, 3));
    assert_eq!(kept(&net), Vec::<Sid>::new());
    assert!(net.deliver_one(2, 3));
    assert_eq!(kept(&net), vec![2]);
    // A broken connection forgets too.
    net.zabs.get_mut(&3).unwrap().peer_disconnected(2);
    assert_eq!(kept(&net), Vec::<Sid>::new());
    // The ensemble still settles on one leader that all serve.
    for _ in 0..20 {
        net.settle();
        if net.leader().is_some() && net.zabs.values().all(|z| z.is_serving()) {
            break;
        }
    }
    assert!(net.leader().is_some());
    assert!(net.zabs.values().all(|z| z.is_serving()));
}

/// A looking server that hears a worse vote of its own round answers it at
/// once: the sender may have voted while this server was still settled (a
/// follower whose leader died a moment after the sender saw it die).
#[test]
fn a_worse_vote_of_the_same_round_is_answered_at_once() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    assert_eq!(net.leader(), Some(3));
    // 3 dies. 2 sees it first and votes for itself; 1, still following 3,
    // answers with its settled vote; then 1 sees 3 die and votes for itself.
    net.links.retain(|(a, b), _| *a != 3 && *b != 3);
    net.zabs.get_mut(&2).unwrap().peer_disconnected(3);
    net.drain(2);
    net.deliver_one(2, 1);
    net.deliver_one(1, 2);
    net.zabs.get_mut(&1).unwrap().peer_disconnected(3);
    net.drain(1);
    assert_eq!(net.zabs[&1].election_epoch(), net.zabs[&2].election_epoch());
    // 1's vote reaches 2, which votes better in the same round: 2 answers,
    // 1 adopts 2's vote, and both agree without a tick.
    net.links.retain(|(a, b), _| *a != 3 && *b != 3);
    net.deliver_all();
    assert_eq!(net.zabs[&1].current_vote().leader, 2);
    for _ in 0..3 {
        net.zabs.get_mut(&1).unwrap().tick();
        net.drain(1);
        net.zabs.get_mut(&2).unwrap().tick();
        net.drain(2);
        net.links.retain(|(a, b), _| *a != 3 && *b != 3);
        net.deliver_all();
    }
    assert_eq!(net.zabs[&2].role(), Role::Leading);
    assert_eq!(net.zabs[&1].role(), Role::Following { leader: 2 });
}

/// Regression (sim `rolling-restart` seed 123 with replication): in a new
/// epoch with no proposal yet, the leader made every `sync` wait for zxid
/// (epoch, 0), which is never committed, so syncs (and the pings queued
/// behind them) hung until some client wrote.
#[test]
fn a_sync_in_a_fresh_epoch_with_nothing_proposed_is_done_at_once() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    assert_eq!(net.leader(), Some(3));
    net.events.clear();
    net.zabs.get_mut(&3).unwrap().sync(7).unwrap();
    net.drain(3);
    assert_eq!(net.events[&3].last(), Some(&Event::SyncDone { id: 7 }));
    // A follower's sync goes to the leader and back.
    net.zabs.get_mut(&1).unwrap().sync(8).unwrap();
    net.drain(1);
    net.deliver_all();
    assert!(net.events[&1].contains(&Event::SyncDone { id: 8 }));
}

/// The position of `Disconnect { peer }` and of the first message to `peer`
/// in `msgs`.
fn disconnect_then_send(msgs: &[Outbound], peer: Sid) -> (Option<usize>, Option<usize>) {
    let disconnect = msgs
        .iter()
        .position(|m| *m == Outbound::Disconnect { peer });
    let send = msgs
        .iter()
        .position(|m| matches!(m, Outbound::Send { to, .. } if *to == peer));
    (disconnect, send)
}

#[test]
fn a_learner_that_abandons_its_silent_leader_closes_that_connection_first() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    assert_eq!(net.leader(), Some(3));
    let sync_limit = net.zabs[&1].cfg.sync_limit;
    // Nothing reaches 1 any more: after syncLimit silent ticks it gives up.
    let f = net.zabs.get_mut(&1).unwrap();
    for _ in 0..sync_limit {
        f.tick();
        let r = f.ready();
        assert!(!r.messages.contains(&Outbound::Disconnect { peer: 3 }));
    }
    f.tick();
    assert_eq!(f.role(), Role::Looking);
    let r = f.ready();
    let (disconnect, vote) = disconnect_then_send(&r.messages, 3);
    assert!(
        disconnect.is_some() && disconnect < vote,
        "the connection to the abandoned leader closes before the new vote goes out: {:?}",
        r.messages
    );
    // No other connection is closed for it.
    assert_eq!(
        r.messages
            .iter()
            .filter(|m| matches!(m, Outbound::Disconnect { .. }))
            .count(),
        1
    );
}

#[test]
fn a_leader_drops_a_silent_learner_and_its_connection_and_it_rejoins() {
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    net.settle();
    assert_eq!(net.leader(), Some(3));
    let sync_limit = net.zabs[&3].cfg.sync_limit;
    // 1 stops answering (as if paused); 2 and the leader go on.
    for _ in 0..sync_limit {
        for s in [2, 3] {
            net.zabs.get_mut(&s).unwrap().tick();
            net.drain(s);
        }
        net.links.remove(&(1, 3));
        net.links.remove(&(3, 1));
        net.deliver_all();
        net.persist(2);
        net.persist(3);
        assert!(net.disconnects.is_empty(), "dropped within syncLimit");
    }
    net.zabs.get_mut(&3).unwrap().tick();
    net.drain(3);
    assert_eq!(net.disconnects, vec![(3, 1)]);
    assert_eq!(net.zabs[&3].learner_counts(), Some((1, 1, 0)));
    assert!(net.zabs[&3].is_serving(), "2 and the leader are a quorum");
    // 1 saw its connection to the leader break: it looks, and rejoins.
    assert_eq!(net.zabs[&1].role(), Role::Looking);
    net.settle();
    assert_eq!(net.zabs[&1].role(), Role::Following { leader: 3 });
    assert!(net.zabs.values().all(|z| z.is_serving()));
    assert_eq!(net.zabs[&3].learner_counts(), Some((2, 2, 0)));
}

/// A LOOKING vote from an election round before the first.
fn stale_vote(leader: Sid) -> PeerMessage {
    PeerMessage::Notification(Notification {
        vote: Vote {
            leader,
            zxid: 0,
            peer_epoch: 0,
        },
        election_epoch: 0,
        state: ServerState::Looking,
    })
}

#[test]
fn a_looking_server_reconnects_to_voters_that_leave_its_notification_unanswered() {
    let cfg = ZabConfig::new(1, [1, 2, 3], []);
    let resend = cfg.election_resend;
    let mut z = Zab::new(cfg, PersistedState::default()).unwrap();
    let _ = z.ready();
    // 2 answers (a late vote of an older round, which decides nothing); 3
    // stays silent.
    z.step(2, stale_vote(2));
    let _ = z.ready();
    for _ in 1..resend {
        z.tick();
        assert!(z.ready().is_empty(), "nothing before the resend");
    }
    z.tick();
    let r = z.ready();
    let (disconnect, vote) = disconnect_then_send(&r.messages, 3);
    assert!(
        disconnect.is_some() && disconnect < vote,
        "3 left the notification unanswered: {:?}",
        r.messages
    );
    assert_eq!(disconnect_then_send(&r.messages, 2).0, None, "2 answered");
    // A fresh connection greets 3 and starts a new wait; 3 answers this
    // time, and 2 stays silent: the next resend (after a doubled interval)
    // closes 2's connection, not 3's.
    z.peer_connected(3);
    let r = z.ready();
    assert!(matches!(&r.messages[..], [Outbound::Send { to: 3, .. }]));
    z.step(3, stale_vote(3));
    let _ = z.ready();
    let mut closed = Vec::new();
    for _ in 0..2 * resend {
        z.tick();
        assert_eq!(z.role(), Role::Looking);
        for m in z.ready().messages {
            if let Outbound::Disconnect { peer } = m {
                closed.push(peer);
            }
        }
    }
    assert_eq!(closed, vec![2]);
}

#[test]
fn a_leaderinfo_epoch_no_quorum_agreed_to_is_refused() {
    // A forged LEADERINFO(0xFFFFFFFF) to a follower in discovery: it must not persist
    // that epoch (every later discovery would fail: the epoch space is exhausted); it
    // looks again and follows the real leader.
    let mut net = Net::new(&[1, 2, 3], &[], |_| {});
    let mut forged = false;
    for _ in 0..40 {
        // Deliver one message at a time, forging the first LEADERINFO for 1 in flight.
        for _ in 0..10_000 {
            if !forged {
                for ((_, to), q) in net.links.iter_mut() {
                    for m in q.iter_mut().filter(|_| *to == 1) {
                        if let PeerMessage::LeaderInfo { new_epoch } = m {
                            *new_epoch = u32::MAX;
                            forged = true;
                        }
                    }
                }
            }
            let next = net
                .links
                .iter()
                .find(|(_, q)| !q.is_empty())
                .map(|(k, _)| *k);
            let Some((a, b)) = next else { break };
            net.deliver_one(a, b);
        }
        for s in [1, 2, 3] {
            net.persist(s);
        }
        net.deliver_all();
        if forged && net.leader().is_some() && net.zabs[&1].is_serving() {
            break;
        }
        net.tick_all();
    }
    assert!(forged, "the test forged nothing");
    assert!(
        net.zabs[&1].accepted_epoch() < 10,
        "{}",
        net.zabs[&1].accepted_epoch()
    );
    let leader = net.leader().expect("a serving leader");
    assert_eq!(net.zabs[&1].role(), Role::Following { leader });
    assert!(net.zabs[&1].is_serving());
}
