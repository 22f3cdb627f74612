//! What every step of a move works on: the move's record, one connection to each of the
//! two masters (opened once per move and kept), the options, the progress sink and the
//! report being filled in. The steps are plain functions over it, one file per step:
//! `schema_copy.rs`, `subscribe.rs`, `copy.rs`, `catch_up.rs`, `pause.rs` + `cutover.rs`,
//! `activate.rs`, `replication.rs` (ticks, slots, dropping what a move created), driven in
//! order by `run.rs`.

use crate::apply_health::ErrorWatch;
use crate::db::Db;
use crate::ddl::SchemaDdl;
use crate::error::MoveError;
use crate::store::{self, MoveRole};
use crate::{MoveEvent, MoveOptions, MoveReport, Progress};
use atoll_core::move_plan::{MoveRecord, MoveStep};
use atoll_core::{Config, ShardNo};

pub(crate) struct MoveContext<'a> {
    /// For new connections beside `src` and `dst` (the ticker, the verification snapshots,
    /// a reconnect during activation).
    pub config: &'a Config,
    /// The move as recorded; `step` follows what has been reached.
    pub rec: MoveRecord,
    /// The source island's master, for the whole move (the write pause's transaction runs
    /// on it).
    pub src: Db,
    /// The destination island's master, for the whole move.
    pub dst: Db,
    pub opts: &'a MoveOptions,
    pub progress: Progress,
    /// The source schema's DDL, read once (a resumed move reads it when a step needs it).
    pub ddl: Option<SchemaDdl>,
    /// Timings and sizes, filled in by the steps.
    pub report: MoveReport,
    /// The subscription's worker errors since this run started, and the proofs of
    /// progress between them (see [`crate::apply_health`]).
    pub apply_errors: ErrorWatch,
    /// The order the write pause locks the source tables in, learned from the attempts
    /// that timed out (see `pause.rs`); empty until the first pause.
    pub lock_order: Vec<String>,
    /// Whether `src` and `dst` hold the capacity lock (taken by a new move for its
    /// safety check); released once the subscription exists.
    pub capacity_locked: bool,
    /// The source's registry generation after the switch, which the destination's
    /// activation must exceed so clients order the two notices (`None` until known).
    pub switch_gen: Option<u64>,
}

impl<'a> MoveContext<'a> {
    /// A move about to run from `rec`'s step: no DDL read yet, no capacity lock held.
    pub fn new(
        config: &'a Config,
        rec: MoveRecord,
        src: Db,
        dst: Db,
        opts: &'a MoveOptions,
        progress: Progress,
    ) -> MoveContext<'a> {
        let report = MoveReport {
            id: rec.id,
            shard: Some(rec.shard),
            from: Some(rec.source),
            to: Some(rec.destination),
            verify: rec.verify,
            ..MoveReport::default()
        };
        MoveContext {
            config,
            rec,
            src,
            dst,
            opts,
            progress,
            ddl: None,
            report,
            apply_errors: ErrorWatch::new(0),
            lock_order: Vec::new(),
            capacity_locked: false,
            switch_gen: None,
        }
    }

    /// The shard being moved.
    pub fn shard(&self) -> ShardNo {
        self.rec.shard
    }

    /// Reports progress.
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

    /// The source schema's DDL, read on first use.
    pub async fn ddl(&mut self) -> Result<&SchemaDdl, MoveError> {
        if self.ddl.is_none() {
            self.ddl = Some(crate::ddl::read(&self.src, self.rec.shard).await?);
        }
        self.ddl.as_ref().ok_or_else(|| MoveError::Other {
            shard: self.rec.shard,
            msg: "schema DDL unavailable".into(),
        })
    }
}
