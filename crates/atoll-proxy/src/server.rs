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
    /// Where `/metrics` is served, when asked for.
    metrics: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl Proxy {
    pub(crate) fn new(
        listener: TcpListener,
        metrics: Option<TcpListener>,
        shared: Shared,
    ) -> Proxy {
        Proxy {
            listener,
            metrics,
            shared: Arc::new(shared),
        }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served (`None`: not asked for).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves clients until `stop` completes, then lets sessions finish for a while.
    pub async fn serve(mut self, stop: impl Future<Output = ()>) {
        let (stopped, on_stop) = tokio::sync::watch::channel(false);
        let http = self
            .metrics
            .take()
            .map(|l| tokio::spawn(metrics(l, self.shared.clone(), on_stop)));
        self.clients(stop).await;
        let _ = stopped.send(true);
        if let Some(http) = http {
            let _ = http.await;
        }
    }

    async fn clients(&self, stop: impl Future<Output = ()>) {
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

/// Serves `GET /metrics` and `GET /status` (JSON) until the proxy stops.
async fn metrics(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let for_status = shared.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let shared = shared.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        crate::metrics::render(&shared),
                    )
                }
            }),
        )
        .route(
            "/status",
            axum::routing::get(move || {
                let shared = for_status.clone();
                async move { axum::Json(crate::status::status(&shared)) }
            }),
        );
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::warn!(error = %e, "the metrics endpoint stopped");
    }
}
