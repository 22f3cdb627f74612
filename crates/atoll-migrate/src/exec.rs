//! Running one migration file on one schema.
//!
//! A transactional file runs in one transaction together with its version row, sent as a
//! single batch (one round trip), so a schema has either both or neither. A CONCURRENTLY
//! file runs statement by statement outside a transaction and is made idempotent: an index
//! already built is skipped, an invalid one (a failed or interrupted build) is dropped
//! first, and the version row is written last, so an interrupted file is simply redone.
//!
//! DDL waits at most `lock_timeout` for a busy table (so it cannot queue writes behind it
//! for long) and is retried a bounded number of times.

use crate::error::pg_message;
use atoll_core::migration::sql::{quote_ident, quote_literal, ConcurrentIndex};
use atoll_core::migration::{Migration, RunMode, SqlFile};
use std::time::Duration;
use tokio_postgres::Client;

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

/// How DDL waits for locks.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    pub lock_timeout: Duration,
    /// Further attempts after a lock timeout or a deadlock.
    pub retries: u32,
}

/// One failed file: the PostgreSQL error as the server said it.
#[derive(Debug, Clone)]
pub struct StepError {
    pub file: String,
    pub msg: String,
}

/// Creates the schema's version table on first use. A schema that pg-mig migrated so far
/// (its versions in the function `mig_versions_const()`) has them imported, so switching
/// from pg-mig neither re-applies nor loses a version.
const ENSURE_TABLE: &str = "do $atoll$ begin
  if to_regclass('atoll_migrations') is null then
    create table atoll_migrations (
      version text primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now());
    if to_regprocedure('mig_versions_const()') is not null then
      insert into atoll_migrations (version, name, checksum)
      select v, split_part(v, '.', 2), 'pg-mig'
      from json_array_elements_text(mig_versions_const()::json) v;
    end if;
  end if;
end $atoll$;";

fn retryable(e: &tokio_postgres::Error) -> bool {
    // 55P03 lock_not_available (lock_timeout), 40P01 deadlock_detected.
    matches!(e.code().map(|c| c.code()), Some("55P03") | Some("40P01"))
}

/// Runs `m` in `dir` on `schema`.
pub async fn run_step(
    client: &Client,
    schema: &str,
    m: &Migration,
    dir: Direction,
    policy: LockPolicy,
    first: bool,
) -> Result<(), StepError> {
    let file = match dir {
        Direction::Up => &m.up,
        Direction::Down => &m.dn,
    };
    let mut attempt = 0;
    loop {
        let r = match &file.mode {
            RunMode::Transaction => {
                in_transaction(client, schema, m, file, dir, policy, first).await
            }
            RunMode::Concurrently { statements } => {
                concurrently(client, schema, m, statements, dir, policy, first).await
            }
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if retryable(&e) && attempt < policy.retries => {
                attempt += 1;
                tracing::info!(schema, file = %file.file, attempt, "lock timeout, retrying");
                // Back off so the writers queued behind us get through first.
                tokio::time::sleep(Duration::from_millis(100 * (1 << attempt.min(6)))).await;
            }
            Err(e) => {
                return Err(StepError {
                    file: file.file.clone(),
                    msg: pg_message(&e),
                })
            }
        }
    }
}

/// Session settings for one schema (no statement timeout: a backfill may take long, as in
/// pg-mig); on its first step in a run, also its version table.
fn prelude(schema: &str, policy: LockPolicy, local: bool, first: bool) -> String {
    let scope = if local { "local " } else { "" };
    format!(
        "set {scope}search_path to {}; set {scope}lock_timeout = {}; \
         set {scope}statement_timeout = 0; {}",
        quote_ident(schema),
        policy.lock_timeout.as_millis(),
        if first { ENSURE_TABLE } else { "" }
    )
}

