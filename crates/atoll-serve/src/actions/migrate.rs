//! Migration actions on the directory `atoll serve --migrations DIR` names: a plan
//! (`{"shards": "1-100", "island": 1}`, both optional) answering the groups, the drift,
//! the destructive statements and the reviewed plan file; then an apply of exactly that
//! file (`{"plan": <file>, "confirm": "<its digest>"}`), refused when a file or a shard's
//! state changed since. `atoll_migrate::{plan_scoped, apply}`, as `atoll migrate plan
//! --out` and `apply --plan` do.

use crate::actions::request::{self, bad, ActionRequest};
use crate::actions::run::{launch, End, Plan};
use crate::api::{App, Refusal};
use atoll_core::migration::{MigrationSet, PlanFile, Scope};
use atoll_core::{IslandId, ShardNo};
use atoll_migrate::{Event, MigrateError, ReviewedPlan, RunOptions};
use atoll_move::global_copy::MigrationHook;
use atoll_pg::catalog::action_log::ActionKind;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// `POST /api/v1/actions/migrate/plan`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigratePlanBody {
    /// Only these shards (`1-100,4242`).
    pub shards: Option<String>,
    /// Only the shards on this island.
    pub island: Option<u16>,
}

/// `POST /api/v1/actions/migrate/apply`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateApplyBody {
    /// The plan file the plan action returned (`file`), unchanged.
    #[schema(value_type = Object)]
    pub plan: serde_json::Value,
    /// Its digest, typed (or pasted) by the operator.
    pub confirm: String,
    /// Run destructive statements the plan discloses.
    #[serde(default)]
    pub allow_unsafe: bool,
}

fn read_set(app: &App) -> Result<MigrationSet, Refusal> {
    let Some(dir) = &app.actions.migrations else {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "migrations: no directory; start atoll serve with --migrations DIR",
        ));
    };
    atoll_migrate::read_dir(dir).map_err(|e| Refusal::new(StatusCode::CONFLICT, e.to_string()))
}

/// The plan: groups, drift, destructive statements and the reviewed plan file (`null`
/// while there is drift: it must be resolved first). Nothing changes.
#[utoipa::path(post, path = "/api/v1/actions/migrate/plan", operation_id = "migrate_plan", tag = "actions", request_body = MigratePlanBody, security(("write_token" = [])),
    responses((status = 200, body = MigratePlanAnswer), (status = 400, body = crate::api::ErrorBody), (status = 401, body = crate::api::ErrorBody), (status = 403, description = "No migration directory", body = crate::api::ErrorBody)))]
pub async fn plan(
    State(app): State<App>,
    ActionRequest(_, b): ActionRequest<MigratePlanBody>,
) -> Result<Response, Refusal> {
    let set = read_set(&app)?;
    let scope =
        Scope::new(b.shards.as_deref(), b.island.map(IslandId)).map_err(|e| bad("scope", e))?;
    let (config, snapshot) = (app.cluster.config(), app.cluster.snapshot());
    let (plan, file) = match atoll_migrate::plan_scoped(&config, &snapshot, &set, &scope).await {
        Ok(x) => x,
        Err(e) if e.is_input() => return Err(bad("scope", e)),
        Err(e) => {
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            ))
        }
    };
    let drifted = plan
        .drift
        .iter()
        .filter_map(|s| ShardNo::from_schema(&s.schema).ok())
        .collect();
    app.actions.set_drifted(drifted);
    let file = plan.drift.is_empty().then_some(file).transpose();
    let (file, file_error) = match file {
        Ok(f) => (f, None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Json(MigratePlanAnswer {
        groups: plan.groups,
        up_to_date: plan.up_to_date,
        drift: plan.drift,
        unsafe_pending: plan.unsafe_pending,
        unmatched_targets: plan.unmatched_targets,
        changed: plan.changed,
        file,
        file_error,
    })
    .into_response())
}

