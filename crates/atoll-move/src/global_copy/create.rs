//! Making one island's copy, each step idempotent and its progress recorded on the copy's
//! master: the schema with read-only triggers (state `creating`, in one transaction with
//! the record), the subscription (`copying`), the wait for the copy and the catch-up, the
//! comparison of row counts (`ready`).

use super::{subscription, CopyReport, GlobalCopyError, ReplicateRequest, PUBLICATION, SCHEMA};
use crate::db::{conninfo, ident, literal, Db};
use crate::replication::{drop_slot, sub_oid};
use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use atoll_pg::catalog::global_copy::{self, CopyRow, CopyState};
use std::time::{Duration, Instant};

/// Each copy keeps its own migration history.
pub(super) const OWN_HISTORY: &str = "atoll_migrations";
/// Bounds on the initial copy and on a catch-up.
const COPY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Comparisons tried while writes go on before the copy is called different.
const COMPARE_ATTEMPTS: u32 = 10;

fn shard_zero() -> Result<ShardNo, GlobalCopyError> {
    ShardNo::new(0).map_err(|e| GlobalCopyError::Refused(e.to_string()))
}

/// The tables to copy, sorted: the requested ones (each must exist and have a primary
/// key or replica identity), or every table of `sh0000` but its migration history.
pub(crate) async fn tables(
    src: &Db,
    req: &ReplicateRequest,
) -> Result<Vec<String>, GlobalCopyError> {
    let rows = src
        .query(
            "select c.relname::text, c.relreplident <> 'n' and (c.relreplident <> 'd'
                    or exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary))
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relkind in ('r', 'p') and not c.relispartition
             order by 1",
            &[&SCHEMA],
        )
        .await?;
    let found: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let chosen: Vec<String> = match &req.tables {
        Some(list) => {
            let mut list = list.clone();
            list.sort();
            list.dedup();
            for t in &list {
                if !found.iter().any(|(n, _)| n == t) {
                    return Err(GlobalCopyError::Refused(format!(
                        "--tables: sh0000.{t} does not exist on island {} (shard 0's master)",
                        src.island
                    )));
                }
            }
            list
        }
        None => found
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n != OWN_HISTORY)
            .collect(),
    };
    if chosen.is_empty() {
        return Err(GlobalCopyError::Refused(
            "sh0000 has no table to copy (create shard 0's tables first)".into(),
        ));
    }
    let keyless: Vec<&String> = chosen
        .iter()
        .filter(|t| found.iter().any(|(n, ok)| n == *t && !ok))
        .collect();
    if !keyless.is_empty() {
        return Err(GlobalCopyError::Refused(format!(
            "sh0000.{}: no primary key or replica identity, so updates and deletes cannot be replicated; add one, or leave the table out with --tables",
            keyless.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", sh0000.")
        )));
    }
    Ok(chosen)
}

