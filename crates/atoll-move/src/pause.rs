//! The write pause: taking the table lock on the source shard's tables without making writers wait long.
//!
//! Writers queue behind a lock request that waits, so the request must not wait behind a
//! long holder: an autovacuum worker (its SHARE UPDATE EXCLUSIVE lock conflicts with
//! EXCLUSIVE, and it would only cancel itself after `deadlock_timeout`) is cancelled, and
//! while another session holds a conflicting lock stronger than a writer's, the move polls
//! instead of queueing. Only then is the lock requested, with a short `lock_timeout`
//! (waiting for in-flight writes to commit), and retried after a pause if it timed out,
//! starting with the table it timed out on.

use crate::context::MoveContext;
use crate::db::Db;
use crate::error::MoveError;
use crate::replication::{tick, wait_tick};
use crate::MoveEvent;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;

/// Autovacuum workers holding locks on the tables: cancelled (they retry later).
const CANCEL_AUTOVACUUM: &str = "select pg_cancel_backend(l.pid) from pg_locks l
     join pg_stat_activity a on a.pid = l.pid
     where l.locktype = 'relation' and l.granted and l.pid <> pg_backend_pid()
       and l.relation = any($1::text[]::regclass[]) and a.backend_type = 'autovacuum worker'";
/// Locks held by others that would make our request queue for longer than a write.
const STRONG_HOLDERS: &str = "select count(*) from pg_locks l
     where l.locktype = 'relation' and l.granted and l.pid <> pg_backend_pid()
       and l.relation = any($1::text[]::regclass[])
       and l.mode in ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock',
                      'ExclusiveLock', 'AccessExclusiveLock')";

/// How long to wait, polling, for other sessions' strong locks to go away.
const HOLDER_PATIENCE: Duration = Duration::from_secs(60);

/// Locks the source tables and waits until the destination has applied everything
/// committed before. An attempt whose wait exceeds `pause_budget` is given up (writes
/// resume), replication catches up again and the lock is retried; the last attempt
/// waits up to `pause_timeout`. Returns the lock request time, how long locking took,
/// and when (since the request) the destination had applied everything.
pub(crate) async fn freeze(
    cx: &mut MoveContext<'_>,
    ticker: &Db,
) -> Result<(Instant, Duration, Duration), MoveError> {
    const ATTEMPTS: u32 = 10;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = lock_source(cx).await?;
        let lock_ms = started.elapsed();
        let limit = if attempt < ATTEMPTS {
            cx.opts.pause_budget
        } else {
            cx.opts.pause_timeout
        };
        let k = match tick(ticker, cx.rec.id).await {
            Ok(k) => k,
            Err(e) => {
                let _ = cx.src.exec("rollback").await;
                return Err(e);
            }
        };
        match wait_tick(&cx.dst, &cx.rec, k, cx.opts.poll, limit).await {
            Ok(()) => return Ok((started, lock_ms, started.elapsed())),
            Err(MoveError::Timeout { .. }) if attempt < ATTEMPTS => {
                cx.src.exec("rollback").await?;
                cx.emit(MoveEvent::Note(format!(
                    "the destination needed more than {:?} to apply; unlocked, catching up",
                    limit
                )));
                crate::catch_up::catch_up(cx).await?;
            }
            Err(e) => {
                let _ = cx.src.exec("rollback").await;
                return Err(e);
            }
        }
    }
}

/// Opens T on the source and locks the shard's tables in EXCLUSIVE mode, one after the
/// other in `cx.lock_order`. Returns when the lock was requested: from then on writers wait.
///
/// Holding one table while waiting for the next can deadlock with a writer that holds the
/// next and waits for the one held (TPC-B updates accounts, tellers, branches, then inserts
/// into history; locking in creation order takes branches before accounts). The lock
/// timeout ends that wait; the table waited for goes first on the next attempt, so after a
/// few attempts the order is the writers' own.
pub(crate) async fn lock_source(cx: &mut MoveContext<'_>) -> Result<Instant, MoveError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let order = cx.lock_order.clone();
        if !order.is_empty() {
            wait_for_strong_holders(cx, &order).await?;
        }
        let started = Instant::now();
        // The server ends the pause by itself if the mover stops talking (killed, frozen,
        // partitioned away), and cancels any statement of it that runs too long.
        let bound = cx.opts.pause_bound.as_millis();
        cx.src
            .exec(&format!(
                "begin; set local idle_in_transaction_session_timeout = {bound};
                 set local statement_timeout = {bound};
                 set local lock_timeout = {}",
                cx.opts.lock_timeout.as_millis()
            ))
            .await?;
        match lock_each(&cx.src, &order).await {
            Ok(()) => return Ok(started),
            Err((i, e))
                if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
                    && attempt < cx.opts.lock_attempts =>
            {
                cx.src.exec("rollback").await?;
                let waited = cx.lock_order.remove(i);
                cx.emit(MoveEvent::Note(format!(
                    "lock attempt {attempt} timed out on {waited} behind a write, retrying with it first"
                )));
                cx.lock_order.insert(0, waited);
                // Let the writers that queued behind us through.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err((_, e)) => {
                let _ = cx.src.exec("rollback").await;
                return Err(e);
            }
        }
    }
}

/// Locks `tables` in this order; on failure, which one failed.
///
/// The `LOCK TABLE`s are pipelined on the one connection: sent back to back, so the pause
/// pays one round trip for all of them instead of one each (the server still runs them
/// one after the other, in this order). After the first failure the transaction is
/// aborted and the later ones fail too; the first failure is the one reported.
async fn lock_each(src: &Db, tables: &[String]) -> Result<(), (usize, MoveError)> {
    let sql: Vec<String> = tables
        .iter()
        .map(|t| format!("lock table {t} in exclusive mode"))
        .collect();
    let results = futures::future::join_all(sql.iter().map(|s| src.exec(s))).await;
    match results.into_iter().enumerate().find(|(_, r)| r.is_err()) {
        Some((i, Err(e))) => Err((i, e)),
        _ => Ok(()),
    }
}

pub(crate) async fn wait_for_strong_holders(
    cx: &MoveContext<'_>,
    names: &[String],
) -> Result<(), MoveError> {
    let deadline = Instant::now() + HOLDER_PATIENCE;
    loop {
        let cancelled = cx.src.query(CANCEL_AUTOVACUUM, &[&names]).await?.len();
        if cancelled > 0 {
            cx.emit(MoveEvent::Note(format!(
                "cancelled {cancelled} autovacuum worker(s) holding the shard's tables"
            )));
        }
        let holders: i64 = cx.src.one(STRONG_HOLDERS, &[&names]).await?.get(0);
        if holders == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(MoveError::Timeout {
                shard: cx.shard(),
                what: format!(
                    "waiting for other sessions to release strong locks on {} tables on island {}",
                    cx.shard(),
                    cx.src.island
                ),
                secs: HOLDER_PATIENCE.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
