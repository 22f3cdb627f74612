//! Moving atoll microshards between islands while the application keeps writing, with
//! PostgreSQL's logical replication orchestrated from Rust (no psql, pg_dump or shell);
//! rebalancing islands by running planned moves in parallel; dropping the backups that
//! moves leave behind.
//!
//! A move ([`start_move`]): safety checks; the schema created on the destination from the
//! source's catalogs with primary keys only; a publication on the source and a subscription
//! copying the data on the destination; secondary indexes and constraints after the copy;
//! catch-up; a short write-blocking window in which the destination is proven to have
//! applied everything, sequences are copied and the copies are compared; then the shard is
//! switched off and renamed to a backup on the source and switched on at the destination;
//! replication objects are dropped. Every step is persisted in `atoll.moves`, so a killed
//! move can be resumed ([`resume_move`]) or rolled back ([`abort_move`]).
//!
//! Decisions (step order, what resume and abort do, rebalance plans) are made by
//! `atoll_core::move_plan` and `atoll_core::rebalance`; this crate only carries them out. It
//! must not depend on the CLI, on terminal output or on process management (the sandbox).
//!
//! The subscription's connection string carries the source master's password when the
//! config has one: PostgreSQL stores it in `pg_subscription` (readable by superusers only)
//! for the minutes the move lasts; it is masked in every error this crate builds and
//! never logged.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod activate;
mod catch_up;
mod cleanup;
mod context;
mod copy;
mod cutover;
mod db;
mod ddl;
mod error;
mod masters;
mod pause;
mod rebalance;
mod rebalance_prepare;
mod replication;
mod run;
mod safety;
mod schema_copy;
mod security;
mod store;
mod subscribe;
mod undo;
mod verify;

pub use cleanup::{cleanup, DroppedBackup};
pub use error::MoveError;
pub use rebalance::{load_weights, plan_rebalance, run_moves, RebalanceOutcome, Weights};
pub use rebalance_prepare::{
    prepare_rebalance, PreparedRebalance, RebalanceError, RebalanceRequest,
};
pub use store::unfinished;
pub use undo::AbortReport;

use atoll_core::move_plan::{check_start, MoveRecord, MoveStep, TableDigest, VerifyMode};
use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use context::MoveContext;
use db::Db;
use masters::Masters;
use std::sync::Arc;
use std::time::Duration;

/// How a move behaves. `Default` is what `atoll move` uses.
#[derive(Debug, Clone)]
pub struct MoveOptions {
    /// How the two copies are compared before the switch: row counts, or counts and
    /// checksums.
    pub verify: VerifyMode,
    /// Abort unfinished moves of the shard and drop stray replication objects first.
    pub clean_leftovers: bool,
    /// Refuse when a destination replica lags more than this (or is unreachable).
    pub max_replica_lag_bytes: u64,
    /// Test hook (the CLI's hidden `--test-stop-after`, sandbox configs only): stop right
    /// after this step as if killed.
    pub stop_after: Option<MoveStep>,
    /// Test hook: stop after this step's work is done but before it is recorded on the
    /// source, as if killed in the middle of the step.
    pub stop_before_record: Option<MoveStep>,
    /// Per attempt at locking the source tables; writers queue behind a waiting lock, so
    /// this bounds the write gap an unlucky attempt causes, and attempts are repeated.
    pub lock_timeout: Duration,
    /// How many times the table lock is tried (each bounded by `lock_timeout`) before the
    /// move fails.
    pub lock_attempts: u32,
    /// The longest one attempt at the pause waits for the destination to apply; past it
    /// the lock is released, replication catches up, and the pause is tried again.
    pub pause_budget: Duration,
    /// The longest the last attempt waits before the move gives up (and rolls back).
    pub pause_timeout: Duration,
    /// Enter the pause once one replication round trip takes at most this.
    pub catch_up_within: Duration,
    /// Polling interval inside the pause.
    pub poll: Duration,
    /// Bound on the initial copy.
    pub copy_timeout: Duration,
    /// Bound on catching up after the copy (and on each wait for a tick outside the pause).
    pub catch_up_timeout: Duration,
    /// Compare the copies inside the final pause (exact at the switch point; the pause
    /// then grows with the shard's size) instead of at a frozen point just before it.
    pub verify_in_pause: bool,
}

