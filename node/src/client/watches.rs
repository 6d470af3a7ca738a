//! The client's own record of the watches it holds, as ZooKeeper's
//! `ZKWatchManager` keeps it: registered when the server's reply confirms
//! them, dropped when a one-shot watch fires, re-sent on reconnect.

use std::collections::BTreeSet;

use crate::proto::client::Request;
use crate::types::{watch_mode, watcher_type, ErrorCode, EventType};

use super::WatchedEvent;

/// Largest total path length put in one setWatches2 request, as ZooKeeper's
/// client does (`SET_WATCHES_MAX_LENGTH`).
const SET_WATCHES_MAX_LENGTH: usize = 128 * 1024;

/// What a request asks to register (or remove) once the reply arrives.
/// Paths are client paths (without chroot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchRegistration {
    None,
    /// exists with watch: a data watch if the node exists, else an exist watch.
    Exists(String),
    /// getData with watch.
    Data(String),
    /// getChildren / getChildren2 with watch.
    Child(String),
    /// addWatch with a mode.
    Add(String, i32),
    /// removeWatches of a watcher type.
    Remove(String, i32),
}

impl WatchRegistration {
    /// The registration a (client-path) request implies.
    pub(crate) fn for_request(req: &Request) -> WatchRegistration {
        match req {
            Request::Exists { path, watch: true } => WatchRegistration::Exists(path.clone()),
            Request::GetData { path, watch: true } => WatchRegistration::Data(path.clone()),
            Request::GetChildren { path, watch: true }
            | Request::GetChildren2 { path, watch: true } => WatchRegistration::Child(path.clone()),
            Request::AddWatch { path, mode } => WatchRegistration::Add(path.clone(), *mode),
            Request::RemoveWatches { path, watcher_type } => {
                WatchRegistration::Remove(path.clone(), *watcher_type)
            }
            _ => WatchRegistration::None,
        }
    }
}

/// The watches this client holds, by kind. BTreeSets keep re-registration
/// order deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WatchRegistry {
    pub(crate) data: BTreeSet<String>,
    pub(crate) exist: BTreeSet<String>,
    pub(crate) child: BTreeSet<String>,
    pub(crate) persistent: BTreeSet<String>,
    pub(crate) persistent_recursive: BTreeSet<String>,
}

