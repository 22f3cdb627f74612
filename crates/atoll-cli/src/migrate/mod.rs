//! `atoll migrate plan|apply|undo|new`: versioned schema changes on every microshard.

use crate::cluster::{Cluster, Need};
use crate::exit::{Failure, FAILED, UNHEALTHY};
use crate::output::print_json;
use crate::progress::Progress;
use crate::{CmdResult, Context};
use atoll_core::migration::{MigrationSet, PlanFile, Scope};
use atoll_core::IslandId;
use atoll_migrate::{Event, LockPolicy, OnFailure, ReviewedPlan, RunOptions, RunReport};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod render;
mod status;

pub use render::{render_plan, render_report};

#[derive(clap::Subcommand)]
pub enum MigrateCommand {
    /// Dry run: which versions each schema needs (grouped), drift, unsafe statements;
    /// --out writes the reviewed plan that `apply --plan` applies exactly
    Plan(PlanArgs),
    /// Apply pending versions: canary first, then all shards in parallel, then non-shard schemas
    Apply(ApplyArgs),
    /// Undo VERSION wherever it is the latest applied version (runs its .dn.sql)
    Undo(UndoArgs),
    /// Create an empty timestamped <version>.<name>.<target>.up.sql / .dn.sql pair
    New(NewArgs),
    /// A run's state: counts, the schemas in each state as ranges, the first failure
    Status(status::StatusArgs),
    /// Past runs, newest first
    Runs(status::RunsArgs),
    /// Ask the running apply/undo to stop: running schemas finish, nothing new starts;
    /// `apply` again resumes
    Stop,
}

#[derive(clap::Args)]
pub struct DirArgs {
    /// Migration directory: <version>.<name>.<target>.up.sql / .dn.sql, before.sql, after.sql
    #[arg(long, default_value = "migrations", value_name = "DIR")]
    pub dir: PathBuf,
}

/// Which shards a command touches; the default is every shard.
#[derive(clap::Args)]
pub struct ScopeArgs {
    /// Only these shards: N, N-M or a comma list of those (1-100,4242); the non-shard
    /// schemas then run only once every shard is up to date
    #[arg(long, value_name = "RANGES")]
    pub shards: Option<String>,
    /// Only the shards whose schema is on this island
    #[arg(long, value_name = "N")]
    pub island: Option<u16>,
}

impl ScopeArgs {
    pub fn scope(&self) -> Result<Scope, Failure> {
        Scope::new(self.shards.as_deref(), self.island.map(IslandId)).map_err(Failure::input)
    }
}

#[derive(clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Write the plan (per group: shards, versions with checksums, unsafe notes, the state
    /// it was computed from, the cluster id) to FILE, for `migrate apply --plan FILE`
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Shards migrated first, one at a time; the run stops if one of them fails
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub canary: usize,
    /// Schemas migrated at once per island (one connection each)
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// How long DDL may wait for a lock before it gives up and retries, in milliseconds
    /// (at least 1: PostgreSQL reads 0 as "wait forever")
    #[arg(long, default_value_t = 5000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub lock_timeout_ms: u64,
    /// Retries of a retryable failure: lock timeout, deadlock, serialization failure, a
    /// connection lost before the commit (with bounded backoff)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub lock_retries: u32,
    /// What a failed schema does: continue (the others go on) or halt (nothing new
    /// starts, running schemas finish, the run ends "halted")
    #[arg(long, value_enum, default_value = "continue", value_name = "POLICY")]
    pub on_failure: OnFailureArg,
    /// Halt the run once this many schemas failed
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failures: Option<u32>,
    /// How long to wait, in seconds, for an index that another backend (a killed run's)
    /// is still building before failing that schema instead of dropping the running build
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub index_build_wait_secs: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OnFailureArg {
    Continue,
    Halt,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Apply destructive statements (DROP TABLE, DROP COLUMN, TRUNCATE, type changes)
    #[arg(long)]
    pub allow_unsafe: bool,
    /// Apply exactly the plan `migrate plan --out FILE` wrote, refusing if a file or a
    /// shard's state changed since, or the plan is for another cluster
    #[arg(long, value_name = "FILE", conflicts_with_all = ["shards", "island"])]
    pub plan: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct UndoArgs {
    /// The version to undo: the full name (20240101120000.users.sh) or its number
    #[arg(value_name = "VERSION")]
    pub undo_version: String,
    #[command(flatten)]
    pub run: RunArgs,
    /// Run a down file holding destructive statements (DROP TABLE, DROP COLUMN, ...)
    #[arg(long)]
    pub allow_unsafe: bool,
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// Migration name: letters, digits, _ and -
    pub name: String,
    /// Schema prefix the migration applies to: sh (every shard), public, ...
    #[arg(long, default_value = "sh")]
    pub target: String,
    #[command(flatten)]
    pub dir: DirArgs,
}

pub async fn run(ctx: &Context, cmd: MigrateCommand) -> CmdResult {
    match cmd {
        MigrateCommand::New(args) => new(ctx, args),
        MigrateCommand::Plan(args) => plan(ctx, &args).await,
        MigrateCommand::Status(args) => status::status(ctx, &args).await,
        MigrateCommand::Runs(args) => status::runs(ctx, &args).await,
        MigrateCommand::Stop => status::stop(ctx).await,
        MigrateCommand::Apply(args) => {
            let set = read_set(&args.run.dir.dir)?;
            let mut opts = options(&args.run, args.allow_unsafe)?;
            opts.plan = args.plan.as_deref().map(read_plan).transpose()?;
            let Cluster { config, snapshot } = ctx.cluster(Need::Run).await?;
            opts.global_copies = Some(copy_hook(&config, &snapshot));
            let view = Progress::new(ctx).run();
            let on = |e: Event| view.on(e);
            let report = atoll_migrate::apply(&config, &snapshot, &set, &opts, &on).await;
            view.finish();
            finish(ctx, &report?)
        }
        MigrateCommand::Undo(args) => {
            let set = read_set(&args.run.dir.dir)?;
            let mut opts = options(&args.run, args.allow_unsafe)?;
            let Cluster { config, snapshot } = ctx.cluster(Need::Run).await?;
            opts.global_copies = Some(copy_hook(&config, &snapshot));
            let view = Progress::new(ctx).run();
            let on = |e: Event| view.on(e);
            let version = &args.undo_version;
            let report = atoll_migrate::undo(&config, &snapshot, &set, version, &opts, &on).await;
            view.finish();
            finish(ctx, &report?)
        }
    }
}

/// Shard 0's copies held and following its migration.
fn copy_hook(
    config: &atoll_core::Config,
    snapshot: &atoll_core::Snapshot,
) -> std::sync::Arc<dyn atoll_core::global_copy::CopyHook> {
    std::sync::Arc::new(atoll_move::global_copy::MigrationHook::new(
        config.clone(),
        std::sync::Arc::new(snapshot.clone()),
    ))
}

/// Reads and checks a plan file (format, digest); what it plans is checked by the run.
fn read_plan(path: &Path) -> Result<ReviewedPlan, Failure> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::input(format!("plan file {shown}: cannot read it: {e}")))?;
    let file = PlanFile::parse(&shown, &text).map_err(Failure::input)?;
    Ok(ReviewedPlan { path: shown, file })
}

