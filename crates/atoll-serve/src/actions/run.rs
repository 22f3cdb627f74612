//! Running an action: its entry opened in the action log before anything else, the work
//! on a task of its own, the answer once the work passed its checks (or ended), the entry
//! closed with the outcome; the progress of what runs now kept in memory for the API and
//! the console.

use crate::actions::request::Who;
use crate::api::{error, App};
use crate::auth::Tokens;
use crate::view::now_unix_ms;
use atoll_core::{Config, NodeConfig, ShardNo, Snapshot};
use atoll_move::MoveOptions;
use atoll_pg::catalog::action_log::{self, ActionKind, ActionOutcome, NewEntry};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;
use utoipa::ToSchema;

/// How long a request waits for its action to pass its checks before answering `202`
/// anyway.
const ACCEPT_WAIT: Duration = Duration::from_secs(10);

/// The control plane's means to act, shared by every request.
pub struct Actions {
    /// Who may act.
    pub tokens: Tokens,
    /// This process in the action log (`host listen-address`): stable across restarts, so
    /// a restarted process closes what its previous life left running.
    pub server: String,
    /// Where `migrate` actions read the migration files.
    pub migrations: Option<PathBuf>,
    /// How the moves that actions start behave.
    pub move_options: MoveOptions,
    /// What runs now, by log id: written by the actions' tasks, read by requests and the
    /// publisher. A std mutex: held for a copy or an insert, never across an await.
    live: Mutex<BTreeMap<i64, LiveAction>>,
    /// The tasks of what runs now, aborted at shutdown (the operation stays resumable and
    /// its entry is closed as interrupted).
    tasks: Mutex<BTreeMap<i64, AbortHandle>>,
    /// The shards with schema drift in the last migrate plan made here (tiles show them
    /// drifted until the next plan).
    drifted: Mutex<BTreeSet<ShardNo>>,
}

/// An action under way, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveAction {
    /// Its entry in the action log.
    pub id: i64,
    /// What: `move`, `move_resume`, `move_abort`, `rebalance`, `migrate_apply`.
    #[schema(value_type = String)]
    pub kind: ActionKind,
    /// On what.
    pub target: String,
    /// Who.
    pub actor: String,
    /// Since when (Unix ms).
    pub started_at_unix_ms: u64,
    /// The shard it moves, for a move.
    #[schema(value_type = Option<u16>)]
    pub shard: Option<ShardNo>,
    /// The last thing it reported (a move's step, a note, a migration's phase).
    pub progress: String,
    /// Work done out of `total` (bytes copied, schemas migrated, moves finished); 0 of 0
    /// when not known.
    pub done: u64,
    /// See `done`.
    pub total: u64,
}

/// How an action ended.
#[derive(Debug, Clone)]
pub enum End {
    /// Done; one line on the result.
    Succeeded(String),
    /// Tried and failed; why.
    Failed(String),
    /// Refused before anything changed; why.
    Refused(String),
}

/// What an action's work holds to report progress.
#[derive(Clone)]
pub struct Progress {
    id: i64,
    actions: Arc<Actions>,
    accepted: Arc<watch::Sender<bool>>,
}

impl Progress {
    /// The work passed its checks: the request is answered `202` now.
    pub fn accept(&self) {
        self.accepted.send_replace(true);
    }

    /// Changes the live view of the action.
    pub fn update(&self, f: impl FnOnce(&mut LiveAction)) {
        if let Some(a) = lock(&self.actions.live).get_mut(&self.id) {
            f(a);
        }
    }
}

impl Actions {
    /// Nothing running yet.
    pub fn new(
        tokens: Tokens,
        server: String,
        migrations: Option<PathBuf>,
        move_options: MoveOptions,
    ) -> Actions {
        Actions {
            tokens,
            server,
            migrations,
            move_options,
            live: Mutex::default(),
            tasks: Mutex::default(),
            drifted: Mutex::default(),
        }
    }

    /// What runs now, oldest first.
    pub fn live(&self) -> Vec<LiveAction> {
        lock(&self.live).values().cloned().collect()
    }

    /// What the page shows of this process: the actions under way, the drifted shards.
    pub fn state(&self) -> crate::overview::Live {
        crate::overview::Live {
            drifted: lock(&self.drifted).clone(),
            actions: self.live(),
        }
    }

    /// Remembers the last plan's drifted shards.
    pub fn set_drifted(&self, shards: BTreeSet<ShardNo>) {
        *lock(&self.drifted) = shards;
    }

    /// Closes as interrupted what the previous life of this process left running.
    pub async fn close_interrupted(&self, config: &Config, snapshot: &Snapshot) {
        let closed = async {
            let (node, client) = log_client(config, snapshot).await?;
            action_log::close_interrupted(&client, &node, &self.server).await
        };
        match closed.await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(n, "atoll-serve: closed actions left running as interrupted"),
            Err(e) => tracing::warn!(error = %e, "atoll-serve: cannot read the action log"),
        }
    }

    /// Stops what runs (at shutdown): each operation stays as it was left, resumable, and
    /// its entry says interrupted.
    pub async fn interrupt(&self, config: &Config, snapshot: &Snapshot) {
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        if tasks.is_empty() {
            return;
        }
        for t in tasks.values() {
            t.abort();
        }
        self.close_interrupted(config, snapshot).await;
    }
}

