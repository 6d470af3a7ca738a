//! The driver: one task that feeds the sans-IO [`Pipeline`] and executes what it asks
//! for. It owns everything the pipeline must not touch: the connections' outbound
//! queues, the storage (appends, one fsync per step, snapshots), the peer transport,
//! the tick timer, the clock, and the threads that serialize snapshots and SNAPs.
//!
//! Each step of the loop: take one input (or a batch of client messages, up to
//! `globalOutstandingLimit`) and hand it to the pipeline, then [`Driver::flush`]: the
//! pipeline's outputs go out, its persist actions are executed and fsynced once, it is
//! told they are durable, and what that released goes out, until it has nothing more.
//! Then background work is collected: a finished snapshot, serialized SNAPs, the next
//! snapshot started when one is due. A batch of writes is thus one fsync (group
//! commit), for a standalone server and an ensemble's leader alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify};

use crate::config::ServerConfig;
use crate::core::PersistAction;
use crate::proto::peer::Sid;
use crate::server::{admin, fourlw, ConnId, Fatal, HostFacts, Output, Pipeline, TreeSource};
use crate::storage::Storage;
use crate::types::Zxid;

use super::background::Background;
use super::clock::SharedClock;
use super::connection::{Inbound, Outbox};
use super::observe::ObserverFn;
use super::peer::{PeerEvent, PeerHandle};
use super::snapshotter::{SnapshotJob, Snapshotter};

/// The driver's state.
pub struct Driver {
    config: ServerConfig,
    clock: SharedClock,
    pipeline: Pipeline,
    storage: Box<dyn Storage + Send>,
    outboxes: BTreeMap<ConnId, Outbox>,
    /// The quorum transport; `None` for a standalone server.
    peers: Option<PeerHandle>,
    snapshotter: Snapshotter,
    /// SNAPs being serialized for learners.
    snaps: BTreeMap<Sid, Background<Vec<u8>>>,
    /// Notified by background jobs when their result is ready, so the loop collects it
    /// at once.
    wake: Arc<Notify>,
    observer: Option<ObserverFn>,
    /// The last zxid handed to storage, to check what its fsync reports.
    last_appended: Zxid,
    ticks: u64,
    /// Thousandths of a core tick owed by the timer (`Clock::timer_permille`).
    tick_credit: u32,
    /// The last snapshot written (or loaded at start): zxid, seconds since the epoch.
    last_snapshot: Option<(Zxid, i64)>,
    /// When the snapshot in flight started (ms, the driver's clock).
    snapshot_started_ms: i64,
    /// Fsync and snapshot times, txns per fsync (`mntr`'s storage summaries).
    storage_stats: crate::server::stats::StorageStats,
}

