//! Wire codecs: ZooKeeper's client protocol (jute) and peer messages. Pure.

pub mod client;
pub mod jute;
pub mod peer;