impl Default for MoveOptions {
    fn default() -> Self {
        MoveOptions {
            verify: VerifyMode::Counts,
            clean_leftovers: false,
            max_replica_lag_bytes: 64 << 20,
            stop_after: None,
            stop_before_record: None,
            lock_timeout: Duration::from_millis(100),
            lock_attempts: 50,
            pause_budget: Duration::from_millis(150),
            pause_timeout: Duration::from_secs(5),
            catch_up_within: Duration::from_millis(50),
            poll: Duration::from_millis(2),
            copy_timeout: Duration::from_secs(24 * 3600),
            catch_up_timeout: Duration::from_secs(10 * 60),
            verify_in_pause: false,
        }
    }
}

/// What a move reports while it runs.
#[derive(Debug, Clone)]
pub enum MoveEvent {
    /// The move reached this step.
    Step(MoveStep),
    /// Bytes on the destination so far vs. the source's size.
    Copy {
        /// Size of the shard's tables on the destination so far, in bytes.
        done: u64,
        /// Size of the shard's tables on the source, in bytes.
        total: u64,
    },
    /// A free-text remark worth showing (table states, lock retries, cancelled autovacuum
    /// workers...).
    Note(String),
}

/// Receives progress; called from the move's task, must not block.
pub type Progress = Arc<dyn Fn(ShardNo, &MoveEvent) + Send + Sync>;

/// A progress sink that ignores everything.
pub fn no_progress() -> Progress {
    Arc::new(|_, _| {})
}

/// The outcome of a finished move, with its timings.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MoveReport {
    /// The move's id in `atoll.moves` (milliseconds since the Unix epoch × 1000 plus a
    /// random part).
    pub id: i64,
    /// The shard moved (`None` only in `Default`).
    pub shard: Option<ShardNo>,
    /// The source island (`None` only in `Default`).
    pub from: Option<IslandId>,
    /// The destination island (`None` only in `Default`).
    pub to: Option<IslandId>,
    /// How the copies were compared.
    pub verify: VerifyMode,
    /// The persisted step a resumed move started from; `None` for a move run from the start.
    pub resumed_from: Option<MoveStep>,
    /// The source's old copy, renamed `shNNNN_moved_<unix secs>` on the source island;
    /// `None` until the switch.
    pub backup_schema: Option<String>,
    /// Wall-clock time of the whole move (of this run, when resumed), in ms.
    pub total_ms: u64,
    /// Time of the initial copy, from creating the subscription (or from the resume) to
    /// every table being copied (secondary indexes are built afterwards), in ms (0 when
    /// this run did no copy).
    pub copy_ms: u64,
    /// Size of the shard's tables on the source when the copy began, in bytes (0 when
    /// this run did no copy).
    pub copy_bytes: u64,
    /// From the lock request to the destination's activation: the longest a writer waits.
    pub pause_ms: f64,
    /// Part of the pause spent getting the lock on the source tables (the last attempt),
    /// in ms.
    pub lock_ms: f64,
    /// Part of the pause spent, once locked, waiting for the destination to apply
    /// everything committed on the source, in ms.
    pub apply_wait_ms: f64,
    /// Part of the pause spent after that, up to the source's commit: sequences, the
    /// owners/privileges comparison, the copies' comparison with `verify_in_pause`,
    /// switching the shard off and renaming it to the backup on the source, in ms.
    pub verify_and_switch_ms: f64,
    /// The brief write block that froze both copies for the comparison (0 when compared
    /// inside the pause).
    pub verify_block_ms: f64,
    /// The source's digest of every table of the shard, as compared (empty when this run
    /// did not compare).
    pub tables: Vec<TableDigest>,
}

