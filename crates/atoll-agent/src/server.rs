//! Starting and stopping an agent: the queue recovered, the worker and the HTTP server
//! spawned, and a graceful stop (no new requests, the running action given its grace).

use crate::actions::{run_worker, Executor};
use crate::attributes::AttributeReader;
use crate::auth::Auth;
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::ha::HaHandle;
use crate::http::{router, ApiState};
use crate::pg_tools::PgTools;
use crate::queue::Queue;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Key of the remembered data directory in the state.
const DATA_DIR_KEY: &str = "data_directory";

/// A running agent. Dropping it does not stop it: call [`Agent::stop`].
pub struct Agent {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), AgentError>>,
    worker: JoinHandle<()>,
    /// Ids of actions the start found RUNNING and marked FAILED `interrupted`.
    pub interrupted: Vec<String>,
}

/// The process-wide Prometheus recorder (one per process, however many agents run).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics will be empty");
            }
            handle
        })
        .clone()
}

impl Agent {
    /// Opens the state, settles what a crash left RUNNING, binds the listen address and
    /// starts serving and executing.
    pub async fn start(cfg: AgentConfig) -> Result<Agent, AgentError> {
        let token = cfg
            .token
            .as_ref()
            .map(|r| r.resolve())
            .transpose()
            .map_err(AgentError::Token)?;
        let auth = Arc::new(Auth::new(token, cfg.reads));
        let queue = Queue::open(&cfg.state_dir, cfg.queue_limit)?;
        let interrupted = queue.recover().await?;
        for id in &interrupted {
            tracing::warn!(action = %id, "found RUNNING after a stop: marked FAILED interrupted");
        }
        let data_dir = match &cfg.data_dir {
            Some(d) => Some(d.clone()),
            None => queue.meta(DATA_DIR_KEY).await?.map(PathBuf::from),
        };
        let tools = PgTools::new(cfg.pg_bin.clone(), cfg.pg_log_file()).or_else(|e| {
            tracing::warn!(error = %e, "PostgreSQL binaries not found: actions that need them will fail");
            PgTools::new(Some(PathBuf::new()), cfg.pg_log_file())
        })?;
        let bin = Some(tools.bin().to_path_buf()).filter(|b| !b.as_os_str().is_empty());
        let cfg = Arc::new(cfg);
        let reader = Arc::new(AttributeReader::new(cfg.clone(), data_dir, bin));
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| AgentError::io("cannot listen on", cfg.listen.to_string(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| AgentError::io("cannot read the address of", cfg.listen.to_string(), e))?;
        let (tx, rx) = watch::channel(false);
        let state = ApiState {
            cfg: cfg.clone(),
            auth,
            queue: queue.clone(),
            reader: reader.clone(),
            metrics: metrics_handle(),
        };
        let ha = HaHandle::new(cfg.clone(), addr.to_string());
        if let Some(h) = &ha {
            tokio::spawn(crate::ha::run(
                h.clone(),
                tools.clone(),
                reader.clone(),
                rx.clone(),
            ));
        }
        let ex = Arc::new(Executor::new(
            cfg.clone(),
            queue.clone(),
            reader.clone(),
            tools,
            ha,
        ));
        let worker = tokio::spawn(run_worker(ex, rx.clone()));
        let mut stop = rx.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|v| *v).await;
                })
                .await
                .map_err(|e| AgentError::io("HTTP server on", addr.to_string(), e))
        });
        tokio::spawn(remember_data_dir(queue, reader, rx));
        tracing::info!(%addr, node = %cfg.node, "agent listening");
        Ok(Agent {
            addr,
            shutdown: tx,
            server,
            worker,
            interrupted,
        })
    }

    /// The address the API listens on (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that starts the graceful stop (for signal handlers).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Stops gracefully: the server stops accepting and finishes open requests, the
    /// running action gets its grace. Returns the server's error, if it had one.
    pub async fn stop(self) -> Result<(), AgentError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the agent stopped (after [`Agent::stopper`] was used).
    pub async fn wait(self) -> Result<(), AgentError> {
        let served = self.server.await;
        let _ = self.worker.await;
        match served {
            Ok(r) => r,
            Err(e) => Err(AgentError::Unexpected(format!("HTTP server task: {e}"))),
        }
    }
}

/// Keeps the data directory in the state once the server told it, so that actions on a
/// stopped server (a restart, a rejoin) still know it.
async fn remember_data_dir(
    queue: Queue,
    reader: Arc<AttributeReader>,
    mut stop: watch::Receiver<bool>,
) {
    let mut remembered = queue.meta(DATA_DIR_KEY).await.ok().flatten();
    loop {
        if remembered.is_none() {
            // One reading teaches the reader the directory when the server runs.
            let _ = reader.read().await;
        }
        let known = reader.data_dir().map(|d| d.display().to_string());
        if known.is_some() && known != remembered {
            if let Some(k) = &known {
                if queue.set_meta(DATA_DIR_KEY, k.clone()).await.is_ok() {
                    remembered = known;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = stop.wait_for(|v| *v) => break,
        }
    }
}
