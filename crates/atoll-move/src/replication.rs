//! The replication objects of a move and their health: ticks through the subscription,
//! the subscription's oid, error counters and workers (stopped while post-copy DDL runs),
//! slots, and dropping everything a move created (step `cleaned_up`, and abort).

use crate::apply_health::{ErrorWatch, Health};
use crate::db::{ident, Db};
use crate::error::MoveError;
use atoll_core::move_plan::MoveRecord;
use atoll_pg::catalog::moves;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;

/// How long table-sync walsenders of a dropped subscription may take to go away.
const SYNC_SENDER_PATIENCE: Duration = Duration::from_secs(30);

/// How long a disabled subscription's workers may take to exit: a worker notices at its
/// next transaction boundary, so a long replicated transaction delays it.
const WORKER_EXIT_PATIENCE: Duration = Duration::from_secs(120);

/// Bumps the move's tick on the source (autocommit) and returns the new value.
pub(crate) async fn tick(src: &Db, id: i64) -> Result<i64, MoveError> {
    Ok(moves::bump_tick(&src.client, &src.node, id).await?)
}

/// Polls the destination until the tick `k` has been applied there.
pub(crate) async fn wait_tick(
    dst: &Db,
    rec: &MoveRecord,
    k: i64,
    poll: Duration,
    limit: Duration,
) -> Result<(), MoveError> {
    let deadline = Instant::now() + limit;
    let timed_out = || MoveError::Timeout {
        shard: rec.shard,
        what: format!(
            "waiting for island {} to apply the source's changes",
            dst.island
        ),
        secs: limit.as_secs(),
    };
    loop {
        // One poll is bounded too: a destination that stops answering must not hold up
        // the caller (inside the pause, the writers wait on it).
        let left = deadline.saturating_duration_since(Instant::now()) + poll;
        let seen = tokio::time::timeout(left, moves::read_tick(&dst.client, &dst.node, rec.id))
            .await
            .map_err(|_| timed_out())??;
        if seen.is_some_and(|s| s >= k) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(timed_out());
        }
        tokio::time::sleep(poll).await;
    }
}

/// The server's system identifier (part of the table-sync slot names it creates).
pub(crate) async fn system_id(db: &Db) -> Result<i64, MoveError> {
    Ok(db
        .one("select system_identifier from pg_control_system()", &[])
        .await?
        .get(0))
}

/// The LIKE pattern of the table-sync slots subscription `oid` of the server `sysid`
/// creates on its publisher (PostgreSQL 15: `pg_<suboid>_sync_<relid>_<sysid>`); the
/// system identifier keeps another destination's subscription with the same oid apart.
pub(crate) fn sync_slot_pattern(oid: i64, sysid: i64) -> String {
    format!("pg\\_{oid}\\_sync\\_%\\_{sysid}")
}

