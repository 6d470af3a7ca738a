//! The system under test, as seen by the harness: the real node
//! (`zabkeeper::runtime::Server` with `FileStorage<SimFs>`) started on a simulated node
//! ([`node::serve`]), its disk ([`Disk`]), and a client session of `zabkeeper::client`
//! ([`node::NodeConn`]).

#[cfg(madsim)]
pub mod crash_points;
#[cfg(madsim)]
pub mod node;

/// Whether the node replicates. It does: scenarios that ask for an ensemble (3/5/7 servers,
/// observers) get one. (While this was false they derived a single standalone server and
/// said so in their printed options; `--replication` is still accepted by old replay
/// commands.)
pub const REPLICATION_AVAILABLE: bool = true;

/// The client port every simulated server listens on.
pub const CLIENT_PORT: u16 = 2181;

/// The simulated IP of server `i`.
pub fn server_ip(i: usize) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, (i + 1) as u8))
}

/// The simulated IP of client `j`.
pub fn client_ip(j: usize) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, (j + 1) as u8))
}

/// How an operation ended, as the history needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum OpError {
    /// Definitely not applied (e.g. never sent, or a definite error code).
    Definite(String),
    /// Unknown (timeout, connection lost after sending).
    Indeterminate(String),
}

#[cfg(madsim)]
pub use sim_only::*;

#[cfg(madsim)]
mod sim_only {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use zabkeeper::storage::{SimFs, SimFsFaults};

    use crate::fault::DiskFault;

    /// A server's disk (the node's simulated file system), surviving restarts within a run.
    #[derive(Clone)]
    pub struct Disk(pub SimFs);

    impl Disk {
        /// A fresh disk.
        pub fn new(seed: u64) -> Disk {
            Disk(SimFs::new(seed))
        }

        /// Power loss: unsynced writes are lost (`torn`: the first lost write may leave
        /// a torn prefix).
        pub fn crash(&self, torn: bool, seed: u64) {
            let mut faults = self.0.faults();
            faults.torn_write_probability = if torn { 1.0 } else { 0.0 };
            self.0.set_faults(faults);
            self.0.crash(&mut ChaCha8Rng::seed_from_u64(seed));
        }

        /// Arm a disk fault.
        pub fn arm(&self, fault: &DiskFault) {
            let fs = &self.0;
            let mut f = fs.faults();
            match fault {
                DiskFault::Eio { probability } => {
                    f.write_error_probability = *probability;
                    f.sync_error_probability = *probability;
                }
                DiskFault::FsyncFail => f.fail_next_syncs = 1,
                DiskFault::Full { bytes_left } => {
                    f.capacity_bytes = Some(used_bytes(fs) + bytes_left)
                }
            }
            fs.set_faults(f);
        }

        /// Disarm every fault.
        pub fn heal(&self) {
            self.0.set_faults(SimFsFaults::default());
        }

        /// Bit rot at rest.
        pub fn rot(&self, seed: u64) {
            let _ = self.0.rot(&mut ChaCha8Rng::seed_from_u64(seed));
        }
    }

    /// Sum of file lengths on a SimFs (for disk-full faults).
    fn used_bytes(fs: &SimFs) -> u64 {
        use zabkeeper::storage::Fs;
        fn walk(fs: &SimFs, dir: &std::path::Path) -> u64 {
            let Ok(names) = fs.list_dir(dir) else {
                return 0;
            };
            names
                .iter()
                .map(|n| {
                    let p = dir.join(n);
                    fs.len(&p).unwrap_or_else(|_| walk(fs, &p))
                })
                .sum()
        }
        walk(fs, std::path::Path::new("/"))
    }
}
