//! Steps `paused` .. `switched`: the write-blocking window and the switch.
//!
//! One source transaction T: `LOCK TABLE ... IN EXCLUSIVE MODE` on the shard's tables
//! (readers go on, writers wait), a tick through the subscription and a poll of the
//! destination every `poll` until it is applied (then everything committed before the lock
//! is there), sequence positions copied, the schema signatures, owners/privileges/
//! policies/comments and digests compared, then in T: the shard marked inactive, its
//! schema renamed to the backup name and the move recorded as `switched`;
//! T commits. Writers that were waiting on the lock then fail with "relation does not
//! exist" (their statement re-resolves the renamed name), so none writes into the backup;
//! clients retry and find the shard active on the destination, which commits right after.
//!
//! T commits before the destination's activation (`activate.rs`), so a crash in between
//! leaves the shard inactive on both (resume activates it) rather than active on both.
//! A COMMIT of T whose answer is lost is settled by asking the source on a fresh
//! connection, once T's session is gone ([`commit_switch`]).

use crate::context::MoveContext;
use crate::db::ident;
use crate::error::MoveError;
use crate::security::fingerprint;
use crate::verify::{digest_sql, digests};
use crate::MoveEvent;
use atoll_core::move_plan::{backup_schema, compare_digests, MoveStep};
use atoll_pg::catalog::moves;
use atoll_pg::catalog::registry;
use atoll_pg::schema_signature;
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
    let session = Session::of(&cx.src).await?;

    // The schema signatures (DDL run on either side since the copy), then owners,
    // privileges, policies and comments: compared once before the pause (a difference
    // fails the move without pausing writes) and again inside it, through statements
    // prepared and planned here.
    let checks = PauseChecks {
        schema: signature_statements(cx, &schema).await?,
        security: security_statements(cx, &schema).await?,
    };
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
            &checks,
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
    commit_switch(cx, &backup, &session).await?;
    let switched = pause_start.elapsed();
    cx.rec.step = MoveStep::Switched;
    cx.rec.backup_schema = Some(backup);
    cx.emit(MoveEvent::Step(MoveStep::Switched));
    cx.hook(MoveStep::Switched)?;
    // Shard 0's copies read the destination from here on (nothing for other shards).
    crate::global_copy::handoff::mark_switch(cx).await?;
    crate::activate::activate(cx, weight).await?;
    let pause = pause_start.elapsed();
    cx.report.pause_ms = ms(pause);
    cx.report.lock_ms = ms(lock_ms);
    cx.report.apply_wait_ms = ms(applied - lock_ms);
    cx.report.verify_and_switch_ms = ms(switched - applied);
    cx.reached(MoveStep::Activated).await
}

/// How long the source is asked again whether a switch whose COMMIT got no answer
/// committed, before the move reports the shard's state unknown.
const COMMIT_PATIENCE: Duration = Duration::from_secs(30);

