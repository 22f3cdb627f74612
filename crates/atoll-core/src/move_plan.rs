//! The state machine of a microshard move, and the pure judgements around it: what a
//! resumed move does next, what an abort must undo, the names of the replication objects
//! and of the backup schema, and whether the copies verified equal.
//!
//! A move persists its step in `atoll.moves` on the source island's master (the destination
//! keeps a reference row). Steps marked not [`durable`](MoveStep::durable) happen inside
//! the write-blocking transaction on the source: a crash there rolls that transaction
//! back, so the persisted step is still [`MoveStep::CaughtUp`].

use crate::island::IslandId;
use crate::shard::ShardNo;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The steps of a move, in order. A step is reached when the work it names is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveStep {
    /// The move is recorded on the source; nothing exists on the destination yet.
    Prepared,
    /// The destination has the schema: tables with primary keys / replica identities,
    /// sequences and functions; no secondary indexes or foreign keys yet.
    SchemaCopied,
    /// Publication on the source, subscription (copying data) on the destination.
    Subscribed,
    /// Initial copy done, secondary indexes and constraints built, replication caught up.
    CaughtUp,
    /// In the write-blocking transaction: the source shard's tables are locked and the
    /// destination has applied everything committed before.
    Paused,
    /// In the pause: sequence positions copied to the destination.
    Synced,
    /// In the pause: row counts (or checksums) matched.
    Verified,
    /// Committed on the source: the shard is inactive there and its schema renamed to the
    /// backup name. Not yet active on the destination.
    Switched,
    /// Active on the destination.
    Activated,
    /// Replication objects dropped; the move is finished (the backup schema stays until
    /// `atoll cleanup`).
    CleanedUp,
}

impl MoveStep {
    /// Every step, in order.
    pub const ALL: [MoveStep; 10] = [
        MoveStep::Prepared,
        MoveStep::SchemaCopied,
        MoveStep::Subscribed,
        MoveStep::CaughtUp,
        MoveStep::Paused,
        MoveStep::Synced,
        MoveStep::Verified,
        MoveStep::Switched,
        MoveStep::Activated,
        MoveStep::CleanedUp,
    ];

    /// The step's name as stored in `atoll.moves.step` (`schema_copied`).
    pub fn as_str(self) -> &'static str {
        match self {
            MoveStep::Prepared => "prepared",
            MoveStep::SchemaCopied => "schema_copied",
            MoveStep::Subscribed => "subscribed",
            MoveStep::CaughtUp => "caught_up",
            MoveStep::Paused => "paused",
            MoveStep::Synced => "synced",
            MoveStep::Verified => "verified",
            MoveStep::Switched => "switched",
            MoveStep::Activated => "activated",
            MoveStep::CleanedUp => "cleaned_up",
        }
    }

    /// Whether reaching this step is committed on its own. The in-pause steps are not:
    /// they commit together with [`MoveStep::Switched`].
    pub fn durable(self) -> bool {
        !matches!(
            self,
            MoveStep::Paused | MoveStep::Synced | MoveStep::Verified
        )
    }

    /// The step that a crash right after `self` leaves persisted.
    pub fn persisted_after_crash(self) -> MoveStep {
        if self.durable() {
            self
        } else {
            MoveStep::CaughtUp
        }
    }

    /// The step after this one; `None` after [`MoveStep::CleanedUp`].
    pub fn next(self) -> Option<MoveStep> {
        let i = MoveStep::ALL.iter().position(|s| *s == self)?;
        MoveStep::ALL.get(i + 1).copied()
    }

    /// Whether the move is done ([`MoveStep::CleanedUp`]).
    pub fn is_finished(self) -> bool {
        self == MoveStep::CleanedUp
    }

    /// What `--resume` does from this persisted step.
    pub fn resume_action(self) -> ResumeAction {
        match self {
            MoveStep::Prepared => ResumeAction::CopySchema,
            MoveStep::SchemaCopied => ResumeAction::Subscribe,
            MoveStep::Subscribed => ResumeAction::WaitForCopy,
            MoveStep::CaughtUp | MoveStep::Paused | MoveStep::Synced | MoveStep::Verified => {
                ResumeAction::Cutover
            }
            MoveStep::Switched => ResumeAction::Activate,
            MoveStep::Activated => ResumeAction::DropReplication,
            MoveStep::CleanedUp => ResumeAction::Nothing,
        }
    }

    /// What `--abort` undoes from this persisted step, in order; an error once the
    /// destination is active (writes may have landed there, so rolling back would lose them).
    pub fn abort_plan(self) -> Result<Vec<AbortAction>, AbortRefused> {
        use AbortAction::*;
        let replication = [DropSubscription, DropSlot, DropPublication];
        let mut out = Vec::new();
        match self.persisted_after_crash() {
            MoveStep::Prepared => {
                // The schema may have been created just before the crash: the destination's
                // reference row says whether it is ours.
                out.push(DropDestinationSchema);
            }
            // In-pause steps: a crash rolled their transaction back (persisted_after_crash).
            MoveStep::SchemaCopied
            | MoveStep::Subscribed
            | MoveStep::CaughtUp
            | MoveStep::Paused
            | MoveStep::Synced
            | MoveStep::Verified => {
                out.extend(replication);
                out.push(DropDestinationSchema);
            }
            MoveStep::Switched => {
                out.push(RefuseIfDestinationActive);
                out.extend(replication);
                out.push(RestoreSourceSchema);
                out.push(ReactivateSource);
                out.push(DropDestinationSchema);
            }
            s @ (MoveStep::Activated | MoveStep::CleanedUp) => return Err(AbortRefused(s)),
        }
        out.push(ForgetMove);
        Ok(out)
    }
}

