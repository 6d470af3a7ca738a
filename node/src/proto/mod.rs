//! Wire codecs: ZooKeeper's client protocol (jute) and peer messages. Pure.

pub mod jute;
pub mod peer;