fn qualified(tables: &[String]) -> String {
    tables
        .iter()
        .map(|t| format!("{}.{}", ident(SCHEMA), ident(t)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The publication of `tables` on shard 0's master, created or set to exactly them.
pub(crate) async fn ensure_publication(src: &Db, tables: &[String]) -> Result<(), GlobalCopyError> {
    let exists: bool = src
        .one(
            "select exists (select 1 from pg_publication where pubname = $1)",
            &[&PUBLICATION],
        )
        .await?
        .get(0);
    let verb = if exists { "alter" } else { "create" };
    let how = if exists { "set table" } else { "for table" };
    src.exec(&format!(
        "{verb} publication {} {how} {}",
        ident(PUBLICATION),
        qualified(tables)
    ))
    .await?;
    Ok(())
}

/// Makes, finishes or checks the copy on `island`.
pub(crate) async fn copy_to(
    config: &Config,
    snapshot: &Snapshot,
    src: &Db,
    island: IslandId,
    tables: &[String],
    progress: &(dyn Fn(IslandId, &str) + Sync),
) -> Result<CopyReport, GlobalCopyError> {
    let t0 = Instant::now();
    let mut dst = Db::connect(config, snapshot, island).await?;
    let existing = global_copy::get(&dst.client, &dst.node).await?;
    match &existing {
        None => create_schema(src, &mut dst, tables).await?,
        Some(r) if r.source_island != src.island => {
            progress(island, "following shard 0 to its new master");
            super::handoff::repoint(config, snapshot, src, &mut dst, r).await?;
        }
        Some(_) => {}
    }
    if existing
        .as_ref()
        .is_some_and(|r| r.state != CopyState::Creating)
    {
        // Shard 0's schema may have changed since (a migration whose follow was cut
        // short): the copy's tables are brought to it before it subscribes or resumes.
        progress(island, "following shard 0's schema");
        super::follow::follow_one(src, &dst, tables).await?;
    }
    let created = !matches!(&existing, Some(r) if r.state == CopyState::Ready);
    let name = subscription(island);
    if sub_oid(&dst, &name).await?.is_none() {
        if existing.is_some_and(|r| r.state != CopyState::Creating) {
            // Its subscription was dropped after copying: the new one copies every row
            // again, so the old rows go first (past the read-only triggers, as
            // replication does).
            progress(island, "emptying the copy to copy it again");
            empty(&dst, tables).await?;
        }
        progress(island, "subscribing");
        // A slot left by a CREATE SUBSCRIPTION that died half-way would block a new one.
        drop_slot(src, &name, Duration::from_secs(10)).await?;
        create_subscription(config, src, &mut dst, &name).await?;
    }
    // A copy that was disabled (by hand, or after an error) is switched back on.
    dst.exec(&format!("alter subscription {} enable", ident(&name)))
        .await?;
    super::tables::settle(&dst, &name, tables).await?;
    global_copy::set_state(&dst.client, &dst.node, CopyState::Copying).await?;
    progress(island, "copying");
    wait_copied(&dst, island, &name, tables.len()).await?;
    progress(island, "comparing");
    let rows = compare(src, &dst, island, &name, tables).await?;
    global_copy::set_state(&dst.client, &dst.node, CopyState::Ready).await?;
    progress(island, "ready");
    Ok(CopyReport {
        island,
        created,
        rows,
        elapsed_ms: t0.elapsed().as_millis() as u64,
    })
}

/// The schema from the source's dump, only the copied tables kept, each made read-only,
/// and the copy's record: one transaction, so a crash leaves all or nothing.
async fn create_schema(src: &Db, dst: &mut Db, tables: &[String]) -> Result<(), GlobalCopyError> {
    let has_schema: bool = dst
        .one(
            "select exists (select 1 from pg_namespace where nspname = $1)",
            &[&SCHEMA],
        )
        .await?
        .get(0);
    if has_schema {
        return Err(GlobalCopyError::Refused(format!(
            "island {} has a schema sh0000 that is not a copy (shard 0 active or left there?): move or drop it first",
            dst.island
        )));
    }
    let ddl = crate::ddl::read(src, shard_zero()?).await?;
    let dropped: Vec<&String> = ddl
        .tables
        .iter()
        .map(|t| &t.name)
        .filter(|n| !tables.contains(n) && n.as_str() != OWN_HISTORY)
        .collect();
    let row = CopyRow {
        source_island: src.island,
        publication: PUBLICATION.into(),
        subscription: subscription(dst.island),
        tables: tables.to_vec(),
        state: CopyState::Creating,
    };
    let node = dst.node.clone();
    let (tx, ctx) = dst.tx().await?;
    let mut sql = format!(
        "set local check_function_bodies = off; create schema {};",
        ident(SCHEMA)
    );
    for stmt in ddl.pre_copy.iter().chain(&ddl.post_copy) {
        sql.push_str(stmt);
        sql.push_str(";\n");
    }
    for t in dropped {
        sql.push_str(&format!(
            "drop table {}.{} cascade;\n",
            ident(SCHEMA),
            ident(t)
        ));
    }
    for t in tables {
        sql.push_str(&global_copy::read_only_sql(&format!(
            "{}.{}",
            ident(SCHEMA),
            ident(t)
        )));
    }
    tx.batch_execute(&sql).await.map_err(|e| ctx.err(e))?;
    global_copy::insert(&tx, &node, &row).await?;
    tx.commit().await.map_err(|e| ctx.err(e))?;
    Ok(())
}

/// Empties the copied tables on the copy, as replication would (its triggers do not fire).
async fn empty(dst: &Db, tables: &[String]) -> Result<(), GlobalCopyError> {
    dst.exec(&format!(
        "begin; set local session_replication_role = replica; truncate {}; commit;",
        qualified(tables)
    ))
    .await?;
    Ok(())
}

/// CREATE SUBSCRIPTION on the copy's master, on a connection that logs nothing when the
/// statement carries the source's password (as a move's, `crate::quiet`).
async fn create_subscription(
    config: &Config,
    src: &Db,
    dst: &mut Db,
    name: &str,
) -> Result<(), GlobalCopyError> {
    let (info, db) = session_with_source(config, src, dst).await?;
    db.exec("set statement_timeout = '240s'").await?;
    db.exec(&format!(
        "create subscription {} connection {} publication {}
         with (slot_name = {}, copy_data = true, create_slot = true)",
        ident(name),
        literal(&info),
        ident(PUBLICATION),
        literal(name),
    ))
    .await?;
    Ok(())
}

/// The source's connection string, and a session on `dst` for the statement carrying it:
/// one that logs nothing when it holds the source's password (masked in errors), as a
/// move's (`crate::quiet`).
pub(super) async fn session_with_source(
    config: &Config,
    src: &Db,
    dst: &mut Db,
) -> Result<(String, Db), GlobalCopyError> {
    let (info, secret) = conninfo(&src.node)?;
    let db = match secret {
        Some(s) => {
            dst.add_mask(s);
            crate::quiet::session(config, dst, shard_zero()?).await?
        }
        None => dst.reconnect(config).await?,
    };
    Ok((info, db))
}

/// Waits until every table of the subscription is copied and in streaming.
async fn wait_copied(
    dst: &Db,
    island: IslandId,
    name: &str,
    tables: usize,
) -> Result<(), GlobalCopyError> {
    let deadline = Instant::now() + COPY_TIMEOUT;
    loop {
        let r = dst
            .one(
                "select count(*) filter (where r.srsubstate = 'r'), count(*)
                 from pg_subscription s join pg_subscription_rel r on r.srsubid = s.oid
                 where s.subname = $1",
                &[&name],
            )
            .await?;
        let (ready, all): (i64, i64) = (r.get(0), r.get(1));
        if ready == all && all as usize >= tables {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(GlobalCopyError::Timeout {
                island,
                what: format!("the initial copy ({ready} of {all} tables ready)"),
                secs: COPY_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the copy confirmed everything the source had written when called: the
/// slot's confirmed position passes the source's WAL position (feedback advances it even
/// when nothing of the copied tables changed).
pub(super) async fn caught_up(
    src: &Db,
    island: IslandId,
    name: &str,
) -> Result<(), GlobalCopyError> {
    let target: String = src
        .one("select pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let done: Option<bool> = src
            .one(
                "select (select confirmed_flush_lsn >= $2::text::pg_lsn
                         from pg_replication_slots where slot_name = $1)",
                &[&name, &target],
            )
            .await?
            .get(0);
        if done == Some(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(GlobalCopyError::Timeout {
                island,
                what: "catching up with shard 0's master".into(),
                secs: CATCH_UP_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Row counts of every table on both sides once caught up, tried again while writes on
/// the source make them differ.
async fn compare(
    src: &Db,
    dst: &Db,
    island: IslandId,
    name: &str,
    tables: &[String],
) -> Result<Vec<(String, i64)>, GlobalCopyError> {
    let mut attempt = 0;
    loop {
        caught_up(src, island, name).await?;
        let mut rows = Vec::new();
        let mut differs = None;
        for t in tables {
            let sql = format!("select count(*) from {}.{}", ident(SCHEMA), ident(t));
            let a: i64 = src.one(&sql, &[]).await?.get(0);
            let b: i64 = dst.one(&sql, &[]).await?.get(0);
            if a != b && differs.is_none() {
                differs = Some((t.clone(), a, b));
            }
            rows.push((t.clone(), a));
        }
        match differs {
            None => return Ok(rows),
            Some((table, source_rows, copy)) if attempt + 1 >= COMPARE_ATTEMPTS => {
                return Err(GlobalCopyError::Differs {
                    island,
                    table,
                    source_rows,
                    copy,
                })
            }
            Some(_) => attempt += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
