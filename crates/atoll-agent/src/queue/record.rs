//! An action invocation record: what was asked (id, kind, arguments, when) and what the
//! agent made of it (state, times, progress, output, error).

use crate::actions::ActionKind;
use serde::Serialize;

/// Where an action is in its life: `NEW → RUNNING → DONE | FAILED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionState {
    /// Accepted and waiting its turn.
    New,
    /// Being executed (at most one action is).
    Running,
    /// Finished; `output` holds the result.
    Done,
    /// Finished without success; `error` says why (`interrupted` after a crash of a kind
    /// that is not safe to re-run).
    Failed,
}

impl ActionState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::New => "NEW",
            ActionState::Running => "RUNNING",
            ActionState::Done => "DONE",
            ActionState::Failed => "FAILED",
        }
    }

    /// The state named `s`, if any.
    pub fn parse(s: &str) -> Option<ActionState> {
        [
            ActionState::New,
            ActionState::Running,
            ActionState::Done,
            ActionState::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// DONE or FAILED.
    pub fn is_final(self) -> bool {
        matches!(self, ActionState::Done | ActionState::Failed)
    }
}

/// One action's record, as stored in the queue and returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    /// The caller-chosen id, unique on this agent.
    pub id: String,
    /// Position in acceptance order (1, 2, …): actions run in this order.
    pub seq: i64,
    /// The action kind.
    pub kind: ActionKind,
    /// The arguments as accepted (validated for the kind).
    pub args: serde_json::Value,
    /// Current state.
    pub state: ActionState,
    /// When it was accepted, Unix time in milliseconds.
    pub created_at_ms: i64,
    /// When it (last) started running, Unix ms.
    pub started_at_ms: Option<i64>,
    /// When it finished, Unix ms.
    pub finished_at_ms: Option<i64>,
    /// The latest progress message.
    pub progress: Option<String>,
    /// The result (DONE), or what was done before failing (FAILED), per kind.
    pub output: Option<serde_json::Value>,
    /// Why it failed: a message, and for refusals a machine-readable `code` and figures.
    pub error: Option<serde_json::Value>,
    /// How many times it was started (2 after a kill -9 of a re-runnable kind).
    pub attempts: i64,
}
