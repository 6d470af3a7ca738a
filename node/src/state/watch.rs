//! Watches: ZooKeeper's two `WatchManager`s (data and child) in one place.
//!
//! A watcher is a `u64` chosen by the runtime (one per connection). Like
//! ZooKeeper, data and exist watches share the data table; persistent
//! watches sit in both tables; persistent-recursive watches sit only in
//! the data table, so they never see `NodeChildrenChanged`.

use std::collections::{BTreeMap, BTreeSet};

use super::path::ancestors;
use super::tree::DataTree;
use crate::types::{watcher_type, EventType, Zxid};

/// A watcher: the runtime's id for a connection.
pub type WatcherId = u64;

/// A watch notification for one watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedEvent {
    pub event_type: EventType,
    pub path: String,
}

const STANDARD: u8 = 1;
const PERSISTENT: u8 = 2;
const RECURSIVE: u8 = 4;

/// Which of the two tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Data,
    Child,
}

type WatchTable = BTreeMap<String, BTreeMap<WatcherId, u8>>;

/// The watches a client re-registers after reconnecting (`SetWatches2`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetWatches {
    /// The last zxid the client saw.
    pub relative_zxid: Zxid,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

/// Every registered watch, by path and by watcher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchManager {
    data: WatchTable,
    child: WatchTable,
    /// Every path where a watcher has any watch, in either table.
    by_watcher: BTreeMap<WatcherId, BTreeSet<String>>,
    /// How many (path, watcher) pairs hold a recursive watch; when zero,
    /// triggers skip the walk over ancestors.
    recursive: usize,
}

impl WatchManager {
    /// No watches.
    pub fn new() -> WatchManager {
        WatchManager::default()
    }

    fn table(&mut self, t: Table) -> &mut WatchTable {
        match t {
            Table::Data => &mut self.data,
            Table::Child => &mut self.child,
        }
    }

    fn add(&mut self, t: Table, path: &str, w: WatcherId, mode: u8) {
        let modes = self
            .table(t)
            .entry(path.to_string())
            .or_default()
            .entry(w)
            .or_insert(0);
        let had_recursive = *modes & RECURSIVE != 0;
        *modes |= mode;
        if mode & RECURSIVE != 0 && !had_recursive {
            self.recursive += 1;
        }
        self.by_watcher
            .entry(w)
            .or_default()
            .insert(path.to_string());
    }

    /// Clears `mode` bits of `(path, w)` in table `t` (`mode == 0xff`: all).
    /// Returns the bits that were cleared.
    fn clear(&mut self, t: Table, path: &str, w: WatcherId, mode: u8) -> u8 {
        let table = self.table(t);
        let Some(watchers) = table.get_mut(path) else {
            return 0;
        };
        let Some(modes) = watchers.get_mut(&w) else {
            return 0;
        };
        let cleared = *modes & mode;
        *modes &= !mode;
        if *modes == 0 {
            watchers.remove(&w);
            if watchers.is_empty() {
                table.remove(path);
            }
        }
        if cleared & RECURSIVE != 0 {
            self.recursive -= 1;
        }
        self.forget_if_unwatched(path, w);
        cleared
    }

    fn modes(&self, t: Table, path: &str, w: WatcherId) -> u8 {
        let table = match t {
            Table::Data => &self.data,
            Table::Child => &self.child,
        };
        table
            .get(path)
            .and_then(|m| m.get(&w))
            .copied()
            .unwrap_or(0)
    }

    fn forget_if_unwatched(&mut self, path: &str, w: WatcherId) {
        if self.modes(Table::Data, path, w) == 0 && self.modes(Table::Child, path, w) == 0 {
            if let Some(paths) = self.by_watcher.get_mut(&w) {
                paths.remove(path);
                if paths.is_empty() {
                    self.by_watcher.remove(&w);
                }
            }
        }
    }

