//! Scripted runs (madsim builds only): a fixed sequence of steps on a real simulated
//! ensemble, for bugs that a random fault plan reaches only rarely, judged by the same
//! checks as a campaign run.
//!
//! [`lagging_learner_reconnect`]: a client creates its session through one follower while
//! the leader's link to the other follower is clogged (that follower keeps serving, its
//! session table behind the ensemble's), and then resumes the session on the lagging
//! follower. The server must not answer "expired": the session's CloseSession was never
//! committed ([`crate::judge::expiry_check`]).
//!
//! [`closed_session_on_lagging_learner`]: the opposite case. A session is closed while one
//! follower hears nothing from the leader (its table still holds the session); the client
//! then resumes it on that follower and creates an ephemeral. No ephemeral may end up
//! owned by a session that was closed: nothing would ever remove it (ZooKeeper's learner
//! revalidates every reconnect with the leader, and the leader's PrepRequestProcessor
//! answers SessionExpired for a closed session).
//!
//! [`sync_on_lagging_learner`]: a write is acknowledged while one follower hears nothing
//! from the leader; a client on that follower then calls `sync` and reads. The read must
//! see the write: the learner forwards the sync to the leader and answers it only after
//! the leader's SYNC, which follows every commit before it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::{sleep, Instant};
use zabkeeper::broken::Bug;
use zabkeeper::client::{Client, ClientOptions, Error};
use zabkeeper::server::session_password;
use zabkeeper::storage::SimFs;
use zabkeeper::types::{Acl, CreateMode, ErrorCode};

use crate::clock::Clocks;
use crate::history::{Event, EventType};
use crate::judge::{Observation, ObservationLog};
use crate::sut::crash_points::CrashPoints;
use crate::sut::node::{serve, NodeTiming};
use crate::sut::{client_ip, server_ip, CLIENT_PORT};

/// What a scripted run produced.
#[derive(Debug, Clone)]
pub struct ScriptedOutput {
    /// The client history (the reconnects, recorded as `reconnect` operations).
    pub history: Vec<Event>,
    /// The servers' observations.
    pub observations: Vec<Observation>,
    /// What happened, step by step.
    pub notes: Vec<String>,
}

impl ScriptedOutput {
    /// The history without the `reconnect-unknown` probe (a session that never existed,
    /// so never closed either: [`crate::judge::expiry_check`] judges the real session).
    pub fn real_session(&self) -> Vec<Event> {
        self.history
            .iter()
            .filter(|e| e.f != "reconnect-unknown")
            .cloned()
            .collect()
    }
}

/// Timing of the scripted ensemble: 100 ms ticks, syncLimit 10 (a follower that hears
/// nothing from its leader keeps serving for 1 s).
const TIMING: NodeTiming = NodeTiming {
    tick_ms: 100,
    voters: 3,
    observers: 0,
    snap_count: 10_000,
    autopurge: false,
    commit_log_count: 500,
    init_limit: 10,
    sync_limit: 10,
    quorum_reads: false,
    global_outstanding_limit: 1000,
    core_ticks: Some(1),
    zxid_counter_limit: None,
    read_only: false,
    local_sessions: None,
};

/// How long after the session's creation the link from the leader to the lagging
/// follower is unclogged.
const UNCLOG_AFTER_MS: u64 = 100;

fn addr(i: usize) -> String {
    format!("{}:{CLIENT_PORT}", server_ip(i))
}

/// The simulated three-voter ensemble both scripts start from, settled.
struct Settled {
    start: Instant,
    log: ObservationLog,
    servers: Vec<NodeHandle>,
    /// The node the scripts' clients run on.
    client: NodeHandle,
    leader: usize,
    /// The follower the session is made through, and the one that will lag.
    a: usize,
    f: usize,
}

