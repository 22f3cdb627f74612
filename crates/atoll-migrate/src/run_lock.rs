//! The cluster-wide migration run lock ([`atoll_pg::locks::MIGRATION_RUN`]) and the run
//! record ([`atoll_pg::catalog::migration_runs`]), both on the coordination island's master.
//!
//! The lock is a session advisory lock held by a dedicated connection for the whole run:
//! if the process dies, the server releases it, so a killed run never blocks the next one.
//! The `atoll.migration_lock` row only names the holder, for the error a second run gets.

use crate::error::MigrateError;
use atoll_core::migration::ShardRow;
use atoll_core::NodeConfig;
use atoll_pg::catalog::migration_runs::{self, RunKind, RunStatus};
use atoll_pg::catalog::migration_shards;
use atoll_pg::locks;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_postgres::Client;

/// A held lock plus the run it belongs to. Call [`RunLock::finish`] to release it; if
/// dropped instead (a panic, a lost connection), the server releases it with the session.
pub struct RunLock {
    client: Client,
    node: NodeConfig,
    /// How long [`RunLock::alive`] waits for an answer.
    probe_timeout: Duration,
    pub run_id: i64,
}

impl RunLock {
    /// Takes the lock or says who holds it. A stale holder row (its process died) is
    /// marked `interrupted` and replaced.
    pub async fn acquire(
        node: &NodeConfig,
        timeout: Duration,
        kind: RunKind,
    ) -> Result<RunLock, MigrateError> {
        let client = atoll_pg::connect_with_timeout(node, timeout).await?;
        if !locks::try_take(&client, node, locks::MIGRATION_RUN).await? {
            return Err(match migration_runs::holder(&client, node).await? {
                Some(h) => MigrateError::Locked {
                    run_id: h.run_id,
                    host: h.host,
                    pid: h.pid,
                    started_at: h.started_at,
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
        let run_id = migration_runs::start(
            &client,
            node,
            kind,
            &atoll_pg::coordination::host_name(),
            pid,
        )
        .await?;
        Ok(RunLock {
            client,
            node: node.clone(),
            probe_timeout: timeout,
            run_id,
        })
    }

    /// Records progress; `Ok(true)` when `migrate stop` asked the run to stop. An error
    /// means the lock's session is gone (or unusable): the advisory lock may be released
    /// already, so the caller must stop starting work.
    pub async fn progress(&self, total: usize, done: usize, failed: usize) -> Result<bool, String> {
        if self.client.is_closed() {
            return Err(format!("the lock connection to {} is closed", self.node));
        }
        migration_runs::progress(&self.client, &self.node, self.run_id, total, done, failed)
            .await
            .map_err(|e| format!("cannot update the run record: {e}"))
    }

    /// Whether the lock's session is still alive (so still holds the lock): one `select 1`
    /// on it, bounded by the connect timeout. An error says why not; the caller must stop
    /// starting work, since once the session is gone a move may start.
    pub async fn alive(&self) -> Result<(), String> {
        if self.client.is_closed() {
            return Err(format!("the lock connection to {} is closed", self.node));
        }
        match tokio::time::timeout(self.probe_timeout, self.client.simple_query("select 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "the lock session on {} ended: {}",
                self.node,
                atoll_pg::describe(&e)
            )),
            Err(_) => Err(format!(
                "the lock session on {} did not answer within {} ms",
                self.node,
                self.probe_timeout.as_millis()
            )),
        }
    }

    /// Writes schemas' states to the run's rows (`atoll.migration_shards`).
    pub async fn record_shards(&self, rows: &[ShardRow]) -> Result<(), String> {
        migration_shards::record(&self.client, &self.node, self.run_id, rows)
            .await
            .map_err(|e| format!("cannot update the run's schema states: {e}"))
    }

    /// Records the run's scope, reviewed plan and failure policy.
    pub async fn describe(
        &self,
        scope: &str,
        plan_digest: Option<&str>,
        policy: &str,
    ) -> Result<(), MigrateError> {
        migration_runs::describe(
            &self.client,
            &self.node,
            self.run_id,
            scope,
            plan_digest,
            policy,
        )
        .await?;
        Ok(())
    }

    /// The schemas earlier runs of the reviewed plan with this digest finished.
    pub async fn done_by_plan(&self, digest: &str) -> Result<BTreeSet<String>, MigrateError> {
        Ok(
            migration_shards::done_by_plan(&self.client, &self.node, digest)
                .await?
                .into_iter()
                .collect(),
        )
    }

    /// Records the outcome, removes the holder row and releases the lock.
    pub async fn finish(self, status: RunStatus, message: &str) -> Result<(), MigrateError> {
        migration_runs::finish(&self.client, &self.node, self.run_id, status, message).await?;
        locks::release(&self.client, &self.node, locks::MIGRATION_RUN).await?;
        Ok(())
    }
}
