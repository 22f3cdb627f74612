//! `atoll sandbox up|status|down|destroy` and `atoll demo`.

use crate::exit::Failure;
use crate::hook::SANDBOX_MARK;
use crate::output::print_json;
use crate::progress::Progress;
use crate::{CmdResult, Context};
use atoll_sandbox::{Sandbox, SandboxSpec};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(crate) const DEFAULT_DIR: &str = "atoll-sandbox";

#[derive(clap::Subcommand)]
pub enum SandboxCommand {
    /// Create and start a sandbox, or start a stopped one (a running one is left as is)
    Up(UpArgs),
    /// Show the sandbox's nodes and whether they run
    Status(DirArgs),
    /// Stop every server the sandbox started
    Down(DirArgs),
    /// Stop the servers and delete the sandbox directory
    Destroy(DirArgs),
}

#[derive(clap::Args)]
pub struct DirArgs {
    /// Sandbox directory
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// Sandbox directory
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Number of islands [default: 2, or what the sandbox has]
    #[arg(long)]
    pub islands: Option<u16>,
    /// Streaming replicas per island [default: 1, or what the sandbox has]
    #[arg(long)]
    pub replicas: Option<u16>,
    /// First port: island i node j listens on P + 10*i + j [default: a free range from 54320]
    #[arg(long, value_name = "P")]
    pub base_port: Option<u16>,
    /// Serve TLS with a generated self-signed CA (in DIR/tls/), refuse plain TCP, and write
    /// sslmode = "verify-full" with that CA into atoll.toml
    #[arg(long)]
    pub tls: bool,
    /// Also run an `atoll agent` per node (port = node port + 1000, another when held; token in DIR/agents/token)
    #[arg(long)]
    pub agents: bool,
    /// Automated failover: start a local etcd (stopped with the sandbox), write [ha] into
    /// atoll.toml, and run the agents (implies --agents)
    #[arg(long)]
    pub ha: bool,
    /// With --ha: the leader TTL in seconds
    #[arg(long, value_name = "S", default_value_t = 10, requires = "ha")]
    pub ha_ttl: u64,
    /// With --ha: synchronous mode (an acknowledged commit is on a replica)
    #[arg(long, requires = "ha")]
    pub synchronous: bool,
}

pub fn run(ctx: &Context, cmd: SandboxCommand) -> CmdResult {
    match cmd {
        SandboxCommand::Up(args) => {
            let sandbox = up(ctx, &args)?;
            if args.ha {
                sandbox.enable_ha(atoll_sandbox::SandboxHa {
                    ttl_s: args.ha_ttl,
                    loop_ms: None,
                    synchronous: args.synchronous,
                })?;
            }
            let config = publish_config(&sandbox)?;
            let agents = if args.agents || args.ha {
                crate::agent::sandbox_agents::start_all(&sandbox)?
            } else {
                Vec::new()
            };
            report_status(ctx, &sandbox, config.as_deref())?;
            report_agents(ctx, &sandbox, &agents)?;
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Status(args) => {
            let sandbox = Sandbox::open(&args.dir)?;
            report_status(ctx, &sandbox, None)?;
            let all = sandbox.status().all_running();
            Ok(if all {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::exit::UNHEALTHY)
            })
        }
        SandboxCommand::Down(args) => {
            let sandbox = Sandbox::open(&args.dir)?;
            crate::agent::sandbox_agents::stop_all(sandbox.dir());
            sandbox.down()?;
            done(ctx, "down", &args.dir)
        }
        SandboxCommand::Destroy(args) => {
            if !Sandbox::exists(&args.dir) {
                return Err(Failure::input(format!(
                    "{} holds no sandbox",
                    args.dir.display()
                )));
            }
            let opened = Sandbox::open(&args.dir)?;
            crate::agent::sandbox_agents::stop_all(opened.dir());
            let ours = std::fs::read_to_string(opened.config_path()).ok();
            Sandbox::destroy(&args.dir)?;
            unpublish_config(ours);
            done(ctx, "destroyed", &args.dir)
        }
    }
}

