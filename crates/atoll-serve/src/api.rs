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
use utoipa::ToSchema;

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
        .route("/api/v1/leases", get(leases))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/", get(console))
        .merge(crate::actions::routes())
}

/// The console: one page, its script and style inline, no outside asset (works offline).
const CONSOLE: &str = include_str!("console.html");

async fn console() -> axum::response::Html<&'static str> {
    axum::response::Html(CONSOLE)
}

/// This API's OpenAPI document (`openapi.rs`).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "read",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub(crate) async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
        .into_response()
}

/// The overview the publisher built last (`events.rs`): requests do not rebuild it.
#[utoipa::path(get, path = "/api/v1/overview", tag = "read",
    responses((status = 200, description = "The console's data in one answer", body = crate::overview::Overview)))]
pub(crate) async fn overview_json(State(app): State<App>) -> Response {
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

/// `?q=`: a shard number, a schema name or an atoll ID.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct LocateQuery {
    /// `42`, `sh0042` or a 19-digit atoll ID.
    q: Option<String>,
}

/// Where a shard, schema or ID lives.
#[utoipa::path(get, path = "/api/v1/locate", tag = "read", params(LocateQuery),
    responses((status = 200, body = crate::overview::Located),
              (status = 400, description = "q missing or not understood", body = ErrorBody)))]
pub(crate) async fn locate(
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

/// Every refusal's body: one line naming what was wrong and where.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `field: why`, or the conflict.
    pub error: String,
}

/// A JSON error answer: `{"error": "..."}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = ErrorBody {
        error: message.to_string(),
    };
    (status, Json(body)).into_response()
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

/// The cluster at a glance.
#[derive(Serialize, ToSchema)]
pub(crate) struct ClusterView {
    cluster_id: Option<String>,
    snapshot_taken_at_unix_ms: u64,
    snapshot_age_ms: u64,
    islands: usize,
    shards_active: usize,
    /// As `atoll status` reports them.
    #[schema(value_type = Vec<Object>)]
    problems: Vec<SnapshotProblem>,
    moves_unfinished: usize,
    catalog_error: Option<String>,
}

/// The cluster at a glance.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "read", responses((status = 200, body = ClusterView)))]
pub(crate) async fn cluster(State(app): State<App>) -> Json<ClusterView> {
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
#[derive(Serialize, ToSchema)]
pub struct IslandView {
    /// The island.
    #[schema(value_type = u16)]
    pub id: IslandId,
    /// The master's address, when exactly one node claims the role.
    pub master: Option<String>,
    /// Every configured node: address, role, LSN, lag in bytes and seconds, error.
    #[schema(value_type = Vec<Object>)]
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

/// The islands, their nodes and load.
#[utoipa::path(get, path = "/api/v1/islands", tag = "read", responses((status = 200, body = Vec<IslandView>)))]
pub(crate) async fn islands(State(app): State<App>) -> Json<Vec<IslandView>> {
    Json(island_views(&app.cluster.snapshot()))
}

/// One shard and its copies.
#[derive(Serialize, ToSchema)]
pub(crate) struct ShardView {
    #[schema(value_type = u16)]
    shard: ShardNo,
    /// Where it is active; `None` when nowhere or in conflict.
    #[schema(value_type = Option<u16>)]
    island: Option<IslandId>,
    /// Every island's schema of it: island, active, size, generation.
    #[schema(value_type = Vec<Object>)]
    copies: Vec<ShardCopy>,
}

/// Every shard, where it is active and its copies.
#[utoipa::path(get, path = "/api/v1/shards", tag = "read", responses((status = 200, body = Vec<ShardView>)))]
pub(crate) async fn shards(State(app): State<App>) -> Json<Vec<ShardView>> {
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

/// Unfinished moves and the ones that finished last.
#[derive(Serialize, ToSchema)]
pub(crate) struct MovesView {
    /// Unfinished moves with their times and last errors.
    moves: Vec<crate::view::UnfinishedMove>,
    /// The moves that finished last, newest first, with their timings (total, copy,
    /// pause, verify block).
    #[schema(value_type = Vec<Object>)]
    finished: Vec<atoll_move::FinishedMove>,
    read_at_unix_ms: u64,
    read_seconds: f64,
    /// Why the last read failed (the moves are then the previous read's).
    error: Option<String>,
}

/// Unfinished moves and the ones that finished last, with their timings.
#[utoipa::path(get, path = "/api/v1/moves", tag = "read", responses((status = 200, body = MovesView)))]
pub(crate) async fn moves(State(app): State<App>) -> Json<MovesView> {
    let c = app.catalog.load();
    Json(MovesView {
        moves: c.unfinished(),
        finished: c.finished.clone(),
        read_at_unix_ms: c.read_at_unix_ms,
        read_seconds: c.read_seconds,
        error: c.error.clone(),
    })
}

/// The discovery snapshot, whole.
#[utoipa::path(get, path = "/api/v1/snapshot", tag = "read",
    responses((status = 200, description = "The discovery snapshot (islands, nodes, every shard's copies, problems)", body = Object)))]
pub(crate) async fn snapshot(State(app): State<App>) -> Json<Snapshot> {
    Json(Snapshot::clone(&app.cluster.snapshot()))
}

/// The newest migration run with its schemas by state, and the latest runs.
#[derive(Serialize, ToSchema)]
pub(crate) struct MigrationsView {
    /// The run record and its schemas (counts, ranges per state, the first failure).
    #[schema(value_type = Option<Object>)]
    latest: Option<atoll_migrate::RunView>,
    /// The latest runs, newest first.
    #[schema(value_type = Vec<Object>)]
    runs: Vec<atoll_migrate::RunRow>,
    /// Why reading them failed.
    error: Option<String>,
}

/// The newest migration run with its per-schema progress, and the latest runs.
#[utoipa::path(get, path = "/api/v1/migrations", tag = "read", responses((status = 200, body = MigrationsView)))]
pub(crate) async fn migrations(State(app): State<App>) -> Json<MigrationsView> {
    let c = app.catalog.load();
    Json(MigrationsView {
        latest: c.migration.clone(),
        runs: c.runs.clone(),
        error: c.migration_error.clone(),
    })
}

/// The ID node-id leases.
#[derive(Serialize, ToSchema)]
pub(crate) struct LeasesView {
    /// Per node id: `node`, `holder`, `expires_in_s` (negative once expired), `released`.
    #[schema(value_type = Vec<Object>)]
    leases: Vec<atoll_pg::catalog::id_leases::LeaseRow>,
    /// Why reading them failed (with the action log, on the coordination island).
    error: Option<String>,
}

/// The ID node-id leases that processes took (`atoll.id_leases`), as last read.
#[utoipa::path(get, path = "/api/v1/leases", tag = "read", responses((status = 200, body = LeasesView)))]
pub(crate) async fn leases(State(app): State<App>) -> Json<LeasesView> {
    let c = app.catalog.load();
    Json(LeasesView {
        leases: c.leases.clone(),
        error: c.actions_error.clone(),
    })
}