/// The coordination island's master, where the action log is.
pub async fn log_client(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<(NodeConfig, tokio_postgres::Client), atoll_pg::PgError> {
    let island = atoll_pg::coordination::coordination_island(config)
        .ok_or_else(|| atoll_pg::PgError::Refused("no islands configured".into()))?;
    let node = atoll_pg::master_node(config, snapshot, island)?;
    let client = atoll_pg::connect_with_timeout(&node, config.connect_timeout).await?;
    Ok((node, client))
}

/// What an action is, before it runs.
pub struct Plan {
    /// Who asks.
    pub who: Who,
    /// What.
    pub kind: ActionKind,
    /// On what, one line.
    pub target: String,
    /// The shard, for a move.
    pub shard: Option<ShardNo>,
}

/// Records `plan` in the action log, runs `work` on a task of its own and answers once
/// the work accepted (`202`) or ended (`200`, `409` refused, `500` failed).
pub async fn launch<F, Fut>(app: &App, plan: Plan, work: F) -> Response
where
    F: FnOnce(Progress) -> Fut,
    Fut: Future<Output = End> + Send + 'static,
{
    let (config, snapshot) = (app.cluster.config(), app.cluster.snapshot());
    let entry = NewEntry {
        actor: &plan.who.actor,
        remote: &plan.who.remote,
        server: &app.actions.server,
        kind: plan.kind,
        target: &plan.target,
    };
    let opened = async {
        let (node, client) = log_client(&config, &snapshot).await?;
        action_log::open(&client, &node, &entry).await
    };
    let id = match opened.await {
        Ok(id) => id,
        Err(e) => {
            let msg = format!("action log: {e}; nothing was done");
            return error(StatusCode::SERVICE_UNAVAILABLE, &msg);
        }
    };
    tracing::info!(id, actor = %plan.who.actor, remote = %plan.who.remote,
        kind = plan.kind.as_str(), target = %plan.target, "atoll-serve: action");
    let live = LiveAction {
        id,
        kind: plan.kind,
        target: plan.target.clone(),
        actor: plan.who.actor.clone(),
        started_at_unix_ms: now_unix_ms(),
        shard: plan.shard,
        progress: "starting".into(),
        done: 0,
        total: 0,
    };
    let actions = app.actions.clone();
    lock(&actions.live).insert(id, live);
    let (accepted_tx, mut accepted) = watch::channel(false);
    let progress = Progress {
        id,
        actions: actions.clone(),
        accepted: Arc::new(accepted_tx),
    };
    let (ended_tx, ended) = oneshot::channel();
    let work = work(progress);
    let cluster = app.cluster.clone();
    let task = tokio::spawn(async move {
        let end = work.await;
        // Read again: a failover during a long action moves the log's master.
        close(&cluster.config(), &cluster.snapshot(), id, &end).await;
        lock(&actions.live).remove(&id);
        lock(&actions.tasks).remove(&id);
        let _ = ended_tx.send(end);
    });
    lock(&app.actions.tasks).insert(id, task.abort_handle());
    tokio::select! {
        end = ended => match end {
            Ok(end) => answer_end(id, &plan.target, end),
            Err(_) => answer_running(id, &plan),
        },
        _ = accepted.wait_for(|a| *a) => answer_running(id, &plan),
        _ = tokio::time::sleep(ACCEPT_WAIT) => answer_running(id, &plan),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn close(config: &Config, snapshot: &Snapshot, id: i64, end: &End) {
    let (outcome, detail) = match end {
        End::Succeeded(d) => (ActionOutcome::Succeeded, d),
        End::Failed(d) => (ActionOutcome::Failed, d),
        End::Refused(d) => (ActionOutcome::Refused, d),
    };
    tracing::info!(id, outcome = outcome.as_str(), detail = %detail, "atoll-serve: action ended");
    let closed = async {
        let (node, client) = log_client(config, snapshot).await?;
        action_log::close(&client, &node, id, outcome, Some(detail)).await
    };
    if let Err(e) = closed.await {
        tracing::warn!(id, error = %e, "atoll-serve: cannot record how an action ended");
    }
}

/// The answer to an action: `202` while it runs, `200` once it succeeded, `409` refused
/// or `500` failed (then `error` says why).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionAnswer {
    /// Its entry in the action log.
    pub action: i64,
    /// What it acts on.
    pub target: String,
    /// `running`, `succeeded`, `refused`, `failed`.
    #[schema(value_type = String)]
    pub outcome: ActionOutcome,
    /// One line on the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Why it was refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn answer_running(id: i64, plan: &Plan) -> Response {
    let body = ActionAnswer {
        action: id,
        target: plan.target.clone(),
        outcome: ActionOutcome::Running,
        detail: None,
        error: None,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn answer_end(id: i64, target: &str, end: End) -> Response {
    let (status, outcome, detail) = match end {
        End::Succeeded(d) => (StatusCode::OK, ActionOutcome::Succeeded, d),
        End::Refused(d) => (StatusCode::CONFLICT, ActionOutcome::Refused, d),
        End::Failed(d) => (StatusCode::INTERNAL_SERVER_ERROR, ActionOutcome::Failed, d),
    };
    let ok = status.is_success();
    let body = ActionAnswer {
        action: id,
        target: target.to_string(),
        outcome,
        detail: ok.then(|| detail.clone()),
        error: (!ok).then_some(detail),
    };
    (status, Json(body)).into_response()
}

/// What runs here now and the action log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionsView {
    /// The actions this process runs now, with their progress.
    pub running: Vec<LiveAction>,
    /// The action log's latest entries, newest first: id, started/finished, actor, remote,
    /// server, kind, target, outcome, detail.
    #[schema(value_type = Vec<Object>)]
    pub log: Vec<action_log::Entry>,
    /// Why reading the log failed.
    pub log_error: Option<String>,
}

/// What runs here now, and the action log as last read.
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions", responses((status = 200, body = ActionsView)))]
pub async fn list(State(app): State<App>) -> Json<ActionsView> {
    let c = app.catalog.load();
    Json(ActionsView {
        running: app.actions.live(),
        log: c.actions.clone(),
        log_error: c.actions_error.clone(),
    })
}