impl Driver {
    pub fn new(
        config: ServerConfig,
        clock: SharedClock,
        pipeline: Pipeline,
        storage: Box<dyn Storage + Send>,
        peers: Option<PeerHandle>,
        observer: Option<ObserverFn>,
        last_snapshot: Option<(Zxid, i64)>,
    ) -> Driver {
        Driver {
            last_appended: storage.last_logged_zxid(),
            tick_credit: 0,
            config,
            clock,
            pipeline,
            storage,
            outboxes: BTreeMap::new(),
            peers,
            snapshotter: Snapshotter::default(),
            snaps: BTreeMap::new(),
            wake: Arc::new(Notify::new()),
            observer,
            ticks: 0,
            last_snapshot,
            snapshot_started_ms: 0,
            storage_stats: Default::default(),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Milliseconds from `start` (a [`Driver::now`] reading) to now; 0 if the clock
    /// stepped back.
    fn ms_since(&self, start: i64) -> u64 {
        self.now().saturating_sub(start).max(0) as u64
    }

    /// Runs until every connection sender is gone or `shutdown` fires.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Inbound>,
        mut peer_rx: Option<mpsc::Receiver<PeerEvent>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), Fatal> {
        // The pipeline is ticked once per core tick (a fraction of tickTime).
        let tick = std::time::Duration::from_millis(self.config.core_tick_ms());
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_batch = self.config.global_outstanding_limit.max(1);
        let wake = self.wake.clone();
        // Start-up: the tree loaded, and (standalone) leadership of the ensemble of one.
        self.flush()?;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                // A background job finished: collected by end_step below.
                _ = wake.notified() => {}
                _ = ticker.tick() => {
                    // Timers that run fast or slow (the simulator's timer drift) take
                    // more or fewer core ticks per period; at the nominal rate, one.
                    self.tick_credit += self.clock.timer_permille();
                    while self.tick_credit >= 1000 {
                        self.tick_credit -= 1000;
                        self.ticks += 1;
                        self.maybe_purge();
                        let now = self.now();
                        self.pipeline.tick(now)?;
                    }
                }
                ev = recv_opt(&mut peer_rx) => match ev {
                    Some(ev) => self.peer_event(ev)?,
                    None => return Err(Fatal("the peer transport stopped".into())),
                },
                m = rx.recv() => match m {
                    None => break,
                    Some(m) => self.handle(m)?,
                },
            }
            // A batch: whatever else has arrived from peers and clients, up to
            // globalOutstandingLimit of each, goes into the same step, so a leader
            // proposes it in one go and a follower appends every PROPOSE that arrived
            // with one fsync (group commit on every server).
            let (mut from_peers, mut from_clients) = (0, 0);
            loop {
                let mut took = false;
                if from_peers < max_batch {
                    if let Some(Ok(ev)) = peer_rx.as_mut().map(|r| r.try_recv()) {
                        self.peer_event(ev)?;
                        from_peers += 1;
                        took = true;
                    }
                }
                if from_clients < max_batch {
                    if let Ok(m) = rx.try_recv() {
                        self.handle(m)?;
                        from_clients += 1;
                        took = true;
                    }
                }
                if !took {
                    break;
                }
            }
            self.flush()?;
            self.end_step()?;
        }
        self.finish_snapshot(true);
        for (_, outbox) in std::mem::take(&mut self.outboxes) {
            outbox.close();
        }
        Ok(())
    }

    /// Hands one event of the quorum transport to the pipeline.
    fn peer_event(&mut self, ev: PeerEvent) -> Result<(), Fatal> {
        match ev {
            PeerEvent::Connected(sid) => self.pipeline.peer_connected(sid),
            PeerEvent::Disconnected(sid) => {
                self.snaps.remove(&sid);
                self.pipeline.peer_disconnected(sid)
            }
            PeerEvent::Message(sid, msg) => self.pipeline.peer_message(sid, msg),
        }
    }

    /// Hands one message from a connection to the pipeline.
    fn handle(&mut self, m: Inbound) -> Result<(), Fatal> {
        let now = self.now();
        match m {
            Inbound::Connect {
                conn,
                request,
                remote,
                x509,
                outbox,
            } => {
                self.outboxes.insert(conn, outbox);
                if let Some(subject) = x509 {
                    self.pipeline
                        .connect_x509(conn, request, remote, subject, now)
                } else {
                    self.pipeline.connect(conn, request, remote, now)
                }
            }
            Inbound::Request {
                conn,
                xid,
                opcode,
                req,
            } => self.pipeline.request(conn, xid, opcode, req, now),
            Inbound::Undecodable { conn, xid } => {
                self.pipeline.undecodable(conn, xid, now);
                Ok(())
            }
            Inbound::Closed { conn } => {
                self.outboxes.remove(&conn);
                self.pipeline.closed(conn);
                Ok(())
            }
            Inbound::Delivered { conn, bytes } => self.pipeline.delivered(conn, bytes, now),
            Inbound::FourLetter { cmd, remote, reply } => {
                let host = self.host_facts(fourlw::needs(&cmd));
                let _ = reply.send(self.pipeline.four_letter_word(&cmd, remote, host, now));
                Ok(())
            }
            Inbound::Admin { name, args, reply } => {
                let host = self.host_facts(admin::needs(&name));
                let _ = reply.send(self.pipeline.admin_command(&name, &args, host, now));
                Ok(())
            }
            Inbound::Metrics { reply } => {
                let host = self.host_facts(fourlw::needs("mntr"));
                let _ = reply.send(self.pipeline.metrics(host, now));
                Ok(())
            }
        }
    }

    /// Sends what the pipeline produced, and executes its persist actions (one fsync
    /// for all the appends among them) until it has nothing more: execute, `written`,
    /// send, fsync, `durable`.
    fn flush(&mut self) -> Result<(), Fatal> {
        loop {
            self.drain_outputs();
            let Some(actions) = self.pipeline.take_persist() else {
                break;
            };
            let mut appended = 0u64;
            for action in actions {
                appended += u64::from(self.persist(action)?);
            }
            // Written: a leader's PROPOSE/COMMIT on their way to the followers (their
            // writer tasks send while this one fsyncs).
            self.pipeline.written();
            self.drain_outputs();
            if appended > 0 {
                let started = self.now();
                self.fsync()?;
                let took = self.ms_since(started);
                self.storage_stats.fsync_ms.record(took);
                self.storage_stats.batch_txns.record(appended);
            }
            let now = self.now();
            self.pipeline.durable(now)?;
        }
        Ok(())
    }

    fn fsync(&mut self) -> Result<(), Fatal> {
        let storage = &mut self.storage;
        let synced = run_blocking(|| storage.fsync())
            .map_err(|e| Fatal(format!("fsync of the transaction log failed: {e}")))?;
        if synced < self.last_appended {
            return Err(Fatal(format!(
                "storage reports durable up to 0x{synced:x}, expected 0x{:x}",
                self.last_appended
            )));
        }
        Ok(())
    }

    fn drain_outputs(&mut self) {
        while let Some(out) = self.pipeline.poll_output() {
            match out {
                Output::Frame { conn, frame } => self.send(conn, frame),
                Output::Close { conn } => {
                    if let Some(outbox) = self.outboxes.get(&conn) {
                        outbox.close();
                    }
                }
                Output::Send { to, msg } => {
                    if let Some(peers) = &self.peers {
                        peers.send(to, msg);
                    }
                }
                Output::Disconnect { peer } => {
                    self.snaps.remove(&peer);
                    if let Some(peers) = &self.peers {
                        peers.disconnect(peer);
                    }
                }
                Output::SerializeSnap {
                    to,
                    zxid: _,
                    tree,
                    sessions,
                } => {
                    let mut job = Background::default();
                    let encode = move || super::recovery::encode_frozen(&tree, &sessions);
                    if let Err(e) = job.start("snap", &self.wake, encode) {
                        tracing::warn!("cannot start a thread for the SNAP to server {to}: {e}");
                        self.pipeline.snap_serialized(to, Err(e.to_string()));
                        continue;
                    }
                    self.snaps.insert(to, job);
                }
                Output::Observe(o) => {
                    if let Some(observe) = &self.observer {
                        observe(o);
                    }
                }
            }
        }
    }

    /// Queues a frame on a connection; a client whose queue is full is not reading and
    /// is disconnected.
    fn send(&mut self, conn: ConnId, frame: Bytes) {
        let Some(outbox) = self.outboxes.get(&conn) else {
            return;
        };
        if outbox.push(frame).is_err() {
            let remote = self.pipeline.conns().get(&conn).map(|c| c.remote);
            tracing::info!(
                ?remote,
                "closing connection: client is not reading its replies"
            );
            outbox.close();
        }
    }

    /// Executes one persist action; returns whether it appended to the log.
    fn persist(&mut self, action: PersistAction) -> Result<bool, Fatal> {
        let fatal = |what: &str, e: crate::storage::StorageError| Fatal(format!("{what}: {e}"));
        match action {
            PersistAction::AppendTxn { zxid, payload } => {
                self.storage
                    .append(zxid, &payload)
                    .map_err(|e| fatal(&format!("cannot append txn 0x{zxid:x} to the log"), e))?;
                self.last_appended = zxid;
                return Ok(true);
            }
            PersistAction::Truncate { zxid } => {
                self.finish_snapshot(true);
                tracing::info!("TRUNC: dropping log entries after 0x{zxid:x}");
                self.storage
                    .truncate_after(zxid)
                    .map_err(|e| fatal("TRUNC failed", e))?;
                self.last_appended = self.storage.last_logged_zxid();
            }
            PersistAction::ReloadTree { zxid } => {
                self.finish_snapshot(true);
                tracing::info!("reloading the tree at 0x{zxid:x} after TRUNC");
                let rec = super::recovery::recover_keeping(
                    self.storage.as_mut(),
                    self.config.commit_log_count,
                )
                .map_err(|e| Fatal(format!("cannot reload the tree: {e}")))?;
                self.last_appended = rec.last_logged;
                self.pipeline
                    .replace_tree(rec.tree, rec.sessions, TreeSource::Trunc);
            }
            PersistAction::SetAcceptedEpoch(e) => self
                .storage
                .set_accepted_epoch(e)
                .map_err(|e| fatal("cannot write acceptedEpoch", e))?,
            PersistAction::SetCurrentEpoch(e) => self
                .storage
                .set_current_epoch(e)
                .map_err(|e| fatal("cannot write currentEpoch", e))?,
            PersistAction::ApplySnapshot { zxid, snapshot } => {
                self.finish_snapshot(true);
                tracing::info!("SNAP: replacing the tree with the leader's snapshot at 0x{zxid:x}");
                let (tree, sessions) = super::recovery::decode_snapshot(&snapshot)
                    .map_err(|e| Fatal(format!("the leader's snapshot is unreadable: {e}")))?;
                self.storage
                    .write_snapshot(zxid, &snapshot)
                    .map_err(|e| fatal("cannot save the snapshot", e))?;
                // Whatever the log holds above the snapshot is not the leader's history as
                // of it (a divergent suffix, or txns the leader re-sends after the SNAP):
                // drop it, or the leader's next txns could not follow and a restart would
                // replay the divergent ones over the snapshot. A crash in between leaves
                // the snapshot and that suffix: the restarted learner is not serving until
                // its leader syncs it again.
                if self.storage.last_logged_zxid() > zxid {
                    tracing::info!(
                        "SNAP: dropping the log above 0x{zxid:x} (it ends at 0x{:x})",
                        self.storage.last_logged_zxid()
                    );
                    self.storage
                        .truncate_after(zxid)
                        .map_err(|e| fatal("cannot drop the log above the leader's snapshot", e))?;
                }
                self.last_appended = zxid;
                self.pipeline.replace_tree(tree, sessions, TreeSource::Snap);
            }
        }
        Ok(false)
    }

    /// The end of every step: collects a finished snapshot and the SNAPs serialized for
    /// learners, and starts the next snapshot when it is due.
    fn end_step(&mut self) -> Result<(), Fatal> {
        self.finish_snapshot(false);
        let mut done = Vec::new();
        for (&to, job) in self.snaps.iter_mut() {
            if let Some(result) = job.poll() {
                done.push((to, result));
            }
        }
        for (to, result) in done {
            self.snaps.remove(&to);
            self.pipeline
                .snap_serialized(to, result.map_err(|lost| lost.to_string()));
        }
        self.drain_outputs();
        self.maybe_snapshot()
    }

    /// Starts a snapshot when the pipeline says one is due and none is in flight. The
    /// tree is frozen at the zxid applied now; serializing and writing happen off this
    /// task while writes go on (see [`super::snapshotter`]). While one is still being
    /// written the next waits, so the log between two snapshots stays near snapCount.
    fn maybe_snapshot(&mut self) -> Result<(), Fatal> {
        if !self.pipeline.snapshot_due() || self.snapshotter.busy() {
            return Ok(());
        }
        let due = self.pipeline.take_snapshot();
        let zxid = due.zxid;
        let writer = self
            .storage
            .begin_snapshot(zxid)
            .map_err(|e| Fatal(format!("cannot start snapshot 0x{zxid:x}: {e}")))?;
        let job = SnapshotJob {
            tree: due.tree,
            sessions: due.sessions,
            writer,
        };
        self.snapshotter
            .start(job, &self.wake)
            .map_err(|e| Fatal(format!("cannot start the snapshot thread: {e}")))?;
        self.snapshot_started_ms = self.now();
        tracing::info!("snapshot of zxid 0x{zxid:x} started");
        Ok(())
    }

    /// Collects the snapshot in flight: if `wait`, waits for it (before the log is
    /// truncated or snapshots are read back, and at shutdown); else only if it is done.
    /// A failed snapshot is logged, not fatal: the log still holds every txn, and the
    /// next snapshot tries again (as ZooKeeper).
    fn finish_snapshot(&mut self, wait: bool) {
        let finished = if wait {
            let snapshotter = &mut self.snapshotter;
            run_blocking(|| snapshotter.wait())
        } else {
            self.snapshotter.poll()
        };
        let Some(done) = finished else {
            return;
        };
        let zxid = done.zxid;
        match done.result {
            Ok(len) => {
                self.storage.snapshot_written(zxid);
                self.last_snapshot = Some((zxid, self.now().div_euclid(1000)));
                let took = self.ms_since(self.snapshot_started_ms);
                self.storage_stats.snapshot_ms.record(took);
                tracing::info!("snapshot taken at zxid 0x{zxid:x} ({len} bytes)");
            }
            Err(e) => tracing::error!("snapshot 0x{zxid:x} failed, continuing without it: {e}"),
        }
    }

    /// `autopurge`: as ZooKeeper's DatadirCleanupManager, once at start-up (the first
    /// tick) and then every `autopurge.purgeInterval` hours, keep the newest
    /// `autopurge.snapRetainCount` snapshots and the logs they need.
    fn maybe_purge(&mut self) {
        let hours = self.config.purge_interval_hours;
        if hours == 0 {
            return;
        }
        let every = (hours * 3_600_000 / self.config.core_tick_ms()).max(1);
        if self.ticks == 1 || self.ticks.is_multiple_of(every) {
            match self.storage.purge(self.config.snap_retain_count) {
                Ok(()) => tracing::info!(
                    "autopurge: kept the newest {} snapshots",
                    self.config.snap_retain_count
                ),
                Err(e) => tracing::warn!("autopurge of old snapshots and logs failed: {e}"),
            }
        }
    }

    /// What only the host can tell a four-letter word.
    fn host_facts(&self, needs: fourlw::Needs) -> HostFacts {
        let mut host = HostFacts {
            last_snapshot: self.last_snapshot,
            storage: self.storage_stats,
            ..HostFacts::default()
        };
        if needs.fds {
            (host.open_fds, host.max_fds) = file_descriptors();
        }
        if needs.dirs {
            host.datadir_size = dir_size(&self.config.data_dir.join("version-2"));
            host.logdir_size = dir_size(&self.config.data_log_dir.join("version-2"));
        }
        host
    }
}

/// Receives from an optional channel; never completes when there is none.
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs blocking storage work without stalling the other tasks of a
/// multi-threaded runtime (the simulator's disk is in memory and never blocks).
fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(not(madsim))]
    {
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            return tokio::task::block_in_place(f);
        }
    }
    f()
}

/// The process's open file descriptors and their soft limit, from /proc (Linux).
pub fn file_descriptors() -> (Option<u64>, Option<u64>) {
    let open = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        });
    (open, max)
}

/// Bytes of the regular files directly in `dir` (0 if it cannot be read).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::dir_size;

    #[test]
    fn dir_size_counts_the_regular_files() {
        let dir = std::env::temp_dir().join(format!("zk-dirs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a"), vec![0u8; 100]).unwrap();
        std::fs::write(dir.join("b"), vec![0u8; 23]).unwrap();
        assert_eq!(dir_size(&dir), 123);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(dir_size(&dir), 0);
    }
}
