//! A worker daemon run in-process (production mode; in standalone mode the node runs the
//! worker's loops itself and this is a handle that does nothing).

use std::net::SocketAddr;

use tokio::sync::oneshot;
use truenumber_core::config::{Config, Mode};

use super::QueueCleanup;

/// A worker daemon run in-process.
pub struct TestWorker {
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Its health port.
    pub addr: SocketAddr,
    _queues: QueueCleanup,
}

impl TestWorker {
    /// Starts a worker on `config` (its database must be migrated). In standalone mode the
    /// app already runs the worker's loops: this is a handle that does nothing.
    pub async fn spawn(config: &Config) -> Self {
        if config.mode == Mode::Standalone {
            return Self {
                shutdown: None,
                handle: None,
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                _queues: QueueCleanup::none(),
            };
        }
        let (tx, rx) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = oneshot::channel();
        let handle = tokio::spawn(truenumber_worker::run(
            config.clone(),
            async move {
                let _ = rx.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        ));
        let Ok(addr) = addr_rx.await else {
            panic!("worker did not start: {:?}", handle.await);
        };
        Self {
            shutdown: Some(tx),
            handle: Some(handle),
            addr,
            _queues: QueueCleanup::for_config(config),
        }
    }

    /// Asks it to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("worker task").expect("worker result");
        }
    }
}
