//! The forward steps of a move up to [`MoveStep::CaughtUp`]: schema on the destination,
//! publication and subscription, initial copy and post-copy DDL (in `copy.rs`), catch-up.
//! Each step is idempotent against what the previous, possibly crashed, attempt left, and
//! is recorded on the source (and, for destination work, on the destination's reference
//! row in the same transaction as the work).

use crate::db::{conninfo, ident, literal, Db};
use crate::ddl::SchemaDdl;
use crate::error::MoveError;
use crate::store::{self, MoveRole};
use crate::{MoveEvent, MoveOptions, MoveReport, Progress};
use atoll_core::move_plan::{MoveRecord, MoveStep, ResumeAction};
use atoll_core::{Config, ShardNo};
use atoll_pg::catalog::moves;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;

/// The longest CREATE SUBSCRIPTION may take (it runs under the capacity lock).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(240);

pub(crate) struct Mover<'a> {
    pub config: &'a Config,
    pub rec: MoveRecord,
    pub src: Db,
    pub dst: Db,
    pub opts: &'a MoveOptions,
    pub progress: Progress,
    pub ddl: Option<SchemaDdl>,
    pub report: MoveReport,
    /// The subscription's error count when this run started (see [`crate::verify::error_count`]).
    pub error_baseline: i64,
    /// Whether `src` and `dst` hold the capacity lock (taken by a new move for its
    /// safety check); released once the subscription exists.
    pub capacity_locked: bool,
}

