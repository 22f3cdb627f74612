//! Starting a move: the checks before the move lock ([`preflight`]), under it (leftovers,
//! replicas), the safety checks on both masters and the move's record ([`prepare`]), then
//! the steps ([`crate::run::run`]).

use crate::context::MoveContext;
use crate::db::Db;
use crate::error::MoveError;
use crate::masters::Masters;
use crate::move_lock::hold_move_lock;
use crate::resume::{abort_locked, abort_record, finish};
use crate::{ddl, leftovers, safety, store, MoveEvent, MoveOptions, MoveReport, Progress};
use atoll_core::move_plan::{check_start, MoveRecord, MoveStep};
use atoll_core::{Config, IslandId, ShardNo, Snapshot};

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
    let mut dst = masters.take(to).await?;
    if shard == ShardNo::GLOBAL {
        crate::global_copy::handoff::make_room(&src, &mut dst).await?;
    }
    let (rec, ddl) = prepare(&mut masters, &src, &dst, shard, opts).await?;
    progress(shard, &MoveEvent::Step(MoveStep::Prepared));
    if let Some(note) = crate::replica_identity::plan_note(&crate::replica_identity::needed(&ddl)) {
        progress(shard, &MoveEvent::Note(note));
    }
    let mut mover = MoveContext::new(config, rec, src, dst, opts, progress);
    mover.ddl = Some(ddl);
    // `prepare` took the capacity lock on both sessions.
    mover.capacity_locked = true;
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
            abort_record(config, snapshot, m, opts.stop_abort_after).await?;
        }
        pending.retain(|m| m.shard != shard);
    }
    let active_on = snapshot.active_island(shard).ok();
    let known = snapshot.island(to).is_some();
    let dst_has_schema = if known {
        let dst = masters.get(to).await?;
        let exists: bool = dst
            .one(
                "select exists (select 1 from pg_namespace where nspname = $1)",
                &[&shard.schema()],
            )
            .await?
            .get(0);
        // Shard 0's read-only copy there makes room for it (`make_room`).
        let copy = shard == ShardNo::GLOBAL
            && atoll_pg::catalog::global_copy::get(&dst.client, &dst.node)
                .await?
                .is_some();
        exists && !copy
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
    let left = leftovers::strays_of(masters, shard, pending).await?;
    if left.is_empty() {
        return Ok(());
    }
    if !opts.clean_leftovers {
        let list: Vec<String> = left
            .iter()
            .map(|o| format!("{} {} on island {}", o.kind.as_str(), o.name, o.island))
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
    leftovers::drop_strays(masters, &left).await
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
    safety::check_tables(shard, &ddl, opts.replica_identity_full)?;
    safety::check_foreign_refs(shard, dst, &ddl.foreign_refs).await?;
    crate::sequences::check_room(shard, src).await?;
    safety::check_roles(shard, dst, &ddl.roles).await?;
    crate::quiet::check(masters.config, src, dst, shard).await?;
    // Held on both sessions until the subscription exists (or these connections close):
    // parallel moves take turns between counting free capacity and using it.
    crate::capacity::lock_capacity(shard, src, dst).await?;
    crate::capacity::check_capacity(shard, src, dst, ddl.tables.len(), None).await?;
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
    let full = crate::replica_identity::needed(&ddl);
    if let Err(e) = crate::replica_identity::set_full(src, rec.id, &shard.schema(), &full).await {
        abort_locked(
            masters.config,
            masters.snapshot,
            &rec,
            opts.stop_abort_after,
        )
        .await?;
        return Err(e);
    }
    // Now that this move is visible to a migration run, make sure none is under way
    // (logical replication does not carry DDL); see atoll_pg::coordination.
    if let Err(e) = refuse_during_migration(masters, src, dst, shard).await {
        abort_locked(
            masters.config,
            masters.snapshot,
            &rec,
            opts.stop_abort_after,
        )
        .await?;
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