fn record_sql(m: &Migration, dir: Direction) -> String {
    match dir {
        Direction::Up => format!(
            "insert into atoll_migrations (version, name, checksum) values ({}, {}, {});",
            quote_literal(&m.version),
            quote_literal(&m.name),
            quote_literal(&m.up.checksum)
        ),
        Direction::Down => format!(
            "delete from atoll_migrations where version = {};",
            quote_literal(&m.version)
        ),
    }
}

/// The version row is written first: if an earlier run's transaction on this schema is
/// still finishing (its process was killed mid-batch, its backend not yet gone), the insert
/// waits for it and then either succeeds or finds the version applied, so nothing is ever
/// applied twice.
async fn in_transaction(
    client: &Client,
    schema: &str,
    m: &Migration,
    file: &SqlFile,
    dir: Direction,
    policy: LockPolicy,
    first: bool,
) -> Result<(), tokio_postgres::Error> {
    if dir == Direction::Down {
        return down_in_transaction(client, schema, m, file, policy, first).await;
    }
    // The newline before `;` ends a trailing `--` comment in the file.
    let batch = format!(
        "begin; {} {}\n{}\n; commit;",
        prelude(schema, policy, true, first),
        record_sql(m, dir),
        file.sql,
    );
    match client.batch_execute(&batch).await {
        Ok(()) => Ok(()),
        Err(e) => {
            // The rest of the batch was skipped; end the aborted transaction.
            let _ = client.batch_execute("rollback").await;
            if already_applied(&e) {
                tracing::info!(schema, version = %m.version, "already applied by an earlier run");
                return Ok(());
            }
            Err(e)
        }
    }
}

/// A unique violation on the version row itself (not one raised by the file's SQL).
fn already_applied(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code().code() == "23505" && db.constraint() == Some("atoll_migrations_pkey")
    })
}

async fn down_in_transaction(
    client: &Client,
    schema: &str,
    m: &Migration,
    file: &SqlFile,
    policy: LockPolicy,
    first: bool,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("begin; {}", prelude(schema, policy, true, first)))
        .await?;
    let result = async {
        let removed = client
            .execute(
                "delete from atoll_migrations where version = $1",
                &[&m.version],
            )
            .await?;
        if removed == 0 {
            // Undone by an earlier run already.
            return Ok(false);
        }
        client
            .batch_execute(&format!("{}\n;", file.sql))
            .await
            .map(|()| true)
    }
    .await;
    match result {
        Ok(true) => client.batch_execute("commit").await,
        Ok(false) | Err(_) => {
            let _ = client.batch_execute("rollback").await;
            result.map(|_| ())
        }
    }
}

async fn concurrently(
    client: &Client,
    schema: &str,
    m: &Migration,
    statements: &[ConcurrentIndex],
    dir: Direction,
    policy: LockPolicy,
    first: bool,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&prelude(schema, policy, false, first))
        .await?;
    for st in statements {
        let name = st.name.as_deref().unwrap_or_default();
        let row = client
            .query_opt(
                "select i.indisvalid from pg_index i join pg_class c on c.oid = i.indexrelid
                 join pg_namespace n on n.oid = c.relnamespace
                 where n.nspname = $1 and c.relname = $2",
                &[&schema, &name],
            )
            .await?;
        let index = format!("{}.{}", quote_ident(schema), quote_ident(name));
        match (st.create, row.map(|r| r.get::<_, bool>(0))) {
            // Built before an interruption, or dropped already: nothing to do.
            (true, Some(true)) | (false, None) => continue,
            (true, Some(false)) => {
                tracing::info!(
                    schema,
                    index = name,
                    "dropping invalid index before rebuilding it"
                );
                client
                    .batch_execute(&format!("drop index concurrently if exists {index}"))
                    .await?;
            }
            _ => {}
        }
        client.batch_execute(&st.sql).await?;
    }
    match client.batch_execute(&record_sql(m, dir)).await {
        // Recorded by an earlier run whose backend finished after its process died.
        Err(e) if already_applied(&e) => Ok(()),
        other => other,
    }
}
