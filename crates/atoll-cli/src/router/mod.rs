//! `atoll router`: run the HTTP router (`--config router.toml`), `check` its config,
//! `explain` a request. The global `--config` names the router's config here (default
//! `./router.toml`); the cluster's is named inside it (`atoll_config`).

mod explain;
mod serve;

use crate::exit::Failure;
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_router::RouterConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RouterArgs {
    #[command(subcommand)]
    command: Option<RouterCommand>,
}

#[derive(clap::Subcommand)]
enum RouterCommand {
    /// Validate the router config and print the compiled rules and cells
    Check,
    /// Show which rule, shard, island and cell a request would take
    Explain(explain::ExplainArgs),
}

impl From<atoll_router::RouterError> for Failure {
    fn from(e: atoll_router::RouterError) -> Failure {
        if e.is_input() {
            Failure::input(e)
        } else {
            Failure::failed(e)
        }
    }
}

pub fn run(ctx: &Context, args: RouterArgs) -> CmdResult {
    match args.command {
        None => crate::runtime()?.block_on(serve::run(ctx)),
        Some(RouterCommand::Check) => check(ctx),
        Some(RouterCommand::Explain(a)) => crate::runtime()?.block_on(explain::run(ctx, a)),
    }
}

/// The router config: `--config`, else `./router.toml`.
fn load(ctx: &Context) -> Result<RouterConfig, Failure> {
    let path = ctx
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("router.toml"));
    Ok(RouterConfig::from_file(&path)?)
}

fn check(ctx: &Context) -> CmdResult {
    let config = load(ctx)?;
    let s = atoll_router::check::summary(&config);
    if ctx.json {
        print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "router config is valid: listen {}, admin {}",
        s.listen,
        s.admin_listen.as_deref().unwrap_or("-")
    );
    println!(
        "cluster config: {}",
        s.atoll_config.as_deref().unwrap_or("- (no rules by shard)")
    );
    println!("cells (default {}):", s.default_cell);
    for c in &s.cells {
        let islands: Vec<String> = c.islands.iter().map(|i| i.to_string()).collect();
        println!(
            "  {:<12} {}  islands [{}]",
            c.name,
            c.addrs.join(", "),
            islands.join(", ")
        );
    }
    println!("rules, tried in order:");
    for (i, r) in s.rules.iter().enumerate() {
        let field = r
            .field
            .as_deref()
            .map(|f| format!(" {f}"))
            .unwrap_or_default();
        let keys = r
            .key_shards
            .map(|n| format!(" over {n} shards"))
            .unwrap_or_default();
        println!(
            "  {}. {:<12} {:?}{field} /{}/ → {:?} ({}){keys}",
            i + 1,
            r.name,
            r.source,
            r.pattern,
            r.kind,
            r.capture
        );
    }
    if s.rules.is_empty() {
        println!("  (none: learned routes, then the default cell)");
    }
    println!(
        "bodies held up to {} B within {} B; 404 jitter up to {} ms; cache {} entries / {} B",
        s.body_buffer_bytes,
        s.body_budget_bytes,
        s.jitter_404_ms,
        s.cache.max_entries,
        s.cache.max_bytes
    );
    Ok(ExitCode::SUCCESS)
}
