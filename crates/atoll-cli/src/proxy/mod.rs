//! `atoll proxy`: the PostgreSQL wire-protocol proxy (atoll-proxy) until SIGINT or SIGTERM;
//! `atoll proxy status`: what a running one reports (`status.rs`).

mod status;

use crate::exit::Failure;
use crate::shutdown::ShutdownSignal;
use crate::{CmdResult, Context};
use atoll_core::proxy_config::ProxyPoolMode;
use atoll_core::{Secret, SecretRef};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProxyArgs {
    #[command(subcommand)]
    command: Option<ProxyCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum ProxyCommand {
    /// Show a running proxy's clients, server connections, islands and holds (from its
    /// /status, served next to /metrics)
    Status(status::StatusArgs),
}

/// How the proxy runs.
#[derive(clap::Args)]
struct RunArgs {
    /// Where clients connect [default: [proxy] listen, else 127.0.0.1:6432]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// A user clients log in as, with a reference to the password: NAME=env:VAR or
    /// NAME=file:PATH (repeatable; added to [proxy] users, a name given here wins)
    #[arg(long = "user", value_name = "NAME=REF")]
    users: Vec<String>,
    /// Connections per node, at most [default: [proxy] pool_size, else 20]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pool_size: Option<u32>,
    /// Bound on connecting to a node and on waiting for a pooled connection, in ms
    #[arg(long, default_value_t = 5000)]
    connect_timeout_ms: u64,
    /// How long a transaction on a moving shard is held (through the move's cut-over) at
    /// most before it gets 57P03, in ms [default: [proxy] hold_timeout_ms, else 5000]
    #[arg(long, value_name = "MS")]
    hold_timeout_ms: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Offer TLS to clients with this certificate chain (PEM); needs --tls-key [default:
    /// [proxy] tls_cert]
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS (or [proxy] require_tls = true)
    #[arg(long)]
    require_tls: bool,
    /// How long a client keeps a server connection: for a transaction, or for its whole
    /// session (LISTEN, SQL PREPARE, WITH HOLD cursors, SET ROLE work; one shard per
    /// session) [default: [proxy] pool_mode, else transaction]
    #[arg(long, value_enum)]
    pool_mode: Option<PoolModeArg>,
    /// Server connections one user's clients hold at once, over all nodes (default: only
    /// --pool-size per node bounds them)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    user_pool_size: Option<u32>,
    /// Client connections open at once, at most; more are refused (53300)
    #[arg(long, value_name = "N")]
    max_clients: Option<u32>,
    /// The database name clients connect to; others but the admin database `atoll` are
    /// refused [default: [proxy] database, else the first node's configured database]
    #[arg(long, value_name = "NAME")]
    database: Option<String>,
    /// Replicas further behind their master than this get no replica reads (`SET
    /// atoll.read = 'replica'`); the master answers them [default: [proxy]
    /// replica_max_lag_ms, else no bound]
    #[arg(long, value_name = "MS")]
    replica_max_lag_ms: Option<u64>,
    /// Threads serving clients (1: one event loop, as PgBouncer's, no wake-ups across
    /// threads)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PoolModeArg {
    Transaction,
    Session,
}

/// `NAME=REF`, the password resolved; errors name the user, never a value.
fn user(arg: &str) -> Result<(String, Secret), Failure> {
    let (name, reference) = arg
        .split_once('=')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| Failure::input("--user: expected NAME=env:VAR or NAME=file:PATH"))?;
    let r: SecretRef = reference
        .parse()
        .map_err(|e| Failure::input(format!("--user {name}: {e}")))?;
    let secret = r
        .resolve()
        .map_err(|e| Failure::input(format!("--user {name}: {e}")))?;
    Ok((name.to_string(), secret))
}

/// The flags over `[proxy]` over the defaults, validated (passwords resolved).
fn options(
    file: &atoll_core::proxy_config::ProxyConfig,
    args: RunArgs,
) -> Result<atoll_proxy::ProxyOptions, Failure> {
    let mut users: Vec<(String, Secret)> = Vec::new();
    for (name, reference) in &file.users {
        let secret = reference
            .resolve()
            .map_err(|e| Failure::input(format!("[proxy] users.{name}: {e}")))?;
        users.push((name.clone(), secret));
    }
    for arg in &args.users {
        let (name, secret) = user(arg)?;
        users.retain(|(n, _)| *n != name);
        users.push((name, secret));
    }
    let cert = args.tls_cert.clone().or_else(|| file.tls_cert.clone());
    let key = args.tls_key.clone().or_else(|| file.tls_key.clone());
    let tls = match (&cert, &key) {
        (Some(cert), Some(key)) => {
            Some(atoll_proxy::tls_server_config(cert, key).map_err(Failure::input)?)
        }
        _ => None,
    };
    let require_tls = args.require_tls || file.require_tls;
    if require_tls && tls.is_none() {
        return Err(Failure::input(
            "--require-tls needs --tls-cert and --tls-key (or [proxy] tls_cert and tls_key)",
        ));
    }
    let pool_mode = match (args.pool_mode, file.pool_mode) {
        (Some(PoolModeArg::Session), _) | (None, Some(ProxyPoolMode::Session)) => {
            ProxyPoolMode::Session
        }
        _ => ProxyPoolMode::Transaction,
    };
    Ok(atoll_proxy::ProxyOptions {
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 6432))),
        users,
        pool_size: args
            .pool_size
            .map(|n| n as usize)
            .or(file.pool_size)
            .unwrap_or(20),
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        hold_timeout: Duration::from_millis(
            args.hold_timeout_ms
                .or(file.hold_timeout_ms)
                .unwrap_or(5000),
        ),
        metrics: args.metrics.or(file.metrics),
        tls,
        require_tls,
        user_pool_size: args
            .user_pool_size
            .map(|n| n as usize)
            .or(file.user_pool_size),
        max_clients: args.max_clients.map(|n| n as usize).or(file.max_clients),
        pool_mode,
        database: database(args.database, file.database.clone())?,
        replica_max_lag: args
            .replica_max_lag_ms
            .or(file.replica_max_lag_ms)
            .map(Duration::from_millis),
    })
}

