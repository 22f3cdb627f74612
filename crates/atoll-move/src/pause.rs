//! The write pause: taking the table lock on the source shard's tables without making writers wait long.
//!
//! Writers queue behind a lock request that waits, so the request must not wait behind a
//! long holder: an autovacuum worker (its SHARE UPDATE EXCLUSIVE lock conflicts with
//! EXCLUSIVE, and it would only cancel itself after `deadlock_timeout`) is cancelled, and
//! while another session holds a conflicting lock stronger than a writer's, the move polls
//! instead of queueing. Only then is the lock requested, with a short `lock_timeout`
//! (waiting for in-flight writes to commit), and retried after a pause if it timed out.

use crate::engine::Mover;
use crate::error::MoveError;
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

impl Mover<'_> {
    /// Opens T on the source and locks `tables` (qualified names) in EXCLUSIVE mode.
    /// Returns when the lock was requested: from then on writers wait.
    pub(crate) async fn lock_source(
        &mut self,
        lock_sql: &str,
        tables: &[String],
    ) -> Result<Instant, MoveError> {
        let names: Vec<String> = tables.to_vec();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !tables.is_empty() {
                self.wait_for_strong_holders(&names).await?;
            }
            let started = Instant::now();
            self.src.exec("begin").await?;
            if tables.is_empty() {
                return Ok(started);
            }
            match self.src.exec(lock_sql).await {
                Ok(()) => return Ok(started),
                Err(e)
                    if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
                        && attempt < self.opts.lock_attempts =>
                {
                    self.src.exec("rollback").await?;
                    self.emit(MoveEvent::Note(format!(
                        "lock attempt {attempt} timed out behind a long write, retrying"
                    )));
                    // Let the writers that queued behind us through.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    let _ = self.src.exec("rollback").await;
                    return Err(e);
                }
            }
        }
    }

    async fn wait_for_strong_holders(&self, names: &[String]) -> Result<(), MoveError> {
        let deadline = Instant::now() + HOLDER_PATIENCE;
        loop {
            let cancelled = self.src.query(CANCEL_AUTOVACUUM, &[&names]).await?.len();
            if cancelled > 0 {
                self.emit(MoveEvent::Note(format!(
                    "cancelled {cancelled} autovacuum worker(s) holding the shard's tables"
                )));
            }
            let holders: i64 = self.src.one(STRONG_HOLDERS, &[&names]).await?.get(0);
            if holders == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(MoveError::Timeout {
                    shard: self.shard(),
                    what: format!(
                        "waiting for other sessions to release strong locks on {} tables on island {}",
                        self.shard(),
                        self.src.island
                    ),
                    secs: HOLDER_PATIENCE.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