impl Mover<'_> {
    pub fn shard(&self) -> ShardNo {
        self.rec.shard
    }

    pub fn emit(&self, e: MoveEvent) {
        (self.progress)(self.rec.shard, &e);
    }

    /// The test hook: stop as if killed right after `step` was reached.
    pub fn hook(&self, step: MoveStep) -> Result<(), MoveError> {
        if self.opts.stop_after == Some(step) {
            return Err(MoveError::Stopped {
                shard: self.rec.shard,
                step,
            });
        }
        Ok(())
    }

    /// Records `step` on the source and announces it.
    pub async fn reached(&mut self, step: MoveStep) -> Result<(), MoveError> {
        if self.opts.stop_before_record == Some(step) {
            return Err(MoveError::Stopped {
                shard: self.rec.shard,
                step,
            });
        }
        store::set_step(&self.src, self.rec.id, MoveRole::Source, step).await?;
        tracing::info!(shard = %self.rec.shard, move_id = self.rec.id, %step, "move step reached");
        self.rec.step = step;
        self.emit(MoveEvent::Step(step));
        self.hook(step)
    }

    /// Runs the move from its persisted step to the end.
    pub async fn run(&mut self) -> Result<(), MoveError> {
        let started = Instant::now();
        // CREATE SUBSCRIPTION starts the copy, so the copy's clock starts before it (on a
        // resume past that step, when waiting starts).
        let mut copy_clock: Option<Instant> = None;
        self.error_baseline = crate::verify::error_count(&self.dst, &self.rec).await?;
        loop {
            match self.rec.step.resume_action() {
                ResumeAction::CopySchema => {
                    self.copy_schema().await?;
                    self.reached(MoveStep::SchemaCopied).await?;
                }
                ResumeAction::Subscribe => {
                    self.reserve_capacity().await?;
                    copy_clock = Some(Instant::now());
                    self.subscribe().await?;
                    // The subscription (and its slot) now counts for parallel moves.
                    if self.capacity_locked {
                        crate::safety::unlock_capacity(&self.src, &self.dst).await;
                        self.capacity_locked = false;
                    }
                    self.reached(MoveStep::Subscribed).await?;
                }
                ResumeAction::WaitForCopy => {
                    let t = copy_clock.unwrap_or_else(Instant::now);
                    self.wait_copy().await?;
                    self.report.copy_ms = t.elapsed().as_millis() as u64;
                    self.post_copy().await?;
                    self.catch_up().await?;
                    self.reached(MoveStep::CaughtUp).await?;
                }
                ResumeAction::Cutover => self.cutover().await?,
                ResumeAction::Activate => {
                    let weight = self.source_weight().await?;
                    self.activate(weight).await?;
                    self.reached(MoveStep::Activated).await?;
                }
                ResumeAction::DropReplication => {
                    self.drop_replication().await?;
                    // The destination first: the source's row is what marks the move
                    // finished, so a crash in between leaves it unfinished and resumable.
                    store::set_step(
                        &self.dst,
                        self.rec.id,
                        MoveRole::Destination,
                        MoveStep::CleanedUp,
                    )
                    .await?;
                    self.hook(MoveStep::CleanedUp)?;
                    self.reached(MoveStep::CleanedUp).await?;
                }
                ResumeAction::Nothing => {
                    // A move finished by an older version could have its destination row
                    // left behind; settle it.
                    moves::settle_destination(&self.dst.client, &self.dst.node, self.rec.id)
                        .await?;
                    break;
                }
            }
        }
        self.report.total_ms = started.elapsed().as_millis() as u64;
        Ok(())
    }

    pub async fn ddl(&mut self) -> Result<&SchemaDdl, MoveError> {
        if self.ddl.is_none() {
            self.ddl = Some(crate::ddl::read(&self.src, self.rec.shard).await?);
        }
        self.ddl.as_ref().ok_or_else(|| MoveError::Other {
            shard: self.rec.shard,
            msg: "schema DDL unavailable".into(),
        })
    }

    async fn copy_schema(&mut self) -> Result<(), MoveError> {
        if store::step_of(&self.dst, self.rec.id, MoveRole::Destination)
            .await?
            .is_some()
        {
            return Ok(()); // done before a crash: the reference row commits with the schema
        }
        crate::safety::check_destination_schema(self.rec.shard, &self.dst).await?;
        let ddl = self.ddl().await?.clone();
        let schema = self.rec.shard.schema();
        let rec = MoveRecord {
            step: MoveStep::SchemaCopied,
            ..self.rec.clone()
        };
        let node = self.dst.node.clone();
        let (tx, ctx) = self.dst.tx().await?;
        tx.batch_execute(&format!(
            "set local check_function_bodies = off; create schema {}",
            ident(&schema)
        ))
        .await
        .map_err(|e| ctx.err(e))?;
        for stmt in &ddl.pre_copy {
            tx.batch_execute(stmt).await.map_err(|e| ctx.err(e))?;
        }
        moves::insert(&tx, &node, &rec, MoveRole::Destination).await?;
        tx.commit().await.map_err(|e| ctx.err(e))
    }

    async fn subscribe(&mut self) -> Result<(), MoveError> {
        let names = self.rec.names();
        let schema = self.rec.shard.schema();
        let tables: Vec<String> = self
            .ddl()
            .await?
            .tables
            .iter()
            .map(|t| t.qualified(&schema))
            .collect();
        let id = self.rec.id;
        let has_pub: bool = self
            .src
            .one(
                "select exists (select 1 from pg_publication where pubname = $1)",
                &[&names.publication],
            )
            .await?
            .get(0);
        if !has_pub {
            // The tick row travels through the same publication (filtered to this move),
            // so seeing a tick applied on the destination proves everything committed
            // before it on the source was applied too.
            let mut list = tables.clone();
            list.push(moves::tick_publication_entry(id));
            self.src
                .exec(&format!(
                    "begin;
                     {}
                     create publication {} for table {};
                     commit;",
                    moves::add_tick_sql(id),
                    ident(&names.publication),
                    list.join(", ")
                ))
                .await?;
        }
        let mut oid = sub_oid(&self.dst, &names.subscription).await?;
        if oid.is_none() {
            // A slot left by a CREATE SUBSCRIPTION that died half-way would block a new one.
            drop_slot(&self.src, &names.slot, Duration::from_secs(10)).await?;
            // A tick row left on the destination would collide with the initial copy.
            moves::delete_tick(&self.dst.client, &self.dst.node, id).await?;
            let (info, secret) = conninfo(&self.src.node)?;
            if let Some(s) = secret {
                self.dst.add_mask(s);
            }
            // From PostgreSQL 16 the apply runs as each table's owner unless run_as_owner
            // is set; FORCE ROW LEVEL SECURITY would then refuse every change. Running as
            // the subscription's (superuser) owner keeps RLS out of replication.
            let version: i32 = self
                .dst
                .one("select current_setting('server_version_num')::int4", &[])
                .await?
                .get(0);
            // Bounded: other moves wait on the capacity lock meanwhile, and creating the
            // slot waits for every transaction running on the source to end.
            self.dst
                .exec(&format!(
                    "set statement_timeout = '{}s'",
                    SUBSCRIBE_TIMEOUT.as_secs()
                ))
                .await?;
            let created = self
                .dst
                .exec(&format!(
                    "create subscription {} connection {} publication {}
                     with (slot_name = {}, copy_data = true, create_slot = true{})",
                    ident(&names.subscription),
                    literal(&info),
                    ident(&names.publication),
                    literal(&names.slot),
                    if version >= 160000 {
                        ", run_as_owner = true"
                    } else {
                        ""
                    }
                ))
                .await;
            self.dst.exec("reset statement_timeout").await?;
            match created {
                Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
                    return Err(MoveError::Timeout {
                        shard: self.rec.shard,
                        what: format!(
                            "creating the subscription on island {}: its replication slot waits for every transaction running on island {} (the source) to end; look for long-running or idle-in-transaction sessions there, then --resume or --abort",
                            self.dst.island, self.src.island
                        ),
                        secs: SUBSCRIBE_TIMEOUT.as_secs(),
                    })
                }
                r => r?,
            }
            oid = sub_oid(&self.dst, &names.subscription).await?;
        }
        // Recorded on every pass (a crash may have come between creating and recording).
        if let Some(oid) = oid {
            let sysid = system_id(&self.dst).await?;
            moves::record_subscription(&self.src.client, &self.src.node, id, oid, sysid).await?;
        }
        Ok(())
    }

    /// Ticks until one round trip (source commit -> applied on the destination) is short,
    /// so the pause only has to wait for the last few milliseconds of changes.
    pub(crate) async fn catch_up(&mut self) -> Result<(), MoveError> {
        // A destination that keeps falling behind must end the move with an error, not
        // keep it ticking forever: the rounds and the total time are bounded.
        const MAX_ROUNDS: u32 = 500;
        let limit = self.opts.catch_up_timeout;
        let deadline = Instant::now() + limit;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            crate::verify::require_no_apply_errors(&self.dst, &self.rec, self.error_baseline)
                .await?;
            let t = Instant::now();
            let k = tick(&self.src, self.rec.id).await?;
            let left = deadline.saturating_duration_since(t);
            wait_tick(&self.dst, &self.rec, k, self.opts.poll, left)
                .await
                .map_err(|e| match e {
                    MoveError::Timeout { shard, what, .. } => MoveError::Timeout {
                        shard,
                        what,
                        secs: limit.as_secs(),
                    },
                    e => e,
                })?;
            let rtt = t.elapsed();
            self.emit(MoveEvent::Note(format!(
                "replication round trip {} ms",
                rtt.as_millis()
            )));
            // A busy destination may never get under the bound; after a while a round
            // trip within a few times the bound is good enough (the pause just waits longer).
            let bound = if attempts > 50 {
                self.opts.catch_up_within * 4
            } else {
                self.opts.catch_up_within
            };
            if rtt <= bound {
                return Ok(());
            }
            if attempts >= MAX_ROUNDS || Instant::now() > deadline {
                return Err(MoveError::Timeout {
                    shard: self.rec.shard,
                    what: format!(
                        "catching up: {attempts} replication round trips to island {} stayed above {} ms (last {} ms); resume when the destination is less busy",
                        self.dst.island,
                        bound.as_millis(),
                        rtt.as_millis()
                    ),
                    secs: limit.as_secs(),
                });
            }
        }
    }
}