/// `--database` over `[proxy] database` (checked there), checked.
fn database(flag: Option<String>, file: Option<String>) -> Result<Option<String>, Failure> {
    match flag {
        Some(d) => atoll_core::proxy_config::check_database(&d)
            .map(|()| Some(d))
            .map_err(|e| Failure::input(format!("--database: {e}"))),
        None => Ok(file),
    }
}

pub fn run(ctx: &Context, args: ProxyArgs) -> CmdResult {
    match args.command {
        Some(ProxyCommand::Status(a)) => status::run(ctx, a),
        None => run_proxy(ctx, args.run),
    }
}

fn run_proxy(ctx: &Context, args: RunArgs) -> CmdResult {
    let runtime = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
    }
    .map_err(|e| Failure::failed(e).context("cannot start the async runtime"))?;
    runtime.block_on(serve(ctx, args))
}

async fn serve(ctx: &Context, args: RunArgs) -> CmdResult {
    let config = atoll_core::Config::load(ctx.config.as_deref()).map_err(Failure::input)?;
    let options = options(&config.proxy, args)?;
    // Before the address is printed: a SIGTERM sent on reading it must stop us gracefully.
    let shutdown = ShutdownSignal::install()?;
    let proxy = atoll_proxy::bind(config, options)
        .await
        .map_err(|e| match e {
            atoll_proxy::ProxyError::Cluster(_) => Failure::failed(e),
            other => Failure::input(other),
        })?;
    let addr = proxy.local_addr().map_err(Failure::failed)?;
    let metrics = proxy.metrics_addr().map(|a| a.to_string());
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({ "listen": addr.to_string(), "metrics": metrics })
        );
    } else {
        eprintln!("atoll proxy: clients connect to {addr}; Ctrl-C stops it");
        if let Some(m) = metrics {
            eprintln!("atoll proxy: metrics at http://{m}/metrics");
        }
    }
    proxy.serve(shutdown.recv()).await;
    eprintln!("atoll proxy: stopped");
    Ok(ExitCode::SUCCESS)
}
