//! zabkeeper-sim: the deterministic simulation testbed.
//!
//! The node's own code runs inside madsim (build with `RUSTFLAGS="--cfg madsim"`) as
//! several simulated servers with simulated clients, under a seeded fault plan; every run
//! is judged. The orchestration (campaigns, shards, summaries, shrinking) is plain std code
//! in the same binary and re-executes itself once per seed (`run-one`).
//!
//! Modules:
//! - [`scenario`]: named scenario files (`scenarios/*.toml`).
//! - [`options`]: the options of one run, derived from (scenario, seed).
//! - [`fault`]: the fault vocabulary (generator kinds, faults, disk faults).
//! - [`plan`]: the fault plan, an explicit list of timed events.
//! - [`history`]: the client history, recorded in the checker's own event type.
//! - [`judge`]: the verdict of a run: the checker's `zk` model on the history, and the
//!   simulator's own checks on node observations (one small module each).
//! - [`shrink`]: delta debugging of a failing run.
//! - [`campaign`]: processes per seed, progress, summaries, shards, merge.
//! - [`timeline`]: the HTML timeline of a replayed run.
//! - [`clock`]: per-node skewed clocks.
//! - `run` and `sut` (madsim builds only): one simulated run and the system under test.
//! - `scripted` (madsim builds only): fixed step-by-step runs for bugs a random plan
//!   rarely reaches, judged by the same checks.

pub mod campaign;
pub mod clock;
pub mod fault;
pub mod history;
pub mod judge;
pub mod options;
pub mod plan;
pub mod scenario;
pub mod shrink;
pub mod timeline;

#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod scripted;
pub mod sut;
