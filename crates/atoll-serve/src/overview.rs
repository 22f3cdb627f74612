//! The console's view of the cluster in one answer (`/api/v1/overview`, and every
//! `/api/v1/events` message): islands with their nodes and shard tiles (compact: `[shard,
//! bytes, state]`), unfinished moves with their progress, the problems. Built from the
//! snapshot and the catalog view in memory.

use crate::actions::LiveAction;
use crate::view::CatalogView;
use atoll_core::move_plan::MoveStep;
use atoll_core::{IslandId, NodeState, ShardNo, Snapshot};
use serde::Serialize;
use std::collections::BTreeSet;

/// A shard tile's state, as the console colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TileState {
    /// Active here, no move under way.
    Active,
    /// A schema here without the active flag (a move's destination before the switch, a
    /// deactivated shard, a leftover).
    Inactive,
    /// Active here while an unfinished move takes it elsewhere, or the move's copy.
    Moving,
    /// Its applied migrations differ from the files (the last migrate plan made here
    /// found drift): `atoll schema plan` converges it.
    Drifted,
}

/// One island's column.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IslandColumn {
    /// The island.
    #[schema(value_type = u16)]
    pub id: IslandId,
    /// Its nodes (role, lag, error).
    #[schema(value_type = Vec<Object>)]
    pub nodes: Vec<NodeState>,
    /// `[shard, bytes, state]` per schema on the island, by shard number.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub tiles: Vec<(ShardNo, u64, TileState)>,
}

/// One unfinished move with its progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MoveLine {
    /// The move's id.
    pub id: i64,
    /// The shard.
    #[schema(value_type = u16)]
    pub shard: ShardNo,
    /// From.
    #[schema(value_type = u16)]
    pub source: IslandId,
    /// To.
    #[schema(value_type = u16)]
    pub destination: IslandId,
    /// The last step reached.
    #[schema(value_type = String)]
    pub step: MoveStep,
    /// Its position, 1-based, out of `steps`.
    pub step_no: usize,
    /// How many steps a move has.
    pub steps: usize,
    /// Bytes copied so far and the source's size, when this process runs the move.
    #[schema(value_type = Option<Vec<u64>>)]
    pub copy: Option<(u64, u64)>,
    /// When it reached its step, seconds since the Unix epoch.
    pub step_since_unix: Option<i64>,
    /// Whether an abort of it started.
    pub aborting: bool,
    /// The last error an action met on it.
    pub last_error: Option<String>,
}

/// What runs here now, for the page (`actions/run.rs` keeps it).
#[derive(Debug, Default)]
pub struct Live {
    /// Shards drifted in the last migrate plan made here.
    pub drifted: BTreeSet<ShardNo>,
    /// Actions under way.
    pub actions: Vec<LiveAction>,
}

/// The newest migration run, in brief.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MigrationLine {
    /// Its id.
    pub run_id: i64,
    /// `running`, `done`, `failed`...
    pub status: String,
    /// Schemas done, failed, in all.
    pub done: i32,
    /// See `done`.
    pub failed: i32,
    /// See `done`.
    pub total: i32,
    /// The first failure or the run's message.
    pub message: Option<String>,
    /// Per state (`done`, `failed`, `running`, `waiting`...): how many schemas and which
    /// (compacted ranges, the first 20 listed).
    #[schema(value_type = Vec<Object>)]
    pub states: Vec<(String, usize, String)>,
}

/// The whole page's data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// The cluster's id.
    pub cluster_id: Option<String>,
    /// When the snapshot was taken.
    pub snapshot_taken_at_unix_ms: u64,
    /// Shards active on exactly one island.
    pub shards_active: usize,
    /// The problems, as `atoll status` words them.
    pub problems: Vec<String>,
    /// One column per island.
    pub islands: Vec<IslandColumn>,
    /// Unfinished moves.
    pub moves: Vec<MoveLine>,
    /// Actions under way here.
    pub actions: Vec<LiveAction>,
    /// The action log's latest entries (at most 10), newest first.
    #[schema(value_type = Vec<Object>)]
    pub action_log: Vec<atoll_pg::catalog::action_log::Entry>,
    /// The newest migration run.
    pub migration: Option<MigrationLine>,
    /// The last catalog read's failure.
    pub catalog_error: Option<String>,
}

