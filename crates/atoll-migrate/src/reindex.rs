//! The leftovers of an interrupted `REINDEX ... CONCURRENTLY`: PostgreSQL builds a copy
//! `<index>_ccnew` of each index (and of the TOAST table's index), swaps it in, renames
//! the old one `<index>_ccold` and drops it. Killed midway, the copies stay behind,
//! invalid, and a later REINDEX skips them with a warning forever, so the retry of such a
//! file drops them first. Which copies are leftovers of the file's REINDEX is decided by
//! `atoll_core` ([`ReindexTarget::is_leftover`]); this module finds and drops them.

use crate::error::pg_message;
use crate::exec::{retryable_pg, Fail};
use atoll_core::migration::sql::ReindexTarget;
use atoll_core::quote::ident;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The invalid indexes of the tables in `schema` (only the table `$2`, when given) and of
/// their TOAST tables, with the backend still working on each, if one is: it reports
/// index-build progress on the table (column 3), or holds a `ShareUpdateExclusiveLock` on
/// the index in this database (column 4). A running REINDEX keeps that session lock on
/// every copy through all its phases, while its progress row names one table at a time
/// (the TOAST table included) and shows no `relid` to a role without
/// `pg_read_all_stats`. Only REINDEX / DROP INDEX CONCURRENTLY take that mode on an
/// index: the planner's `AccessShareLock`, writers' `RowExclusiveLock` and autovacuum's
/// locks on the copy are the table's ordinary traffic, not a build.
const INVALID: &str = "
    select c.relname::text, t.relname::text, cn.nspname::text,
           (select p.pid from pg_stat_progress_create_index p
            where p.relid in (t.oid, t.reltoastrelid) and p.pid <> pg_backend_pid()
            limit 1),
           (select l.pid from pg_locks l
            where l.locktype = 'relation' and l.relation = c.oid
              and l.database = (select oid from pg_database where datname = current_database())
              and l.mode = 'ShareUpdateExclusiveLock'
              and l.pid <> pg_backend_pid() limit 1)
    from pg_class t
    join pg_index i on i.indrelid in (t.oid, t.reltoastrelid)
    join pg_class c on c.oid = i.indexrelid
    join pg_namespace cn on cn.oid = c.relnamespace
    where t.relnamespace = (select oid from pg_namespace where nspname = $1)
      and ($2::oid is null or t.oid = $2::oid)
      and not i.indisvalid
    order by 1";

/// Drops the invalid `_ccnew`/`_ccold` copies that an interrupted REINDEX of `target`
/// left in `schema`. A copy another backend still works on is waited for at most `wait`;
/// then the step fails naming that backend: dropping it would break a live REINDEX.
pub(crate) async fn drop_leftovers(
    client: &Client,
    schema: &str,
    target: &ReindexTarget,
    wait: Duration,
) -> Result<(), Fail> {
    // Narrowed to one table where the target names one: the catalog lookups are then
    // by oid, not a scan of every index of the database for each shard.
    let table: Option<u32> = match target {
        ReindexTarget::Table(name) => {
            let sql = "select to_regclass(format('%I.%I', $1::text, $2::text))::oid";
            let oid = client.query_one(sql, &[&schema, name]).await?.try_get(0)?;
            match oid {
                Some(oid) => Some(oid),
                None => return Ok(()),
            }
        }
        ReindexTarget::Index(name) => {
            let sql = "select i.indrelid from pg_index i
                       where i.indexrelid = to_regclass(format('%I.%I', $1::text, $2::text))";
            match client.query_opt(sql, &[&schema, name]).await? {
                Some(r) => Some(r.try_get(0)?),
                None => return Ok(()),
            }
        }
        ReindexTarget::Schema => None,
    };
    let started = Instant::now();
    loop {
        let mut busy = None;
        for r in client.query(INVALID, &[&schema, &table]).await? {
            let (index, table, nsp): (String, String, String) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            if !target.is_leftover(&index, &table) {
                continue;
            }
            let progress: Option<i32> = r.try_get(3)?;
            let locker: Option<i32> = r.try_get(4)?;
            let by = match (progress, locker) {
                (Some(pid), _) => Some(Backend::Building(pid)),
                (None, Some(pid)) => Some(Backend::Locking(pid)),
                (None, None) => None,
            };
            match by {
                Some(by) => busy = Some((nsp, index, table, by)),
                None => {
                    tracing::info!(
                        schema,
                        index,
                        "dropping the invalid leftover of an interrupted REINDEX CONCURRENTLY"
                    );
                    let drop = format!(
                        "drop index concurrently if exists {}.{}",
                        ident(&nsp),
                        ident(&index)
                    );
                    if let Err(e) = client.batch_execute(&drop).await {
                        // A lock timeout stays a database error, so the step is retried.
                        if retryable_pg(&e) {
                            return Err(e.into());
                        }
                        return Err(Fail::Msg(format!(
                            "dropping leftover {nsp}.{index} of an interrupted REINDEX: {}",
                            pg_message(&e)
                        )));
                    }
                }
            }
        }
        let Some((nsp, index, table, by)) = busy else {
            return Ok(());
        };
        if started.elapsed() >= wait {
            return Err(still_reindexing(&nsp, &index, &table, by, wait));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The backend seen working on a leftover copy, and how it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// It reports index-build progress on the table.
    Building(i32),
    /// It holds the copy's `ShareUpdateExclusiveLock`.
    Locking(i32),
}

fn still_reindexing(nsp: &str, index: &str, table: &str, by: Backend, wait: Duration) -> Fail {
    let who = match by {
        Backend::Building(pid) => format!("being rebuilt by backend pid {pid}"),
        Backend::Locking(pid) => format!("held by backend pid {pid}"),
    };
    Fail::Msg(format!(
        "leftover {nsp}.{index} of a REINDEX CONCURRENTLY of table {table} is still {who} \
         (an earlier run's?) after {} s; not dropping it, run again when it is done",
        wait.as_secs_f64()
    ))
}
