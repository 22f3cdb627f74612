//! The write-blocking window, activation and the removal of the replication objects.
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
//! T commits before the destination's activation, so a crash in between leaves the shard
//! inactive on both (resume activates it) rather than active on both.

use crate::db::{ident, literal, Db};
use crate::engine::{drop_slot, sub_oid, tick, wait_tick, Mover};
use crate::error::MoveError;
use crate::security::fingerprint;
use crate::verify::{digest_sql, digests};
use crate::MoveEvent;
use atoll_core::move_plan::{backup_schema, compare_digests, MoveStep};
use atoll_pg::catalog::moves::{self, MoveRole};
use atoll_pg::catalog::registry;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_postgres::Statement;

impl Mover<'_> {
    pub(crate) async fn cutover(&mut self) -> Result<(), MoveError> {
        let shard = self.shard();
        let schema = shard.schema();
        let ddl = self.ddl().await?.clone();
        let tables: Vec<String> = ddl.tables.iter().map(|t| t.qualified(&schema)).collect();
        let digest_sql = digest_sql(&schema, &ddl.tables, self.rec.verify);
        let seq_sql = sequences_sql(&schema, &ddl.sequences);
        // Everything the pause needs is connected and prepared before it starts.
        let ticker = self.src.reconnect(self.config).await?;
        let lock_sql = format!(
            "set local lock_timeout = '{}ms'; lock table {} in exclusive mode",
            self.opts.lock_timeout.as_millis(),
            tables.join(", ")
        );
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Two moves of one shard within a second would collide on the name: take the next
        // free second.
        let mut secs = secs;
        while self
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
        let opts = self.opts;

        // Owners, privileges, policies and comments: compared once before the pause (a
        // difference fails the move without pausing writes) and again inside it, through
        // statements prepared and planned here.
        let fingerprints = self.security_statements(&schema).await?;
        if !opts.verify_in_pause {
            self.pre_verify(&lock_sql, &ticker, &digest_sql, &ddl.tables)
                .await?;
        }
        let weight = self.source_weight().await?;
        let (pause_start, lock_ms, applied) = self.freeze(&lock_sql, &tables, &ticker).await?;
        let inside = self
            .in_pause(
                pause_start,
                &fingerprints,
                &digest_sql,
                seq_sql.as_deref(),
                &ddl.tables,
                &backup,
            )
            .await;
        let switched = match inside {
            Ok(t) => t,
            Err(e) => {
                // Nothing of T is kept: the source stays active and unchanged.
                let _ = self.src.exec("rollback").await;
                return Err(e);
            }
        };
        self.rec.step = MoveStep::Switched;
        self.rec.backup_schema = Some(backup);
        self.emit(MoveEvent::Step(MoveStep::Switched));
        self.hook(MoveStep::Switched)?;

        self.activate(weight).await?;
        let pause = pause_start.elapsed();
        self.report.pause_ms = ms(pause);
        self.report.lock_ms = ms(lock_ms);
        self.report.apply_wait_ms = ms(applied - lock_ms);
        self.report.verify_and_switch_ms = ms(switched - applied);
        self.reached(MoveStep::Activated).await
    }

    /// The fingerprint statements for [`Self::compare_security`] (source, destination),
    /// prepared and run once, which also compares the two before the pause.
    async fn security_statements(&self, schema: &str) -> Result<(Statement, Statement), MoveError> {
        let (s, d) = futures::join!(
            fingerprint::prepare(&self.src, schema),
            fingerprint::prepare(&self.dst, schema)
        );
        let statements = (s?, d?);
        self.compare_security(&statements).await?;
        Ok(statements)
    }

    /// Fails the move when the destination's owners, privileges, policies or comments
    /// differ from the source's (one changed on the source since the replay after the copy
    /// would otherwise be lost; a lost REVOKE grants more on the destination).
    async fn compare_security(&self, statements: &(Statement, Statement)) -> Result<(), MoveError> {
        let (s, d) = futures::join!(
            fingerprint::run(&self.src, &statements.0),
            fingerprint::run(&self.dst, &statements.1)
        );
        match fingerprint::differences(&s?, &d?) {
            None => Ok(()),
            Some(detail) => Err(MoveError::SecurityDiffers {
                shard: self.shard(),
                detail,
            }),
        }
    }

    /// Locks the source tables and waits until the destination has applied everything
    /// committed before. An attempt whose wait exceeds `pause_budget` is given up (writes
    /// resume), replication catches up again and the lock is retried; the last attempt
    /// waits up to `pause_timeout`. Returns the lock request time, how long locking took,
    /// and when (since the request) the destination had applied everything.
    pub(crate) async fn freeze(
        &mut self,
        lock_sql: &str,
        tables: &[String],
        ticker: &Db,
    ) -> Result<(Instant, Duration, Duration), MoveError> {
        const ATTEMPTS: u32 = 10;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = self.lock_source(lock_sql, tables).await?;
            let lock_ms = started.elapsed();
            let limit = if attempt < ATTEMPTS {
                self.opts.pause_budget
            } else {
                self.opts.pause_timeout
            };
            let k = match tick(ticker, self.rec.id).await {
                Ok(k) => k,
                Err(e) => {
                    let _ = self.src.exec("rollback").await;
                    return Err(e);
                }
            };
            match wait_tick(&self.dst, &self.rec, k, self.opts.poll, limit).await {
                Ok(()) => return Ok((started, lock_ms, started.elapsed())),
                Err(MoveError::Timeout { .. }) if attempt < ATTEMPTS => {
                    self.src.exec("rollback").await?;
                    self.emit(MoveEvent::Note(format!(
                        "the destination needed more than {:?} to apply; unlocked, catching up",
                        limit
                    )));
                    self.catch_up().await?;
                }
                Err(e) => {
                    let _ = self.src.exec("rollback").await;
                    return Err(e);
                }
            }
        }
    }

    /// The work inside T, after [`Self::freeze`]; commits T. Returns when (since the lock
    /// request) T committed.
    async fn in_pause(
        &mut self,
        pause_start: Instant,
        fingerprints: &(Statement, Statement),
        digest_sql: &str,
        seq_sql: Option<&str>,
        tables: &[crate::ddl::TableInfo],
        backup: &str,
    ) -> Result<Duration, MoveError> {
        let shard = self.shard();
        let schema = shard.schema();
        let id = self.rec.id;
        let opts = self.opts;
        self.emit(MoveEvent::Step(MoveStep::Paused));
        self.hook(MoveStep::Paused)?;

        // Synced: sequence positions.
        if let Some(sql) = seq_sql {
            let mut set = String::new();
            for r in self.src.query(sql, &[]).await? {
                let (name, value, _called): (String, i64, bool) = (r.get(0), r.get(1), r.get(2));
                // nextval is not blocked by the table lock, so an id_gen() call between
                // this read and T's commit would hand the same value out again on the
                // destination. A margin of 10^6 skips past any such call; the ID space
                // is 10^13 per shard (atoll_core::Id::SEQUENCE_MAX), so a move costs a
                // 10^-7 of it. The sequence's own maxvalue is respected.
                let seq = literal(&format!("{}.{}", ident(&schema), ident(&name)));
                set.push_str(&format!(
                    "select pg_catalog.setval({seq}, least({value}::numeric + {SEQUENCE_MARGIN},
                        (select seqmax from pg_catalog.pg_sequence where seqrelid = {seq}::regclass))::int8, true);"
                ));
            }
            self.dst.exec(&set).await?;
        }
        self.emit(MoveEvent::Step(MoveStep::Synced));
        self.hook(MoveStep::Synced)?;

        // Verified: both sides are frozen now (source locked, destination inactive).
        // Owners, privileges, policies and comments first: one changed on the source
        // since the replay after the copy would otherwise be lost (a lost REVOKE grants
        // more on the destination).
        self.compare_security(fingerprints).await?;
        if opts.verify_in_pause {
            let (src_row, dst_row) =
                futures::join!(self.src.one(digest_sql, &[]), self.dst.one(digest_sql, &[]));
            let src_d = digests(tables, &src_row?, self.rec.verify);
            let dst_d = digests(tables, &dst_row?, self.rec.verify);
            let mismatches = compare_digests(&src_d, &dst_d);
            if !mismatches.is_empty() {
                return Err(MoveError::VerifyFailed { shard, mismatches });
            }
            self.report.tables = src_d;
        } else {
            // The copies were compared at a frozen point before; since then only
            // replicated transactions changed the destination, each applied whole or the
            // tick above would not have arrived. Applying must not have failed meanwhile.
            crate::verify::require_no_apply_errors(&self.dst, &self.rec, self.error_baseline)
                .await?;
        }
        self.emit(MoveEvent::Step(MoveStep::Verified));
        self.hook(MoveStep::Verified)?;

        // Switched, committed on the source together with the step.
        self.src
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
        let n = moves::record_switch(&self.src.client, &self.src.node, id, backup).await?;
        if n != 1 {
            let _ = self.src.exec("rollback").await;
            return Err(MoveError::Other {
                shard,
                msg: format!("the switch updated {n} source rows of move {id} instead of 1; rolled back, the source stays active"),
            });
        }
        self.src.exec("commit").await?;
        Ok(pause_start.elapsed())
    }

    /// The shard's rebalancing weight on the source (it travels with the shard). Read
    /// before the switch, so activation needs nothing from the source.
    pub(crate) async fn source_weight(&self) -> Result<Option<f64>, MoveError> {
        Ok(registry::weight(&self.src.client, &self.src.node, self.shard()).await?)
    }

    /// Marks the shard active on the destination. After the switch the shard is inactive
    /// on both islands until this commits, so a failure (a dropped connection, a restart
    /// of the destination) is retried on fresh connections with backoff for
    /// [`ACTIVATE_PATIENCE`] before the error, which says the shard is offline.
    pub(crate) async fn activate(&mut self, weight: Option<f64>) -> Result<(), MoveError> {
        let shard = self.shard();
        let deadline = Instant::now() + ACTIVATE_PATIENCE;
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.activate_once(weight).await {
                Ok(()) => return Ok(()),
                Err(e @ (MoveError::Query { .. } | MoveError::Pg(_))) => {
                    if Instant::now() + backoff > deadline {
                        return Err(MoveError::Other {
                            shard,
                            msg: format!(
                                "OFFLINE: switched off on island {} but activating on island {} failed for {} s ({e}); run `atoll move --resume --shard {}` now",
                                self.rec.source,
                                self.rec.destination,
                                ACTIVATE_PATIENCE.as_secs(),
                                shard.get()
                            ),
                        });
                    }
                    tracing::warn!(%shard, error = %e, "activation failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    if let Ok(db) = self.dst.reconnect(self.config).await {
                        self.dst = db;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: the registry row and the destination's move row in one transaction
    /// (idempotent, so retrying after a commit whose answer was lost is harmless).
    async fn activate_once(&mut self, weight: Option<f64>) -> Result<(), MoveError> {
        let shard = self.shard();
        let id = self.rec.id;
        let node = self.dst.node.clone();
        let (tx, ctx) = self.dst.tx().await?;
        registry::activate_arrived(&tx, &node, shard, weight).await?;
        let n = moves::set_step(&tx, &node, id, MoveRole::Destination, MoveStep::Activated).await?;
        if n != 1 {
            // Dropping the transaction rolls the activation back.
            return Err(MoveError::Other {
                shard: self.rec.shard,
                msg: format!(
                    "activation found {n} destination rows of move {id} instead of 1; rolled back"
                ),
            });
        }
        tx.commit().await.map_err(|e| ctx.err(e))
    }

    /// Drops the subscription, its slots and the publication; the tick rows go too.
    pub(crate) async fn drop_replication(&mut self) -> Result<(), MoveError> {
        drop_replication(&self.src, &self.dst, self.rec.id, &self.rec.names()).await
    }
}

/// Disables the subscription and detaches it from its slot (so dropping it does not need
/// the source), drops it, then drops the slots on the source (the move's own and any
/// table-sync slots an interrupted copy left) and the publication. Idempotent.
pub(crate) async fn drop_replication(
    src: &Db,
    dst: &Db,
    id: i64,
    names: &atoll_core::move_plan::MoveNames,
) -> Result<(), MoveError> {
    let sub = ident(&names.subscription);
    let oid = sub_oid(dst, &names.subscription).await?;
    if oid.is_some() {
        dst.exec(&format!(
            "alter subscription {sub} disable; alter subscription {sub} set (slot_name = none); drop subscription {sub};"
        ))
        .await?;
    }
    // The subscription may be gone already (dropped before a crash): its oid was recorded.
    let recorded = moves::recorded_subscription(&src.client, &src.node, id).await?;
    let oid = oid.map(i64::from).or(recorded);
    if let Some(oid) = oid {
        let sysid = crate::engine::system_id(dst).await?;
        drop_sync_slots(src, &crate::engine::sync_slot_pattern(oid, sysid)).await?;
    }
    drop_slot(src, &names.slot, Duration::from_secs(30)).await?;
    src.exec(&format!(
        "drop publication if exists {}",
        ident(&names.publication)
    ))
    .await?;
    moves::delete_tick(&src.client, &src.node, id).await?;
    moves::delete_tick(&dst.client, &dst.node, id).await?;
    Ok(())
}

/// How long table-sync walsenders of a dropped subscription may take to go away.
const SYNC_SENDER_PATIENCE: Duration = Duration::from_secs(30);

/// Drops the table-sync slots named like `pattern` (the application name of their
/// walsenders too) until none is left and no such walsender is connected: one that was
/// still creating its slot when the subscription was dropped adds the slot after a first
/// listing. Walsenders still there after the patience (orphans: the subscription is gone)
/// are terminated.
async fn drop_sync_slots(src: &Db, pattern: &str) -> Result<(), MoveError> {
    let started = Instant::now();
    loop {
        let slots = src
            .query(
                "select slot_name::text from pg_replication_slots where slot_name like $1",
                &[&pattern],
            )
            .await?;
        for r in &slots {
            drop_slot(src, &r.get::<_, String>(0), Duration::from_secs(30)).await?;
        }
        let senders: i64 = src
            .one(
                "select count(*) from pg_stat_activity
                 where application_name like $1 and pid <> pg_backend_pid()",
                &[&pattern],
            )
            .await?
            .get(0);
        if slots.is_empty() && senders == 0 {
            return Ok(());
        }
        if senders > 0 && started.elapsed() > SYNC_SENDER_PATIENCE {
            if started.elapsed() > 2 * SYNC_SENDER_PATIENCE {
                return Err(MoveError::Query {
                    node: src.node.to_string(),
                    msg: format!(
                        "{senders} table-sync walsender(s) {pattern} still connected after {:?}",
                        2 * SYNC_SENDER_PATIENCE
                    ),
                    code: None,
                });
            }
            src.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity
                 where application_name like $1 and pid <> pg_backend_pid()",
                &[&pattern],
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long activation is retried after the switch before giving up.
const ACTIVATE_PATIENCE: Duration = Duration::from_secs(30);

/// How far a sequence is advanced past its source position on the destination.
const SEQUENCE_MARGIN: i64 = 1_000_000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sequences_sql(schema: &str, seqs: &[String]) -> Option<String> {
    if seqs.is_empty() {
        return None;
    }
    Some(
        seqs.iter()
            .map(|s| {
                format!(
                    "select {}::text, last_value, is_called from {}.{}",
                    literal(s),
                    ident(schema),
                    ident(s)
                )
            })
            .collect::<Vec<_>>()
            .join(" union all "),
    )
}
