//! `allocate --migrate`: allocating microshards and bringing them to the migrated schema
//! before any client can be routed to them.
//!
//! The shards are created inactive; every inactive shard of the range (the new ones, and
//! those an earlier failed, killed or refused run left behind) is brought to the current
//! version; only then, if asked, the shards whose migration succeeded are activated.
//! Destructive statements are allowed on the shards this call created (a new shard must
//! replay the whole history and holds no data); an inactive shard that existed before may
//! have been deactivated on purpose with data in it, so it needs `allow_unsafe`.

use crate::error::MigrateError;
use crate::report::{Event, RunOutcome, RunReport};
use crate::run::{apply, RunOptions};
use atoll_core::allocation::Placement;
use atoll_core::migration::MigrationSet;
use atoll_core::{Config, ShardNo, Snapshot};
use atoll_pg::allocate::{execute, Allocated};
use atoll_pg::PgError;
use std::collections::BTreeSet;
use std::fmt;

/// What `allocate --migrate` may do beyond creating the shards.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocateOptions {
    /// Activate the shards whose migration succeeded.
    pub activate: bool,
    /// Allow destructive statements on inactive shards that existed before this call.
    pub allow_unsafe: bool,
}

/// Why `allocate --migrate` stopped.
#[derive(Debug)]
pub enum AllocateError {
    /// Creating or activating the shards failed (or was refused).
    Allocate(PgError),
    /// The run was refused or failed; `left_inactive` are the shards this call created,
    /// which stay in place, inactive, until a later call finishes them.
    Run {
        /// Why the run was refused or failed.
        source: MigrateError,
        /// The shards created by this call, all still inactive.
        left_inactive: Vec<ShardNo>,
    },
}

impl AllocateError {
    /// True when the user's input is at fault (exit code 2 in the CLI).
    pub fn is_input(&self) -> bool {
        match self {
            AllocateError::Allocate(e) => {
                matches!(e, PgError::Refused(_) | PgError::Shard { .. })
            }
            AllocateError::Run { source, .. } => source.is_input(),
        }
    }
}

impl fmt::Display for AllocateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocateError::Allocate(e) => write!(f, "{e}"),
            AllocateError::Run {
                source,
                left_inactive,
            } if left_inactive.is_empty() => write!(f, "{source}"),
            AllocateError::Run {
                source,
                left_inactive,
            } => {
                let list: Vec<String> = left_inactive.iter().map(|s| s.to_string()).collect();
                write!(
                    f,
                    "{source} (allocated and left inactive: {}; run `allocate --migrate` again to finish)",
                    list.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for AllocateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AllocateError::Allocate(e) => Some(e),
            AllocateError::Run { source, .. } => Some(source),
        }
    }
}

/// Carries out the allocation `plan` with `set` applied to the shards before they are
/// activated (see the module documentation). Returns what was allocated (with `active`
/// as it is at the end) and the run's report; a report with failures is not an error: the
/// failed shards stay inactive.
pub async fn allocate_migrated(
    config: &Config,
    snapshot: &Snapshot,
    plan: &[Placement],
    set: &MigrationSet,
    opts: AllocateOptions,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<(Vec<Allocated>, RunReport), AllocateError> {
    let mut done = execute(config, snapshot, plan, false)
        .await
        .map_err(AllocateError::Allocate)?;
    let inactive: BTreeSet<String> = done
        .iter()
        .filter(|a| !a.active)
        .map(|a| a.shard.schema())
        .collect();
    let only_new = done.iter().filter(|a| !a.active).all(|a| a.created);
    let run = RunOptions {
        only: Some(inactive),
        allow_unsafe: opts.allow_unsafe || only_new,
        ..RunOptions::default()
    };
    let report = apply(config, snapshot, set, &run, progress)
        .await
        .map_err(|source| AllocateError::Run {
            source,
            left_inactive: done.iter().filter(|a| a.created).map(|a| a.shard).collect(),
        })?;
    if opts.activate {
        activate_migrated(config, snapshot, &report, &mut done).await?;
    }
    Ok((done, report))
}

/// Activates the shards of `done` that are inactive and came through `report`'s run.
async fn activate_migrated(
    config: &Config,
    snapshot: &Snapshot,
    report: &RunReport,
    done: &mut [Allocated],
) -> Result<(), AllocateError> {
    let to_activate: Vec<Placement> = done
        .iter()
        .filter(|a| !a.active && migrated_ok(report, &a.shard.schema()))
        .map(|a| Placement::Exists {
            shard: a.shard,
            island: a.island,
            active: false,
        })
        .collect();
    let activated = execute(config, snapshot, &to_activate, true)
        .await
        .map_err(AllocateError::Allocate)?;
    for a in done.iter_mut() {
        a.active |= activated.iter().any(|x| x.shard == a.shard && x.active);
    }
    Ok(())
}

/// Whether `schema` is at the current version after `report`'s run (which covered every
/// inactive shard of the range): it did not fail, and no canary failure kept it from
/// starting.
fn migrated_ok(report: &RunReport, schema: &str) -> bool {
    report.status != RunOutcome::CanaryFailed && !report.failures.iter().any(|f| f.schema == schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::IslandId;

    fn report(status: RunOutcome, failed: &[&str]) -> RunReport {
        RunReport {
            run_id: 1,
            kind: crate::RunKind::Apply,
            status,
            schemas_total: 3,
            schemas_ok: 3 - failed.len(),
            versions_applied: 1,
            canary: vec![],
            failures: failed
                .iter()
                .map(|s| crate::SchemaFailure {
                    schema: s.to_string(),
                    island: IslandId(0),
                    version: "1.a.sh".into(),
                    file: "1.a.sh.up.sql".into(),
                    error: "boom".into(),
                })
                .collect(),
            not_started: 0,
            finalizer_held: None,
            finalizer: vec![],
            finalizer_skipped: false,
            elapsed_ms: 1,
        }
    }

    #[test]
    fn only_shards_that_came_through_are_activated() {
        let r = report(RunOutcome::Failed, &["sh0002"]);
        assert!(migrated_ok(&r, "sh0001"));
        assert!(!migrated_ok(&r, "sh0002"));
        assert!(!migrated_ok(
            &report(RunOutcome::CanaryFailed, &[]),
            "sh0001"
        ));
    }

    #[test]
    fn a_failed_run_names_the_shards_it_left_inactive() {
        let e = AllocateError::Run {
            source: MigrateError::MoveInProgress("sh0001 (subscribed)".into()),
            left_inactive: vec![ShardNo::new(70).expect("shard")],
        };
        assert!(e.to_string().ends_with(
            "(allocated and left inactive: sh0070; run `allocate --migrate` again to finish)"
        ));
        assert!(!e.is_input());
    }
}