impl fmt::Display for MoveStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step name in `atoll.moves` that is not one of [`MoveStep::ALL`]; holds the text read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown move step {0:?} (expected one of prepared, schema_copied, subscribed, caught_up, paused, synced, verified, switched, activated, cleaned_up)")]
pub struct UnknownStep(pub String);

impl FromStr for MoveStep {
    type Err = UnknownStep;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MoveStep::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim())
            .ok_or_else(|| UnknownStep(s.to_string()))
    }
}

/// What `atoll move --resume` does next, from the persisted step ([`MoveStep::resume_action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeAction {
    /// Create the schema on the destination (tables, sequences, functions).
    CopySchema,
    /// Create the publication on the source and the subscription on the destination.
    Subscribe,
    /// Wait for the initial copy, build secondary indexes and constraints, catch up.
    WaitForCopy,
    /// Run the write-blocking pause again: sync sequences, verify, switch.
    Cutover,
    /// Mark the shard active on the destination.
    Activate,
    /// Drop the publication, subscription and slot.
    DropReplication,
    /// The move is finished.
    Nothing,
}

/// One undo step of an abort. Each is idempotent, so an interrupted abort can be re-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortAction {
    /// Stop if the shard is active on the destination (activation committed but the
    /// crash came before the step was recorded): writes may have landed there.
    RefuseIfDestinationActive,
    /// Disable, detach from its slot and drop the destination's subscription.
    DropSubscription,
    /// Drop the replication slot on the source.
    DropSlot,
    /// Drop the publication on the source.
    DropPublication,
    /// Rename the backup schema back to `shNNNN` on the source.
    RestoreSourceSchema,
    /// Mark the shard active on the source again.
    ReactivateSource,
    /// Drop the destination's copy of the schema (only if the move created it).
    DropDestinationSchema,
    /// Delete the move's rows on both islands.
    ForgetMove,
}

impl AbortAction {
    /// Every action, in the order an abort plan lists them.
    pub const ALL: [AbortAction; 8] = [
        AbortAction::RefuseIfDestinationActive,
        AbortAction::DropSubscription,
        AbortAction::DropSlot,
        AbortAction::DropPublication,
        AbortAction::RestoreSourceSchema,
        AbortAction::ReactivateSource,
        AbortAction::DropDestinationSchema,
        AbortAction::ForgetMove,
    ];

    /// The action's name as in JSON reports (`reactivate_source`).
    pub fn as_str(self) -> &'static str {
        match self {
            AbortAction::RefuseIfDestinationActive => "refuse_if_destination_active",
            AbortAction::DropSubscription => "drop_subscription",
            AbortAction::DropSlot => "drop_slot",
            AbortAction::DropPublication => "drop_publication",
            AbortAction::RestoreSourceSchema => "restore_source_schema",
            AbortAction::ReactivateSource => "reactivate_source",
            AbortAction::DropDestinationSchema => "drop_destination_schema",
            AbortAction::ForgetMove => "forget_move",
        }
    }
}

impl fmt::Display for AbortAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An abort action name that is not one of [`AbortAction::ALL`]; holds the text read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown abort action {0:?} (expected one of refuse_if_destination_active, drop_subscription, drop_slot, drop_publication, restore_source_schema, reactivate_source, drop_destination_schema, forget_move)")]
pub struct UnknownAbortAction(pub String);

impl FromStr for AbortAction {
    type Err = UnknownAbortAction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AbortAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| UnknownAbortAction(s.to_string()))
    }
}

/// What ends an unfinished move, from its persisted step and whether an abort of it
/// started ([`finish_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishBy {
    /// `--resume` finishes it, `--abort` rolls it back.
    ResumeOrAbort,
    /// Only `--resume`: the destination is active, an abort would lose its writes.
    Resume,
    /// Only `--abort`: an abort started and may have reactivated the source already.
    Abort,
}