/// The overview of `s` and `c`.
pub fn build(s: &Snapshot, c: &CatalogView, live: &Live) -> Overview {
    let moving: BTreeSet<ShardNo> = c.moves.iter().map(|m| m.shard).collect();
    let mut islands: Vec<IslandColumn> = s
        .islands
        .iter()
        .map(|i| IslandColumn {
            id: i.id,
            nodes: i.nodes.clone(),
            tiles: Vec::new(),
        })
        .collect();
    // One pass over the shards (by number, so every column stays sorted).
    for (n, copies) in &s.shards {
        for copy in copies {
            let Some(col) = islands.iter_mut().find(|col| col.id == copy.island) else {
                continue;
            };
            let state = if moving.contains(n) {
                TileState::Moving
            } else if live.drifted.contains(n) {
                TileState::Drifted
            } else if copy.active {
                TileState::Active
            } else {
                TileState::Inactive
            };
            col.tiles.push((*n, copy.size_bytes.unwrap_or(0), state));
        }
    }
    let moves = c
        .unfinished()
        .into_iter()
        .map(|u| {
            (
                u.record,
                u.step_since_unix,
                u.abort_started_at_unix,
                u.last_error,
            )
        })
        .map(|(m, since, abort, last_error)| MoveLine {
            id: m.id,
            shard: m.shard,
            source: m.source,
            destination: m.destination,
            step: m.step,
            step_no: MoveStep::ALL
                .iter()
                .position(|x| *x == m.step)
                .map_or(0, |p| p + 1),
            steps: MoveStep::ALL.len(),
            copy: live
                .actions
                .iter()
                .find(|a| a.shard == Some(m.shard) && a.total > 0)
                .map(|a| (a.done, a.total)),
            step_since_unix: since,
            aborting: abort.is_some(),
            last_error,
        })
        .collect();
    let migration = c.migration.as_ref().map(|m| MigrationLine {
        run_id: m.run.run_id,
        status: m.run.status.as_str().to_string(),
        done: m.run.schemas_done,
        failed: m.run.schemas_failed,
        total: m.run.schemas_total,
        message: m.run.message.clone(),
        states: m
            .shards
            .groups
            .iter()
            .map(|g| (g.state.as_str().to_string(), g.count, g.schemas.clone()))
            .collect(),
    });
    Overview {
        cluster_id: s.islands.iter().find_map(|i| i.cluster_id.clone()),
        snapshot_taken_at_unix_ms: s.taken_at_unix_ms,
        shards_active: s.active_shards().count(),
        problems: s.problems.iter().map(ToString::to_string).collect(),
        islands,
        moves,
        actions: live.actions.clone(),
        action_log: c.actions.iter().take(10).cloned().collect(),
        migration,
        catalog_error: c.error.clone(),
    }
}

/// Where a shard number, a schema name or an atoll ID lives: the answer of
/// `/api/v1/locate?q=`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Located {
    /// What was asked, as understood.
    pub query: String,
    /// The shard.
    #[schema(value_type = u16)]
    pub shard: ShardNo,
    /// Where it is active; `None` when nowhere (or on two islands).
    #[schema(value_type = Option<u16>)]
    pub island: Option<IslandId>,
    /// Every island holding a schema of it, with whether it is active there.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub copies: Vec<(IslandId, bool)>,
}

/// Understands `q` as `42`, `sh0042` or a 19-digit atoll ID; the error names the field.
pub fn locate(s: &Snapshot, q: &str) -> Result<Located, String> {
    let q = q.trim();
    let (query, shard) = if q.len() >= 19 && q.bytes().all(|b| b.is_ascii_digit()) {
        let raw: i64 = q.parse().map_err(|_| format!("q: {q:?} is not an ID"))?;
        let id = atoll_core::Id::parse(raw).map_err(|e| format!("q: {e}"))?;
        (format!("ID {raw}"), id.shard())
    } else {
        let n: ShardNo = q.parse().map_err(|e| {
            format!("q: {q:?} is not a shard number, schema name or atoll ID ({e})")
        })?;
        (n.schema(), n)
    };
    let copies = s
        .shards
        .get(&shard)
        .map(|cs| cs.iter().map(|c| (c.island, c.active)).collect())
        .unwrap_or_default();
    Ok(Located {
        query,
        shard,
        island: s.active_island(shard).ok(),
        copies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::move_plan::{MoveRecord, VerifyMode};

    #[test]
    fn tiles_take_the_state_of_their_copy_and_of_unfinished_moves() {
        let s = crate::testdata::snapshot(3);
        let mut c = CatalogView::default();
        let two = ShardNo::new(2).unwrap();
        c.moves.push(MoveRecord {
            id: 7,
            shard: two,
            source: IslandId(0),
            destination: IslandId(1),
            step: MoveStep::Subscribed,
            verify: VerifyMode::default(),
            backup_schema: None,
        });
        let mut live = Live::default();
        live.drifted.insert(ShardNo::new(3).unwrap());
        let o = build(&s, &c, &live);
        let states: Vec<TileState> = o.islands[0].tiles.iter().map(|t| t.2).collect();
        assert_eq!(
            states,
            [TileState::Active, TileState::Moving, TileState::Drifted]
        );
        assert_eq!((o.moves[0].step_no, o.moves[0].steps), (3, 10));
        assert_eq!(o.shards_active, 3);
    }

    #[test]
    fn locate_takes_numbers_schemas_and_ids_and_names_the_field_when_wrong() {
        let s = crate::testdata::snapshot(3);
        let id = atoll_core::Id::new(1, ShardNo::new(3).unwrap(), 42).unwrap();
        for (q, shard) in [("2", 2), (" sh0002 ", 2), (&id.get().to_string()[..], 3)] {
            let l = locate(&s, q).unwrap();
            assert_eq!(l.shard.get(), shard, "{q}");
            assert_eq!(l.island, Some(IslandId(0)), "{q}");
        }
        assert_eq!(locate(&s, "9").unwrap().island, None);
        for bad in [
            "x",
            "sh12",
            "10000",
            "-1",
            "9999999999999999999",
            "9034567890123456789",
            "0034567890123456789",
        ] {
            let e = locate(&s, bad).unwrap_err();
            assert!(e.starts_with("q: "), "{bad}: {e}");
        }
    }
}