    /// A one-shot data watch (`getData` with watch).
    pub fn add_data_watch(&mut self, path: &str, w: WatcherId) {
        self.add(Table::Data, path, w, STANDARD);
    }

    /// A one-shot exist watch (`exists` with watch); ZooKeeper keeps it with
    /// the data watches, whether or not the node exists.
    pub fn add_exist_watch(&mut self, path: &str, w: WatcherId) {
        self.add(Table::Data, path, w, STANDARD);
    }

    /// A one-shot child watch (`getChildren` with watch).
    pub fn add_child_watch(&mut self, path: &str, w: WatcherId) {
        self.add(Table::Child, path, w, STANDARD);
    }

    /// A persistent watch (`addWatch`): on `path` only, or with `recursive`
    /// on `path` and all its descendants (never `NodeChildrenChanged`).
    pub fn add_persistent(&mut self, path: &str, w: WatcherId, recursive: bool) {
        if recursive {
            self.add(Table::Data, path, w, RECURSIVE);
        } else {
            self.add(Table::Data, path, w, PERSISTENT);
            self.add(Table::Child, path, w, PERSISTENT);
        }
    }

    /// Fires the watches an event on `path` triggers and returns one event
    /// per watcher, in watcher order. `NodeCreated` and `NodeDataChanged`
    /// fire data watches; `NodeDeleted` fires data and child watches;
    /// `NodeChildrenChanged` fires child watches. One-shot watches are
    /// consumed, persistent ones stay, recursive ones on any ancestor fire
    /// too. A watcher gets at most one event per trigger.
    pub fn trigger(&mut self, path: &str, event_type: EventType) -> Vec<(WatcherId, WatchedEvent)> {
        let mut fired = BTreeSet::new();
        match event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.fire(Table::Data, path, &mut fired);
            }
            EventType::NodeDeleted => {
                self.fire(Table::Data, path, &mut fired);
                self.fire(Table::Child, path, &mut fired);
            }
            EventType::NodeChildrenChanged => self.fire(Table::Child, path, &mut fired),
            _ => {}
        }
        fired
            .into_iter()
            .map(|w| {
                (
                    w,
                    WatchedEvent {
                        event_type,
                        path: path.to_string(),
                    },
                )
            })
            .collect()
    }

    fn fire(&mut self, t: Table, path: &str, fired: &mut BTreeSet<WatcherId>) {
        let here: Vec<(WatcherId, u8)> = match self.table(t).get(path) {
            Some(m) => m.iter().map(|(w, m)| (*w, *m)).collect(),
            None => Vec::new(),
        };
        for (w, modes) in here {
            fired.insert(w);
            if modes & STANDARD != 0 {
                self.clear(t, path, w, STANDARD);
            }
        }
        if t == Table::Data && self.recursive > 0 {
            for a in ancestors(path) {
                if let Some(m) = self.data.get(a) {
                    fired.extend(
                        m.iter()
                            .filter(|(_, m)| **m & RECURSIVE != 0)
                            .map(|(w, _)| *w),
                    );
                }
            }
        }
    }

    /// Drops every watch of a watcher (its connection closed).
    pub fn remove_watcher(&mut self, w: WatcherId) {
        let Some(paths) = self.by_watcher.remove(&w) else {
            return;
        };
        for p in paths {
            for t in [Table::Data, Table::Child] {
                self.clear(t, &p, w, 0xff);
            }
        }
    }

    /// `removeWatches`: drops `w`'s watches of `kind` (a
    /// [`watcher_type`] value) on `path`; true if any were there.
    /// `CHILDREN`/`DATA` remove only one-shot watches, `PERSISTENT` and
    /// `PERSISTENT_RECURSIVE` only that kind, `ANY` everything on the path.
    pub fn remove_watches(&mut self, path: &str, kind: i32, w: WatcherId) -> bool {
        let cleared = match kind {
            watcher_type::CHILDREN => self.clear(Table::Child, path, w, STANDARD),
            watcher_type::DATA => self.clear(Table::Data, path, w, STANDARD),
            watcher_type::PERSISTENT => {
                self.clear(Table::Child, path, w, PERSISTENT)
                    | self.clear(Table::Data, path, w, PERSISTENT)
            }
            watcher_type::PERSISTENT_RECURSIVE => self.clear(Table::Data, path, w, RECURSIVE),
            watcher_type::ANY => {
                self.clear(Table::Child, path, w, 0xff) | self.clear(Table::Data, path, w, 0xff)
            }
            _ => 0,
        };
        cleared != 0
    }

    /// `checkWatches`: whether `w` has a watch of `kind` on `path`.
    pub fn check_watches(&self, path: &str, kind: i32, w: WatcherId) -> bool {
        let data = self.modes(Table::Data, path, w);
        let child = self.modes(Table::Child, path, w);
        match kind {
            watcher_type::CHILDREN => child & STANDARD != 0,
            watcher_type::DATA => data & STANDARD != 0,
            watcher_type::PERSISTENT => data & PERSISTENT != 0,
            watcher_type::PERSISTENT_RECURSIVE => data & RECURSIVE != 0,
            watcher_type::ANY => data != 0 || child != 0,
            _ => false,
        }
    }

    /// Paths watched by each watcher (the `wchc` four-letter word).
    pub fn by_session(&self) -> BTreeMap<WatcherId, Vec<String>> {
        self.by_watcher
            .iter()
            .map(|(w, ps)| (*w, ps.iter().cloned().collect()))
            .collect()
    }

    /// Watchers of each path (the `wchp` four-letter word).
    pub fn by_path(&self) -> BTreeMap<String, Vec<WatcherId>> {
        let mut out: BTreeMap<String, BTreeSet<WatcherId>> = BTreeMap::new();
        for table in [&self.data, &self.child] {
            for (p, ws) in table {
                out.entry(p.clone()).or_default().extend(ws.keys().copied());
            }
        }
        out.into_iter()
            .map(|(p, ws)| (p, ws.into_iter().collect()))
            .collect()
    }

    /// Total watches as ZooKeeper counts them for `wchs`: (path, watcher)
    /// pairs in the data table plus those in the child table.
    pub fn count(&self) -> usize {
        self.data.values().map(BTreeMap::len).sum::<usize>()
            + self.child.values().map(BTreeMap::len).sum::<usize>()
    }

    /// Bytes of watched paths, one count per (path, watcher) pair as [`Self::count`]
    /// counts them (`zk_watch_bytes`).
    pub fn watched_path_bytes(&self) -> usize {
        self.data
            .iter()
            .chain(self.child.iter())
            .map(|(p, ws)| p.len() * ws.len())
            .sum()
    }

    /// Number of distinct watched paths.
    pub fn path_count(&self) -> usize {
        self.by_path().len()
    }

    /// `DataTree.setWatches`: re-registers a reconnecting client's watches
    /// against the current tree. Returns, in order, the events to deliver
    /// at once: a data watch on a node changed since `relative_zxid` gets
    /// `NodeDataChanged` (on a deleted node `NodeDeleted`); an exist watch
    /// on a node that now exists gets `NodeCreated`; a child watch on a node
    /// whose children changed gets `NodeChildrenChanged` (deleted:
    /// `NodeDeleted`). Those fire instead of registering; the rest, and
    /// all persistent watches, are registered.
    pub fn set_watches(
        &mut self,
        tree: &DataTree,
        req: &SetWatches,
        w: WatcherId,
    ) -> Vec<WatchedEvent> {
        let mut events = Vec::new();
        let ev = |event_type, path: &str| WatchedEvent {
            event_type,
            path: path.to_string(),
        };
        for p in &req.data {
            match tree.stat(p) {
                None => events.push(ev(EventType::NodeDeleted, p)),
                Some(s) if s.mzxid > req.relative_zxid => {
                    events.push(ev(EventType::NodeDataChanged, p))
                }
                Some(_) => self.add_data_watch(p, w),
            }
        }
        for p in &req.exist {
            match tree.stat(p) {
                Some(_) => events.push(ev(EventType::NodeCreated, p)),
                None => self.add_exist_watch(p, w),
            }
        }
        for p in &req.child {
            match tree.stat(p) {
                None => events.push(ev(EventType::NodeDeleted, p)),
                Some(s) if s.pzxid > req.relative_zxid => {
                    events.push(ev(EventType::NodeChildrenChanged, p))
                }
                Some(_) => self.add_child_watch(p, w),
            }
        }
        for p in &req.persistent {
            self.add_persistent(p, w, false);
        }
        for p in &req.persistent_recursive {
            self.add_persistent(p, w, true);
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::txn::{Txn, TxnBody};
    use crate::types::Acl;
    use EventType::*;

    fn ids(v: &[(WatcherId, WatchedEvent)]) -> Vec<WatcherId> {
        v.iter().map(|(w, _)| *w).collect()
    }

    #[test]
    fn one_shot_watches_fire_once() {
        let mut m = WatchManager::new();
        m.add_data_watch("/a", 1);
        m.add_exist_watch("/a", 2);
        m.add_child_watch("/a", 3);
        assert_eq!(m.count(), 3);
        let fired = m.trigger("/a", NodeDataChanged);
        assert_eq!(ids(&fired), vec![1, 2]);
        assert_eq!(
            fired[0].1,
            WatchedEvent {
                event_type: NodeDataChanged,
                path: "/a".into()
            }
        );
        assert!(m.trigger("/a", NodeDataChanged).is_empty());
        assert_eq!(ids(&m.trigger("/a", NodeChildrenChanged)), vec![3]);
        assert!(m.trigger("/a", NodeChildrenChanged).is_empty());
        assert_eq!(m.count(), 0);
        assert!(m.by_session().is_empty());
    }

    #[test]
    fn node_created_fires_exist_but_not_child_watches() {
        let mut m = WatchManager::new();
        m.add_exist_watch("/a", 1);
        m.add_child_watch("/a", 2);
        assert_eq!(ids(&m.trigger("/a", NodeCreated)), vec![1]);
        assert!(m.check_watches("/a", watcher_type::CHILDREN, 2));
    }

    #[test]
    fn node_deleted_fires_data_and_child_once_per_watcher() {
        let mut m = WatchManager::new();
        m.add_data_watch("/a", 1);
        m.add_child_watch("/a", 1);
        m.add_child_watch("/a", 2);
        let fired = m.trigger("/a", NodeDeleted);
        assert_eq!(ids(&fired), vec![1, 2]);
        assert!(fired.iter().all(|(_, e)| e.event_type == NodeDeleted));
        assert_eq!(m.count(), 0);
        // The parent's child watch gets NodeChildrenChanged, not NodeDeleted.
        m.add_child_watch("/", 5);
        assert!(m.trigger("/a", NodeDeleted).is_empty());
        assert_eq!(ids(&m.trigger("/", NodeChildrenChanged)), vec![5]);
    }

    #[test]
    fn persistent_watches_stay() {
        let mut m = WatchManager::new();
        m.add_persistent("/a", 7, false);
        for ev in [
            NodeCreated,
            NodeDataChanged,
            NodeChildrenChanged,
            NodeDeleted,
            NodeCreated,
        ] {
            assert_eq!(ids(&m.trigger("/a", ev)), vec![7], "{ev:?}");
        }
        // Not for descendants.
        assert!(m.trigger("/a/b", NodeCreated).is_empty());
        assert!(m.check_watches("/a", watcher_type::PERSISTENT, 7));
        assert!(!m.check_watches("/a", watcher_type::DATA, 7));
        assert_eq!(m.count(), 2);
    }

    #[test]
    fn recursive_watches_cover_descendants_but_not_child_events() {
        let mut m = WatchManager::new();
        m.add_persistent("/a", 9, true);
        m.add_data_watch("/a/b/c", 9);
        assert_eq!(ids(&m.trigger("/a", NodeDataChanged)), vec![9]);
        assert_eq!(ids(&m.trigger("/a/b", NodeCreated)), vec![9]);
        // One event even though both the recursive and the one-shot watch match.
        let fired = m.trigger("/a/b/c", NodeDataChanged);
        assert_eq!(fired.len(), 1);
        assert!(!m.check_watches("/a/b/c", watcher_type::DATA, 9));
        assert_eq!(ids(&m.trigger("/a/b/c", NodeDeleted)), vec![9]);
        assert!(m.trigger("/a", NodeChildrenChanged).is_empty());
        assert!(m.trigger("/ab", NodeCreated).is_empty());
        assert!(m.trigger("/", NodeCreated).is_empty());
        m.add_persistent("/", 4, true);
        assert_eq!(ids(&m.trigger("/x/y", NodeCreated)), vec![4]);
        assert_eq!(ids(&m.trigger("/a/z", NodeCreated)), vec![4, 9]);
    }

    #[test]
    fn remove_and_check_watches_by_type() {
        let mut m = WatchManager::new();
        m.add_data_watch("/a", 1);
        m.add_child_watch("/a", 1);
        m.add_persistent("/a", 1, false);
        m.add_persistent("/a", 1, true);
        assert!(m.check_watches("/a", watcher_type::ANY, 1));
        assert!(!m.check_watches("/a", watcher_type::ANY, 2));
        assert!(m.remove_watches("/a", watcher_type::DATA, 1));
        assert!(!m.remove_watches("/a", watcher_type::DATA, 1));
        assert!(m.check_watches("/a", watcher_type::CHILDREN, 1));
        assert!(m.remove_watches("/a", watcher_type::PERSISTENT, 1));
        assert!(!m.check_watches("/a", watcher_type::PERSISTENT, 1));
        assert!(m.remove_watches("/a", watcher_type::PERSISTENT_RECURSIVE, 1));
        assert!(m.trigger("/a/b", NodeCreated).is_empty());
        assert!(m.remove_watches("/a", watcher_type::ANY, 1));
        assert!(!m.remove_watches("/a", watcher_type::ANY, 1));
        assert_eq!(m, WatchManager::new());
    }

    #[test]
    fn remove_watcher_and_listings() {
        let mut m = WatchManager::new();
        m.add_data_watch("/a", 1);
        m.add_child_watch("/b", 1);
        m.add_data_watch("/a", 2);
        m.add_persistent("/c", 2, true);
        assert_eq!(m.by_session()[&1], vec!["/a", "/b"]);
        assert_eq!(m.by_path()["/a"], vec![1, 2]);
        assert_eq!(m.count(), 4);
        assert_eq!(m.path_count(), 3);
        m.remove_watcher(1);
        assert!(!m.by_session().contains_key(&1));
        assert_eq!(m.by_path().keys().collect::<Vec<_>>(), vec!["/a", "/c"]);
        m.remove_watcher(2);
        assert_eq!(m, WatchManager::new());
    }

    #[test]
    fn set_watches_fires_missed_events_and_registers_the_rest() {
        let mut tree = DataTree::new();
        let create = |zxid, path: &str| Txn {
            zxid,
            time: 0,
            session: 1,
            cxid: 0,
            body: TxnBody::Create {
                path: path.into(),
                data: Some(vec![]),
                acl: Acl::open_unsafe(),
                ephemeral_owner: 0,
                parent_cversion: -1,
            },
        };
        tree.apply(&create(1, "/old"));
        tree.apply(&create(5, "/new"));
        tree.apply(&create(6, "/old/kid"));
        let mut m = WatchManager::new();
        let req = SetWatches {
            relative_zxid: 3,
            data: vec!["/old".into(), "/new".into(), "/gone".into()],
            exist: vec!["/new".into(), "/absent".into()],
            child: vec!["/old".into(), "/new".into(), "/gone".into()],
            persistent: vec!["/p".into()],
            persistent_recursive: vec!["/r".into()],
        };
        let ev = m.set_watches(&tree, &req, 8);
        let got: Vec<(EventType, &str)> =
            ev.iter().map(|e| (e.event_type, e.path.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (NodeDataChanged, "/new"),
                (NodeDeleted, "/gone"),
                (NodeCreated, "/new"),
                (NodeChildrenChanged, "/old"),
                (NodeChildrenChanged, "/new"),
                (NodeDeleted, "/gone"),
            ]
        );
        assert!(m.check_watches("/old", watcher_type::DATA, 8));
        assert!(m.check_watches("/absent", watcher_type::DATA, 8));
        assert!(!m.check_watches("/old", watcher_type::CHILDREN, 8));
        assert!(m.check_watches("/p", watcher_type::PERSISTENT, 8));
        assert!(m.check_watches("/r", watcher_type::PERSISTENT_RECURSIVE, 8));
    }

    /// A naive model: a set of (table, path, watcher, mode) registrations.
    #[derive(Default)]
    struct Naive {
        regs: BTreeSet<(u8, String, WatcherId, u8)>, // table 0 data / 1 child
    }

    impl Naive {
        fn trigger(&mut self, path: &str, ev: EventType) -> Vec<WatcherId> {
            let tables: &[u8] = match ev {
                NodeCreated | NodeDataChanged => &[0],
                NodeDeleted => &[0, 1],
                NodeChildrenChanged => &[1],
                _ => &[],
            };
            let mut fired = BTreeSet::new();
            for &t in tables {
                for (tt, p, w, m) in self.regs.clone() {
                    if tt != t {
                        continue;
                    }
                    let exact = p == path;
                    let below = p == "/" && path != "/" || path.starts_with(&format!("{p}/"));
                    if exact {
                        fired.insert(w);
                        if m == STANDARD {
                            self.regs.remove(&(tt, p, w, m));
                        }
                    } else if below && m == RECURSIVE {
                        fired.insert(w);
                    }
                }
            }
            fired.into_iter().collect()
        }
        fn has(&self, t: u8, path: &str, w: WatcherId, m: u8) -> bool {
            self.regs.contains(&(t, path.to_string(), w, m))
        }
        fn remove(&mut self, path: &str, kind: i32, w: WatcherId) -> bool {
            let targets: Vec<(u8, u8)> = match kind {
                watcher_type::CHILDREN => vec![(1, STANDARD)],
                watcher_type::DATA => vec![(0, STANDARD)],
                watcher_type::PERSISTENT => vec![(0, PERSISTENT), (1, PERSISTENT)],
                watcher_type::PERSISTENT_RECURSIVE => vec![(0, RECURSIVE)],
                _ => vec![
                    (0, STANDARD),
                    (0, PERSISTENT),
                    (0, RECURSIVE),
                    (1, STANDARD),
                    (1, PERSISTENT),
                ],
            };
            let mut any = false;
            for (t, m) in targets {
                any |= self.regs.remove(&(t, path.to_string(), w, m));
            }
            any
        }
        fn count(&self) -> usize {
            let pairs: BTreeSet<(u8, &String, WatcherId)> =
                self.regs.iter().map(|(t, p, w, _)| (*t, p, *w)).collect();
            pairs.len()
        }
    }

    #[derive(Clone, Debug)]
    enum WOp {
        Data(usize, WatcherId),
        Child(usize, WatcherId),
        Persistent(usize, WatcherId, bool),
        Trigger(usize, EventType),
        Remove(usize, i32, WatcherId),
        RemoveWatcher(WatcherId),
    }

    const WPATHS: &[&str] = &["/", "/a", "/a/b", "/a/b/c", "/ab", "/x"];

    fn wop() -> impl proptest::strategy::Strategy<Value = WOp> {
        use proptest::prelude::*;
        let p = 0..WPATHS.len();
        let w = 1u64..4;
        let ev = prop_oneof![
            Just(NodeCreated),
            Just(NodeDeleted),
            Just(NodeDataChanged),
            Just(NodeChildrenChanged)
        ];
        prop_oneof![
            1 => (p.clone(), w.clone()).prop_map(|(p, w)| WOp::Data(p, w)),
            1 => (p.clone(), w.clone()).prop_map(|(p, w)| WOp::Child(p, w)),
            1 => (p.clone(), w.clone(), any::<bool>()).prop_map(|(p, w, r)| WOp::Persistent(p, w, r)),
            3 => (p.clone(), ev).prop_map(|(p, e)| WOp::Trigger(p, e)),
            1 => (p, 1i32..6, w.clone()).prop_map(|(p, k, w)| WOp::Remove(p, k, w)),
            1 => w.prop_map(WOp::RemoveWatcher),
        ]
    }

    proptest::proptest! {
        #[test]
        fn watch_manager_matches_naive_model(ops in proptest::collection::vec(wop(), 1..80)) {
            let mut m = WatchManager::new();
            let mut n = Naive::default();
            for op in ops {
                match op {
                    WOp::Data(p, w) => {
                        m.add_data_watch(WPATHS[p], w);
                        n.regs.insert((0, WPATHS[p].into(), w, STANDARD));
                    }
                    WOp::Child(p, w) => {
                        m.add_child_watch(WPATHS[p], w);
                        n.regs.insert((1, WPATHS[p].into(), w, STANDARD));
                    }
                    WOp::Persistent(p, w, r) => {
                        m.add_persistent(WPATHS[p], w, r);
                        if r {
                            n.regs.insert((0, WPATHS[p].into(), w, RECURSIVE));
                        } else {
                            n.regs.insert((0, WPATHS[p].into(), w, PERSISTENT));
                            n.regs.insert((1, WPATHS[p].into(), w, PERSISTENT));
                        }
                    }
                    WOp::Trigger(p, e) => {
                        let got: Vec<WatcherId> = m.trigger(WPATHS[p], e).into_iter().map(|(w, _)| w).collect();
                        proptest::prop_assert_eq!(got, n.trigger(WPATHS[p], e));
                    }
                    WOp::Remove(p, k, w) => {
                        let want_check = match k {
                            watcher_type::CHILDREN => n.has(1, WPATHS[p], w, STANDARD),
                            watcher_type::DATA => n.has(0, WPATHS[p], w, STANDARD),
                            watcher_type::PERSISTENT => n.has(0, WPATHS[p], w, PERSISTENT),
                            watcher_type::PERSISTENT_RECURSIVE => n.has(0, WPATHS[p], w, RECURSIVE),
                            _ => n.regs.iter().any(|(_, pp, ww, _)| pp == WPATHS[p] && *ww == w),
                        };
                        proptest::prop_assert_eq!(m.check_watches(WPATHS[p], k, w), want_check);
                        proptest::prop_assert_eq!(m.remove_watches(WPATHS[p], k, w), n.remove(WPATHS[p], k, w));
                    }
                    WOp::RemoveWatcher(w) => {
                        m.remove_watcher(w);
                        n.regs.retain(|(_, _, ww, _)| *ww != w);
                    }
                }
                proptest::prop_assert_eq!(m.count(), n.count());
                let mut by_session: BTreeMap<WatcherId, BTreeSet<String>> = BTreeMap::new();
                for (_, p, w, _) in &n.regs {
                    by_session.entry(*w).or_default().insert(p.clone());
                }
                let want: BTreeMap<WatcherId, Vec<String>> =
                    by_session.into_iter().map(|(w, ps)| (w, ps.into_iter().collect())).collect();
                proptest::prop_assert_eq!(m.by_session(), want);
            }
        }
    }
}