/// The agents `--agents` runs, and how to ask them.
fn report_agents(
    ctx: &Context,
    sandbox: &Sandbox,
    agents: &[crate::agent::sandbox_agents::SandboxAgent],
) -> Result<(), Failure> {
    if agents.is_empty() {
        return Ok(());
    }
    let token = sandbox.dir().join("agents").join("token");
    if ctx.json {
        // stdout holds the status JSON already: the agents go to stderr as one line.
        eprintln!(
            "{}",
            serde_json::json!({ "agents": agents, "token": format!("file:{}", token.display()) })
        );
        return Ok(());
    }
    let flags: Vec<String> = agents
        .iter()
        .map(|a| format!("--agent {}", a.agent))
        .collect();
    for a in agents {
        println!(
            "agent {} for island {} node {} ({})",
            a.agent, a.island, a.index, a.node
        );
    }
    println!("token: file:{}", token.display());
    println!("ask them: atoll status {}", flags.join(" "));
    Ok(())
}

fn done(ctx: &Context, what: &str, dir: &Path) -> CmdResult {
    if ctx.json {
        print_json(&serde_json::json!({ "sandbox": dir, "state": what }))?;
    } else {
        println!("sandbox {} {what}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn up(ctx: &Context, args: &UpArgs) -> Result<Sandbox, Failure> {
    // Counts not given on the command line come from the existing sandbox, so a plain
    // `up` restarts whatever shape it has.
    let existing = Sandbox::exists(&args.dir)
        .then(|| Sandbox::open(&args.dir))
        .transpose()?
        .map(|s| s.islands());
    let islands = args
        .islands
        .or_else(|| existing.as_ref().map(|i| i.len() as u16))
        .unwrap_or(2);
    let replicas = args
        .replicas
        .or_else(|| {
            existing
                .as_ref()
                .and_then(|i| i.first())
                .map(|i| i.nodes.len().saturating_sub(1) as u16)
        })
        .unwrap_or(1);
    let spec = SandboxSpec {
        dir: args.dir.clone(),
        islands,
        replicas,
        base_port: args.base_port,
        tls: args.tls,
    };
    let progress = Progress::new(ctx).spinner(&format!(
        "sandbox {}: {islands} islands x (1 master + {replicas} replicas) starting",
        spec.dir.display()
    ));
    let sandbox = Sandbox::up(&spec)?;
    progress.finish(&format!("sandbox {}: up", spec.dir.display()));
    Ok(sandbox)
}

/// Copies the sandbox's atoll.toml to ./atoll.toml so later commands find it, unless a
/// config of the user's own is there. Returns where it was published.
pub(crate) fn publish_config(sandbox: &Sandbox) -> Result<Option<PathBuf>, Failure> {
    let target = PathBuf::from("atoll.toml");
    let source = sandbox.config_path();
    // Run from the sandbox's own directory, ./atoll.toml is the sandbox's config: copying
    // a file onto itself would truncate it.
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    if same(&source, &target) {
        return Ok(Some(target));
    }
    if let Ok(text) = std::fs::read_to_string(&target) {
        // A config the sandbox wrote may be replaced, any other not.
        if !text.starts_with(SANDBOX_MARK) {
            return Ok(None);
        }
    }
    std::fs::copy(&source, &target)
        .map_err(|e| Failure::failed(format!("cannot write {}: {e}", target.display())))?;
    Ok(Some(target))
}

/// Removes ./atoll.toml if it is a copy of this sandbox's config (read before destroying).
fn unpublish_config(sandbox_config: Option<String>) {
    let target = Path::new("atoll.toml");
    if let (Ok(text), Some(ours)) = (std::fs::read_to_string(target), sandbox_config) {
        if text == ours {
            let _ = std::fs::remove_file(target);
        }
    }
}

fn report_status(
    ctx: &Context,
    sandbox: &Sandbox,
    published: Option<&Path>,
) -> Result<(), Failure> {
    let status = sandbox.status();
    if ctx.json {
        return print_json(&status);
    }
    println!(
        "sandbox {} (PostgreSQL from {})",
        status.dir.display(),
        status.pg_bin.display()
    );
    for n in &status.nodes {
        println!(
            "  island {} node {} {:<8} 127.0.0.1:{:<5} {}",
            n.island,
            n.index,
            format!("{:?}", n.role).to_lowercase(),
            n.port,
            match n.pid {
                Some(pid) if n.running => format!("running (pid {pid})"),
                _ => "stopped".into(),
            }
        );
    }
    println!("config: {}", sandbox.config_path().display());
    match published {
        Some(p) => println!(
            "        (copied to {}; atoll commands here use it)",
            p.display()
        ),
        None => println!(
            "        (use it with --config {} or ATOLL_CONFIG)",
            sandbox.config_path().display()
        ),
    }
    if let Some(n) = status.nodes.first() {
        println!("look around: psql -h 127.0.0.1 -p {} -U postgres", n.port);
    }
    Ok(())
}
