//! The `zk` model: ZooKeeper operations on znodes and ZooKeeper's consistency contract.

use crate::history::{Event, Op};
use crate::report::Report;
use crate::{CheckOptions, Model};
use std::time::Instant;

/// Checks a zk history.
pub fn check(_events: &[Event], _ops: &[Op], _opts: &CheckOptions, _start: Instant) -> Report {
    Report::error(Model::Zk, "zk model not implemented yet".into())
}