impl WatchRegistry {
    /// Whether no watch is held.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.exist.is_empty()
            && self.child.is_empty()
            && self.persistent.is_empty()
            && self.persistent_recursive.is_empty()
    }

    /// Applies a registration once its reply came back with error `err`.
    /// Returns the events a local removal produces (`*WatchRemoved`).
    pub(crate) fn on_reply(&mut self, reg: &WatchRegistration, err: i32) -> Vec<WatchedEvent> {
        let ok = err == 0;
        match reg {
            WatchRegistration::None => {}
            WatchRegistration::Exists(p) => {
                if ok {
                    self.data.insert(p.clone());
                } else if err == ErrorCode::NoNode.code() {
                    self.exist.insert(p.clone());
                }
            }
            WatchRegistration::Data(p) if ok => {
                self.data.insert(p.clone());
            }
            WatchRegistration::Child(p) if ok => {
                self.child.insert(p.clone());
            }
            WatchRegistration::Add(p, mode) if ok => {
                if *mode == watch_mode::PERSISTENT_RECURSIVE {
                    self.persistent_recursive.insert(p.clone());
                } else {
                    self.persistent.insert(p.clone());
                }
            }
            WatchRegistration::Remove(p, kind) if ok => return self.remove(p, *kind),
            _ => {}
        }
        Vec::new()
    }

    fn remove(&mut self, path: &str, kind: i32) -> Vec<WatchedEvent> {
        let any = kind == watcher_type::ANY;
        let mut events = Vec::new();
        let mut push = |t: EventType| {
            events.push(WatchedEvent {
                event_type: t,
                state: crate::types::keeper_state::SYNC_CONNECTED,
                path: path.to_string(),
            })
        };
        if kind == watcher_type::DATA || any {
            let d = self.data.remove(path);
            let e = self.exist.remove(path);
            if d || e {
                push(EventType::DataWatchRemoved);
            }
        }
        if (kind == watcher_type::CHILDREN || any) && self.child.remove(path) {
            push(EventType::ChildWatchRemoved);
        }
        if (kind == watcher_type::PERSISTENT || any) && self.persistent.remove(path) {
            push(EventType::PersistentWatchRemoved);
        }
        if (kind == watcher_type::PERSISTENT_RECURSIVE || any)
            && self.persistent_recursive.remove(path)
        {
            push(EventType::PersistentWatchRemoved);
        }
        events
    }

    /// Drops the one-shot watches a server event fires (persistent ones stay).
    pub(crate) fn on_event(&mut self, event_type: EventType, path: &str) {
        match event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.data.remove(path);
                self.exist.remove(path);
            }
            EventType::NodeChildrenChanged => {
                self.child.remove(path);
            }
            EventType::NodeDeleted => {
                self.data.remove(path);
                self.exist.remove(path);
                self.child.remove(path);
            }
            _ => {}
        }
    }

    /// The setWatches2 requests (client paths) that re-register every
    /// watch after a reconnect, split so no request exceeds
    /// `SET_WATCHES_MAX_LENGTH` bytes of paths.
    pub(crate) fn set_watches_requests(&self, relative_zxid: i64) -> Vec<Request> {
        let empty = || Request::SetWatches2 {
            relative_zxid,
            data: vec![],
            exist: vec![],
            child: vec![],
            persistent: vec![],
            persistent_recursive: vec![],
        };
        let mut out = Vec::new();
        let mut cur = empty();
        let mut len = 0;
        let kinds: [(usize, &BTreeSet<String>); 5] = [
            (0, &self.data),
            (1, &self.exist),
            (2, &self.child),
            (3, &self.persistent),
            (4, &self.persistent_recursive),
        ];
        for (k, set) in kinds {
            for path in set {
                if len > 0 && len + path.len() > SET_WATCHES_MAX_LENGTH {
                    out.push(std::mem::replace(&mut cur, empty()));
                    len = 0;
                }
                if let Request::SetWatches2 {
                    data,
                    exist,
                    child,
                    persistent,
                    persistent_recursive,
                    ..
                } = &mut cur
                {
                    let list = match k {
                        0 => data,
                        1 => exist,
                        2 => child,
                        3 => persistent,
                        _ => persistent_recursive,
                    };
                    list.push(path.clone());
                }
                len += path.len();
            }
        }
        if len > 0 {
            out.push(cur);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exists_registers_data_or_exist_watch() {
        let mut w = WatchRegistry::default();
        w.on_reply(&WatchRegistration::Exists("/a".into()), 0);
        w.on_reply(
            &WatchRegistration::Exists("/b".into()),
            ErrorCode::NoNode.code(),
        );
        w.on_reply(
            &WatchRegistration::Exists("/c".into()),
            ErrorCode::NoAuth.code(),
        );
        w.on_reply(
            &WatchRegistration::Data("/d".into()),
            ErrorCode::NoNode.code(),
        );
        assert_eq!(w.data.iter().collect::<Vec<_>>(), ["/a"]);
        assert_eq!(w.exist.iter().collect::<Vec<_>>(), ["/b"]);
        w.on_event(EventType::NodeCreated, "/b");
        assert!(w.exist.is_empty(), "a one-shot watch is gone once fired");
    }

    #[test]
    fn events_drop_only_matching_one_shot_watches() {
        let mut w = WatchRegistry::default();
        w.on_reply(&WatchRegistration::Data("/a".into()), 0);
        w.on_reply(&WatchRegistration::Child("/a".into()), 0);
        w.on_reply(
            &WatchRegistration::Add("/a".into(), watch_mode::PERSISTENT),
            0,
        );
        w.on_event(EventType::NodeChildrenChanged, "/a");
        assert!(w.child.is_empty());
        assert!(w.data.contains("/a"));
        w.on_event(EventType::NodeDeleted, "/a");
        assert!(w.data.is_empty());
        assert!(
            w.persistent.contains("/a"),
            "persistent watches survive events"
        );
        assert!(!w.is_empty());
    }

    #[test]
    fn remove_watches_yields_removal_events() {
        let mut w = WatchRegistry::default();
        w.on_reply(&WatchRegistration::Data("/a".into()), 0);
        w.on_reply(&WatchRegistration::Child("/a".into()), 0);
        w.on_reply(
            &WatchRegistration::Add("/a".into(), watch_mode::PERSISTENT_RECURSIVE),
            0,
        );
        let ev = w.on_reply(
            &WatchRegistration::Remove("/a".into(), watcher_type::CHILDREN),
            0,
        );
        assert_eq!(
            ev.iter().map(|e| e.event_type).collect::<Vec<_>>(),
            [EventType::ChildWatchRemoved]
        );
        let ev = w.on_reply(
            &WatchRegistration::Remove("/a".into(), watcher_type::ANY),
            0,
        );
        assert_eq!(
            ev.iter().map(|e| e.event_type).collect::<Vec<_>>(),
            [
                EventType::DataWatchRemoved,
                EventType::PersistentWatchRemoved
            ]
        );
        assert!(w.is_empty());
        // A failed removal removes nothing.
        w.on_reply(&WatchRegistration::Data("/b".into()), 0);
        assert!(w
            .on_reply(
                &WatchRegistration::Remove("/b".into(), watcher_type::DATA),
                -121
            )
            .is_empty());
        assert!(w.data.contains("/b"));
    }

    #[test]
    fn set_watches_lists_every_kind_and_splits_large_sets() {
        let mut w = WatchRegistry::default();
        w.on_reply(&WatchRegistration::Data("/d".into()), 0);
        w.on_reply(
            &WatchRegistration::Exists("/e".into()),
            ErrorCode::NoNode.code(),
        );
        w.on_reply(&WatchRegistration::Child("/c".into()), 0);
        w.on_reply(
            &WatchRegistration::Add("/p".into(), watch_mode::PERSISTENT),
            0,
        );
        w.on_reply(
            &WatchRegistration::Add("/r".into(), watch_mode::PERSISTENT_RECURSIVE),
            0,
        );
        let reqs = w.set_watches_requests(77);
        assert_eq!(
            reqs,
            vec![Request::SetWatches2 {
                relative_zxid: 77,
                data: vec!["/d".into()],
                exist: vec!["/e".into()],
                child: vec!["/c".into()],
                persistent: vec!["/p".into()],
                persistent_recursive: vec!["/r".into()],
            }]
        );
        assert!(WatchRegistry::default().set_watches_requests(1).is_empty());

        let mut big = WatchRegistry::default();
        for i in 0..3000 {
            big.data.insert(format!("/{i:0>99}"));
        }
        let reqs = big.set_watches_requests(1);
        assert_eq!(reqs.len(), 3, "300 kB of paths in 128 kB batches");
        let total: usize = reqs
            .iter()
            .map(|r| match r {
                Request::SetWatches2 { data, .. } => data.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(total, 3000);
    }
}
