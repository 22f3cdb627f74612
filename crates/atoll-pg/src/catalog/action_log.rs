//! `atoll.action_log` (catalog step 10): the record of every action an operator took
//! through the control plane (`atoll serve`): who, from where, what, when, and how it
//! ended. Kept on the coordination island's master
//! ([`crate::coordination::coordination_island`]), so every control-plane process writes
//! to one log. An entry is opened before the action runs ([`open`]) and closed with its
//! outcome ([`close`]); an entry still `running` whose process is gone is closed as
//! `interrupted` by the next process with the same name ([`close_interrupted`]).

use crate::error::PgError;
use atoll_core::NodeConfig;
use serde::Serialize;
use tokio_postgres::GenericClient;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A move of one shard to another island was started.
    Move,
    /// An unfinished move was continued.
    MoveResume,
    /// An unfinished move was rolled back.
    MoveAbort,
    /// A reviewed rebalance plan was run.
    Rebalance,
    /// A reviewed migration plan was applied.
    MigrateApply,
}

/// How an action ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    /// Still under way.
    Running,
    /// Done as asked.
    Succeeded,
    /// Tried and failed (the detail says why; the operation's own state says what is left).
    Failed,
    /// Refused before anything changed (a conflicting operation, a changed plan).
    Refused,
    /// Its process ended before it did.
    Interrupted,
}

const KINDS: [ActionKind; 5] = [
    ActionKind::Move,
    ActionKind::MoveResume,
    ActionKind::MoveAbort,
    ActionKind::Rebalance,
    ActionKind::MigrateApply,
];

const OUTCOMES: [ActionOutcome; 5] = [
    ActionOutcome::Running,
    ActionOutcome::Succeeded,
    ActionOutcome::Failed,
    ActionOutcome::Refused,
    ActionOutcome::Interrupted,
];

impl ActionKind {
    /// The `kind` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Move => "move",
            ActionKind::MoveResume => "move_resume",
            ActionKind::MoveAbort => "move_abort",
            ActionKind::Rebalance => "rebalance",
            ActionKind::MigrateApply => "migrate_apply",
        }
    }

    fn parse(s: &str) -> Option<ActionKind> {
        KINDS.into_iter().find(|k| k.as_str() == s)
    }
}

impl ActionOutcome {
    /// The `outcome` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Running => "running",
            ActionOutcome::Succeeded => "succeeded",
            ActionOutcome::Failed => "failed",
            ActionOutcome::Refused => "refused",
            ActionOutcome::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Option<ActionOutcome> {
        OUTCOMES.into_iter().find(|o| o.as_str() == s)
    }
}

/// An action about to run.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// The name of the write token that authorised it (never the token).
    pub actor: &'a str,
    /// The client's address.
    pub remote: &'a str,
    /// The control-plane process (host, pid, listen address).
    pub server: &'a str,
    /// What.
    pub kind: ActionKind,
    /// On what, as one line (`sh0042 to island 2`, a plan digest).
    pub target: &'a str,
}

/// One entry of the log.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Its id, in the order entries were opened.
    pub id: i64,
    /// When it was opened (Unix ms, the server's clock).
    pub started_at_unix_ms: i64,
    /// When it was closed, if it was.
    pub finished_at_unix_ms: Option<i64>,
    /// The write token's name.
    pub actor: String,
    /// The client's address.
    pub remote: String,
    /// The control-plane process that ran it.
    pub server: String,
    /// What.
    pub kind: ActionKind,
    /// On what.
    pub target: String,
    /// How it ended.
    pub outcome: ActionOutcome,
    /// The error or a one-line result.
    pub detail: Option<String>,
}

fn table_error(node: &NodeConfig, e: tokio_postgres::Error) -> PgError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
        return PgError::Refused(format!(
            "node {node}: atoll.action_log does not exist; run `atoll init` to upgrade the catalog"
        ));
    }
    PgError::query(node, e)
}

/// Opens an entry (outcome `running`); its id.
pub async fn open(
    client: &impl GenericClient,
    node: &NodeConfig,
    e: &NewEntry<'_>,
) -> Result<i64, PgError> {
    let row = client
        .query_one(
            "insert into atoll.action_log (actor, remote, server, kind, target)
             values ($1, $2, $3, $4, $5) returning id",
            &[&e.actor, &e.remote, &e.server, &e.kind.as_str(), &e.target],
        )
        .await
        .map_err(|err| table_error(node, err))?;
    Ok(row.get(0))
}

/// Closes entry `id` with `outcome` and `detail`.
pub async fn close(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
    outcome: ActionOutcome,
    detail: Option<&str>,
) -> Result<(), PgError> {
    client
        .execute(
            "update atoll.action_log set outcome = $2, detail = $3, finished_at = now()
             where id = $1",
            &[&id, &outcome.as_str(), &detail],
        )
        .await
        .map_err(|err| table_error(node, err))?;
    Ok(())
}

/// Closes as `interrupted` the entries `server` left running (its previous life ended
/// without closing them); how many.
pub async fn close_interrupted(
    client: &impl GenericClient,
    node: &NodeConfig,
    server: &str,
) -> Result<u64, PgError> {
    client
        .execute(
            "update atoll.action_log
             set outcome = 'interrupted', finished_at = now(),
                 detail = coalesce(detail, 'the control plane stopped before the action ended')
             where server = $1 and outcome = 'running'",
            &[&server],
        )
        .await
        .map_err(|err| table_error(node, err))
}

/// The latest `limit` entries, newest first.
pub async fn list(
    client: &impl GenericClient,
    node: &NodeConfig,
    limit: i64,
) -> Result<Vec<Entry>, PgError> {
    let rows = client
        .query(
            "select id, (extract(epoch from started_at) * 1000)::bigint,
                    (extract(epoch from finished_at) * 1000)::bigint,
                    actor, remote, server, kind, target, outcome, detail
             from atoll.action_log order by id desc limit $1",
            &[&limit],
        )
        .await
        .map_err(|err| table_error(node, err))?;
    rows.iter()
        .map(|r| {
            let kind: String = r.get(6);
            let outcome: String = r.get(8);
            let bad = |what: &str, v: &str| {
                PgError::Refused(format!("node {node}: atoll.action_log has {what} {v:?}"))
            };
            Ok(Entry {
                id: r.get(0),
                started_at_unix_ms: r.get(1),
                finished_at_unix_ms: r.get(2),
                actor: r.get(3),
                remote: r.get(4),
                server: r.get(5),
                kind: ActionKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
                target: r.get(7),
                outcome: ActionOutcome::parse(&outcome).ok_or_else(|| bad("outcome", &outcome))?,
                detail: r.get(9),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_outcomes_read_back_what_they_write() {
        for k in KINDS {
            assert_eq!(ActionKind::parse(k.as_str()), Some(k));
        }
        for o in OUTCOMES {
            assert_eq!(ActionOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(ActionKind::parse("drop"), None);
        // The step's CHECK constraints list exactly these values.
        let step = include_str!("steps/010_action_log.sql");
        for v in KINDS
            .map(ActionKind::as_str)
            .iter()
            .chain(&OUTCOMES.map(ActionOutcome::as_str))
        {
            assert!(
                step.contains(&format!("'{v}'")),
                "{v} missing from the step"
            );
        }
    }
}