/// Starts and runs a move of `shard` to island `to`.
pub async fn start_move(
    config: &Config,
    snapshot: &Snapshot,
    shard: ShardNo,
    to: IslandId,
    opts: &MoveOptions,
    progress: Progress,
) -> Result<MoveReport, MoveError> {
    let t0 = std::time::Instant::now();
    let mut masters = Masters::new(config, snapshot);
    let (from, pending) = preflight(&mut masters, shard, to, opts).await?;
    // Held until this function returns: no other process starts, resumes or aborts a move
    // of this shard meanwhile. What was checked above is re-checked under the lock.
    let lock = hold_move_lock(config, snapshot, from, shard).await?;
    let still_active =
        atoll_pg::catalog::registry::is_active(&lock.client, &lock.node, shard).await?;
    let raced = store::unfinished_on(&mut masters)
        .await?
        .into_iter()
        .any(|m| m.shard == shard);
    if raced || !still_active {
        return Err(MoveError::Busy { shard });
    }
    clear_leftovers(&mut masters, shard, &pending, opts).await?;
    safety::check_replicas(shard, snapshot, to, opts.max_replica_lag_bytes)?;
    let src = masters.take(from).await?;
    let dst = masters.take(to).await?;
    let (rec, ddl) = prepare(&mut masters, &src, &dst, shard, opts).await?;
    progress(shard, &MoveEvent::Step(MoveStep::Prepared));
    let report = MoveReport {
        id: rec.id,
        shard: Some(shard),
        from: Some(from),
        to: Some(to),
        verify: opts.verify,
        ..MoveReport::default()
    };
    let mover = MoveContext {
        config,
        rec,
        src,
        dst,
        opts,
        progress,
        ddl: Some(ddl),
        report,
        error_baseline: 0,
        capacity_locked: true,
    };
    mover.hook(MoveStep::Prepared)?;
    let mut report = finish(config, snapshot, mover).await?;
    report.total_ms = t0.elapsed().as_millis() as u64;
    drop(lock);
    Ok(report)
}

/// The checks before the move lock is taken: unfinished moves of the shard (aborted with
/// `clean_leftovers`), and whether the move may start at all. Returns the source island
/// and the unfinished moves of other shards.
async fn preflight(
    masters: &mut Masters<'_>,
    shard: ShardNo,
    to: IslandId,
    opts: &MoveOptions,
) -> Result<(IslandId, Vec<MoveRecord>), MoveError> {
    let (config, snapshot) = (masters.config, masters.snapshot);
    let mut pending = store::unfinished_on(masters).await?;
    if opts.clean_leftovers {
        for m in pending.iter().filter(|m| m.shard == shard) {
            abort_record(config, snapshot, m).await?;
        }
        pending.retain(|m| m.shard != shard);
    }
    let active_on = snapshot.active_island(shard).ok();
    let known = snapshot.island(to).is_some();
    let dst_has_schema = if known {
        masters
            .get(to)
            .await?
            .one(
                "select exists (select 1 from pg_namespace where nspname = $1)",
                &[&shard.schema()],
            )
            .await?
            .get(0)
    } else {
        false
    };
    let from = check_start(shard, active_on, to, known, dst_has_schema, &pending)?;
    Ok((from, pending))
}

/// Replication objects of earlier moves of `shard` that no unfinished move owns: refused,
/// or dropped with `clean_leftovers`.
async fn clear_leftovers(
    masters: &mut Masters<'_>,
    shard: ShardNo,
    pending: &[MoveRecord],
    opts: &MoveOptions,
) -> Result<(), MoveError> {
    let left = undo::leftovers(masters, shard, pending).await?;
    if left.is_empty() {
        return Ok(());
    }
    if !opts.clean_leftovers {
        let list: Vec<String> = left
            .iter()
            .map(|(i, k, n)| format!("{k} {n} on island {i}"))
            .collect();
        return Err(MoveError::Unsafe {
            shard,
            check: "leftovers",
            detail: format!(
                "{} remain from an earlier move; pass --clean-leftovers to drop them",
                list.join(", ")
            ),
        });
    }
    undo::drop_leftovers(masters, &left).await
}

