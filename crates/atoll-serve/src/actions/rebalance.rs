//! Rebalance actions: a dry run that returns the plan and its digest
//! (`{"decommission": [2]}`), then a run of exactly that plan (`{"decommission": [2],
//! "confirm": "<digest>"}`) — refused when the plan made at run time differs from the one
//! reviewed. `atoll_move::{prepare_rebalance, run_moves}`, as `atoll rebalance` does.

use crate::actions::request::{self, known_island, ActionRequest};
use crate::actions::run::{launch, End, Plan};
use crate::api::{App, Refusal};
use atoll_core::IslandId;
use atoll_move::{MoveEvent, RebalanceRequest};
use atoll_pg::catalog::action_log::ActionKind;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// `POST /api/v1/actions/rebalance/plan`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebalancePlanBody {
    /// Islands to empty.
    #[serde(default)]
    pub decommission: Vec<u16>,
}

/// `POST /api/v1/actions/rebalance`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebalanceRunBody {
    /// Islands to empty, as in the plan.
    #[serde(default)]
    pub decommission: Vec<u16>,
    /// Moves at once (default 2).
    #[serde(default = "two")]
    pub parallelism: usize,
    /// The digest of the reviewed plan.
    pub confirm: String,
}

/// A rebalance plan and its digest (what `confirm` must be to run it).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RebalancePlanAnswer {
    /// The digest of the moves.
    pub digest: String,
    /// The moves (shard, from, to, weight) and every island's load before and after.
    #[schema(value_type = Object)]
    pub plan: atoll_core::rebalance::RebalancePlan,
    /// Whether shards were weighed by their size in bytes.
    pub weighed_by_size: bool,
}

fn two() -> usize {
    2
}

fn islands(app: &App, given: &[u16]) -> Result<Vec<IslandId>, Refusal> {
    let s = app.cluster.snapshot();
    given
        .iter()
        .map(|i| known_island(&s, "decommission", *i))
        .collect()
}

/// The dry run: the plan and its digest; nothing changes.
#[utoipa::path(post, path = "/api/v1/actions/rebalance/plan", operation_id = "rebalance_plan", tag = "actions", request_body = RebalancePlanBody, security(("write_token" = [])),
    responses((status = 200, body = RebalancePlanAnswer), (status = 400, body = crate::api::ErrorBody), (status = 401, body = crate::api::ErrorBody), (status = 409, description = "Unfinished moves, or no plan can be made", body = crate::api::ErrorBody)))]
pub async fn plan(
    State(app): State<App>,
    ActionRequest(_, b): ActionRequest<RebalancePlanBody>,
) -> Result<Response, Refusal> {
    let decommission = islands(&app, &b.decommission)?;
    let req = RebalanceRequest {
        decommission,
        dry_run: true,
        ..RebalanceRequest::default()
    };
    let (config, snapshot) = (app.cluster.config(), app.cluster.snapshot());
    let opts = app.actions.move_options.clone();
    let prepared = atoll_move::prepare_rebalance(
        &config,
        (*snapshot).clone(),
        &req,
        &opts,
        atoll_move::no_progress(),
    )
    .await;
    match prepared {
        Ok(p) => Ok(Json(RebalancePlanAnswer {
            digest: p.plan.digest(),
            plan: p.plan,
            weighed_by_size: p.sizes,
        })
        .into_response()),
        Err(e) if e.is_refusal() => Err(Refusal::new(StatusCode::CONFLICT, e.to_string())),
        Err(e) => Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// Runs the reviewed plan.
#[utoipa::path(post, path = "/api/v1/actions/rebalance", operation_id = "rebalance_run", tag = "actions", request_body = RebalanceRunBody,
    responses(crate::actions::request::ActionResponses), security(("write_token" = [])))]
pub async fn start(
    State(app): State<App>,
    ActionRequest(who, b): ActionRequest<RebalanceRunBody>,
) -> Result<Response, Refusal> {
    let decommission = islands(&app, &b.decommission)?;
    if !(1..=64).contains(&b.parallelism) {
        return Err(request::bad("parallelism", "must be 1 to 64"));
    }
    if let Some(run) = app.catalog.load().migration_running() {
        let msg = format!("migration run {run} is under way; rebalance after it ends");
        return Err(Refusal::new(StatusCode::CONFLICT, msg));
    }
    let plan = Plan {
        who,
        kind: ActionKind::Rebalance,
        target: format!("plan {}", b.confirm),
        shard: None,
    };
    let (config, snapshot) = (app.cluster.config(), app.cluster.snapshot());
    let opts = app.actions.move_options.clone();
    let req = RebalanceRequest {
        decommission,
        ..RebalanceRequest::default()
    };
    let work = move |p: crate::actions::run::Progress| async move {
        let none = atoll_move::no_progress();
        let prepared =
            match atoll_move::prepare_rebalance(&config, (*snapshot).clone(), &req, &opts, none)
                .await
            {
                Ok(prep) => prep,
                Err(e) if e.is_refusal() => return End::Refused(e.to_string()),
                Err(e) => return End::Failed(e.to_string()),
            };
        if prepared.plan.digest() != b.confirm {
            return End::Refused(format!(
                "the plan is now {} (was {} when reviewed): the cluster changed; plan again",
                prepared.plan.digest(),
                b.confirm
            ));
        }
        p.accept();
        let total = prepared.plan.moves.len() as u64;
        p.update(|a| (a.done, a.total) = (0, total));
        let on = p.clone();
        let sink: atoll_move::Progress = std::sync::Arc::new(move |shard, e| {
            if let MoveEvent::Step(step) = e {
                on.update(|a| a.progress = format!("{shard}: {step}"));
                if *step == atoll_core::move_plan::MoveStep::CleanedUp {
                    on.update(|a| a.done += 1);
                }
            }
        });
        let moves = &prepared.plan.moves;
        let outcomes = atoll_move::run_moves(
            &config,
            &prepared.snapshot,
            moves,
            b.parallelism,
            &opts,
            sink,
        )
        .await;
        drop(prepared.lock);
        let failed: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.shard)))
            .collect();
        if failed.is_empty() {
            End::Succeeded(format!("{} moves done", outcomes.len()))
        } else {
            End::Failed(format!(
                "{} of {} moves failed: {}",
                failed.len(),
                outcomes.len(),
                failed.join("; ")
            ))
        }
    };
    Ok(launch(&app, plan, work).await)
}
