//! Global copies: shard 0's cluster-wide tables (`sh0000`) replicated read-only to every
//! other island by logical replication, so applications near any island read them locally
//! and a shard's tables can join them.
//!
//! [`replicate`] creates what is missing, island by island, each step idempotent and its
//! progress recorded on the copy's master (`atoll_pg::catalog::global_copy`), so a killed
//! run is finished by running it again: the publication `atoll_global` on shard 0's
//! master; on each other island the `sh0000` schema from the source's dump with read-only
//! triggers, a subscription `atoll_global_<island>` copying the rows, a wait until every
//! table is copied and caught up, a comparison of row counts. Before anything is created
//! the replication slots and WAL senders it needs on shard 0's master are counted and
//! checked against that server's settings ([`capacity`]). [`status`] reports each copy's
//! state and lag and what is wrong with it.
//!
//! When shard 0's schema changes, [`hold`] and [`follow`] keep the copies' tables shaped
//! like it (a migration run calls them through [`MigrationHook`]).
//!
//! `replicate --tables` changes the tables of existing copies ([`tables`]).
//!
//! A move of shard 0 hands the copies over to its new master ([`handoff`]).

mod capacity;
mod create;
mod follow;
pub(crate) mod handoff;
mod status;
mod tables;

pub use capacity::{capacity, Capacity};
pub use follow::{drift, follow, hold, CopyDrift, FollowReport};
pub use status::{status, CopyHealth, CopyStatus};

use crate::db::{self, Db};
use crate::error::MoveError;
use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use atoll_pg::catalog::global_handoff;
use atoll_pg::PgError;

/// The schema copied: shard 0's.
pub(crate) const SCHEMA: &str = "sh0000";

/// The publication on shard 0's master.
pub const PUBLICATION: &str = "atoll_global";

/// The subscription on `island` (its slot on the source has the same name).
pub fn subscription(island: IslandId) -> String {
    format!("atoll_global_{}", island.0)
}

/// Why global copies could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum GlobalCopyError {
    /// Bad input or a state that forbids it (named): nothing was created.
    #[error("{0}")]
    Refused(String),
    /// Shard 0's master lacks replication slots or WAL senders for the copies.
    #[error("island {island} (shard 0's master) has {free_slots} free replication slots and {free_senders} free WAL senders; the copies need {needed} of each: raise max_replication_slots / max_wal_senders there, or copy to fewer islands")]
    Capacity {
        /// Shard 0's island.
        island: IslandId,
        /// Slots (and senders) the copies still need.
        needed: usize,
        /// Slots free now.
        free_slots: i64,
        /// Senders free now.
        free_senders: i64,
    },
    /// A copy did not finish copying or catching up in time.
    #[error("island {island}: {what} did not finish within {secs} s; run `atoll global replicate` again to continue")]
    Timeout {
        /// The copy's island.
        island: IslandId,
        /// What was waited for.
        what: String,
        /// The bound.
        secs: u64,
    },
    /// A copied table's rows differ from the source's once caught up.
    #[error("island {island}: sh0000.{table} has {copy} rows, the source {source_rows}; the copy stays `copying`: check for writes bypassing the read-only triggers, then run `atoll global replicate` again")]
    Differs {
        /// The copy's island.
        island: IslandId,
        /// The table.
        table: String,
        /// Rows on the source.
        source_rows: i64,
        /// Rows on the copy.
        copy: i64,
    },
    /// Bringing a copy's tables to shard 0's failed.
    #[error("island {island}: bringing the copy's tables to shard 0's failed: {error}; statements: {statements}")]
    Follow {
        /// The copy's island.
        island: IslandId,
        /// PostgreSQL's message.
        error: String,
        /// The statements tried, in one transaction.
        statements: String,
    },
    /// A connection or statement failed.
    #[error(transparent)]
    Move(#[from] MoveError),
}

impl From<PgError> for GlobalCopyError {
    fn from(e: PgError) -> Self {
        GlobalCopyError::Move(MoveError::from(e))
    }
}

impl GlobalCopyError {
    /// Whether it is bad input or a refusal (exit code 2) rather than a failure.
    pub fn is_refusal(&self) -> bool {
        match self {
            GlobalCopyError::Refused(_) | GlobalCopyError::Capacity { .. } => true,
            GlobalCopyError::Move(e) => e.is_refusal(),
            _ => false,
        }
    }
}

/// What to copy.
#[derive(Debug, Clone, Default)]
pub struct ReplicateRequest {
    /// Only these tables of `sh0000` (unqualified); `None`: every table but its migration
    /// history (`atoll_migrations`, which each copy keeps for itself).
    pub tables: Option<Vec<String>>,
}

/// What became of one island's copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopyReport {
    /// The copy's island.
    pub island: IslandId,
    /// True when this run created or finished it; false when it was already ready.
    pub created: bool,
    /// Rows per table, as compared.
    pub rows: Vec<(String, i64)>,
    /// How long this island took in this run, ms.
    pub elapsed_ms: u64,
}

/// The outcome of [`replicate`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicateReport {
    /// Shard 0's island, the source.
    pub source: IslandId,
    /// The tables copied.
    pub tables: Vec<String>,
    /// The slots and senders the copies use on the source, as checked before.
    pub capacity: Capacity,
    /// One per copy island.
    pub copies: Vec<CopyReport>,
}