/// A migration plan, as `atoll migrate plan` shows it, with the reviewed plan file.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MigratePlanAnswer {
    /// Schemas grouped by identical pending versions, largest first: pending, count,
    /// schemas (compacted ranges).
    #[schema(value_type = Vec<Object>)]
    pub groups: Vec<atoll_core::migration::Group>,
    /// Schemas with nothing pending.
    pub up_to_date: usize,
    /// Schemas whose applied versions are not a prefix of the files: resolve first.
    #[schema(value_type = Vec<Object>)]
    pub drift: Vec<atoll_core::migration::SchemaPlan>,
    /// Destructive statements in pending files.
    #[schema(value_type = Vec<Object>)]
    pub unsafe_pending: Vec<atoll_core::migration::UnsafeNote>,
    /// Targets no schema matched.
    pub unmatched_targets: Vec<String>,
    /// Files edited after they were applied.
    #[schema(value_type = Vec<Object>)]
    pub changed: Vec<atoll_core::migration::ChangedNote>,
    /// The reviewed plan file for `migrate/apply`; `null` while there is drift.
    #[schema(value_type = Option<Object>)]
    pub file: Option<PlanFile>,
    /// Why there is no file.
    pub file_error: Option<String>,
}

/// Applies the reviewed plan file.
#[utoipa::path(post, path = "/api/v1/actions/migrate/apply", operation_id = "migrate_apply", tag = "actions", request_body = MigrateApplyBody,
    responses(crate::actions::request::ActionResponses), security(("write_token" = [])))]
pub async fn apply(
    State(app): State<App>,
    ActionRequest(who, b): ActionRequest<MigrateApplyBody>,
) -> Result<Response, Refusal> {
    let set = read_set(&app)?;
    let file = PlanFile::parse("plan", &b.plan.to_string()).map_err(|e| bad("plan", e))?;
    request::confirmed(&b.confirm, &file.digest, "the plan's digest")?;
    let unfinished = &app.catalog.load().moves;
    if !unfinished.is_empty() {
        let list: Vec<String> = unfinished
            .iter()
            .map(|m| format!("{} ({})", m.shard, m.step))
            .collect();
        let msg = format!(
            "unfinished moves: {}; migrate after they end",
            list.join(", ")
        );
        return Err(Refusal::new(StatusCode::CONFLICT, msg));
    }
    let plan = Plan {
        who,
        kind: ActionKind::MigrateApply,
        target: format!("plan {} ({} schemas)", file.digest, file.schemas()),
        shard: None,
    };
    // The CLI's defaults: a canary, then 8 schemas at once per island.
    let (config, snapshot) = (app.cluster.config(), app.cluster.snapshot());
    let opts = RunOptions {
        allow_unsafe: b.allow_unsafe,
        plan: Some(ReviewedPlan {
            path: "the reviewed plan".into(),
            file,
        }),
        global_copies: Some(Arc::new(MigrationHook::new(
            (*config).clone(),
            snapshot.clone(),
        ))),
        ..RunOptions::default()
    };
    let work = move |p: crate::actions::run::Progress| async move {
        let on = |e: Event| match e {
            Event::Start { schemas, .. } => {
                p.accept();
                p.update(|a| (a.done, a.total) = (0, schemas as u64));
            }
            Event::Phase(phase) => p.update(|a| a.progress = phase.to_string()),
            Event::Done { .. } => p.update(|a| a.done += 1),
        };
        match atoll_migrate::apply(&config, &snapshot, &set, &opts, &on).await {
            Ok(r) if r.status.is_success() => End::Succeeded(format!(
                "run {}: {} of {} schemas, {} versions applied",
                r.run_id, r.schemas_ok, r.schemas_total, r.versions_applied
            )),
            Ok(r) => End::Failed(format!(
                "run {} ended {:?}: {} failed, first: {}",
                r.run_id,
                r.status,
                r.failures.len(),
                r.failures
                    .first()
                    .map_or("-".into(), |f| format!("{}: {}", f.schema, f.error))
            )),
            Err(e) if refused(&e) => End::Refused(e.to_string()),
            Err(e) => End::Failed(e.to_string()),
        }
    };
    Ok(launch(&app, plan, work).await)
}

/// Refused before anything ran: bad input, a changed plan, another run, an unfinished move.
fn refused(e: &MigrateError) -> bool {
    e.is_input()
        || matches!(
            e,
            MigrateError::Locked { .. } | MigrateError::MoveInProgress(_)
        )
}
