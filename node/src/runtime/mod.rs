//! The only layer that uses tokio: the client listener, timers, and the
//! processor that drives the pure layers and storage.

pub mod clock;
pub mod config;

pub use clock::{Clock, SystemClock};
pub use config::{ServerConfig, ServerSpec};