/// Shard 0's island: where it is active; refused when nowhere.
pub(crate) fn source_island(snapshot: &Snapshot) -> Result<IslandId, GlobalCopyError> {
    snapshot.active_island(ShardNo::GLOBAL).map_err(|e| {
        GlobalCopyError::Refused(format!("shard 0 (sh0000) is not active on one island: {e}"))
    })
}

/// [`source_island`], refused also while shard 0 has an unfinished move (the copies
/// would follow a master about to change).
async fn settled_source(config: &Config, snapshot: &Snapshot) -> Result<IslandId, GlobalCopyError> {
    let island = source_island(snapshot)?;
    let zero = ShardNo::GLOBAL;
    if crate::unfinished(config, snapshot)
        .await?
        .iter()
        .any(|m| m.shard == zero)
    {
        return Err(GlobalCopyError::Refused(
            "shard 0 has an unfinished move: finish or abort it first".into(),
        ));
    }
    Ok(island)
}

/// Makes (or finishes) a read-only copy of shard 0's tables on every other configured
/// island, one after another, and verifies each.
pub async fn replicate(
    config: &Config,
    snapshot: &Snapshot,
    req: &ReplicateRequest,
    progress: &(dyn Fn(IslandId, &str) + Sync),
) -> Result<ReplicateReport, GlobalCopyError> {
    let source = settled_source(config, snapshot).await?;
    let src = Db::connect(config, snapshot, source).await?;
    let targets: Vec<IslandId> = config
        .islands
        .iter()
        .map(|i| i.id)
        .filter(|i| *i != source)
        .collect();
    // Without --tables: `[global] tables`, else the tables the copies hold already (a new
    // island gets those), else every table.
    let req = match (&req.tables, &config.global.tables) {
        (Some(_), _) => req.clone(),
        (None, Some(t)) => ReplicateRequest {
            tables: Some(t.clone()),
        },
        (None, None) => ReplicateRequest {
            tables: tables::recorded(config, snapshot, &targets).await?,
        },
    };
    let tables = create::tables(&src, &req).await?;
    let capacity = capacity::check(config, snapshot, &src, &targets).await?;
    // A publication naming a table a copy lacks would stop that copy's replication: the
    // tables added are created on every copy first.
    for island in &targets {
        tables::add(config, snapshot, &src, *island, &tables).await?;
    }
    create::ensure_publication(&src, &tables).await?;
    let mut copies = Vec::new();
    for island in &targets {
        progress(*island, "starting");
        copies.push(create::copy_to(config, snapshot, &src, *island, &tables, progress).await?);
    }
    // Every copy follows shard 0's master now: a handoff to it is done, and a former
    // master's publication (shard 0 moved away from it) is no longer read.
    while let Some(h) = global_handoff::get(&src.client, &src.node).await? {
        global_handoff::delete(&src.client, &src.node, h.move_id).await?;
    }
    for island in &targets {
        Db::connect(config, snapshot, *island)
            .await?
            .exec(&format!(
                "drop publication if exists {}",
                db::ident(PUBLICATION)
            ))
            .await?;
    }
    Ok(ReplicateReport {
        source,
        tables,
        capacity,
        copies,
    })
}

/// After a move of shard 0: when it has copies, they are handed over to its new master and
/// the old master gets one ([`replicate`] on a fresh discovery). `None` without copies.
pub async fn after_shard_zero_move(
    config: &Config,
    progress: &(dyn Fn(IslandId, &str) + Sync),
) -> Result<Option<ReplicateReport>, GlobalCopyError> {
    let options = atoll_pg::DiscoveryOptions::default();
    let snapshot = atoll_pg::Discoverer::new(config.clone(), options)
        .discover()
        .await;
    if !snapshot.islands.iter().any(|i| i.global_copy.is_some()) {
        return Ok(None);
    }
    let req = ReplicateRequest::default();
    replicate(config, &snapshot, &req, progress).await.map(Some)
}

/// [`hold`] and [`follow`] for a migration run: what it does around shard 0's own
/// migration.
#[derive(Debug, Clone)]
pub struct MigrationHook {
    config: Config,
    snapshot: std::sync::Arc<Snapshot>,
}

impl MigrationHook {
    /// The hook for a run on `config`'s cluster as `snapshot` sees it.
    pub fn new(config: Config, snapshot: std::sync::Arc<Snapshot>) -> MigrationHook {
        MigrationHook { config, snapshot }
    }
}

impl atoll_core::global_copy::CopyHook for MigrationHook {
    fn hold(&self) -> atoll_core::global_copy::HookFuture<'_> {
        Box::pin(async move {
            let held = hold(&self.config, &self.snapshot)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("{} global copies held", held.len()))
        })
    }

    fn follow(&self) -> atoll_core::global_copy::HookFuture<'_> {
        Box::pin(async move {
            let done = follow(&self.config, &self.snapshot)
                .await
                .map_err(|e| e.to_string())?;
            let left: Vec<String> = done
                .iter()
                .flat_map(|r| {
                    r.not_generated
                        .iter()
                        .map(move |n| format!("island {}: {n}", r.island))
                })
                .collect();
            if left.is_empty() {
                Ok(format!(
                    "{} global copies followed shard 0's schema",
                    done.len()
                ))
            } else {
                Err(format!(
                    "global copies differ from shard 0 after the migration: {}",
                    left.join("; ")
                ))
            }
        })
    }
}
