//! The cluster-wide migration lock and the run record, both on the finalizer island's
//! master (island 0).
//!
//! The lock is a session advisory lock held by a dedicated connection for the whole run:
//! if the process dies, the server releases it, so a killed run never blocks the next one.
//! The `atoll.migration_lock` row only names the holder, for the error a second run gets.

use crate::error::MigrateError;
use atoll_core::NodeConfig;
use atoll_pg::PgError;
use std::time::Duration;
use tokio_postgres::Client;

/// Shared with moves, which must not start while a run holds it.
const LOCK_KEY: i64 = atoll_pg::coordination::MIGRATION_LOCK_KEY;

/// A held lock plus the run it belongs to. Call [`RunLock::finish`] to release it; if
/// dropped instead (a panic, a lost connection), the server releases it with the session.
pub struct RunLock {
    client: Client,
    node: NodeConfig,
    pub run_id: i64,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

impl RunLock {
    /// Takes the lock or says who holds it. A stale holder row (its process died) is
    /// marked `interrupted` and replaced.
    pub async fn acquire(
        node: &NodeConfig,
        timeout: Duration,
        kind: &str,
    ) -> Result<RunLock, MigrateError> {
        let client = atoll_pg::connect_with_timeout(node, timeout).await?;
        let q = |e| PgError::query(node, e);
        let got: bool = client
            .query_one("select pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(q)?
            .try_get(0)
            .map_err(q)?;
        if !got {
            let row = client
                .query_opt(
                    "select run_id, host, pid, started_at::text from atoll.migration_lock",
                    &[],
                )
                .await
                .map_err(q)?;
            return Err(match row {
                Some(r) => MigrateError::Locked {
                    run_id: r.try_get(0).map_err(q)?,
                    host: r.try_get(1).map_err(q)?,
                    pid: r.try_get(2).map_err(q)?,
                    started_at: r.try_get(3).map_err(q)?,
                },
                // The holder has the advisory lock but has not written its row yet.
                None => MigrateError::Locked {
                    run_id: 0,
                    host: "another process (starting)".into(),
                    pid: 0,
                    started_at: "just now".into(),
                },
            });
        }
        let pid = std::process::id() as i32;
        let run_id: i64 = client
            .query_one(
                "with stale as (
                     update atoll.migration_runs set status = 'interrupted', finished_at = now(),
                            changed_at = now(), message = 'its process ended without finishing'
                     where status = 'running' returning run_id)
                 insert into atoll.migration_runs (kind, host, pid)
                 select $1, $2, $3 from (select count(*) from stale) s
                 returning run_id",
                &[&kind, &host_name(), &pid],
            )
            .await
            .map_err(q)?
            .try_get(0)
            .map_err(q)?;
        client
            .execute(
                "insert into atoll.migration_lock (run_id, host, pid) values ($1, $2, $3)
                 on conflict (singleton) do update set run_id = excluded.run_id,
                     host = excluded.host, pid = excluded.pid, started_at = now()",
                &[&run_id, &host_name(), &pid],
            )
            .await
            .map_err(q)?;
        Ok(RunLock {
            client,
            node: node.clone(),
            run_id,
        })
    }

    /// Records progress. An error means the lock's session is gone (or unusable): the
    /// advisory lock may be released already, so the caller must stop starting work.
    pub async fn progress(&self, total: usize, done: usize, failed: usize) -> Result<(), String> {
        if self.client.is_closed() {
            return Err(format!("the lock connection to {} is closed", self.node));
        }
        let r = self
            .client
            .execute(
                "update atoll.migration_runs set schemas_total = $2, schemas_done = $3,
                        schemas_failed = $4, changed_at = now() where run_id = $1",
                &[
                    &self.run_id,
                    &(total as i32),
                    &(done as i32),
                    &(failed as i32),
                ],
            )
            .await;
        r.map(|_| ()).map_err(|e| {
            format!(
                "cannot update the run record on {}: {}",
                self.node,
                crate::error::pg_message(&e)
            )
        })
    }

    /// Records the outcome, removes the holder row and releases the lock.
    pub async fn finish(self, status: &str, message: &str) -> Result<(), MigrateError> {
        let q = |e| PgError::query(&self.node, e);
        self.client
            .execute(
                "update atoll.migration_runs set status = $2, message = $3, finished_at = now(),
                        changed_at = now() where run_id = $1",
                &[&self.run_id, &status, &message],
            )
            .await
            .map_err(q)?;
        self.client
            .execute(
                "delete from atoll.migration_lock where run_id = $1",
                &[&self.run_id],
            )
            .await
            .map_err(q)?;
        self.client
            .execute("select pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await
            .map_err(q)?;
        Ok(())
    }
}
