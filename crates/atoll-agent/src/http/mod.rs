//! The HTTP API (axum), versioned under `/v1/`; `/metrics` for Prometheus. Every route is
//! documented in `docs/agent.md`.

mod error;

pub use error::{ApiError, ApiErrorCode};

use crate::actions::{parse_at, ActionKind};
use crate::attributes::AttributeReader;
use crate::auth::{Access, Auth};
use crate::queue::{ActionRecord, ActionState, Queue};
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// Longest accepted action id.
pub const MAX_ID_LEN: usize = 128;
/// Default and largest page of `GET /v1/actions`.
const DEFAULT_LIST: usize = 100;
const MAX_LIST: usize = 10_000;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) cfg: Arc<crate::config::AgentConfig>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) queue: Queue,
    pub(crate) reader: Arc<AttributeReader>,
    pub(crate) metrics: PrometheusHandle,
}

/// The router of the API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/attributes", get(attributes))
        .route("/v1/shards", get(shards))
        .route("/v1/actions", get(list_actions).post(schedule))
        .route("/v1/actions/{id}", get(get_action))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state)
}

async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let res = next.run(req).await;
    metrics::counter!("atoll_agent_http_requests_total",
        "route" => route, "method" => method, "status" => res.status().as_u16().to_string())
    .increment(1);
    res
}

fn check(s: &ApiState, headers: &HeaderMap, access: Access) -> Result<(), ApiError> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    s.auth.check(h, access).map_err(ApiError::from)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ApiErrorCode::NotFound,
        "no such route (the API is under /v1/)",
    )
}

async fn info(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check(&s, &headers, Access::Read)?;
    Ok(Json(json!({
        "node_id": s.cfg.node_id,
        "node": s.cfg.node.to_string(),
        "island": s.cfg.island.0,
        "agent_version": crate::attributes::AGENT_VERSION,
        "api_version": "v1",
        "reads": s.cfg.reads,
        "writes_enabled": s.cfg.token.is_some(),
        "queue_limit": s.cfg.queue_limit,
        "kinds": ActionKind::names(),
    }))
    .into_response())
}

async fn attributes(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check(&s, &headers, Access::Read)?;
    Ok(Json(s.reader.read().await).into_response())
}

async fn shards(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check(&s, &headers, Access::Read)?;
    let a = s.reader.read().await;
    Ok(Json(json!({ "node_id": a.node_id, "status": a.status, "shards": a.shards, "read_at_ms": a.read_at_ms }))
        .into_response())
}

async fn metrics_text(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check(&s, &headers, Access::Read)?;
    if let Ok(n) = s.queue.waiting().await {
        metrics::gauge!("atoll_agent_actions_waiting").set(n as f64);
    }
    Ok(s.metrics.render().into_response())
}

#[derive(Serialize)]
struct ActionList {
    actions: Vec<ActionRecord>,
}

async fn list_actions(
    State(s): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    check(&s, &headers, Access::Read)?;
    let (mut state, mut limit) = (None, DEFAULT_LIST);
    for pair in q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "state" => {
                state = Some(ActionState::parse(v).ok_or_else(|| {
                    ApiError::field(
                        ApiErrorCode::BadRequest,
                        "state",
                        format!("{v:?} is not NEW, RUNNING, DONE or FAILED"),
                    )
                })?)
            }
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIST).contains(n))
                    .ok_or_else(|| {
                        ApiError::field(
                            ApiErrorCode::BadRequest,
                            "limit",
                            format!("{v:?} is not a number in 1..={MAX_LIST}"),
                        )
                    })?
            }
            other => {
                return Err(ApiError::field(
                    ApiErrorCode::BadRequest,
                    other,
                    "unknown query parameter (known: state, limit)",
                ))
            }
        }
    }
    let actions = s
        .queue
        .list(state, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(ActionList { actions }).into_response())
}

async fn get_action(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check(&s, &headers, Access::Read)?;
    match s.queue.get(id.clone()).await.map_err(ApiError::internal)? {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ApiErrorCode::NotFound,
            format!("no action with id {id:?}"),
        )),
    }
}

/// `POST /v1/actions`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleRequest {
    id: String,
    kind: String,
    #[serde(default)]
    args: serde_json::Value,
}

async fn schedule(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check(&s, &headers, Access::Write)?;
    let (id, kind, args) = parse_schedule(&body)?;
    let record = s.queue.schedule(id, kind, args).await?;
    metrics::counter!("atoll_agent_actions_scheduled_total", "kind" => kind.as_str()).increment(1);
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// Validates a schedule request: JSON, known fields only, a usable id, a known kind and
/// arguments the kind accepts. Never panics on any input.
pub fn parse_schedule(body: &[u8]) -> Result<(String, ActionKind, serde_json::Value), ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::field(ApiErrorCode::BadRequest, "body", format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::field(
            ApiErrorCode::BadRequest,
            "body",
            "must be a JSON object {\"id\", \"kind\", \"args\"}",
        ));
    }
    let req: ScheduleRequest =
        parse_at(&v, "").map_err(|e| ApiError::field(ApiErrorCode::BadRequest, e.field, e.msg))?;
    check_id(&req.id)?;
    let kind = ActionKind::parse(&req.kind).ok_or_else(|| {
        ApiError::field(
            ApiErrorCode::UnknownKind,
            "kind",
            format!(
                "{:?} is not an action kind (known: {})",
                req.kind,
                ActionKind::names().join(", ")
            ),
        )
    })?;
    let args = kind
        .validate(&req.args)
        .map_err(|e| ApiError::field(ApiErrorCode::BadArgs, e.field, e.msg))?;
    Ok((req.id, kind, args))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            ApiErrorCode::BadRequest,
            "id",
            format!("must be 1..={MAX_ID_LEN} characters of A-Z a-z 0-9 . _ - :"),
        ))
    }
}
