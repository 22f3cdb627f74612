//! `atoll agent`: run the per-node agent (`atoll agent --node HOST:PORT --listen ADDR
//! --state-dir DIR`), or talk to running agents (`status`, `actions`, `schedule`). The
//! agent itself is `atoll-agent`; this module only parses flags and renders.

mod client;
mod commands;
mod run;
pub mod sandbox_agents;

pub use client::{refusal, AgentClient};
pub use commands::{status_line, wait};

/// An action id unique enough for one operator: the time in ms.
pub fn now_id() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string()
}

use crate::{CmdResult, Context};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The node this agent runs beside, HOST:PORT as in atoll.toml
    #[arg(long, value_name = "HOST:PORT", required = true)]
    pub node: Option<String>,
    /// Address of the HTTP API (loopback unless you mean otherwise)
    #[arg(long, value_name = "ADDR", required = true)]
    pub listen: Option<std::net::SocketAddr>,
    /// Directory of the agent's durable state (its action queue)
    #[arg(long, value_name = "DIR", required = true)]
    pub state_dir: Option<PathBuf>,
    /// Bearer token for actions, by reference: env:VAR or file:PATH (none: no actions)
    #[arg(long, value_name = "REF")]
    pub token: Option<String>,
    /// Who may read attributes and records: open, or token
    #[arg(long, value_name = "WHO", default_value = "open")]
    pub reads: ReadsFlag,
    /// The node's stable id [default: HOST:PORT]
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// Most actions waiting at once; one more is refused with 429
    #[arg(long, value_name = "N", default_value_t = atoll_agent::config::DEFAULT_QUEUE_LIMIT)]
    pub queue_limit: usize,
    /// The node's data directory (needed before the server runs: join, init)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of the PostgreSQL binaries [default: found as the sandbox finds them]
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    /// Server log of servers the agent starts [default: STATE_DIR/postgresql.log]
    #[arg(long, value_name = "FILE")]
    pub pg_log: Option<PathBuf>,
    /// How long a stop waits for a running action, in ms
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,
    /// Test hook: hold each action RUNNING once its work is done, without recording its
    /// outcome, as if killed there (a test then kills the agent with -9). Also read from
    /// $ATOLL_AGENT_TEST_HOLD. Refused unless the config is an `atoll sandbox` one.
    #[arg(
        long = "test-hold-after-work",
        env = "ATOLL_AGENT_TEST_HOLD",
        hide = true,
        hide_env = true
    )]
    pub test_hold_after_work: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ReadsFlag {
    Open,
    Token,
}

#[derive(clap::Subcommand)]
pub enum AgentCommand {
    /// What agents report: status, role, shards and lag of each node
    Status(commands::StatusArgs),
    /// An agent's action records, newest first (or one by --id)
    Actions(commands::ActionsArgs),
    /// Schedule an action on an agent (optionally waiting for its end)
    Schedule(commands::ScheduleArgs),
}

pub fn run(ctx: &Context, args: AgentArgs) -> CmdResult {
    match args.command {
        None => run::run(ctx, args.run),
        Some(AgentCommand::Status(a)) => crate::with_runtime(commands::status(ctx, a)),
        Some(AgentCommand::Actions(a)) => crate::with_runtime(commands::actions(ctx, a)),
        Some(AgentCommand::Schedule(a)) => crate::with_runtime(commands::schedule(ctx, a)),
    }
}