/// The safety checks on both masters, then the move's record (step `prepared`), then the
/// check for a migration run (see [`refuse_during_migration`]). Leaves `src` and `dst`
/// holding the capacity lock.
async fn prepare(
    masters: &mut Masters<'_>,
    src: &Db,
    dst: &Db,
    shard: ShardNo,
    opts: &MoveOptions,
) -> Result<(MoveRecord, ddl::SchemaDdl), MoveError> {
    store::require_catalog(src).await?;
    store::require_catalog(dst).await?;
    let ddl = ddl::read(src, shard).await?;
    safety::check_tables(shard, &ddl)?;
    safety::check_roles(shard, dst, &ddl.roles).await?;
    // Held on both sessions until the subscription exists (or these connections close):
    // parallel moves take turns between counting free capacity and using it.
    safety::lock_capacity(shard, src, dst).await?;
    safety::check_capacity(shard, src, dst, ddl.tables.len(), None).await?;
    let rec = MoveRecord {
        id: store::new_id(),
        shard,
        source: src.island,
        destination: dst.island,
        step: MoveStep::Prepared,
        verify: opts.verify,
        backup_schema: None,
    };
    store::insert(src, &rec, store::MoveRole::Source).await?;
    // Now that this move is visible to a migration run, make sure none is under way
    // (logical replication does not carry DDL); see atoll_pg::coordination.
    if let Err(e) = refuse_during_migration(masters, src, dst, shard).await {
        abort_locked(masters.config, masters.snapshot, &rec).await?;
        return Err(e);
    }
    Ok((rec, ddl))
}

/// Refuses while a migration run holds the cluster lock (on the coordination island's
/// master, which may be the source or the destination).
async fn refuse_during_migration(
    masters: &mut Masters<'_>,
    src: &Db,
    dst: &Db,
    shard: ShardNo,
) -> Result<(), MoveError> {
    let Some(first) = atoll_pg::coordination::coordination_island(masters.config) else {
        return Ok(());
    };
    let db = if first == src.island {
        src
    } else if first == dst.island {
        dst
    } else {
        masters.get(first).await?
    };
    if atoll_pg::coordination::migration_running(&db.client, &db.node).await? {
        return Err(MoveError::Unsafe {
            shard,
            check: "migration_running",
            detail: "a migration run holds the cluster lock (see atoll.migration_lock); move after it ends".into(),
        });
    }
    Ok(())
}