/// Which command ends an unfinished move at `step` ([`FinishBy`]).
pub fn finish_by(step: MoveStep, abort_started: bool) -> FinishBy {
    if step.abort_plan().is_err() {
        FinishBy::Resume
    } else if abort_started {
        FinishBy::Abort
    } else {
        FinishBy::ResumeOrAbort
    }
}

/// An abort refused because the move reached this step: the shard is active on the destination and
/// may have taken writes there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the move is {0}: the shard is active on the destination and may have taken writes there; abort would lose them, run --resume to finish instead")]
pub struct AbortRefused(pub MoveStep);

/// The names a move uses. The shard is in every name so leftovers can be traced to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoveNames {
    /// The publication on the source island's master.
    pub publication: String,
    /// The subscription on the destination island's master.
    pub subscription: String,
    /// The logical replication slot on the source island's master.
    pub slot: String,
}

/// Replication object names: `atoll_move_sh0042_<id>` (publication, subscription and
/// slot share it; lower case, within PostgreSQL's 63-byte identifier limit).
pub fn move_names(shard: ShardNo, id: i64) -> MoveNames {
    let n = format!("atoll_move_{}_{}", shard.schema(), id.unsigned_abs());
    MoveNames {
        publication: n.clone(),
        subscription: n.clone(),
        slot: n,
    }
}

/// The prefix every replication object of moves of `shard` starts with.
pub fn move_name_prefix(shard: ShardNo) -> String {
    format!("atoll_move_{}_", shard.schema())
}

/// The shard and move id in a replication object's name ([`move_names`]); `None` for a
/// name atoll did not make.
pub fn parse_move_name(name: &str) -> Option<(ShardNo, u64)> {
    let rest = name.strip_prefix("atoll_move_")?;
    let (schema, id) = rest.split_once('_')?;
    let shard = ShardNo::from_schema(schema).ok()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((shard, id.parse().ok()?))
}

/// The backup name of a moved-away source schema: `sh0042_moved_<unix seconds>`. It never
/// matches `^sh[0-9]{4}$`, so discovery does not see it as a shard.
pub fn backup_schema(shard: ShardNo, unix_secs: u64) -> String {
    format!("{}_moved_{unix_secs}", shard.schema())
}

/// Parses a backup schema name back into (shard, unix seconds).
pub fn parse_backup_schema(name: &str) -> Option<(ShardNo, u64)> {
    let (shard, ts) = name.split_once("_moved_")?;
    let shard = ShardNo::from_schema(shard).ok()?;
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((shard, ts.parse().ok()?))
}

/// The backups `atoll cleanup --older-than` drops: those switched at least `older_than_secs`
/// before `now`.
pub fn backups_to_drop(names: &[String], now_unix_secs: u64, older_than_secs: u64) -> Vec<&str> {
    names
        .iter()
        .filter(|n| {
            parse_backup_schema(n)
                .is_some_and(|(_, ts)| now_unix_secs.saturating_sub(ts) >= older_than_secs)
        })
        .map(String::as_str)
        .collect()
}

/// Why an age (`cleanup --older-than`) was refused; the text is quoted as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgeError {
    /// Not a whole number followed by one unit.
    #[error("{0:?} is not an age (expected a whole number and a unit s, m, h or d, e.g. 7d, 12h, 30m, 45s, or 0)")]
    Malformed(String),
    /// More seconds than fit in 64 bits.
    #[error("{0:?} is too large an age")]
    TooLarge(String),
}

/// Parses a duration like `7d`, `12h`, `30m`, `45s` or `0` into seconds.
pub fn parse_age(s: &str) -> Result<u64, AgeError> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let malformed = || AgeError::Malformed(s.to_string());
    // The unit is the last character, which may be several bytes long (`7µ`).
    let unit = s.chars().last().ok_or_else(malformed)?;
    let num = &s[..s.len() - unit.len_utf8()];
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(malformed()),
    };
    // Only digits: parsing fails only by overflow.
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| AgeError::TooLarge(s.to_string()))
}

/// How thoroughly the copies are compared inside the pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// Row counts per table.
    #[default]
    Counts,
    /// Row counts and an md5 of every table's rows in primary-key order.
    Full,
}

/// A verify mode that is neither `counts` nor `full`; holds the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a verify mode (expected counts or full)")]
pub struct UnknownVerifyMode(pub String);

impl FromStr for VerifyMode {
    type Err = UnknownVerifyMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "counts" => Ok(VerifyMode::Counts),
            "full" => Ok(VerifyMode::Full),
            _ => Err(UnknownVerifyMode(s.to_string())),
        }
    }
}

impl fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyMode::Counts => "counts",
            VerifyMode::Full => "full",
        })
    }
}

/// What one side says about one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDigest {
    /// The table name within the shard schema.
    pub table: String,
    /// Its row count.
    pub rows: i64,
    /// With [`VerifyMode::Full`].
    pub checksum: Option<String>,
}

