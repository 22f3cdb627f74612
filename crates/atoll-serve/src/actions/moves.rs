//! Move actions: start a move of one shard (`{"shard": 42, "to": 1, "confirm": "sh0042"}`),
//! resume or abort an unfinished one (`{"shard": 42, "confirm": "sh0042"}`). Each runs
//! `atoll_move::{start_move, resume_move, abort_move}`, as `atoll move` does.

use crate::actions::request::{self, bad, confirmed, known_island, ActionRequest, ShardArg};
use crate::actions::run::{launch, End, Plan, Progress};
use crate::api::{App, Refusal};
use atoll_core::{IslandId, ShardNo};
use atoll_move::{MoveError, MoveEvent, MoveReport};
use atoll_pg::catalog::action_log::ActionKind;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

/// `POST /api/v1/actions/move`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// The shard: `42` or `"sh0042"`.
    pub shard: ShardArg,
    /// The destination island.
    pub to: u16,
    /// The shard's schema name, typed by the operator.
    pub confirm: String,
}

/// `POST /api/v1/actions/move/resume` and `/abort`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveShardBody {
    /// The shard whose unfinished move it is.
    pub shard: ShardArg,
    /// The shard's schema name, typed by the operator.
    pub confirm: String,
}

/// Starts a move.
#[utoipa::path(post, path = "/api/v1/actions/move", operation_id = "move_start", tag = "actions", request_body = MoveBody,
    responses(crate::actions::request::ActionResponses), security(("write_token" = [])))]
pub async fn start(
    State(app): State<App>,
    ActionRequest(who, b): ActionRequest<MoveBody>,
) -> Result<Response, Refusal> {
    let snapshot = app.cluster.snapshot();
    let shard = b.shard.known(&snapshot)?;
    let to = known_island(&snapshot, "to", b.to)?;
    if snapshot.active_island(shard).ok() == Some(to) {
        let already = format!("{shard} is already active on island {to}");
        return Err(bad("to", already));
    }
    confirmed(&b.confirm, &shard.schema(), "the shard's schema")?;
    refuse_conflicts(&app, shard)?;
    let plan = Plan {
        who,
        kind: ActionKind::Move,
        target: format!("{shard} to island {to}"),
        shard: Some(shard),
    };
    let (config, opts) = (app.cluster.config(), app.actions.move_options.clone());
    let work = move |p| async move {
        let r = atoll_move::start_move(&config, &snapshot, shard, to, &opts, sink(p)).await;
        if r.is_ok() && shard == ShardNo::GLOBAL {
            // Its read-only copies follow it, as `atoll move` does.
            let quiet = |_: IslandId, _: &str| {};
            if let Err(e) = atoll_move::global_copy::after_shard_zero_move(&config, &quiet).await {
                return End::Failed(format!(
                    "shard 0 moved to island {to}, but handing its read-only copies over failed ({e}); run `atoll global replicate`"
                ));
            }
        }
        moved(r, to)
    };
    Ok(launch(&app, plan, work).await)
}

/// Resumes an unfinished move.
#[utoipa::path(post, path = "/api/v1/actions/move/resume", operation_id = "move_resume", tag = "actions", request_body = MoveShardBody,
    responses(crate::actions::request::ActionResponses), security(("write_token" = [])))]
pub async fn resume(
    State(app): State<App>,
    ActionRequest(who, b): ActionRequest<MoveShardBody>,
) -> Result<Response, Refusal> {
    let (plan, shard) = unfinished(&app, who, &b, ActionKind::MoveResume)?;
    let (config, snapshot) = (app.cluster.config(), app.cluster.snapshot());
    let opts = app.actions.move_options.clone();
    let work = move |p| async move {
        let r = atoll_move::resume_move(&config, &snapshot, Some(shard), &opts, sink(p)).await;
        let to = r.as_ref().ok().and_then(|r| r.to).unwrap_or(IslandId(0));
        moved(r, to)
    };
    Ok(launch(&app, plan, work).await)
}

/// Rolls back an unfinished move.
#[utoipa::path(post, path = "/api/v1/actions/move/abort", operation_id = "move_abort", tag = "actions", request_body = MoveShardBody,
    responses(crate::actions::request::ActionResponses), security(("write_token" = [])))]
pub async fn abort(
    State(app): State<App>,
    ActionRequest(who, b): ActionRequest<MoveShardBody>,
) -> Result<Response, Refusal> {
    let (plan, shard) = unfinished(&app, who, &b, ActionKind::MoveAbort)?;
    let (config, snapshot) = (app.cluster.config(), app.cluster.snapshot());
    let work = move |p: Progress| async move {
        p.accept();
        match atoll_move::abort_move(&config, &snapshot, Some(shard)).await {
            Ok(r) => End::Succeeded(format!(
                "{shard}: rolled back ({} actions)",
                r.actions.len()
            )),
            Err(e) => failed(e),
        }
    };
    Ok(launch(&app, plan, work).await)
}

/// The action on a shard with an unfinished move, once confirmed.
fn unfinished(
    app: &App,
    who: request::Who,
    b: &MoveShardBody,
    kind: ActionKind,
) -> Result<(Plan, ShardNo), Refusal> {
    let snapshot = app.cluster.snapshot();
    let shard = b.shard.known(&snapshot)?;
    if !app.catalog.load().moves.iter().any(|m| m.shard == shard) {
        return Err(bad("shard", format!("{shard} has no unfinished move")));
    }
    confirmed(&b.confirm, &shard.schema(), "the shard's schema")?;
    let plan = Plan {
        who,
        kind,
        target: shard.schema(),
        shard: Some(shard),
    };
    Ok((plan, shard))
}

/// A move while a migration runs, or of a shard already moving: refused up front (the
/// library refuses too, under its locks; this answers before anything is recorded).
fn refuse_conflicts(app: &App, shard: ShardNo) -> Result<(), Refusal> {
    let c = app.catalog.load();
    if let Some(m) = c.moves.iter().find(|m| m.shard == shard) {
        let msg = format!(
            "{shard} has an unfinished move to island {} ({}): resume or abort it first",
            m.destination, m.step
        );
        return Err(Refusal::new(StatusCode::CONFLICT, msg));
    }
    if let Some(run) = c.migration_running() {
        let msg = format!("migration run {run} is under way; move after it ends");
        return Err(Refusal::new(StatusCode::CONFLICT, msg));
    }
    Ok(())
}

/// The move's progress into the live view; its first step accepts the request.
fn sink(p: Progress) -> atoll_move::Progress {
    std::sync::Arc::new(move |_, e: &MoveEvent| match e {
        MoveEvent::Step(step) => {
            // The first step is reported once the checks passed and the move is recorded.
            p.accept();
            p.update(|a| a.progress = step.to_string());
        }
        MoveEvent::Copy { done, total } => p.update(|a| (a.done, a.total) = (*done, *total)),
        MoveEvent::Note(n) => p.update(|a| a.progress = n.clone()),
    })
}

fn moved(r: Result<MoveReport, MoveError>, to: IslandId) -> End {
    match r {
        Ok(r) => End::Succeeded(format!(
            "on island {to}: {:.1} s in all, writes paused {:.1} ms",
            r.total_ms as f64 / 1000.0,
            r.pause_ms
        )),
        Err(e) => failed(e),
    }
}

fn failed(e: MoveError) -> End {
    if e.is_refusal() {
        End::Refused(e.to_string())
    } else {
        End::Failed(e.to_string())
    }
}