pub(crate) async fn sub_oid(dst: &Db, name: &str) -> Result<Option<u32>, MoveError> {
    Ok(dst
        .opt(
            "select s.oid from pg_subscription s join pg_database d on d.oid = s.subdbid
             where s.subname = $1 and d.datname = current_database()",
            &[&name],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Drops a replication slot on the source once no WAL sender uses it (a disabled
/// subscription's sender takes a moment to exit). Absent is fine.
pub(crate) async fn drop_slot(src: &Db, slot: &str, wait: Duration) -> Result<(), MoveError> {
    let deadline = Instant::now() + wait;
    loop {
        let r = src
            .opt(
                "select active from pg_replication_slots where slot_name = $1",
                &[&slot],
            )
            .await?;
        match r.map(|r| r.get::<_, bool>(0)) {
            None => return Ok(()),
            Some(false) => {
                match src
                    .execute("select pg_drop_replication_slot($1)", &[&slot])
                    .await
                {
                    Ok(_) => return Ok(()),
                    // Became active or vanished between the check and the drop: look again.
                    Err(e)
                        if e.code() == Some(&SqlState::OBJECT_IN_USE)
                            || e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(true) => {}
        }
        // Checked in every branch: a slot that keeps flipping between idle and in use
        // (or vanishing and reappearing) must not keep the loop going forever.
        if Instant::now() > deadline {
            return Err(MoveError::Query {
                node: src.node.to_string(),
                msg: format!(
                    "replication slot {slot} could not be dropped within {wait:?} (still in use)"
                ),
                code: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Disables the subscription and detaches it from its slot (so dropping it does not need
/// the source), drops it, then drops the slots on the source (the move's own and any
/// table-sync slots an interrupted copy left) and the publication. Idempotent.
pub(crate) async fn drop_replication(
    src: &Db,
    dst: &Db,
    id: i64,
    names: &atoll_core::move_plan::MoveNames,
) -> Result<(), MoveError> {
    let sub = ident(&names.subscription);
    let oid = sub_oid(dst, &names.subscription).await?;
    if oid.is_some() {
        dst.exec(&format!(
            "alter subscription {sub} disable; alter subscription {sub} set (slot_name = none); drop subscription {sub};"
        ))
        .await?;
    }
    // The subscription may be gone already (dropped before a crash): its oid was recorded.
    let recorded = moves::recorded_subscription(&src.client, &src.node, id).await?;
    let oid = oid.map(i64::from).or(recorded);
    if let Some(oid) = oid {
        let sysid = system_id(dst).await?;
        drop_sync_slots(src, &sync_slot_pattern(oid, sysid)).await?;
    }
    drop_slot(src, &names.slot, Duration::from_secs(30)).await?;
    src.exec(&format!(
        "drop publication if exists {}",
        ident(&names.publication)
    ))
    .await?;
    moves::delete_tick(&src.client, &src.node, id).await?;
    moves::delete_tick(&dst.client, &dst.node, id).await?;
    Ok(())
}

/// Drops the table-sync slots named like `pattern` (the application name of their
/// walsenders too) until none is left and no such walsender is connected: one that was
/// still creating its slot when the subscription was dropped adds the slot after a first
/// listing. Walsenders still there after the patience (orphans: the subscription is gone)
/// are terminated.
async fn drop_sync_slots(src: &Db, pattern: &str) -> Result<(), MoveError> {
    let started = Instant::now();
    loop {
        let slots = src
            .query(
                "select slot_name::text from pg_replication_slots where slot_name like $1",
                &[&pattern],
            )
            .await?;
        for r in &slots {
            drop_slot(src, &r.get::<_, String>(0), Duration::from_secs(30)).await?;
        }
        let senders: i64 = src
            .one(
                "select count(*) from pg_stat_activity
                 where application_name like $1 and pid <> pg_backend_pid()",
                &[&pattern],
            )
            .await?
            .get(0);
        if slots.is_empty() && senders == 0 {
            return Ok(());
        }
        if senders > 0 && started.elapsed() > SYNC_SENDER_PATIENCE {
            if started.elapsed() > 2 * SYNC_SENDER_PATIENCE {
                return Err(MoveError::Query {
                    node: src.node.to_string(),
                    msg: format!(
                        "{senders} table-sync walsender(s) {pattern} still connected after {:?}",
                        2 * SYNC_SENDER_PATIENCE
                    ),
                    code: None,
                });
            }
            src.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity
                 where application_name like $1 and pid <> pg_backend_pid()",
                &[&pattern],
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the subscription's error counter into `watch` and fails the move when its worker
/// keeps failing (see [`crate::apply_health`]). Returns the count read.
pub(crate) async fn check_apply_errors(
    dst: &Db,
    rec: &MoveRecord,
    watch: &mut ErrorWatch,
) -> Result<i64, MoveError> {
    let count = error_count(dst, rec).await?;
    require_healthy(dst, rec, watch.observe(count, Instant::now()))?;
    Ok(count)
}

/// [`Health::Failing`] as the move's error.
pub(crate) fn require_healthy(dst: &Db, rec: &MoveRecord, health: Health) -> Result<(), MoveError> {
    match health {
        Health::Failing { errors, over } => Err(MoveError::ApplyFailing {
            shard: rec.shard,
            island: dst.island,
            subscription: rec.names().subscription,
            errors,
            over,
        }),
        Health::Healthy | Health::Retrying { .. } => Ok(()),
    }
}

/// The subscription's cumulative worker errors (sync and apply; 0 without it). PostgreSQL
/// counts every worker error, including one the restarted worker got past, so callers
/// judge the readings with an [`ErrorWatch`] started when their run did.
pub(crate) async fn error_count(dst: &Db, rec: &MoveRecord) -> Result<i64, MoveError> {
    Ok(dst
        .opt(
            "select (apply_error_count + sync_error_count)::int8 from pg_stat_subscription_stats
             where subname = $1",
            &[&rec.names().subscription],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or(0))
}

/// Stops the subscription's workers: disabled, then waited for until none runs (a worker
/// exits at its next transaction boundary, not at once). The changes wait in the slot.
pub(crate) async fn stop_workers(dst: &Db, rec: &MoveRecord) -> Result<(), MoveError> {
    let name = rec.names().subscription;
    let Some(oid) = sub_oid(dst, &name).await? else {
        return Ok(());
    };
    dst.exec(&format!("alter subscription {} disable", ident(&name)))
        .await?;
    let deadline = Instant::now() + WORKER_EXIT_PATIENCE;
    loop {
        let running: i64 = dst
            .one(
                "select count(pid) from pg_stat_subscription where subid = $1",
                &[&oid],
            )
            .await?
            .get(0);
        if running == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(MoveError::Timeout {
                shard: rec.shard,
                what: format!(
                    "waiting for the {running} worker(s) of subscription {name} on island {} to exit after disabling it (a long replicated transaction?); --resume or --abort",
                    dst.island
                ),
                secs: WORKER_EXIT_PATIENCE.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Enables the subscription if it is disabled. Idempotent, so a run resumed after a crash
/// between [`stop_workers`] and this finds it enabled again.
pub(crate) async fn ensure_enabled(dst: &Db, rec: &MoveRecord) -> Result<(), MoveError> {
    let name = rec.names().subscription;
    let enabled: Option<bool> = dst
        .opt(
            "select s.subenabled from pg_subscription s join pg_database d on d.oid = s.subdbid
             where s.subname = $1 and d.datname = current_database()",
            &[&name],
        )
        .await?
        .map(|r| r.get(0));
    if enabled == Some(false) {
        dst.exec(&format!("alter subscription {} enable", ident(&name)))
            .await?;
    }
    Ok(())
}
