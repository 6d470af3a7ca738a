//! Starting a server: recovery, the client listener, and the processor task.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::storage::Storage;

use super::clock::SharedClock;
use super::config::ServerConfig;
use super::connection::{serve_connection, ConnLimits};
use super::processor::{Fatal, Processor};
use super::recovery::recover;

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    processor: JoinHandle<Result<(), Fatal>>,
    acceptor: JoinHandle<()>,
}

impl ServerHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that asks the server to stop, usable from another task.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shutdown.clone())
    }

    /// Stops accepting, closes every connection, and waits for the processor.
    pub async fn shutdown(self) -> Result<(), Fatal> {
        let _ = self.shutdown.send(true);
        self.acceptor.abort();
        match self.processor.await {
            Ok(r) => r,
            Err(e) => Err(Fatal(format!("processor task failed: {e}"))),
        }
    }

    /// Waits until the server stops (a [`Stopper`] or a fatal error).
    pub async fn wait(self) -> Result<(), Fatal> {
        let res = match self.processor.await {
            Ok(r) => r,
            Err(e) => Err(Fatal(format!("processor task failed: {e}"))),
        };
        self.acceptor.abort();
        res
    }
}

/// Asks a server to stop.
#[derive(Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// Connections per client IP (`maxClientCnxns`).
#[derive(Clone, Default)]
struct IpCounts(Arc<Mutex<BTreeMap<IpAddr, usize>>>);

impl IpCounts {
    fn try_acquire(&self, ip: IpAddr, max: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Recovers state from `storage`, binds the client port, and starts serving.
pub async fn start(
    config: ServerConfig,
    mut storage: Box<dyn Storage + Send>,
    clock: SharedClock,
) -> anyhow::Result<ServerHandle> {
    config.validate()?;
    let recovered =
        recover(storage.as_mut()).map_err(|e| anyhow::anyhow!("recovery failed: {e}"))?;
    let listener = TcpListener::bind((config.client_port_address, config.client_port)).await?;
    let local_addr = listener.local_addr()?;
    tracing::info!("serving clients on {local_addr}");

    let (tx, rx) = mpsc::channel(config.global_outstanding_limit.max(16));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let limits = ConnLimits {
        max_frame_len: config.max_frame_len(),
        handshake_timeout: Duration::from_millis(config.max_session_timeout_ms.max(1000) as u64),
    };
    let max_cnxns = config.max_client_cnxns;
    let processor = Processor::new(config, clock, recovered.tree, recovered.sessions, storage);
    let processor = tokio::spawn(processor.run(rx, shutdown_rx));

    let counts = IpCounts::default();
    let acceptor = tokio::spawn(async move {
        let mut next_conn: u64 = 1;
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if !counts.try_acquire(remote.ip(), max_cnxns) {
                tracing::warn!(
                    "too many connections from {} - max is {max_cnxns}; closing the new one",
                    remote.ip()
                );
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let conn = next_conn;
            next_conn += 1;
            let tx = tx.clone();
            let counts = counts.clone();
            tokio::spawn(async move {
                serve_connection(stream, remote, conn, limits, tx).await;
                counts.release(remote.ip());
            });
        }
    });
    Ok(ServerHandle {
        local_addr,
        shutdown,
        processor,
        acceptor,
    })
}
