//! The signals that stop a server command (`atoll router`, `atoll agent`) gracefully.
//!
//! Both handlers are installed when [`ShutdownSignal::install`] returns, before the server
//! announces its address: a supervisor (or a test) that sends SIGTERM as soon as it reads
//! the address must get a graceful stop, never the default action that kills the process.

use crate::exit::Failure;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, watched from the moment this value exists.
pub struct ShutdownSignal {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignal {
    /// Installs both handlers; needs a running tokio runtime.
    pub fn install() -> Result<Self, Failure> {
        let watch = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Failure::failed(e).context(format!("cannot watch {name}")))
        };
        Ok(Self {
            interrupt: watch(SignalKind::interrupt(), "SIGINT")?,
            terminate: watch(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// Waits for the first of SIGINT or SIGTERM.
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