/// Starts three voters, waits for a leader and gives both followers time to sync.
async fn settled_ensemble(seed: u64) -> Settled {
    let handle = Handle::current();
    let start = Instant::now();
    let log = ObservationLog::default();
    let clocks = Clocks::default();
    // No crash point is ever armed in a scripted run.
    let (points, _) = CrashPoints::new();
    let servers: Vec<NodeHandle> = (0..TIMING.voters)
        .map(|i| {
            let (log, clocks, points) = (log.clone(), clocks.clone(), points.clone());
            let fs = SimFs::new(seed ^ (0x5eed_0000 + i as u64));
            handle
                .create_node()
                .name(format!("s{i}"))
                .ip(server_ip(i))
                .init(move || {
                    let (fs, clocks, log, points) =
                        (fs.clone(), clocks.clone(), log.clone(), points.clone());
                    serve(i, fs, clocks, start, TIMING, log, points)
                })
                .build()
        })
        .collect();
    let client = handle.create_node().name("c0").ip(client_ip(0)).build();
    let leader = loop {
        if let Some(l) = log.current_leader() {
            break l;
        }
        sleep(Duration::from_millis(50)).await;
    };
    sleep(Duration::from_secs(3)).await;
    let followers: Vec<usize> = (0..TIMING.voters).filter(|&i| i != leader).collect();
    Settled {
        start,
        log,
        servers,
        client,
        leader,
        a: followers[0],
        f: followers[1],
    }
}

/// The scripts' client options: a 6 s session, 5 s to connect, resuming `session` if given.
fn options(seed: u64, session: Option<i64>) -> ClientOptions {
    let mut o = ClientOptions::with_timeout(Duration::from_secs(6));
    o.seed = seed;
    o.connect_timeout = Some(Duration::from_secs(5));
    o.session = session.map(|id| (id, session_password(id)));
    o
}

/// Runs the lagging-learner reconnect script (see the module docs) in a fresh madsim
/// runtime seeded with `seed`:
///
/// 1. three voters elect a leader L and settle; A and F are its followers;
/// 2. the link L -> F is clogged: F hears nothing from L but keeps serving (for syncLimit);
/// 3. a client creates a session through A (committed by L and A) and leaves it open;
/// 4. the client resumes the session on F (`reconnect`), while L -> F is still clogged;
///    the link is unclogged 100 ms later (well before F's syncLimit runs out);
/// 5. a client resumes a session that never existed (with a valid password) on F
///    (`reconnect-unknown`): that one must be told it expired.
///
/// `broken` switches a deliberately broken behaviour on in every server.
pub fn lagging_learner_reconnect(seed: u64, broken: Option<Bug>) -> ScriptedOutput {
    script(seed, broken, lagging_learner_script(seed))
}

/// Runs `script` in a fresh madsim runtime seeded with `seed`, with `broken` switched on.
fn script<T>(seed: u64, broken: Option<Bug>, script: impl std::future::Future<Output = T>) -> T {
    let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(120));
    zabkeeper::broken::set(broken);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(script)));
    zabkeeper::broken::set(None);
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

async fn lagging_learner_script(seed: u64) -> ScriptedOutput {
    let net = NetSim::current();
    // 1. A leader, and time for both followers to sync with it.
    let Settled {
        start,
        log,
        servers,
        client,
        leader,
        a,
        f,
    } = settled_ensemble(seed).await;
    let mut notes = vec![format!(
        "leader s{leader}, session through s{a}, lagging s{f}"
    )];

    // 2. F stops hearing from L (messages wait on the link and arrive after the unclog).
    net.clog_link(servers[leader].id(), servers[f].id());

    // 3-5 run on the client node; the unclog happens on the supervisor meanwhile.
    let created = Arc::new(AtomicBool::new(false));
    let script = {
        let created = Arc::clone(&created);
        client.spawn(async move {
            let mut history = Vec::new();
            let mut notes = Vec::new();
            let owner = match Client::connect(&addr(a), options(1, None)).await {
                Ok(c) => c,
                Err(e) => {
                    notes.push(format!("no session through s{a}: {e}"));
                    return (history, notes);
                }
            };
            let id = owner.session_id();
            notes.push(format!(
                "{}ms session {id:#x} created through s{a}",
                start.elapsed().as_millis()
            ));
            created.store(true, Ordering::SeqCst);
            for (f_name, session) in [("reconnect", id), ("reconnect-unknown", id ^ 0x7777)] {
                let session_hex = format!("{session:#x}");
                let event = |kind, error: Option<String>| Event {
                    kind,
                    f: f_name.to_string(),
                    time: Some(start.elapsed().as_nanos() as u64),
                    session: Some(session),
                    node: Some(format!("s{f}")),
                    error,
                    ..Event::default()
                };
                history.push(event(EventType::Invoke, None));
                let outcome = Client::connect(&addr(f), options(2, Some(session))).await;
                let (kind, error) = match &outcome {
                    Ok(_) => (EventType::Ok, None),
                    Err(Error::Keeper(ErrorCode::SessionExpired)) => {
                        (EventType::Fail, Some("SessionExpired".to_string()))
                    }
                    Err(e) => (EventType::Info, Some(format!("{e}"))),
                };
                notes.push(format!(
                    "{}ms {f_name} of {session_hex} on s{f}: {kind:?} {error:?}",
                    start.elapsed().as_millis()
                ));
                history.push(event(kind, error));
                if let Ok(c) = outcome {
                    // The session is usable on F.
                    let read = c.get_data("/", false).await.map(|_| ());
                    notes.push(format!("read on the resumed session: {read:?}"));
                    drop(c);
                }
            }
            drop(owner);
            (history, notes)
        })
    };
    while !created.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
        sleep(Duration::from_millis(5)).await;
    }
    sleep(Duration::from_millis(UNCLOG_AFTER_MS)).await;
    net.unclog_link(servers[leader].id(), servers[f].id());
    notes.push(format!("{}ms unclogged", start.elapsed().as_millis()));
    let (history, client_notes) = script.await.expect("the client script does not panic");
    notes.extend(client_notes);
    ScriptedOutput {
        history,
        observations: log.snapshot(),
        notes,
    }
}

