//! `atoll`: microsharding for PostgreSQL, from the command line.
//!
//! A thin shell: flags are parsed into validated settings here, every command gets the
//! cluster through [`Context::cluster`] and shows progress through [`progress`]; the work
//! is done by `atoll-pg`, `atoll-migrate`, `atoll-move` and `atoll-sandbox`, decisions by
//! `atoll-core`. Exit codes:
//! 0 success, 1 the operation failed, 2 bad input (flags, config, shard numbers),
//! 3 `status` found the cluster unhealthy (a node down, a shard active twice, ...).

/// mimalloc instead of glibc's malloc: the servers (`router`, `agent`) allocate per
/// request from several threads (measured: `scripts/bench-router`, docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod allocate;
mod cleanup;
mod cluster;
mod debris;
mod demo;
mod exit;
mod global;
mod ha;
mod hook;
mod init;
mod migrate;
mod move_cmd;
mod output;
mod progress;
mod proxy;
mod rebalance;
mod route;
mod router;
mod sandbox;
mod schema;
mod serve;
mod shard;
mod shutdown;
mod status;

use clap::{Parser, Subcommand};
use exit::Failure;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "atoll",
    version,
    about = "Microsharding for PostgreSQL",
    propagate_version = true
)]
struct Cli {
    /// Cluster config file [default: $ATOLL_CONFIG, else ./atoll.toml, else $ATOLL_ISLANDS]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print results as JSON
    #[arg(long, global = true)]
    json: bool,
    /// Progress of long commands on stderr: auto (a bar on a terminal, plain lines
    /// otherwise, nothing with --json), plain, quiet, or json (one event object per line)
    #[arg(long, global = true, value_name = "MODE", default_value = "auto")]
    progress: progress::ProgressMode,
    /// More log output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Local sandbox clusters of real PostgreSQL islands
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Install or upgrade the atoll catalog on every island master
    Init,
    /// Create microshard schemas, placed on the least loaded islands
    Allocate(allocate::AllocateArgs),
    /// Discover the cluster: islands, nodes, roles, lag, and where each shard lives
    Status(status::StatusArgs),
    /// Activate or deactivate a microshard
    #[command(subcommand)]
    Shard(shard::ShardCommand),
    /// Start a sandbox, initialise it, allocate shards and print the status (--story: show
    /// a migration, moves and a rebalance under a writing application)
    Demo(demo::DemoArgs),
    /// Versioned schema changes on every microshard: plan, apply, undo, new
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// Compare the live schemas of all microshards
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Move a microshard to another island online; resume or abort an interrupted move
    Move(move_cmd::MoveArgs),
    /// Move shards so islands carry equal weight, or to empty islands being decommissioned
    Rebalance(rebalance::RebalanceArgs),
    /// Drop the backup schemas moves leave on their source islands
    Cleanup(cleanup::CleanupArgs),
    /// Run the per-node agent (--node, --listen, --state-dir), or ask running agents
    /// (status, actions, schedule)
    Agent(Box<agent::AgentArgs>),
    /// The HTTP router in front of application cells (--config names router.toml here):
    /// run it, `check` its config, `explain` a request
    Router(router::RouterArgs),
    /// Automated failover on etcd: `ha status` shows leaders, members and the last failover
    #[command(subcommand)]
    Ha(ha::HaCommand),
    /// Hand an island's master role to a replica through the agents (and the leader key)
    Failover(ha::FailoverArgs),
    /// The control plane: a REST API over the cluster (/api/v1) and Prometheus /metrics
    Serve(serve::ServeArgs),
    /// Shard 0's cluster-wide tables copied read-only to every island: replicate, status
    #[command(subcommand)]
    Global(global::GlobalCommand),
    /// The PostgreSQL wire-protocol proxy: clients of any language reach the microshard each
    /// transaction names, through pooled connections (--user NAME=env:VAR)
    Proxy(proxy::ProxyArgs),
    /// Which microshard a SQL statement names and which node would run it (exit 2 when it
    /// cannot be routed, with the SQLSTATE a router answers)
    Route(route::RouteArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let ctx = Context {
        config: cli.config,
        json: cli.json,
        progress: cli.progress,
    };
    let result = match cli.command {
        Command::Sandbox(cmd) => sandbox::run(&ctx, cmd),
        Command::Demo(args) => demo::run(&ctx, args),
        Command::Init => with_runtime(init::run(&ctx)),
        Command::Allocate(args) => with_runtime(allocate::run(&ctx, args)),
        Command::Status(args) => with_runtime(status::run(&ctx, args)),
        Command::Shard(cmd) => with_runtime(shard::run(&ctx, cmd)),
        Command::Migrate(cmd) => with_runtime(migrate::run(&ctx, cmd)),
        Command::Schema(cmd) => with_runtime(schema::run(&ctx, cmd)),
        Command::Move(args) => with_runtime(move_cmd::run(&ctx, args)),
        Command::Rebalance(args) => with_runtime(rebalance::run(&ctx, args)),
        Command::Cleanup(args) => with_runtime(cleanup::run(&ctx, args)),
        Command::Route(args) => with_runtime(route::run(&ctx, args)),
        Command::Proxy(args) => proxy::run(&ctx, args),
        Command::Agent(args) => agent::run(&ctx, *args),
        Command::Router(args) => router::run(&ctx, args),
        Command::Ha(cmd) => with_runtime(ha::status(&ctx, cmd)),
        Command::Failover(args) => with_runtime(ha::failover(&ctx, args)),
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Global(cmd) => with_runtime(global::run(&ctx, cmd)),
    };
    match result {
        Ok(code) => code,
        Err(f) => f.report(),
    }
}

/// Global settings every command gets; passed explicitly, never read from globals.
pub struct Context {
    pub config: Option<PathBuf>,
    pub json: bool,
    pub progress: progress::ProgressMode,
}

pub type CmdResult = Result<ExitCode, Failure>;

fn with_runtime(fut: impl std::future::Future<Output = CmdResult>) -> CmdResult {
    runtime()?.block_on(fut)
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(e).context("cannot start the async runtime"))
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATOLL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        // Whatever the user asks for: tokio-postgres logs every statement batch at debug
        // level, and a move's CREATE SUBSCRIPTION carries the source's password. Its
        // notices (info) only with -v.
        .add_directive(quiet_driver(verbose));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn quiet_driver(verbose: u8) -> tracing_subscriber::filter::Directive {
    let directive = if verbose == 0 {
        "tokio_postgres=warn"
    } else {
        "tokio_postgres=info"
    };
    // A constant directive; the fallback is the same filter spelled as a level.
    directive
        .parse()
        .unwrap_or_else(|_| tracing::level_filters::LevelFilter::WARN.into())
}
