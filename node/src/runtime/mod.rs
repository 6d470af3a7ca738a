//! The only layer that uses tokio: the client listener, the connections, the peer
//! transport, timers, storage and the driver that feeds the sans-IO server pipeline
//! ([`crate::server`]).

pub mod background;
pub mod clock;
pub mod connection;
pub mod driver;
#[cfg(not(madsim))]
pub mod http;
pub mod migrate;
pub mod peer;
pub mod recovery;
pub mod server;
pub mod snapshotter;
#[cfg(not(madsim))]
pub mod tls;
pub mod tools;

pub use crate::config;
pub use crate::server::observe;

pub use clock::{Clock, SharedClock, SystemClock};
pub use config::{ServerConfig, ServerSpec};
pub use observe::{Observation, ObserverFn, TreeSource};
pub use server::{start, start_observed, ServerHandle};

use crate::storage::{FileStorage, FileStorageOptions, RealFs, Storage};

/// Opens the file storage in the configured dataDir / dataLogDir.
pub fn open_file_storage(config: &ServerConfig) -> anyhow::Result<Box<dyn Storage + Send>> {
    let mut opts = FileStorageOptions::new(&config.data_dir, &config.data_log_dir);
    opts.force_sync = config.force_sync;
    let storage =
        FileStorage::open(RealFs, opts).map_err(|e| anyhow::anyhow!("cannot open storage: {e}"))?;
    Ok(Box::new(storage))
}
