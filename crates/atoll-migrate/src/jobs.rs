//! Which schemas a run migrates, and with which versions: from the files and the states
//! (optionally narrowed to a scope), or exactly from a reviewed plan file. The decisions
//! are `atoll_core::migration`'s; this only turns them into [`Job`]s.

use crate::error::MigrateError;
use crate::workers::Job;
use atoll_core::migration::{
    check_applicable, check_undo, plan, plan_undo, MigrationError, MigrationSet, Plan, PlanFile,
    SchemaState, Scope,
};
use atoll_core::{IslandId, Snapshot};
use std::collections::BTreeSet;

/// A reviewed plan to apply instead of planning anew: the file's path (for errors) and
/// its parsed content.
#[derive(Debug, Clone)]
pub struct ReviewedPlan {
    /// The plan file's path as the user gave it.
    pub path: String,
    /// Its content, parsed and digest-checked ([`PlanFile::parse`]).
    pub file: PlanFile,
}

/// What a run will do, before it starts.
pub(crate) struct Jobs<'a> {
    pub jobs: Vec<Job<'a>>,
    /// Why the non-shard schemas are left out, when they are although pending.
    pub finalizer_held: Option<String>,
}

/// The states within `scope`: its shards, and the non-shard schemas.
pub(crate) fn scoped(states: &[SchemaState], scope: &Scope) -> Vec<SchemaState> {
    states
        .iter()
        .filter(|s| {
            atoll_core::ShardNo::from_schema(&s.schema).is_err()
                || scope.contains(&s.schema, s.island)
        })
        .cloned()
        .collect()
}

fn job<'a>(set: &'a MigrationSet, schema: &str, island: IslandId, versions: &[String]) -> Job<'a> {
    Job {
        schema: schema.to_string(),
        island,
        steps: versions
            .iter()
            .filter_map(|v| set.migrations.iter().find(|m| &m.version == v))
            .collect(),
    }
}

/// The non-shard jobs run only when every shard outside `jobs` is up to date (the run
/// itself checks that the shards inside succeed): otherwise they are dropped, saying why.
fn hold_finalizer(whole: &Plan, jobs: &mut Vec<Job<'_>>) -> Option<String> {
    let in_run: BTreeSet<&str> = jobs
        .iter()
        .filter(|j| atoll_core::ShardNo::from_schema(&j.schema).is_ok())
        .map(|j| j.schema.as_str())
        .collect();
    let behind = whole
        .schemas
        .iter()
        .filter(|s| s.is_shard() && !in_run.contains(s.schema.as_str()))
        .filter(|s| !s.pending.is_empty() || s.drift.is_some())
        .count();
    let has_finalizer = jobs
        .iter()
        .any(|j| atoll_core::ShardNo::from_schema(&j.schema).is_err());
    if behind == 0 || !has_finalizer {
        return None;
    }
    jobs.retain(|j| atoll_core::ShardNo::from_schema(&j.schema).is_ok());
    Some(format!(
        "{behind} shards outside this run are not up to date; the non-shard schemas run once every shard is"
    ))
}

/// The jobs of `migrate apply`: from `reviewed` when given (checked against the cluster,
/// the files and every state, `done_by_plan` being what an earlier run of the same plan
/// finished), else planned from the files within `scope`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_jobs<'a>(
    set: &'a MigrationSet,
    states: &[SchemaState],
    snapshot: &Snapshot,
    scope: &Scope,
    reviewed: Option<&ReviewedPlan>,
    done_by_plan: &BTreeSet<String>,
    allow_unsafe: bool,
    islands: &[IslandId],
) -> Result<Jobs<'a>, MigrateError> {
    let whole = plan(set, states);
    let mut jobs: Vec<Job<'a>> = match reviewed {
        Some(r) => {
            let cluster = snapshot.cluster_id().unwrap_or_default();
            let planned = r.file.check(&r.path, cluster, set, states, done_by_plan)?;
            if !allow_unsafe {
                if let Some(u) = r.file.groups.iter().flat_map(|g| &g.unsafe_notes).next() {
                    return Err(MigrationError::Unsafe {
                        file: u.file.clone(),
                        statement: u.statement.clone(),
                    }
                    .into());
                }
            }
            planned
                .iter()
                .map(|p| job(set, &p.schema, p.island, &p.versions))
                .collect()
        }
        None => {
            scope.check(states, islands)?;
            let p = plan(set, &scoped(states, scope));
            check_applicable(&p, allow_unsafe)?;
            p.pending_schemas()
                .map(|s| job(set, &s.schema, s.island, &s.pending))
                .collect()
        }
    };
    let finalizer_held = hold_finalizer(&whole, &mut jobs);
    Ok(Jobs {
        jobs,
        finalizer_held,
    })
}

/// The jobs of `migrate undo VERSION` within `scope`: the down file wherever the version
/// is the latest applied; the non-shard schemas only in an unscoped run.
pub(crate) fn undo_jobs<'a>(
    set: &'a MigrationSet,
    states: &[SchemaState],
    version: &str,
    scope: &Scope,
    allow_unsafe: bool,
    islands: &[IslandId],
) -> Result<Jobs<'a>, MigrateError> {
    scope.check(states, islands)?;
    let (m, targets) = plan_undo(set, states, version)?;
    check_undo(set, states, m, allow_unsafe)?;
    let jobs = targets
        .into_iter()
        .filter(|t| scope.contains(&t.schema, t.island))
        .map(|t| Job {
            schema: t.schema,
            island: t.island,
            steps: vec![m],
        })
        .collect();
    Ok(Jobs {
        jobs,
        finalizer_held: None,
    })
}