/// What [`closed_session_on_lagging_learner`] found.
#[derive(Debug, Clone)]
pub struct ClosedSessionOutput {
    /// Ephemerals on the leader at the end whose owner is the closed session.
    pub leaked: Vec<String>,
    /// What happened, step by step.
    pub notes: Vec<String>,
}

/// Runs the closed-session script (see the module docs) in a fresh madsim runtime:
///
/// 1. three voters elect a leader L and settle; A and F are its followers;
/// 2. a client creates a session S through A; time for F to apply it;
/// 3. the link L -> F is clogged (F keeps serving for syncLimit);
/// 4. S is closed through A (committed by L and A; F still holds S);
/// 5. a client resumes S on F and, if that succeeds, creates the ephemeral `/leak`;
/// 6. the link is unclogged; after the ensemble settles, a fresh client lists the
///    ephemerals owned by S on the leader: there must be none.
///
/// `broken` switches a deliberately broken behaviour on in every server.
pub fn closed_session_on_lagging_learner(seed: u64, broken: Option<Bug>) -> ClosedSessionOutput {
    script(seed, broken, closed_session_script(seed))
}

async fn closed_session_script(seed: u64) -> ClosedSessionOutput {
    let net = NetSim::current();
    let Settled {
        start,
        servers,
        client,
        leader,
        a,
        f,
        ..
    } = settled_ensemble(seed).await;
    let mut notes = vec![format!(
        "leader s{leader}, session through s{a}, lagging s{f}"
    )];
    let step = client.spawn(async move {
        let c = Client::connect(&addr(a), options(1, None)).await.ok()?;
        let id = c.session_id();
        // Time for F to apply the CreateSession.
        sleep(Duration::from_millis(500)).await;
        Some((c, id))
    });
    let Some((owner, id)) = step.await.expect("no panic") else {
        notes.push(format!("no session through s{a}"));
        return ClosedSessionOutput {
            leaked: Vec::new(),
            notes,
        };
    };
    notes.push(format!(
        "{}ms session {id:#x} through s{a}",
        start.elapsed().as_millis()
    ));
    net.clog_link(servers[leader].id(), servers[f].id());
    let closed = client
        .spawn(async move { owner.close().await.map_err(|e| format!("{e}")) })
        .await
        .expect("no panic");
    notes.push(format!(
        "{}ms session closed through s{a}: {closed:?}",
        start.elapsed().as_millis()
    ));
    let resumed = client.spawn(async move {
        let mut notes = Vec::new();
        match Client::connect(&addr(f), options(2, Some(id))).await {
            Ok(c) => {
                notes.push(format!("resumed on s{f}"));
                let made = c
                    .create("/leak", b"", &Acl::open_unsafe(), CreateMode::Ephemeral)
                    .await;
                notes.push(format!("create /leak on s{f}: {made:?}"));
                // The session is closed: whatever the server said, leave it.
                drop(c);
            }
            Err(e) => notes.push(format!("resume on s{f}: {e}")),
        }
        notes
    });
    sleep(Duration::from_millis(400)).await;
    net.unclog_link(servers[leader].id(), servers[f].id());
    notes.push(format!("{}ms unclogged", start.elapsed().as_millis()));
    notes.extend(resumed.await.expect("no panic"));
    sleep(Duration::from_secs(3)).await;
    let leaked = client
        .spawn(async move {
            let c = Client::connect(&addr(leader), options(3, None))
                .await
                .ok()?;
            let mut leaked = Vec::new();
            for child in c.get_children("/", false).await.ok()? {
                let path = format!("/{child}");
                if let Ok(Some(stat)) = c.exists(&path, false).await {
                    if stat.ephemeral_owner == id {
                        leaked.push(path);
                    }
                }
            }
            Some(leaked)
        })
        .await
        .expect("no panic");
    notes.push(format!(
        "ephemerals of the closed session on s{leader}: {leaked:?}"
    ));
    ClosedSessionOutput {
        leaked: leaked.unwrap_or_default(),
        notes,
    }
}

