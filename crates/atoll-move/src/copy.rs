//! The initial copy's end and what follows it on the destination: waiting for every table
//! to be synchronised, then, with the subscription's workers stopped, in one transaction,
//! the post-copy DDL and the owners, privileges, comments and row-level security read
//! again from the source at that moment (see [`crate::security`]), checked against the
//! source's before the commit.

use crate::context::MoveContext;
use crate::error::MoveError;
use crate::store::{self, MoveRole};
use crate::MoveEvent;
use atoll_core::move_plan::MoveStep;
use atoll_pg::catalog::moves;
use std::time::{Duration, Instant};

/// One look at the copy on the destination.
struct CopyState {
    /// Tables of the subscription, and how many are ready.
    tables: i64,
    ready: i64,
    /// Each table's state letter, in table order.
    states: Option<String>,
    /// Bytes of the shard's tables on the destination.
    copied: i64,
    /// The subscription's cumulative worker errors.
    errors: i64,
    /// Whether the subscription exists.
    exists: bool,
}

async fn copy_state(cx: &MoveContext<'_>) -> Result<CopyState, MoveError> {
    let names = cx.rec.names();
    let schema = cx.rec.shard.schema();
    let r = cx
        .dst
        .one(
            "select count(*), count(*) filter (where r.srsubstate = 'r'),
                string_agg(r.srsubstate::text, '' order by r.srrelid),
                (select coalesce(sum(pg_table_size(c.oid)), 0)::int8 from pg_class c
                 join pg_namespace n on n.oid = c.relnamespace
                 where n.nspname = $2 and c.relkind = 'r'),
                (select coalesce(sum(st.sync_error_count + st.apply_error_count), 0)::int8
                 from pg_stat_subscription_stats st where st.subname = $1),
                (select count(*) from pg_subscription s join pg_database d on d.oid = s.subdbid
                 where s.subname = $1 and d.datname = current_database())
             from pg_subscription_rel r join pg_subscription s on s.oid = r.srsubid
             where s.subname = $1",
            &[&names.subscription, &schema],
        )
        .await?;
    Ok(CopyState {
        tables: r.get(0),
        ready: r.get(1),
        states: r.get(2),
        copied: r.get(3),
        errors: r.get(4),
        exists: r.get::<_, i64>(5) > 0,
    })
}

pub(crate) async fn wait_copy(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    let schema = cx.rec.shard.schema();
    let want = cx.ddl().await?.tables.len() as i64 + 1;
    let total: i64 = cx
        .src
        .one(
            "select coalesce(sum(pg_table_size(c.oid)), 0)::int8 from pg_class c
             join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relkind = 'r'",
            &[&schema],
        )
        .await?
        .get(0);
    cx.report.copy_bytes = total as u64;
    // A run that died while post-copy DDL ran left the subscription disabled.
    crate::replication::ensure_enabled(&cx.dst, &cx.rec).await?;
    let deadline = Instant::now() + cx.opts.copy_timeout;
    let mut last: Option<CopyState> = None;
    loop {
        let now = copy_state(cx).await?;
        if !now.exists {
            return Err(MoveError::Other {
                shard: cx.shard(),
                msg: format!(
                    "subscription {} is missing on island {} although the move recorded it; run --abort",
                    cx.rec.names().subscription, cx.dst.island
                ),
            });
        }
        // Table states (i init, d copying, f copied, s synced, r ready), as they change.
        if last.as_ref().map(|l| &l.states) != Some(&now.states) {
            cx.emit(MoveEvent::Note(format!(
                "table states {}",
                now.states.as_deref().unwrap_or("-")
            )));
            // A table moved on: the workers got past the errors counted before.
            if let Some(l) = &last {
                cx.apply_errors.progressed(l.errors);
            }
        }
        cx.emit(MoveEvent::Copy {
            done: now.copied.max(0) as u64,
            total: total as u64,
        });
        let health = cx.apply_errors.observe(now.errors, Instant::now());
        crate::replication::require_healthy(&cx.dst, &cx.rec, health)?;
        if now.tables >= want && now.ready == now.tables {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(MoveError::Timeout {
                shard: cx.shard(),
                what: "waiting for the initial copy".into(),
                secs: cx.opts.copy_timeout.as_secs(),
            });
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The post-copy DDL and security replay ([`build`]) with the subscription's workers
/// stopped: the DDL locks tables the apply worker writes (a foreign key both of its
/// tables), in an order of its own, and the two would deadlock. The subscription is
/// enabled again whatever happened (after a crash, by the next run's [`wait_copy`]).
pub(crate) async fn post_copy(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    if store::step_of(&cx.dst, cx.rec.id, MoveRole::Destination).await? >= Some(MoveStep::CaughtUp)
    {
        return Ok(());
    }
    let built = match crate::replication::stop_workers(&cx.dst, &cx.rec).await {
        Ok(()) => build(cx).await,
        Err(e) => Err(e),
    };
    let enabled = crate::replication::ensure_enabled(&cx.dst, &cx.rec).await;
    built.and(enabled)
}

/// In one destination transaction: the post-copy DDL, the security statements read from
/// the source now, checked against the source's, and the destination's step `caught_up`.
async fn build(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    let shard = cx.rec.shard;
    let mut stmts = cx.ddl().await?.post_copy.clone();
    // Owners, grants, policies and comments as they are now, not as at the start: a
    // change made on the source during the copy must not be lost. The roles are
    // checked again (also on a resume, which skipped the start's checks).
    let security = crate::ddl::read_security(&cx.src, shard).await?;
    if let Some(u) = security.unusable.first() {
        return Err(MoveError::Unsafe {
            shard,
            check: "unsupported_object",
            detail: format!("{u}; fix it on the source, then --resume or --abort"),
        });
    }
    let roles: Vec<String> = security.roles.iter().cloned().collect();
    crate::safety::check_roles(shard, &cx.dst, &roles).await?;
    stmts.extend(security.statements);
    let source_fp = crate::security::fingerprint::of(&cx.src, &shard.schema()).await?;
    let (id, island, node) = (cx.rec.id, cx.dst.island, cx.dst.node.clone());
    let (tx, ctx) = cx.dst.tx().await?;
    for s in &stmts {
        tx.batch_execute(s).await.map_err(|e| ctx.err(e))?;
    }
    // A grant PostgreSQL could only partly make is a warning, not an error: compare.
    let dest_fp = crate::security::fingerprint::read(&tx, &shard.schema())
        .await
        .map_err(|e| ctx.err(e))?;
    if let Some(d) = crate::security::fingerprint::differences(&source_fp, &dest_fp) {
        return Err(MoveError::SecurityDiffers {
            shard,
            detail: format!(
                "after the replay on island {island} (changed on the source meanwhile?): {d}"
            ),
        });
    }
    moves::set_step(&tx, &node, id, MoveRole::Destination, MoveStep::CaughtUp).await?;
    tx.commit().await.map_err(|e| ctx.err(e))
}
