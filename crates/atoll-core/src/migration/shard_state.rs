//! Where each schema of a run is (`atoll.migration_shards`, one row per schema per run),
//! and the summary `migrate status` shows: counts, schemas grouped as ranges per state
//! (not 10,000 lines), the first failure on top.

use super::plan::compact_schemas;
use crate::island::IslandId;
use serde::Serialize;
use std::collections::BTreeMap;

/// A schema's state within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardState {
    /// Not started yet.
    Pending,
    /// Not started: waits for the canary shards to succeed.
    WaitingForCanary,
    /// Its versions are being applied.
    Running,
    /// Every version of the run applied.
    Done,
    /// A file failed (the row names it and the error); its chain stopped there.
    Failed,
    /// Nothing to do after all: found applied by an earlier run, or a finalizer schema
    /// left out because shards failed.
    Skipped,
    /// Not started because the run halted (`--on-failure halt`, `--max-failures`, a failed
    /// canary).
    Halted,
}

/// Every state, in the order `migrate status` lists them: what needs a look first.
pub const SHOWN_ORDER: [ShardState; 7] = [
    ShardState::Failed,
    ShardState::Running,
    ShardState::WaitingForCanary,
    ShardState::Pending,
    ShardState::Halted,
    ShardState::Skipped,
    ShardState::Done,
];

impl ShardState {
    /// The catalog's name for it (`waiting_for_canary`).
    pub fn as_str(self) -> &'static str {
        match self {
            ShardState::Pending => "pending",
            ShardState::WaitingForCanary => "waiting_for_canary",
            ShardState::Running => "running",
            ShardState::Done => "done",
            ShardState::Failed => "failed",
            ShardState::Skipped => "skipped",
            ShardState::Halted => "halted",
        }
    }

    /// Reads the catalog's name; `None` for anything else.
    pub fn parse(s: &str) -> Option<ShardState> {
        SHOWN_ORDER.into_iter().find(|st| st.as_str() == s)
    }

    /// As people read it: `waiting for canary`.
    pub fn label(self) -> &'static str {
        match self {
            ShardState::WaitingForCanary => "waiting for canary",
            other => other.as_str(),
        }
    }

    /// True for the states a run ends a schema in.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ShardState::Done | ShardState::Failed | ShardState::Skipped | ShardState::Halted
        )
    }
}

/// One schema's row of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardRow {
    /// The schema.
    pub schema: String,
    /// The island whose master holds it.
    pub island: IslandId,
    /// Where it is.
    pub state: ShardState,
    /// The file that failed, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The error, when it failed (or why it was skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts of its current file (more than 1 after retries of retryable errors).
    pub attempts: u32,
}

/// The schemas in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateGroup {
    /// The state.
    pub state: ShardState,
    /// How many schemas are in it.
    pub count: usize,
    /// The schemas as ranges (`sh0001-sh0040, sh0042`).
    pub schemas: String,
}

/// What `migrate status` shows of a run's schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Schemas in the run.
    pub total: usize,
    /// Schemas per state.
    pub counts: BTreeMap<&'static str, usize>,
    /// The first failed schema (in the order the rows came: the catalog's change order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<ShardRow>,
    /// The schemas per state, in [`SHOWN_ORDER`], only states that have any.
    pub groups: Vec<StateGroup>,
}

/// Summarises a run's rows; `rows` in the order they changed, so the first failed one is
/// the first failure.
pub fn summarize(rows: &[ShardRow], max_items: usize) -> RunSummary {
    let mut by_state: BTreeMap<ShardState, Vec<&str>> = BTreeMap::new();
    for r in rows {
        by_state.entry(r.state).or_default().push(&r.schema);
    }
    let groups = SHOWN_ORDER
        .iter()
        .filter_map(|st| {
            by_state.get(st).map(|names| StateGroup {
                state: *st,
                count: names.len(),
                schemas: compact_schemas(names, max_items),
            })
        })
        .collect();
    RunSummary {
        total: rows.len(),
        counts: by_state
            .iter()
            .map(|(st, names)| (st.as_str(), names.len()))
            .collect(),
        first_failure: rows.iter().find(|r| r.state == ShardState::Failed).cloned(),
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u16, state: ShardState) -> ShardRow {
        ShardRow {
            schema: format!("sh{n:04}"),
            island: IslandId(n % 4),
            state,
            file: (state == ShardState::Failed).then(|| "1.a.sh.up.sql".into()),
            error: (state == ShardState::Failed).then(|| format!("boom {n}")),
            attempts: 1,
        }
    }

    #[test]
    fn ten_thousand_shards_are_a_few_lines() {
        let mut rows: Vec<ShardRow> = (1..=9999)
            .map(|n| {
                let st = match n {
                    42 | 4242 => ShardState::Failed,
                    n if n > 9000 => ShardState::Halted,
                    _ => ShardState::Done,
                };
                row(n, st)
            })
            .collect();
        // The catalog's change order: 4242 failed before 42.
        rows.swap(41, 4241);
        let s = summarize(&rows, 20);
        assert_eq!(s.total, 9999);
        assert_eq!(
            s.first_failure.as_ref().map(|r| r.schema.as_str()),
            Some("sh4242")
        );
        let shown: Vec<(ShardState, usize, &str)> = s
            .groups
            .iter()
            .map(|g| (g.state, g.count, g.schemas.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (ShardState::Failed, 2, "sh0042, sh4242"),
                (ShardState::Halted, 999, "sh9001-sh9999"),
                (
                    ShardState::Done,
                    8998,
                    "sh0001-sh0041, sh0043-sh4241, sh4243-sh9000"
                ),
            ]
        );
        assert_eq!(s.counts["done"], 8998);
    }

    #[test]
    fn states_round_trip() {
        for st in SHOWN_ORDER {
            assert_eq!(ShardState::parse(st.as_str()), Some(st));
        }
        assert_eq!(ShardState::parse("bogus"), None);
        assert_eq!(ShardState::WaitingForCanary.label(), "waiting for canary");
    }
}