/// Commits T. A COMMIT whose answer is lost (the connection broke) may or may not have
/// committed: the source's move row, read on fresh connections, tells which. Committed:
/// the move goes on to activation. Rolled back: the source is unchanged and still active.
/// Unknown (the source does not answer): the shard may be inactive on both islands, and
/// the error says so and names the command that finds out and ends it.
async fn commit_switch(
    cx: &mut MoveContext<'_>,
    backup: &str,
    session: &Session,
) -> Result<(), MoveError> {
    let Err(lost) = cx.src.exec("commit").await else {
        return Ok(());
    };
    let (shard, id, island) = (cx.shard(), cx.rec.id, cx.src.island);
    tracing::warn!(%shard, error = %lost, "the switch's COMMIT got no answer; asking the source");
    let deadline = tokio::time::Instant::now() + COMMIT_PATIENCE;
    let mut backoff = Duration::from_millis(50);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let asked = tokio::time::timeout(left, ask_source(cx, session))
            .await
            .unwrap_or_else(|_| {
                Err(MoveError::Timeout {
                    shard,
                    what: format!("ending the switch's session on island {island}"),
                    secs: COMMIT_PATIENCE.as_secs(),
                })
            });
        match asked {
            Ok((db, rec)) if rec.step == MoveStep::Switched => {
                if rec.backup_schema.as_deref() != Some(backup) {
                    return Err(MoveError::Other {
                        shard,
                        msg: format!("move {id} was switched by another process (backup {:?}, not {backup}); resume it with `atoll move --resume --shard {}`", rec.backup_schema, shard.get()),
                    });
                }
                cx.src = db;
                return Ok(());
            }
            Ok(_) => {
                return Err(MoveError::Other {
                    shard,
                    msg: format!(
                        "the switch did not commit (the connection to island {island} broke: {lost}); the shard stays active on island {island} and the move at caught_up: resume it with `atoll move --resume --shard {}`",
                        shard.get()
                    ),
                })
            }
            Err(e) if tokio::time::Instant::now() + backoff > deadline => {
                return Err(MoveError::Offline {
                    shard,
                    detail: format!(
                        "the switch's COMMIT on island {island} got no answer ({lost}) and island {island} has not answered since ({e}), so the shard is either still active there or inactive on both islands; run `atoll move --resume --shard {}` as soon as island {island} answers: it finds out which and finishes the move",
                        shard.get()
                    ),
                })
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// A source session, told apart from a later one that reuses its pid.
pub(crate) struct Session {
    pid: i32,
    started: String,
}

impl Session {
    pub(crate) async fn of(db: &crate::db::Db) -> Result<Session, MoveError> {
        let r = db
            .one(
                "select pid, backend_start::text from pg_stat_activity where pid = pg_backend_pid()",
                &[],
            )
            .await?;
        Ok(Session {
            pid: r.get(0),
            started: r.get(1),
        })
    }
}

/// On a fresh connection: ends T's session if the server still runs it (a COMMIT under
/// way finishes first; anything else rolls back), waits until it is gone, then reads the
/// move's row, which is then final.
async fn ask_source(
    cx: &MoveContext<'_>,
    session: &Session,
) -> Result<(crate::db::Db, atoll_core::move_plan::MoveRecord), MoveError> {
    let db = cx.src.reconnect(cx.config).await?;
    let gone_sql = "select not exists (select 1 from pg_stat_activity
                                        where pid = $1 and backend_start::text = $2)";
    let p: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&session.pid, &session.started];
    db.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity
          where pid = $1 and backend_start::text = $2",
        &p,
    )
    .await?;
    while !db.one(gone_sql, &p).await?.get::<_, bool>(0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rec = crate::store::load(&db, cx.rec.id).await?;
    Ok((db, rec))
}

/// The statements compared before the pause and again inside it, each as (source,
/// destination).
pub(crate) struct PauseChecks {
    /// The schema signatures ([`compare_schema`]).
    pub schema: (Statement, Statement),
    /// The security fingerprints ([`compare_security`]).
    pub security: (Statement, Statement),
}

/// The signature statements for [`compare_schema`] (source, destination), prepared and
/// run once, which also compares the two before the pause.
pub(crate) async fn signature_statements(
    cx: &MoveContext<'_>,
    schema: &str,
) -> Result<(Statement, Statement), MoveError> {
    let (s, d) = futures::join!(
        schema_signature::prepare(&cx.src.client, &cx.src.node, schema),
        schema_signature::prepare(&cx.dst.client, &cx.dst.node, schema)
    );
    let statements = (s?, d?);
    compare_schema(cx, &statements).await?;
    Ok(statements)
}

/// Fails the move when the destination's schema signature differs from the source's: a
/// CHECK or foreign key added, a column dropped or retyped, a default, a trigger or a
/// function changed on the source after the schema was read would otherwise be lost.
/// Both sides were built from the same definition, so a fresh copy compares equal.
pub(crate) async fn compare_schema(
    cx: &MoveContext<'_>,
    statements: &(Statement, Statement),
) -> Result<(), MoveError> {
    let (s, d) = futures::join!(
        schema_signature::run(&cx.src.client, &cx.src.node, &statements.0),
        schema_signature::run(&cx.dst.client, &cx.dst.node, &statements.1)
    );
    match schema_signature::differences(&s?, &d?) {
        None => Ok(()),
        Some(detail) => Err(MoveError::SchemaChanged {
            shard: cx.shard(),
            detail,
        }),
    }
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
    checks: &PauseChecks,
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
    // The schemas and the owners, privileges, policies and comments first (pipelined on
    // each side's connection): DDL or a grant changed on the source since the copy would
    // otherwise be lost (a lost REVOKE grants more on the destination).
    let (same_schema, same_security) = futures::join!(
        compare_schema(cx, &checks.schema),
        compare_security(cx, &checks.security)
    );
    same_schema?;
    same_security?;
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
    let answer = cx
        .src
        .client
        .simple_query(&format!(
            "{}
             alter schema {} rename to {};",
            registry::deactivate_sql(shard),
            ident(&schema),
            ident(backup),
        ))
        .await
        .map_err(|e| cx.src.err(e))?;
    cx.switch_gen = registry::switched_gen(&answer);
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
