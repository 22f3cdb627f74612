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
use atoll_core::migration::sql::{ConcurrentIndex, ConcurrentOp};
use atoll_core::migration::{Migration, RunMode, SqlFile};
use atoll_core::quote::{ident, literal};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Apply: the `.up.sql` files, recording their versions.
    Up,
    /// Undo: the `.dn.sql` files, removing their versions.
    Down,
}

/// How DDL waits for locks and for index builds of other backends.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy {
    /// PostgreSQL's `lock_timeout` for every statement of a file: the longest DDL waits
    /// for a busy table (and so makes writes queue behind it).
    pub lock_timeout: Duration,
    /// Further attempts after a lock timeout or a deadlock.
    pub retries: u32,
    /// How long a step waits for an index build started elsewhere (a killed run's backend
    /// still building) before it fails the schema rather than drop a running build.
    pub build_wait: Duration,
}

/// What a step did: ran the file, or found it done by an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Skipped,
}

/// Why a step stopped: the server's error, or a condition found before sending the file.
#[derive(Debug)]
pub(crate) enum Fail {
    Pg(tokio_postgres::Error),
    Msg(String),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

/// One failed file: the PostgreSQL error as the server said it.
#[derive(Debug, Clone)]
pub struct StepError {
    pub file: String,
    pub msg: String,
    /// The connection broke: whether the file's transaction committed is unknown, so the
    /// worker reconnects and runs it again (the version row makes a second run a no-op).
    pub connection_lost: bool,
    /// Attempts of the file this call made (retries of retryable errors included): a
    /// worker retrying a lost connection counts them against the same `retries`.
    pub attempts: u32,
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

fn retryable(e: &Fail) -> bool {
    matches!(e, Fail::Pg(e) if retryable_pg(e))
}

/// 55P03 lock_not_available (lock_timeout), 40P01 deadlock_detected, 40001
/// serialization_failure: the transaction was rolled back and may succeed when run again.
pub(crate) fn retryable_pg(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
        || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
        || e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
}

/// Runs `m` in `dir` on `schema`; `on_retry(n)` is told before the n-th attempt (n ≥ 2)
/// after a retryable error.
pub async fn run_step(
    client: &Client,
    schema: &str,
    m: &Migration,
    dir: Direction,
    policy: LockPolicy,
    first: bool,
    on_retry: &(dyn Fn(u32) + Sync),
) -> Result<Outcome, StepError> {
    let file = match dir {
        Direction::Up => &m.up,
        Direction::Down => &m.dn,
    };
    // The file was split and checked with standard_conforming_strings on; the server must
    // lex it alike, and an earlier file on this connection may have switched it off (a SET
    // outlives its transaction). On its own round trip: a SET in the batch itself would
    // come after the server lexed the whole batch.
    client
        .batch_execute("set standard_conforming_strings = on")
        .await
        .map_err(|e| StepError {
            file: file.file.clone(),
            msg: pg_message(&e),
            connection_lost: client.is_closed(),
            attempts: 1,
        })?;
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
            Ok(o) => return Ok(o),
            Err(e) if retryable(&e) && attempt < policy.retries => {
                attempt += 1;
                tracing::info!(schema, file = %file.file, attempt, "lock timeout, retrying");
                on_retry(attempt + 1);
                // Back off so the writers queued behind us get through first.
                tokio::time::sleep(Duration::from_millis(100 * (1 << attempt.min(6)))).await;
            }
            Err(e) => {
                return Err(StepError {
                    file: file.file.clone(),
                    connection_lost: client.is_closed(),
                    attempts: attempt + 1,
                    msg: match e {
                        Fail::Pg(e) => pg_message(&e),
                        Fail::Msg(m) => m,
                    },
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
        ident(schema),
        policy.lock_timeout.as_millis(),
        if first { ENSURE_TABLE } else { "" }
    )
}

fn record_sql(m: &Migration, dir: Direction) -> String {
    match dir {
        Direction::Up => format!(
            "insert into atoll_migrations (version, name, checksum) values ({}, {}, {});",
            literal(&m.version),
            literal(&m.name),
            literal(&m.up.checksum)
        ),
        Direction::Down => format!(
            "delete from atoll_migrations where version = {};",
            literal(&m.version)
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
) -> Result<Outcome, Fail> {
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
        Ok(()) => Ok(Outcome::Applied),
        Err(e) => {
            // The rest of the batch was skipped; end the aborted transaction.
            let _ = client.batch_execute("rollback").await;
            if already_applied(&e) {
                tracing::info!(schema, version = %m.version, "already applied by an earlier run");
                return Ok(Outcome::Skipped);
            }
            Err(e.into())
        }
    }
}

/// A unique violation on the version row itself (not one raised by the file's SQL).
fn already_applied(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("atoll_migrations_pkey")
    })
}

async fn down_in_transaction(
    client: &Client,
    schema: &str,
    m: &Migration,
    file: &SqlFile,
    policy: LockPolicy,
    first: bool,
) -> Result<Outcome, Fail> {
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
        Ok(true) => Ok(client
            .batch_execute("commit")
            .await
            .map(|()| Outcome::Applied)?),
        Ok(false) => {
            let _ = client.batch_execute("rollback").await;
            Ok(Outcome::Skipped)
        }
        Err(e) => {
            let _ = client.batch_execute("rollback").await;
            Err(e.into())
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
) -> Result<Outcome, Fail> {
    client
        .batch_execute(&prelude(schema, policy, false, first))
        .await?;
    for st in statements {
        let Some(name) = st
            .name
            .as_deref()
            .filter(|_| st.op != ConcurrentOp::Reindex)
        else {
            // REINDEX: running it again only rebuilds again, but an interrupted one left
            // invalid `_ccnew`/`_ccold` copies that it would skip (with a warning) forever.
            if let Some(target) = &st.reindex {
                // A statement naming a schema rebuilds there, so its leftovers are there.
                let in_schema = st.reindex_schema.as_deref().unwrap_or(schema);
                crate::reindex::drop_leftovers(client, in_schema, target, policy.build_wait)
                    .await?;
            }
            client.batch_execute(&st.sql).await?;
            continue;
        };
        let index = format!("{}.{}", ident(schema), ident(name));
        match (st.op, index_state(client, schema, name).await?) {
            // Built before an interruption, or dropped already: nothing to do.
            (ConcurrentOp::CreateIndex, Some(true)) | (ConcurrentOp::DropIndex, None) => continue,
            (ConcurrentOp::CreateIndex, Some(false)) => {
                // Invalid: a failed build, or one still running elsewhere (a killed run's
                // backend). Never drop a running build; wait for it a bounded time.
                if wait_for_build(client, schema, name, policy.build_wait).await? {
                    continue;
                }
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
        Ok(()) => Ok(Outcome::Applied),
        // Recorded by an earlier run whose backend finished after its process died.
        Err(e) if already_applied(&e) => Ok(Outcome::Skipped),
        Err(e) => Err(e.into()),
    }
}

/// The index's validity (`None`: no such index) and the pid building it, if one is.
async fn index_state_full(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<Option<(bool, Option<i32>)>, Fail> {
    let row = client
        .query_opt(
            "select i.indisvalid, (select p.pid from pg_stat_progress_create_index p
                                   where p.index_relid = c.oid limit 1)
             from pg_index i join pg_class c on c.oid = i.indexrelid
             join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relname = $2",
            &[&schema, &name],
        )
        .await?;
    let Some(r) = row else { return Ok(None) };
    let valid = r.try_get::<_, bool>(0)?;
    let pid = r.try_get::<_, Option<i32>>(1)?;
    Ok(Some((valid, pid)))
}

async fn index_state(client: &Client, schema: &str, name: &str) -> Result<Option<bool>, Fail> {
    Ok(index_state_full(client, schema, name)
        .await?
        .map(|(valid, _)| valid))
}

/// Waits (at most `wait`) while another backend builds the invalid index `name`.
/// True when that build made it valid; false when no build is running (so the invalid
/// index is a failed build's leftover and may be dropped).
async fn wait_for_build(
    client: &Client,
    schema: &str,
    name: &str,
    wait: Duration,
) -> Result<bool, Fail> {
    let started = std::time::Instant::now();
    loop {
        match index_state_full(client, schema, name).await? {
            Some((true, _)) => return Ok(true),
            Some((false, Some(pid))) => {
                if started.elapsed() >= wait {
                    return Err(still_building(schema, name, pid, wait));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // No build running: the invalid index (or none at all) is a leftover.
            Some((false, None)) | None => return Ok(false),
        }
    }
}

fn still_building(schema: &str, name: &str, pid: i32, wait: Duration) -> Fail {
    Fail::Msg(format!(
        "index {schema}.{name} is still being built by backend pid {pid} (an earlier run's?) after {} s; not dropping it, run again when it is done",
        wait.as_secs_f64()
    ))
}
