//! The znode tree and everything around it: paths, ACLs, transactions,
//! the prep stage (ZooKeeper's `PrepRequestProcessor`), and watches.
//!
//! Pure: no I/O, no clock (time arrives in the txn), no threads, and every
//! iteration order is a `BTreeMap`/`BTreeSet` order.
//!
//! The write path, as the runtime drives it:
//!
//! 1. the leader turns a client write into a [`txn::TxnBody`] with
//!    [`prep::Prepper::prepare`] (or [`prep::Prepper::close_session_txn`]),
//!    against the committed tree plus the writes prepared but not yet
//!    applied; a failing single op is answered at once with its error;
//! 2. the [`txn::Txn`] (zxid, leader time, session, cxid, body) is encoded
//!    with [`txn::Txn::encode`], logged and replicated;
//! 3. once committed, every replica calls [`tree::DataTree::apply`], then
//!    the leader calls [`prep::Prepper::applied`] with the zxid;
//! 4. each `(path, event)` in [`tree::ApplyOutcome::triggers`] goes to
//!    [`watch::WatchManager::trigger`], which says which watchers to notify.
//!
//! ```
//! use zabkeeper::state::prep::{Prepper, WriteOp};
//! use zabkeeper::state::tree::{DataTree, OpResult};
//! use zabkeeper::state::txn::Txn;
//! use zabkeeper::state::watch::WatchManager;
//! use zabkeeper::types::{Acl, CreateMode, EventType};
//!
//! let mut tree = DataTree::new();
//! let mut prep = Prepper::new();
//! let mut watches = WatchManager::new();
//! watches.add_exist_watch("/app", 7);
//!
//! let op = WriteOp::Create {
//!     path: "/app".into(),
//!     data: Some(b"v1".to_vec()),
//!     acl: Acl::open_unsafe(),
//!     mode: CreateMode::Persistent,
//!     ttl: -1,
//! };
//! let (session, zxid, time) = (0x100, 1, 1_700_000_000_000);
//! let body = prep.prepare(&tree, session, &[], &op, zxid, time).unwrap();
//! let txn = Txn { zxid, time, session, cxid: 1, body };
//! assert_eq!(Txn::decode(&txn.encode()).unwrap(), txn);
//!
//! let out = tree.apply(&txn);
//! prep.applied(zxid);
//! assert!(matches!(out.result, Ok(OpResult::Create { ref path, .. }) if path == "/app"));
//! let fired: Vec<_> = out
//!     .triggers
//!     .iter()
//!     .flat_map(|(path, ev)| watches.trigger(path, *ev))
//!     .collect();
//! assert_eq!(fired.len(), 1);
//! assert_eq!((fired[0].0, fired[0].1.event_type), (7, EventType::NodeCreated));
//! ```

pub mod acl;
pub mod path;
pub mod prep;
pub mod tree;
pub mod txn;
pub mod watch;
