//! Steps `paused` .. `switched`: the write-blocking window and the switch.
//!
//! One source transaction T: `LOCK TABLE ... IN EXCLUSIVE MODE` on the shard's tables
//! (readers go on, writers wait), a tick through the subscription and a poll of the
//! destination every `poll` until it is applied (then everything committed before the lock
//! is there), sequence positions copied, owners/privileges/policies/comments and digests
//! compared, then in T: the shard marked inactive, its schema renamed to the backup name
//! and the move recorded as `switched`;
//! T commits. Writers that were waiting on the lock then fail with "relation does not
//! exist" (their statement re-resolves the renamed name), so none writes into the backup;
//! clients retry and find the shard active on the destination, which commits right after.
//!
//! T commits before the destination's activation (`activate.rs`), so a crash in between
//! leaves the shard inactive on both (resume activates it) rather than active on both.

use crate::context::MoveContext;
use crate::db::ident;
use crate::error::MoveError;
use crate::security::fingerprint;
use crate::verify::{digest_sql, digests};
use crate::MoveEvent;
use atoll_core::move_plan::{backup_schema, compare_digests, MoveStep};
use atoll_pg::catalog::moves;
use atoll_pg::catalog::registry;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::Statement;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) async fn cutover(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    let shard = cx.shard();
    let schema = shard.schema();
    let ddl = cx.ddl().await?.clone();
    let tables: Vec<String> = ddl.tables.iter().map(|t| t.qualified(&schema)).collect();
    let digest_sql = digest_sql(&schema, &ddl.tables, cx.rec.verify);
    let seq_sql = crate::sequences::read_sql(&schema, &ddl.sequences);
    // Everything the pause needs is connected and prepared before it starts.
    let ticker = cx.src.reconnect(cx.config).await?;
    // Creation order at first; attempts that time out move the table they waited for to
    // the front (see `pause.rs`), and later pauses of this run start from what was learned.
    if cx.lock_order.len() != tables.len() {
        cx.lock_order = tables.clone();
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Two moves of one shard within a second would collide on the name: take the next
    // free second.
    let mut secs = secs;
    while cx
        .src
        .one(
            "select exists (select 1 from pg_namespace where nspname = $1)",
            &[&backup_schema(shard, secs)],
        )
        .await?
        .get::<_, bool>(0)
    {
        secs += 1;
    }
    let backup = backup_schema(shard, secs);
    let opts = cx.opts;

    // Owners, privileges, policies and comments: compared once before the pause (a
    // difference fails the move without pausing writes) and again inside it, through
    // statements prepared and planned here.
    let fingerprints = security_statements(cx, &schema).await?;
    if !opts.verify_in_pause {
        crate::verify::pre_verify(cx, &ticker, &digest_sql, &ddl.tables).await?;
    }
    let weight = crate::activate::source_weight(cx).await?;
    let (pause_start, lock_ms, applied) = crate::pause::freeze(cx, &ticker).await?;
    // Bounded client-side too: a destination that stops answering inside the pause must
    // not keep the source's tables locked (the source's own timeouts are the same bound).
    let bound = cx.opts.pause_bound;
    let left = bound.saturating_sub(pause_start.elapsed());
    let (dst_island, shard) = (cx.dst.island, cx.shard());
    let inside = tokio::time::timeout(
        left,
        in_pause(
            cx,
            &fingerprints,
            &digest_sql,
            seq_sql.as_deref(),
            &ddl.tables,
            &backup,
        ),
    )
    .await
    .unwrap_or_else(|_| {
        Err(MoveError::Timeout {
            shard,
            what: format!(
                "the write pause (island {dst_island} did not answer in time); it was rolled back, the shard stays active on the source and the move at caught_up: resume it once island {dst_island} answers"
            ),
            secs: bound.as_secs(),
        })
    });
    if let Err(e) = inside {
        // Nothing of T is kept: the source stays active and unchanged.
        let _ = cx.src.exec("rollback").await;
        return Err(e);
    }
    cx.src.exec("commit").await?;
    let switched = pause_start.elapsed();
    cx.rec.step = MoveStep::Switched;
    cx.rec.backup_schema = Some(backup);
    cx.emit(MoveEvent::Step(MoveStep::Switched));
    cx.hook(MoveStep::Switched)?;

    crate::activate::activate(cx, weight).await?;
    let pause = pause_start.elapsed();
    cx.report.pause_ms = ms(pause);
    cx.report.lock_ms = ms(lock_ms);
    cx.report.apply_wait_ms = ms(applied - lock_ms);
    cx.report.verify_and_switch_ms = ms(switched - applied);
    cx.reached(MoveStep::Activated).await
}

/// The fingerprint statements for [`compare_security`] (source, destination),
/// prepared and run once, which also compares the two before the pause.
pub(crate) async fn security_statements(
    cx: &MoveContext<'_>,
    schema: &str,
) -> Result<(Statement, Statement), MoveError> {
    let (s, d) = futures::join!(
        fingerprint::prepare(&cx.src, schema),
        fingerprint::prepare(&cx.dst, schema)
    );
    let statements = (s?, d?);
    compare_security(cx, &statements).await?;
    Ok(statements)
}

/// Fails the move when the destination's owners, privileges, policies or comments
/// differ from the source's (one changed on the source since the replay after the copy
/// would otherwise be lost; a lost REVOKE grants more on the destination).
pub(crate) async fn compare_security(
    cx: &MoveContext<'_>,
    statements: &(Statement, Statement),
) -> Result<(), MoveError> {
    let (s, d) = futures::join!(
        fingerprint::run(&cx.src, &statements.0),
        fingerprint::run(&cx.dst, &statements.1)
    );
    match fingerprint::differences(&s?, &d?) {
        None => Ok(()),
        Some(detail) => Err(MoveError::SecurityDiffers {
            shard: cx.shard(),
            detail,
        }),
    }
}

/// The work inside T, after [`freeze`], up to its commit (which the caller sends).
// Kept whole: every statement here runs while writers wait, in this order, and the order
// is the safety argument (sequences, then the comparisons, then the switch).
pub(crate) async fn in_pause(
    cx: &mut MoveContext<'_>,
    fingerprints: &(Statement, Statement),
    digest_sql: &str,
    seq_sql: Option<&str>,
    tables: &[crate::ddl::TableInfo],
    backup: &str,
) -> Result<(), MoveError> {
    let shard = cx.shard();
    let schema = shard.schema();
    let id = cx.rec.id;
    let opts = cx.opts;
    cx.emit(MoveEvent::Step(MoveStep::Paused));
    cx.hook(MoveStep::Paused)?;

    // Synced: sequence positions, past what the source handed out (see sequences.rs).
    if let Some(sql) = seq_sql {
        let rows = cx.src.query(sql, &[]).await?;
        cx.dst
            .exec(&crate::sequences::set_sql(&schema, &rows))
            .await?;
    }
    cx.emit(MoveEvent::Step(MoveStep::Synced));
    cx.hook(MoveStep::Synced)?;

    // Verified: both sides are frozen now (source locked, destination inactive).
    // Owners, privileges, policies and comments first: one changed on the source
    // since the replay after the copy would otherwise be lost (a lost REVOKE grants
    // more on the destination).
    compare_security(cx, fingerprints).await?;
    if opts.verify_in_pause {
        let (src_row, dst_row) =
            futures::join!(cx.src.one(digest_sql, &[]), cx.dst.one(digest_sql, &[]));
        let src_d = digests(tables, &src_row?, cx.rec.verify);
        let dst_d = digests(tables, &dst_row?, cx.rec.verify);
        let mismatches = compare_digests(&src_d, &dst_d);
        if !mismatches.is_empty() {
            return Err(MoveError::VerifyFailed { shard, mismatches });
        }
        cx.report.tables = src_d;
    } else {
        // The copies were compared at a frozen point before; since then only
        // replicated transactions changed the destination, each applied whole or the
        // tick above would not have arrived (a worker that failed retried the same
        // transaction, it skipped none). One that keeps failing still ends the move.
        crate::replication::check_apply_errors(&cx.dst, &cx.rec, &mut cx.apply_errors).await?;
    }
    cx.emit(MoveEvent::Step(MoveStep::Verified));
    cx.hook(MoveStep::Verified)?;

    // Switched, committed on the source together with the step.
    cx.src
        .exec(&format!(
            "{}
             alter schema {} rename to {};",
            registry::deactivate_sql(shard),
            ident(&schema),
            ident(backup),
        ))
        .await?;
    // Exactly this move's source row, or another process changed the move under us:
    // then nothing of T may commit.
    let n = moves::record_switch(&cx.src.client, &cx.src.node, id, backup).await?;
    if n != 1 {
        let _ = cx.src.exec("rollback").await;
        return Err(MoveError::Other {
            shard,
            msg: format!("the switch updated {n} source rows of move {id} instead of 1; rolled back, the source stays active"),
        });
    }
    Ok(())
}