/// What [`sync_on_lagging_learner`] found.
#[derive(Debug, Clone)]
pub struct SyncReadOutput {
    /// The data acknowledged by the last write before the sync.
    pub acknowledged: Option<String>,
    /// The data the read after the sync on the lagging follower returned.
    pub read: Option<String>,
    /// What happened, step by step.
    pub notes: Vec<String>,
}

/// Runs the sync-then-read script in a fresh madsim runtime:
///
/// 1. three voters elect a leader L and settle; A and F are its followers;
/// 2. a client creates `/k` = "old" through A; time for F to apply it;
/// 3. the link L -> F is clogged (F keeps serving for syncLimit, its tree behind);
/// 4. `/k` = "new" is written through A (committed by L and A, acknowledged);
/// 5. a client on F calls `sync /k` and then reads `/k`; the link is unclogged 400 ms
///    later. ZooKeeper's contract: a read after sync sees every write acknowledged
///    before the sync was called, so the read must return "new".
///
/// `broken` switches a deliberately broken behaviour on in every server.
pub fn sync_on_lagging_learner(seed: u64, broken: Option<Bug>) -> SyncReadOutput {
    script(seed, broken, sync_script(seed))
}

async fn sync_script(seed: u64) -> SyncReadOutput {
    let net = NetSim::current();
    let Settled {
        start,
        servers,
        client,
        leader,
        a,
        f,
        ..
    } = settled_ensemble(seed).await;
    let mut notes = vec![format!(
        "leader s{leader}, writes through s{a}, lagging s{f}"
    )];
    let created = client
        .spawn(async move {
            let c = Client::connect(&addr(a), options(1, None)).await.ok()?;
            c.create("/k", b"old", &Acl::open_unsafe(), CreateMode::Persistent)
                .await
                .ok()?;
            // The reader's session is made before the clog (its CreateSession is a txn
            // that F must apply before it answers the connect).
            let r = Client::connect(&addr(f), options(2, None)).await.ok()?;
            // Time for F to apply the create.
            sleep(Duration::from_millis(500)).await;
            Some((c, r))
        })
        .await
        .expect("no panic");
    let Some((writer, reader)) = created else {
        notes.push(format!("no create through s{a} or no session on s{f}"));
        return SyncReadOutput {
            acknowledged: None,
            read: None,
            notes,
        };
    };
    net.clog_link(servers[leader].id(), servers[f].id());
    let written = client
        .spawn(async move {
            writer
                .set_data("/k", b"new", -1)
                .await
                .map(|_| "new".to_string())
        })
        .await
        .expect("no panic");
    notes.push(format!(
        "{}ms set /k through s{a}: {written:?}",
        start.elapsed().as_millis()
    ));
    let reader = client.spawn(async move {
        reader.sync("/k").await.map_err(|e| format!("sync: {e}"))?;
        let (data, _) = reader
            .get_data("/k", false)
            .await
            .map_err(|e| format!("getData: {e}"))?;
        Ok::<String, String>(String::from_utf8_lossy(&data).into_owned())
    });
    sleep(Duration::from_millis(400)).await;
    net.unclog_link(servers[leader].id(), servers[f].id());
    notes.push(format!("{}ms unclogged", start.elapsed().as_millis()));
    let read = reader.await.expect("no panic");
    notes.push(format!(
        "{}ms sync + read /k on s{f}: {read:?}",
        start.elapsed().as_millis()
    ));
    SyncReadOutput {
        acknowledged: written.ok(),
        read: read.ok(),
        notes,
    }
}
