//! The only layer that uses tokio: the client listener, timers, and the
//! processor that drives the pure layers and storage.

pub mod background;
pub mod clock;
pub mod config;
pub mod connection;
pub mod fourlw;
pub mod observe;
pub mod peer;
pub mod processor;
pub mod recovery;
pub mod server;
pub mod snapshotter;
pub mod stats;
pub mod tools;

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
