//! Actions: the kinds ([`ActionKind`], arguments, re-run safety), the worker that runs
//! them one at a time in acceptance order, and one module per kind.
//!
//! Every kind is a function of an [`ActionCtx`] and its validated arguments returning an
//! output or an [`ActionError`]; the worker records either. Automated failover (`ha/`)
//! runs beside the worker and leaves the node alone while an action runs, except to demote
//! it when the leader lease is about to expire.

mod init;
mod join;
mod kind;
mod membership;
mod restart;
mod shard;
mod switchover;
mod worker;

pub use kind::{
    parse_at, ActionKind, AddArgs, ArgError, AuthMethod, InitArgs, JoinArgs, RemoveArgs,
    RestartArgs, ShardArgs, StopMode, SwitchoverArgs,
};
pub use worker::{run_worker, Executor};

use crate::error::AgentError;
use serde::Serialize;
use serde_json::Value;

/// A machine-readable reason an action failed or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Something failed while executing; `message` says what.
    Failed,
    /// The agent stopped while a kind that is not safe to re-run was running.
    Interrupted,
    /// The kind runs on the island's master; this node is a replica.
    NotMaster,
    /// The node named is not in `atoll.toml` on this island.
    UnknownNode,
    /// `cluster.join`: the data directory is not empty, or unknown.
    DataDirectory,
    /// `cluster.join`: the master has no slot for this node (run `cluster.add` first).
    NotAdded,
    /// `cluster.remove`: a node cannot remove itself.
    RemoveSelf,
    /// `node.switchover`: no replica qualifies (`candidates` lists why each was not taken).
    NoCandidate,
    /// `node.switchover`: the candidate's replay is behind by more than `max_lag_bytes`.
    CandidateLagBytes,
    /// `node.switchover`: the candidate is not streaming from this master.
    CandidateNotStreaming,
    /// `node.switchover`: the candidate's replay is paused.
    CandidateReplayPaused,
    /// `node.switchover`: the candidate follows another timeline than this master's.
    TimelineMismatch,
    /// `node.switchover`: the candidate did not replay the last write in time; the old
    /// master was restarted as master (writes were refused meanwhile).
    CatchUpTimeout,
    /// `shard.activate`/`shard.deactivate`: refused by atoll's rules (`message`).
    ShardRefused,
    /// `node.switchover` with `[ha]`: the leader key could not be handed to the candidate
    /// (etcd unreachable, or this node does not hold it); the old master was restarted.
    LeaderKey,
}

/// Why an action did not succeed: a code, a one-line message, figures, partial output.
#[derive(Debug, Clone)]
pub struct ActionError {
    /// The reason code.
    pub code: ErrorCode,
    /// One line saying what and why.
    pub message: String,
    /// The numbers behind a refusal (`candidate_lag_bytes`, `max_lag_bytes`, …).
    pub details: serde_json::Map<String, Value>,
    /// What was done before the failure.
    pub output: Option<Value>,
}

impl ActionError {
    /// An error with `code` and `message` and no figures.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ActionError {
        ActionError {
            code,
            message: message.into(),
            details: Default::default(),
            output: None,
        }
    }

    /// Adds a figure.
    pub fn with(mut self, key: &str, value: impl Serialize) -> ActionError {
        self.details.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// The record's `error` object: `code`, `message` and the figures.
    pub fn to_json(&self) -> Value {
        let mut m = self.details.clone();
        m.insert(
            "code".into(),
            serde_json::to_value(self.code).unwrap_or(Value::Null),
        );
        m.insert("message".into(), Value::String(self.message.clone()));
        Value::Object(m)
    }
}

impl From<AgentError> for ActionError {
    fn from(e: AgentError) -> Self {
        ActionError::new(ErrorCode::Failed, e.to_string())
    }
}

impl From<atoll_pg::PgError> for ActionError {
    fn from(e: atoll_pg::PgError) -> Self {
        ActionError::new(ErrorCode::Failed, e.to_string())
    }
}

/// What an action's code gets: the agent's parts and a way to report progress.
pub struct ActionCtx<'a> {
    pub(crate) ex: &'a Executor,
    pub(crate) id: String,
}

/// Refuses a data directory that holds anything (`why` says what needs it empty); a missing
/// one is empty.
fn require_empty_dir(dir: &std::path::Path, why: &str) -> Result<(), ActionError> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(AgentError::io("cannot read", dir, e).into()),
    };
    if empty {
        return Ok(());
    }
    Err(ActionError::new(
        ErrorCode::DataDirectory,
        format!("{} is not empty: {why}", dir.display()),
    ))
}

impl ActionCtx<'_> {
    /// Records a progress message (shown in the record while it runs).
    pub async fn progress(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(action = %self.id, "{message}");
        if let Err(e) = self.ex.queue.progress(self.id.clone(), message).await {
            tracing::warn!(action = %self.id, error = %e, "cannot record progress");
        }
    }

    /// A new connection to this agent's own node.
    pub async fn local(&self) -> Result<tokio_postgres::Client, ActionError> {
        self.connect(&self.ex.cfg.node).await
    }

    /// A new connection to `node`.
    pub async fn connect(
        &self,
        node: &atoll_core::NodeConfig,
    ) -> Result<tokio_postgres::Client, ActionError> {
        Ok(atoll_pg::connect_as(node, "atoll-agent", self.ex.cfg.cluster.connect_timeout).await?)
    }

    /// Connects to the local node and refuses unless it is a master.
    pub async fn local_master(&self) -> Result<tokio_postgres::Client, ActionError> {
        let c = self.local().await?;
        let in_recovery: bool = c
            .query_one("select pg_is_in_recovery()", &[])
            .await
            .map_err(|e| AgentError::query(&self.ex.cfg.node, e))?
            .get(0);
        if in_recovery {
            return Err(ActionError::new(
                ErrorCode::NotMaster,
                format!(
                    "{} is a replica; run this on the island's master",
                    self.ex.cfg.node
                ),
            ));
        }
        Ok(c)
    }

    /// The node's data directory, or a `data_directory` error.
    pub fn data_dir(&self) -> Result<std::path::PathBuf, ActionError> {
        self.ex.reader.data_dir().ok_or_else(|| {
            ActionError::new(
                ErrorCode::DataDirectory,
                "the data directory is unknown: start the agent with --data-dir",
            )
        })
    }
}

/// Runs `kind` with its (validated) `args`.
pub(crate) async fn execute(
    ctx: &ActionCtx<'_>,
    kind: ActionKind,
    args: &Value,
) -> Result<Value, ActionError> {
    let bad = |e: ArgError| ActionError::new(ErrorCode::Failed, e.to_string());
    match kind {
        ActionKind::ShardActivate | ActionKind::ShardDeactivate => {
            let a: ShardArgs = parse_at(args, "args").map_err(bad)?;
            shard::run(ctx, a, kind == ActionKind::ShardActivate).await
        }
        ActionKind::NodeRestart => restart::run(ctx, parse_at(args, "args").map_err(bad)?).await,
        ActionKind::ClusterAdd => membership::add(ctx, parse_at(args, "args").map_err(bad)?).await,
        ActionKind::ClusterRemove => {
            membership::remove(ctx, parse_at(args, "args").map_err(bad)?).await
        }
        ActionKind::ClusterJoin => join::run(ctx, parse_at(args, "args").map_err(bad)?).await,
        ActionKind::NodeSwitchover => {
            switchover::run(ctx, parse_at(args, "args").map_err(bad)?).await
        }
        ActionKind::ClusterInit => init::run(ctx, parse_at(args, "args").map_err(bad)?).await,
    }
}
