//! The JSON API, versioned under `/api/v1/`. Answers are built from the snapshot and the
//! catalog view in memory; no request reads an island.

use crate::view::{now_unix_ms, CatalogView};
use atoll_client::Cluster;
use atoll_core::{IslandId, NodeState, ShardCopy, ShardNo, Snapshot, SnapshotProblem};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;

/// What every handler reads.
#[derive(Clone)]
pub struct App {
    /// The snapshot's keeper.
    pub cluster: Cluster,
    /// Swapped whole by the catalog reader (`view.rs`).
    pub catalog: Arc<arc_swap::ArcSwap<CatalogView>>,
    /// Becomes true when the server stops: ends the event streams.
    pub stopped: tokio::sync::watch::Receiver<bool>,
    /// The latest overview's JSON (`events.rs`).
    pub overview: crate::events::Published,
    /// Tokens, the action log and what runs now (`actions/`).
    pub actions: Arc<crate::actions::Actions>,
}

/// The routes of `/api/v1`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/islands", get(islands))
        .route("/api/v1/shards", get(shards))
        .route("/api/v1/moves", get(moves))
        .route("/api/v1/snapshot", get(snapshot))
        .route("/api/v1/overview", get(overview_json))
        .route("/api/v1/locate", get(locate))
        .route("/api/v1/events", get(crate::events::events))
        .route("/api/v1/migrations", get(migrations))
        .route("/", get(console))
        .merge(crate::actions::routes())
}

/// The console: one page, its script and style inline, no outside asset (works offline).
const CONSOLE: &str = include_str!("console.html");

async fn console() -> axum::response::Html<&'static str> {
    axum::response::Html(CONSOLE)
}

/// The overview the publisher built last (`events.rs`): requests do not rebuild it.
async fn overview_json(State(app): State<App>) -> Response {
    let mut json = app.overview.borrow().clone();
    if json.is_empty() {
        // Before the publisher's first round.
        let live = app.actions.state();
        let o = crate::overview::build(&app.cluster.snapshot(), &app.catalog.load(), &live);
        json = Arc::new(serde_json::to_string(&o).unwrap_or_else(|_| "{}".into()));
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json.as_str().to_owned(),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct LocateQuery {
    q: Option<String>,
}

async fn locate(
    State(app): State<App>,
    axum::extract::Query(q): axum::extract::Query<LocateQuery>,
) -> Response {
    let Some(q) = q.q.filter(|q| !q.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "q: missing (a shard number, schema name or atoll ID)",
        );
    };
    if q.len() > 64 {
        return error(StatusCode::BAD_REQUEST, "q: longer than 64 characters");
    }
    match crate::overview::locate(&app.cluster.snapshot(), &q) {
        Ok(l) => Json(l).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// A JSON error answer: `{"error": "..."}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// A refused request: its status and the one line that says why (answered as [`error`]).
#[derive(Debug)]
pub struct Refusal {
    /// 400, 401, 403, 409, 413...
    pub status: StatusCode,
    /// What was wrong, naming the field or the conflict.
    pub message: String,
}

impl Refusal {
    /// A refusal with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
    }
}

#[derive(Serialize)]
struct ClusterView {
    cluster_id: Option<String>,
    snapshot_taken_at_unix_ms: u64,
    snapshot_age_ms: u64,
    islands: usize,
    shards_active: usize,
    problems: Vec<SnapshotProblem>,
    moves_unfinished: usize,
    catalog_error: Option<String>,
}

async fn cluster(State(app): State<App>) -> Json<ClusterView> {
    let s = app.cluster.snapshot();
    let c = app.catalog.load();
    Json(ClusterView {
        cluster_id: s.islands.iter().find_map(|i| i.cluster_id.clone()),
        snapshot_taken_at_unix_ms: s.taken_at_unix_ms,
        snapshot_age_ms: now_unix_ms().saturating_sub(s.taken_at_unix_ms),
        islands: s.islands.len(),
        shards_active: s.active_shards().count(),
        problems: s.problems.clone(),
        moves_unfinished: c.moves.len(),
        catalog_error: c.error.clone(),
    })
}

/// One island: its nodes and what it carries.
#[derive(Serialize)]
pub struct IslandView {
    /// The island.
    pub id: IslandId,
    /// The master's address, when exactly one node claims the role.
    pub master: Option<String>,
    /// Every configured node.
    pub nodes: Vec<NodeState>,
    /// Shards active here.
    pub shards_active: usize,
    /// Bytes of the shards active here (when sizes were measured).
    pub bytes_active: u64,
}

/// The islands of `s` with their load.
pub fn island_views(s: &Snapshot) -> Vec<IslandView> {
    s.islands
        .iter()
        .map(|i| {
            let active = active_copies(s).filter(|(_, c)| c.island == i.id);
            let (n, bytes) = active.fold((0, 0), |(n, b), (_, c)| {
                (n + 1, b + c.size_bytes.unwrap_or(0))
            });
            IslandView {
                id: i.id,
                master: i.master().map(|m| m.addr.clone()),
                nodes: i.nodes.clone(),
                shards_active: n,
                bytes_active: bytes,
            }
        })
        .collect()
}

/// Every active copy of every shard.
fn active_copies(s: &Snapshot) -> impl Iterator<Item = (ShardNo, &ShardCopy)> {
    s.shards
        .iter()
        .flat_map(|(n, copies)| copies.iter().filter(|c| c.active).map(move |c| (*n, c)))
}

async fn islands(State(app): State<App>) -> Json<Vec<IslandView>> {
    Json(island_views(&app.cluster.snapshot()))
}

#[derive(Serialize)]
struct ShardView {
    shard: ShardNo,
    /// Where it is active; `None` when nowhere or in conflict.
    island: Option<IslandId>,
    copies: Vec<ShardCopy>,
}

async fn shards(State(app): State<App>) -> Json<Vec<ShardView>> {
    let s = app.cluster.snapshot();
    Json(
        s.shards
            .iter()
            .map(|(n, copies)| ShardView {
                shard: *n,
                island: s.active_island(*n).ok(),
                copies: copies.clone(),
            })
            .collect(),
    )
}

async fn moves(State(app): State<App>) -> Json<CatalogView> {
    Json(CatalogView::clone(&app.catalog.load()))
}

async fn snapshot(State(app): State<App>) -> Json<Snapshot> {
    Json(Snapshot::clone(&app.cluster.snapshot()))
}

/// The newest migration run with its per-schema progress, and the latest runs.
async fn migrations(State(app): State<App>) -> Response {
    let c = app.catalog.load();
    Json(serde_json::json!({
        "latest": c.migration,
        "runs": c.runs,
        "error": c.migration_error,
    }))
    .into_response()
}