/// Bumps the move's tick on the source (autocommit) and returns the new value.
pub(crate) async fn tick(src: &Db, id: i64) -> Result<i64, MoveError> {
    Ok(moves::bump_tick(&src.client, &src.node, id).await?)
}

/// Polls the destination until the tick `k` has been applied there.
pub(crate) async fn wait_tick(
    dst: &Db,
    rec: &MoveRecord,
    k: i64,
    poll: Duration,
    limit: Duration,
) -> Result<(), MoveError> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = moves::read_tick(&dst.client, &dst.node, rec.id).await?;
        if seen.is_some_and(|s| s >= k) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(MoveError::Timeout {
                shard: rec.shard,
                what: format!(
                    "waiting for island {} to apply the source's changes",
                    dst.island
                ),
                secs: limit.as_secs(),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// The server's system identifier (part of the table-sync slot names it creates).
pub(crate) async fn system_id(db: &Db) -> Result<i64, MoveError> {
    Ok(db
        .one("select system_identifier from pg_control_system()", &[])
        .await?
        .get(0))
}

/// The LIKE pattern of the table-sync slots subscription `oid` of the server `sysid`
/// creates on its publisher (PostgreSQL 15: `pg_<suboid>_sync_<relid>_<sysid>`); the
/// system identifier keeps another destination's subscription with the same oid apart.
pub(crate) fn sync_slot_pattern(oid: i64, sysid: i64) -> String {
    format!("pg\\_{oid}\\_sync\\_%\\_{sysid}")
}

pub(crate) async fn sub_oid(dst: &Db, name: &str) -> Result<Option<u32>, MoveError> {
    Ok(dst
        .opt(
            "select s.oid from pg_subscription s join pg_database d on d.oid = s.subdbid
             where s.subname = $1 and d.datname = current_database()",
            &[&name],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Drops a replication slot on the source once no WAL sender uses it (a disabled
/// subscription's sender takes a moment to exit). Absent is fine.
pub(crate) async fn drop_slot(src: &Db, slot: &str, wait: Duration) -> Result<(), MoveError> {
    let deadline = Instant::now() + wait;
    loop {
        let r = src
            .opt(
                "select active from pg_replication_slots where slot_name = $1",
                &[&slot],
            )
            .await?;
        match r.map(|r| r.get::<_, bool>(0)) {
            None => return Ok(()),
            Some(false) => {
                match src
                    .execute("select pg_drop_replication_slot($1)", &[&slot])
                    .await
                {
                    Ok(_) => return Ok(()),
                    // Became active or vanished between the check and the drop: look again.
                    Err(e)
                        if e.code() == Some(&SqlState::OBJECT_IN_USE)
                            || e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(true) => {}
        }
        // Checked in every branch: a slot that keeps flipping between idle and in use
        // (or vanishing and reappearing) must not keep the loop going forever.
        if Instant::now() > deadline {
            return Err(MoveError::Query {
                node: src.node.to_string(),
                msg: format!(
                    "replication slot {slot} could not be dropped within {wait:?} (still in use)"
                ),
                code: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