/// A difference found by [`compare_digests`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum Mismatch {
    #[error(
        "table {table}: {source_rows} rows on the source, {destination_rows} on the destination"
    )]
    /// The two sides hold a different number of rows.
    Rows {
        /// The table whose counts differ.
        table: String,
        /// Rows on the source.
        source_rows: i64,
        /// Rows on the destination.
        destination_rows: i64,
    },
    /// Row counts match but the [`VerifyMode::Full`] checksums differ.
    #[error("table {table}: checksums differ")]
    Checksum {
        /// The table whose checksums differ.
        table: String,
    },
    /// A table exists on one side only.
    #[error("table {table} is missing on the {side}")]
    Missing {
        /// The table name.
        table: String,
        /// The side that lacks it: `"source"` or `"destination"`.
        side: &'static str,
    },
}

/// Compares the digests of both sides; empty means equal.
pub fn compare_digests(source: &[TableDigest], destination: &[TableDigest]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for s in source {
        match destination.iter().find(|d| d.table == s.table) {
            None => out.push(Mismatch::Missing {
                table: s.table.clone(),
                side: "destination",
            }),
            Some(d) if d.rows != s.rows => out.push(Mismatch::Rows {
                table: s.table.clone(),
                source_rows: s.rows,
                destination_rows: d.rows,
            }),
            Some(d) if d.checksum != s.checksum => out.push(Mismatch::Checksum {
                table: s.table.clone(),
            }),
            Some(_) => {}
        }
    }
    for d in destination {
        if !source.iter().any(|s| s.table == d.table) {
            out.push(Mismatch::Missing {
                table: d.table.clone(),
                side: "source",
            });
        }
    }
    out
}

/// A persisted move, as read back from `atoll.moves`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoveRecord {
    /// The move's id, the same in the source's row and the destination's reference row.
    pub id: i64,
    /// The shard being moved.
    pub shard: ShardNo,
    /// The island the shard is moved away from.
    pub source: IslandId,
    /// The island the shard is moved to.
    pub destination: IslandId,
    /// The last step reached and persisted.
    pub step: MoveStep,
    /// How the copies are compared in the pause.
    pub verify: VerifyMode,
    /// Set at [`MoveStep::Switched`].
    pub backup_schema: Option<String>,
}

impl MoveRecord {
    /// The replication object names of this move.
    pub fn names(&self) -> MoveNames {
        move_names(self.shard, self.id)
    }
}

/// Why a new move may not start. Checked before anything is created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartRefused {
    /// The shard is not active on any island.
    #[error("{shard} is not active on any island; only an active shard can be moved")]
    NotActive {
        /// The shard asked for.
        shard: ShardNo,
    },
    /// The shard is already active on the destination.
    #[error("{shard} is already on island {island}")]
    AlreadyThere {
        /// The shard asked for.
        shard: ShardNo,
        /// The island it is active on.
        island: IslandId,
    },
    /// The destination island is not in the configuration.
    #[error("island {0} is not in the configuration")]
    UnknownIsland(IslandId),
    /// The shard has a move that is not finished.
    #[error("{shard} has an unfinished move {id} (step {step}); run `atoll move --resume` or `--abort`, or pass --clean-leftovers")]
    UnfinishedMove {
        /// The shard asked for.
        shard: ShardNo,
        /// The unfinished move's id.
        id: i64,
        /// The step it reached.
        step: MoveStep,
    },
    /// The destination's master already has a schema by the shard's name.
    #[error("destination_has_schema: island {island} already has schema {schema}; refusing to overwrite it")]
    DestinationHasSchema {
        /// The destination island.
        island: IslandId,
        /// The schema found there (`shNNNN`).
        schema: String,
    },
}

/// Pre-flight judgement of a new move from what discovery and the catalogs say.
pub fn check_start(
    shard: ShardNo,
    active_on: Option<IslandId>,
    destination: IslandId,
    destination_known: bool,
    destination_has_schema: bool,
    unfinished: &[MoveRecord],
) -> Result<IslandId, StartRefused> {
    if !destination_known {
        return Err(StartRefused::UnknownIsland(destination));
    }
    if let Some(m) = unfinished.iter().find(|m| m.shard == shard) {
        return Err(StartRefused::UnfinishedMove {
            shard,
            id: m.id,
            step: m.step,
        });
    }
    let source = active_on.ok_or(StartRefused::NotActive { shard })?;
    if source == destination {
        return Err(StartRefused::AlreadyThere {
            shard,
            island: source,
        });
    }
    if destination_has_schema {
        return Err(StartRefused::DestinationHasSchema {
            island: destination,
            schema: shard.schema(),
        });
    }
    Ok(source)
}

#[cfg(test)]
#[path = "move_plan_tests.rs"]
mod tests;
