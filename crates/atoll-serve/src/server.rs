//! The listener: the API and `/metrics` on one address (axum), the catalog reader in the
//! background, graceful shutdown (stop accepting, let requests in flight finish within the
//! drain timeout).

use crate::actions::Actions;
use crate::api::{self, App};
use crate::auth::Tokens;
use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::view::{self, CatalogView};
use atoll_client::{Cluster, ClusterOptions};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running control plane.
pub struct ServeHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    cluster: Cluster,
    actions: Arc<Actions>,
    drain: std::time::Duration,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Connects to the cluster (a first discovery round, the catalog read once), opens the
/// listener and starts serving.
pub async fn start(config: ServeConfig) -> Result<ServeHandle, ServeError> {
    let tokens = Tokens::resolve(&config.write_tokens)?;
    if let Some(dir) = &config.migrations {
        atoll_migrate::read_dir(dir).map_err(|e| ServeError::Migrations(e.to_string()))?;
    }
    let options = ClusterOptions {
        refresh_period: config.period,
        application_name: "atoll-serve".into(),
        shard_sizes: true,
        ..ClusterOptions::default()
    };
    let cluster = Cluster::connect(config.atoll.clone(), options).await?;
    let catalog = Arc::new(arc_swap::ArcSwap::from_pointee(CatalogView::default()));
    view::read_once(&cluster, &catalog).await;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let server = format!("{} {addr}", atoll_pg::coordination::host_name());
    let actions = Arc::new(Actions::new(
        tokens,
        server,
        config.migrations.clone(),
        config.move_options.clone(),
    ));
    actions
        .close_interrupted(&cluster.config(), &cluster.snapshot())
        .await;
    let (stop, stopped) = watch::channel(false);
    let (overview_tx, overview) = watch::channel(Arc::new(String::new()));
    let app = App {
        cluster: cluster.clone(),
        catalog: catalog.clone(),
        stopped: stopped.clone(),
        overview,
        actions: actions.clone(),
    };
    let router = api::routes()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { api::error(StatusCode::NOT_FOUND, "no such path") })
        .with_state(app);
    let mut tasks = Vec::new();
    let mut on_stop = stopped.clone();
    tasks.push(tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let serving = axum::serve(listener, service).with_graceful_shutdown(async move {
            let _ = on_stop.changed().await;
        });
        if let Err(e) = serving.await {
            tracing::warn!(error = %e, "atoll-serve: the listener failed");
        }
    }));
    tasks.push(tokio::spawn(crate::events::publish(
        cluster.clone(),
        catalog.clone(),
        actions.clone(),
        overview_tx,
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(view::run(
        cluster.clone(),
        catalog,
        config.period,
        stopped,
    )));
    tracing::info!(%addr, "atoll-serve: listening");
    Ok(ServeHandle {
        addr,
        cluster,
        actions,
        drain: config.drain_timeout,
        stop,
        tasks,
    })
}

async fn metrics(State(app): State<App>) -> Response {
    let text = crate::metrics::render(
        &app.cluster.snapshot(),
        &app.catalog.load(),
        &app.cluster.stats(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

impl ServeHandle {
    /// Stops accepting, lets requests in flight finish (within the drain timeout), stops
    /// the catalog reader, interrupts the actions still running (each operation stays
    /// resumable, its log entry says interrupted) and closes the cluster's connections.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let (config, snapshot) = (self.cluster.config(), self.cluster.snapshot());
        self.actions.interrupt(&config, &snapshot).await;
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(self.drain, t).await.is_err() {
                tracing::warn!("atoll-serve: requests still in flight after the drain timeout");
                abort.abort();
            }
        }
        self.cluster.close().await;
    }
}