async fn finish(
    config: &Config,
    snapshot: &Snapshot,
    mut mover: MoveContext<'_>,
) -> Result<MoveReport, MoveError> {
    match run::run(&mut mover).await {
        Ok(()) => {
            mover.report.backup_schema = mover.rec.backup_schema.clone();
            Ok(mover.report)
        }
        Err(e @ (MoveError::VerifyFailed { .. } | MoveError::SecurityDiffers { .. })) => {
            // The copies differ: roll back, so the source stays the only active copy.
            let rec = mover.rec.clone();
            drop(mover);
            abort_locked(config, snapshot, &rec).await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Picks the one unfinished move (of `shard`, if given).
async fn pick(
    config: &Config,
    snapshot: &Snapshot,
    shard: Option<ShardNo>,
) -> Result<MoveRecord, MoveError> {
    let all = store::unfinished(config, snapshot).await?;
    let mut found: Vec<MoveRecord> = all
        .into_iter()
        .filter(|m| shard.is_none_or(|s| s == m.shard))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(MoveError::NotFound(match shard {
            Some(s) => format!("{s} has no unfinished move"),
            None => "there is no unfinished move".into(),
        })),
        _ => {
            let list: Vec<String> = found
                .iter()
                .map(|m| format!("{} ({})", m.shard, m.step))
                .collect();
            Err(MoveError::NotFound(format!(
                "several unfinished moves: {}; say which with --shard",
                list.join(", ")
            )))
        }
    }
}

/// Continues an unfinished move from its persisted step.
pub async fn resume_move(
    config: &Config,
    snapshot: &Snapshot,
    shard: Option<ShardNo>,
    opts: &MoveOptions,
    progress: Progress,
) -> Result<MoveReport, MoveError> {
    let found = pick(config, snapshot, shard).await?;
    resume_record(config, snapshot, &found, opts, progress).await
}

pub(crate) async fn resume_record(
    config: &Config,
    snapshot: &Snapshot,
    found: &MoveRecord,
    opts: &MoveOptions,
    progress: Progress,
) -> Result<MoveReport, MoveError> {
    let _lock = hold_move_lock(config, snapshot, found.source, found.shard).await?;
    let src = Db::connect(config, snapshot, found.source).await?;
    let dst = Db::connect(config, snapshot, found.destination).await?;
    let rec = store::load(&src, found.id).await?;
    let report = MoveReport {
        id: rec.id,
        shard: Some(rec.shard),
        from: Some(rec.source),
        to: Some(rec.destination),
        verify: rec.verify,
        resumed_from: Some(rec.step),
        ..MoveReport::default()
    };
    let mover = MoveContext {
        config,
        rec,
        src,
        dst,
        opts,
        progress,
        ddl: None,
        report,
        error_baseline: 0,
        capacity_locked: false,
    };
    finish(config, snapshot, mover).await
}

/// Rolls back the one unfinished move (of `shard`, if given).
pub async fn abort_move(
    config: &Config,
    snapshot: &Snapshot,
    shard: Option<ShardNo>,
) -> Result<AbortReport, MoveError> {
    let found = pick(config, snapshot, shard).await?;
    abort_record(config, snapshot, &found).await
}

async fn abort_record(
    config: &Config,
    snapshot: &Snapshot,
    found: &MoveRecord,
) -> Result<AbortReport, MoveError> {
    let _lock = hold_move_lock(config, snapshot, found.source, found.shard).await?;
    abort_locked(config, snapshot, found).await
}

/// [`abort_record`] for a caller that already holds the shard's move lock.
async fn abort_locked(
    config: &Config,
    snapshot: &Snapshot,
    found: &MoveRecord,
) -> Result<AbortReport, MoveError> {
    let src = Db::connect(config, snapshot, found.source).await?;
    let dst = Db::connect(config, snapshot, found.destination).await?;
    let rec = match store::load(&src, found.id).await {
        Ok(r) => r,
        // Only the destination's reference row is left: undo what the destination holds.
        Err(MoveError::NotFound(_)) => found.clone(),
        Err(e) => return Err(e),
    };
    undo::abort(&src, &dst, &rec).await
}

/// How long a held move lock is tried again before refusing: the session of a process
/// killed a moment ago ends on the server a little after the process does.
const MOVE_LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the shard's move lock ([`atoll_pg::locks::move_of`]) on the source master on a dedicated connection; the lock
/// lasts as long as the returned connection. Refuses if another session still holds it
/// after [`MOVE_LOCK_GRACE`].
async fn hold_move_lock(
    config: &Config,
    snapshot: &Snapshot,
    source: IslandId,
    shard: ShardNo,
) -> Result<Db, MoveError> {
    let db = Db::connect(config, snapshot, source).await?;
    let deadline = std::time::Instant::now() + MOVE_LOCK_GRACE;
    loop {
        if atoll_pg::locks::try_take(&db.client, &db.node, atoll_pg::locks::move_of(shard)).await? {
            return Ok(db);
        }
        if std::time::Instant::now() >= deadline {
            return Err(MoveError::Busy { shard });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