fn options(args: &RunArgs, allow_unsafe: bool) -> Result<RunOptions, Failure> {
    Ok(RunOptions {
        canary: args.canary,
        parallelism: args.parallelism as usize,
        allow_unsafe,
        policy: LockPolicy {
            lock_timeout: Duration::from_millis(args.lock_timeout_ms),
            retries: args.lock_retries,
            build_wait: Duration::from_secs(args.index_build_wait_secs),
        },
        only: None,
        scope: args.scope.scope()?,
        plan: None,
        on_failure: match args.on_failure {
            OnFailureArg::Continue => OnFailure::Continue,
            OnFailureArg::Halt => OnFailure::Halt,
        },
        max_failures: args.max_failures.map(|n| n as usize),
        global_copies: None,
    })
}

fn write_plan(out: &Path, file: &PlanFile) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(file).map_err(Failure::failed)?;
    // Renamed into place: an interrupted write never leaves half a plan under its name.
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, out))
        .map_err(|e| Failure::failed(format!("cannot write {}: {e}", out.display())))
}

pub fn read_set(dir: &Path) -> Result<MigrationSet, Failure> {
    Ok(atoll_migrate::read_dir(dir)?)
}

fn new(ctx: &Context, args: NewArgs) -> CmdResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let paths = atoll_migrate::new_pair(&args.dir.dir, &args.name, &args.target, now)
        .map_err(Failure::from)?;
    if ctx.json {
        print_json(&paths)?;
    } else {
        for p in paths {
            println!("created {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn plan(ctx: &Context, args: &PlanArgs) -> CmdResult {
    let set = read_set(&args.dir.dir)?;
    let scope = args.scope.scope()?;
    let Cluster { config, snapshot } = ctx.cluster(Need::Run).await?;
    let (plan, file) = atoll_migrate::plan_scoped(&config, &snapshot, &set, &scope)
        .await
        .map_err(Failure::from)?;
    if ctx.json {
        print_json(&plan)?;
    } else {
        print!("{}", render_plan(&set, &plan, &args.dir.dir));
    }
    if let Some(out) = &args.out {
        if plan.drift.is_empty() {
            let file = file.map_err(Failure::from)?;
            write_plan(out, &file)?;
            if !ctx.json {
                println!(
                    "wrote {}: {} schemas in {} groups ({}), for cluster {}",
                    out.display(),
                    file.schemas(),
                    file.groups.len(),
                    file.scope,
                    file.cluster_id
                );
            }
        } else {
            eprintln!(
                "no plan written to {}: resolve the drift first",
                out.display()
            );
        }
    }
    // Drift must be resolved before anything can be applied.
    Ok(if plan.drift.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(UNHEALTHY)
    })
}

/// Prints a run's report; exit 1 if any schema failed.
pub fn finish(ctx: &Context, report: &RunReport) -> CmdResult {
    if ctx.json {
        print_json(report)?;
    } else {
        print!("{}", render_report(report));
    }
    Ok(exit_code(report))
}

/// Success when the run finished every schema (or had nothing to do), else exit 1.
pub fn exit_code(report: &RunReport) -> ExitCode {
    if report.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    }
}
