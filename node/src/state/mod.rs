//! The znode tree and everything around it: paths, ACLs, transactions,
//! the prep stage (ZooKeeper's `PrepRequestProcessor`), and watches.
//!
//! Pure: no I/O, no clock (time arrives in the txn), no threads, and every
//! iteration order is a `BTreeMap`/`BTreeSet` order.

pub mod acl;
pub mod path;
pub mod prep;
pub mod tree;
pub mod txn;
pub mod watch;
