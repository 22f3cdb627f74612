//! The listener: a task per client, a graceful stop (no new clients; the sessions under way
//! get a grace period, then are cut).

use crate::shared::Shared;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How long sessions may go on after a stop was asked.
const GRACE: Duration = Duration::from_secs(10);

/// A bound proxy, ready to serve.
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Proxy {
    pub(crate) fn new(listener: TcpListener, shared: Shared) -> Proxy {
        Proxy {
            listener,
            shared: Arc::new(shared),
        }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients until `stop` completes, then lets sessions finish for a while.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        let mut sessions = JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let shared = self.shared.clone();
                        sessions.spawn(async move {
                            tracing::debug!(%peer, "client connected");
                            crate::session::serve(stream, &shared).await;
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
                // Reap finished sessions so the set does not grow.
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        let drain = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(GRACE, drain).await.is_err() {
            sessions.abort_all();
        }
    }
}
