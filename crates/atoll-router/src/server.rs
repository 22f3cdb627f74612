//! The router's listeners: the proxy (HTTP/1.1 and HTTP/2, cleartext) and the admin one
//! (`/metrics`, `/healthz`), with graceful shutdown (stop accepting, let requests in
//! flight finish within the drain timeout), the health probes and the config reload.

use crate::body::{full, RouterBody};
use crate::config::RouterConfig;
use crate::discovery::Discovery;
use crate::error::RouterError;
use crate::state::Shared;
use crate::{probe, proxy, reload};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running router.
pub struct RouterHandle {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Where `/metrics` is served.
    pub admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RouterError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| listen_error(addr, source))
}

fn listen_error(addr: SocketAddr, source: std::io::Error) -> RouterError {
    RouterError::Listen {
        addr: addr.to_string(),
        source,
    }
}

/// `n` listening sockets on one address (SO_REUSEPORT: the kernel spreads new connections
/// over them), handed over as std sockets because each is driven by its worker's runtime.
/// A plain bind comes first: with SO_REUSEPORT alone, a second router of the same user on
/// the same port would silently share its traffic instead of being refused as in use. It
/// also fixes the port when `addr` asks for port 0.
fn bind_workers(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, RouterError> {
    let probe = std::net::TcpListener::bind(addr).map_err(|e| listen_error(addr, e))?;
    let mut at = probe.local_addr().map_err(|e| listen_error(addr, e))?;
    drop(probe);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let here = at;
        let err = |e| listen_error(here, e);
        let socket = if at.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(err)?;
        socket.set_reuseaddr(true).map_err(err)?;
        socket.set_reuseport(n > 1).map_err(err)?;
        socket.bind(at).map_err(err)?;
        let listener = socket.listen(1024).map_err(err)?;
        at = listener.local_addr().map_err(err)?;
        out.push(listener.into_std().map_err(err)?);
    }
    Ok(out)
}

/// One proxy worker: a single-threaded runtime serving its own socket with its own pool
/// of connections to the cells.
fn worker(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
    drain: Duration,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let upstream = Arc::new(shared.upstream());
        serve(listener, stopped, drain, move |req| {
            let (s, u) = (shared.clone(), upstream.clone());
            async move { Ok::<_, Infallible>(proxy::handle(s, &u, req).await) }
        })
        .await;
        Ok(())
    })
}

/// Starts a router: connects discovery when the config names a cluster, opens the
/// listeners and the background tasks.
pub async fn start(config: RouterConfig) -> Result<RouterHandle, RouterError> {
    let discovery = match &config.atoll_config {
        Some(p) => Some(Discovery::connect(p, config.discovery_period).await?),
        None => None,
    };
    let listeners = bind_workers(config.listen, config.workers)?;
    let admin = match config.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let addr = match listeners.first() {
        Some(l) => l.local_addr(),
        None => Err(std::io::Error::other("no worker")),
    }
    .map_err(|source| listen_error(config.listen, source))?;
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let drain = config.drain_timeout;
    let source = config.source.clone();
    let shared = Arc::new(Shared::new(config, discovery));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let (s, st) = (shared.clone(), stopped.clone());
        // A blocking-pool thread for the worker's whole life, so the handle joins like the
        // other tasks on shutdown.
        tasks.push(tokio::task::spawn_blocking(move || {
            if let Err(e) = worker(listener, s, st, drain) {
                tracing::error!(worker = i, error = %e, "atoll-router: a proxy worker stopped");
            }
        }));
    }
    if let Some(l) = admin {
        let s = shared.clone();
        tasks.push(tokio::spawn(serve(l, stopped.clone(), drain, move |req| {
            let s = s.clone();
            async move { Ok::<_, Infallible>(admin_answer(&s, &req)) }
        })));
    }
    tasks.push(tokio::spawn(probe::run(shared.clone(), stopped.clone())));
    if let Some(path) = source {
        tasks.push(tokio::spawn(reload::run(shared.clone(), path, stopped)));
    }
    tracing::info!(%addr, ?admin_addr, "atoll-router: listening");
    Ok(RouterHandle {
        addr,
        admin_addr,
        shared,
        stop,
        tasks,
    })
}

fn admin_answer(shared: &Shared, req: &Request<Incoming>) -> Response<RouterBody> {
    let (status, text) = match req.uri().path() {
        "/metrics" => (StatusCode::OK, shared.render_metrics()),
        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut r = Response::new(full(text.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn serve<F, Fut>(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    drain: Duration,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<RouterBody>, Infallible>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Head and body copied into one buffer: one write(2) per answer instead of a writev
    // of several small slices.
    builder.http1().writev(false);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "atoll-router: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = builder.serve_connection(TokioIo::new(stream), service_fn(handler.clone()));
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "atoll-router: connection ended with an error");
                    }
                });
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("atoll-router: requests still in flight after the drain timeout");
    }
}

impl RouterHandle {
    /// Stops accepting, lets requests in flight finish (within the drain timeout) and
    /// stops the background tasks.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// The router's shared state (counters, cache), for monitoring and tests.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_is_refused_even_with_reuseport_workers() {
        let first = bind_workers("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert_eq!(first[1].local_addr().unwrap(), addr);
        let again = bind_workers(addr, 2).unwrap_err();
        assert!(matches!(again, RouterError::Listen { .. }), "{again}");
        drop(first);
        assert_eq!(bind_workers(addr, 1).unwrap().len(), 1);
    }
}
