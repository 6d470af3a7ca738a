//! The sans-IO core: ZAB's phases and session tracking. Input -> state change
//! -> outputs; no I/O, no clock (time arrives as ticks), no threads, no tokio.

pub mod session;
