//! `atoll migrate plan|apply|undo|new`: versioned schema changes on every microshard.

use crate::exit::{Failure, UNHEALTHY};
use crate::output::print_json;
use crate::status::require_masters;
use crate::{CmdResult, Context};
use atoll_core::allocation::Placement;
use atoll_core::migration::{MigrationSet, Plan};
use atoll_core::{Config, Snapshot};
use atoll_migrate::{Event, LockPolicy, MigrateError, RunOptions, RunReport};
use atoll_pg::allocate::Allocated;
use atoll_pg::{Discoverer, DiscoveryOptions};
use progress::{run_with_progress, Renderer};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod progress;

#[derive(clap::Subcommand)]
pub enum MigrateCommand {
    /// Dry run: which versions each schema needs (grouped), drift, unsafe statements
    Plan(DirArgs),
    /// Apply pending versions: canary first, then all shards in parallel, then non-shard schemas
    Apply(ApplyArgs),
    /// Undo VERSION wherever it is the latest applied version (runs its .dn.sql)
    Undo(UndoArgs),
    /// Create an empty timestamped <version>.<name>.<target>.up.sql / .dn.sql pair
    New(NewArgs),
}

#[derive(clap::Args)]
pub struct DirArgs {
    /// Migration directory: <version>.<name>.<target>.up.sql / .dn.sql, before.sql, after.sql
    #[arg(long, default_value = "migrations", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub dir: DirArgs,
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
    /// Retries after a lock timeout or deadlock
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub lock_retries: u32,
    /// How long to wait, in seconds, for an index that another backend (a killed run's)
    /// is still building before failing that schema instead of dropping the running build
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub index_build_wait_secs: u64,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Apply destructive statements (DROP TABLE, DROP COLUMN, TRUNCATE, type changes)
    #[arg(long)]
    pub allow_unsafe: bool,
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
        MigrateCommand::Apply(args) => {
            let set = read_set(&args.run.dir.dir)?;
            let (config, snapshot) = cluster(ctx).await?;
            let opts = options(&args.run, args.allow_unsafe);
            let r = Renderer::new(ctx.json);
            let cb = |e: Event| r.on(e);
            let fut = atoll_migrate::apply(&config, &snapshot, &set, &opts, &cb);
            let report = run_with_progress(&r, fut).await?;
            finish(ctx, &report)
        }
        MigrateCommand::Undo(args) => {
            let set = read_set(&args.run.dir.dir)?;
            let (config, snapshot) = cluster(ctx).await?;
            let opts = options(&args.run, args.allow_unsafe);
            let r = Renderer::new(ctx.json);
            let cb = |e: Event| r.on(e);
            let fut = atoll_migrate::undo(&config, &snapshot, &set, &args.undo_version, &opts, &cb);
            let report = run_with_progress(&r, fut).await?;
            finish(ctx, &report)
        }
    }
}

fn options(args: &RunArgs, allow_unsafe: bool) -> RunOptions {
    RunOptions {
        canary: args.canary,
        parallelism: args.parallelism as usize,
        allow_unsafe,
        policy: LockPolicy {
            lock_timeout: Duration::from_millis(args.lock_timeout_ms),
            retries: args.lock_retries,
            build_wait: Duration::from_secs(args.index_build_wait_secs),
        },
        only: None,
    }
}

pub fn read_set(dir: &Path) -> Result<MigrationSet, Failure> {
    atoll_migrate::read_dir(dir).map_err(failure)
}

pub fn failure(e: MigrateError) -> Failure {
    if e.is_input() {
        Failure::input(e)
    } else {
        Failure::failed(e)
    }
}

/// Config and a discovery round without sizes: a run only needs the masters.
pub(crate) async fn cluster(ctx: &Context) -> Result<(Config, Snapshot), Failure> {
    let config = ctx.load_config()?;
    let options = DiscoveryOptions {
        sizes: false,
        ..DiscoveryOptions::default()
    };
    let snapshot = Discoverer::new(config.clone(), options).discover().await;
    require_masters(&snapshot)?;
    Ok((config, snapshot))
}

fn new(ctx: &Context, args: NewArgs) -> CmdResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let paths =
        atoll_migrate::new_pair(&args.dir.dir, &args.name, &args.target, now).map_err(failure)?;
    if ctx.json {
        print_json(&paths)?;
    } else {
        for p in paths {
            println!("created {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn plan(ctx: &Context, dir: &DirArgs) -> CmdResult {
    let set = read_set(&dir.dir)?;
    let (config, snapshot) = cluster(ctx).await?;
    let plan = atoll_migrate::plan_only(&config, &snapshot, &set)
        .await
        .map_err(failure)?;
    if ctx.json {
        print_json(&plan)?;
    } else {
        print!("{}", render_plan(&set, &plan, &dir.dir));
    }
    // Drift must be resolved before anything can be applied.
    Ok(if plan.drift.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(UNHEALTHY)
    })
}

fn versions(v: &[String]) -> String {
    match v {
        [one] => format!("version {one}"),
        [a, b] => format!("versions {a}, {b}"),
        [first, .., last] => format!("{} versions {first} .. {last}", v.len()),
        [] => "nothing".into(),
    }
}

pub fn render_plan(set: &MigrationSet, plan: &Plan, dir: &Path) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} migrations in {} (targets: {})",
        set.migrations.len(),
        dir.display(),
        set.targets().join(", ")
    );
    for g in &plan.groups {
        let what = if g.count == 1 { "schema" } else { "schemas" };
        let _ = writeln!(
            out,
            "{} -> {} {what}: {}",
            versions(&g.pending),
            g.count,
            g.schemas
        );
    }
    let _ = writeln!(out, "{} schemas up to date", plan.up_to_date);
    for d in &plan.drift {
        if let Some(why) = &d.drift {
            let _ = writeln!(out, "drift: {} (island {}): {why}", d.schema, d.island);
        }
    }
    for u in &plan.unsafe_pending {
        let _ = writeln!(
            out,
            "unsafe: {} contains {} (apply needs --allow-unsafe)",
            u.file, u.statement
        );
    }
    for t in &plan.throttled {
        let _ = writeln!(out, "throttled: {} ({})", t.file, t.directives);
    }
    for c in &plan.changed {
        let _ = writeln!(
            out,
            "changed: {} was edited after {} schemas applied it (e.g. {}); the edit will not run there, write a new migration",
            c.file, c.count, c.example
        );
    }
    for i in &plan.ignored {
        let _ = writeln!(
            out,
            "ignored: {} (island {}) matches target {} but is not a shard name (a leftover copy?); it is never migrated",
            i.schema, i.island, i.target
        );
    }
    for t in &plan.unmatched_targets {
        let _ = writeln!(out, "note: no schema matches target {t}");
    }
    out
}

/// Prints a run's report; exit 1 if any schema failed.
pub fn finish(ctx: &Context, report: &RunReport) -> CmdResult {
    if ctx.json {
        print_json(report)?;
    } else {
        print!("{}", render_report(report));
    }
    Ok(
        if report.status == "done" || report.status == "nothing_to_do" {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(crate::exit::FAILED)
        },
    )
}

pub fn render_report(r: &RunReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if r.status == "nothing_to_do" {
        let _ = writeln!(
            out,
            "run {} {}: every schema is up to date",
            r.run_id, r.kind
        );
        return out;
    }
    let _ = writeln!(
        out,
        "run {} {}: {} of {} schemas done, {} versions, {:.1} s (canary: {})",
        r.run_id,
        r.kind,
        r.schemas_ok,
        r.schemas_total,
        r.versions_applied,
        r.elapsed_ms as f64 / 1000.0,
        if r.canary.is_empty() {
            "none".to_string()
        } else {
            r.canary.join(", ")
        }
    );
    if r.status == "canary_failed" {
        let _ = writeln!(
            out,
            "canary failed: the run stopped, {} schemas not started",
            r.not_started
        );
    }
    for f in &r.failures {
        let _ = writeln!(
            out,
            "failed: {} (island {}) {}: {}",
            f.schema, f.island, f.file, f.error
        );
    }
    if r.finalizer_skipped {
        let _ = writeln!(
            out,
            "finalizer skipped ({}): {} shards failed",
            r.finalizer.join(", "),
            r.failures.len()
        );
    } else if !r.finalizer.is_empty() && r.status != "canary_failed" {
        let _ = writeln!(out, "finalizer: {}", r.finalizer.join(", "));
    }
    out
}

/// `allocate --migrate`: creates the shards inactive, brings every inactive shard of the
/// range to the current version (the new ones, and those an earlier failed, killed or
/// refused run left behind), and only then (with `--activate`) activates the shards whose
/// migration succeeded, so no client is routed to a shard whose tables are not there yet.
/// Destructive statements are allowed on the shards this call created (a new shard must
/// replay the whole history and holds no data); an inactive shard that existed before may
/// have been deactivated on purpose with data in it, so it needs `allow_unsafe`.
pub async fn allocate_migrated(
    ctx: &Context,
    config: &Config,
    snapshot: &Snapshot,
    plan: &[Placement],
    (activate, allow_unsafe): (bool, bool),
    dir: &Path,
) -> Result<(Vec<Allocated>, RunReport), Failure> {
    // Read first: a bad migration directory allocates nothing.
    let set = read_set(dir)?;
    let mut done = atoll_pg::allocate::execute(config, snapshot, plan, false)
        .await
        .map_err(Failure::from)?;
    let inactive: BTreeSet<String> = done
        .iter()
        .filter(|a| !a.active)
        .map(|a| a.shard.schema())
        .collect();
    let only_new = done.iter().filter(|a| !a.active).all(|a| a.created);
    let opts = RunOptions {
        only: Some(inactive),
        allow_unsafe: allow_unsafe || only_new,
        ..RunOptions::default()
    };
    let r = Renderer::new(ctx.json);
    let cb = |e: Event| r.on(e);
    let fut = atoll_migrate::apply(config, snapshot, &set, &opts, &cb);
    // A refused or failed run leaves the shards just created in place, inactive: say so.
    let report = run_with_progress(&r, fut).await.map_err(|f| {
        let created: Vec<String> = done
            .iter()
            .filter(|a| a.created)
            .map(|a| a.shard.to_string())
            .collect();
        if created.is_empty() {
            return f;
        }
        Failure {
            code: f.code,
            message: format!(
                "{} (allocated and left inactive: {}; run `allocate --migrate` again to finish)",
                f.message,
                created.join(", ")
            ),
        }
    })?;
    if activate {
        let to_activate: Vec<Placement> = done
            .iter()
            .filter(|a| !a.active && migrated_ok(&report, &a.shard.schema()))
            .map(|a| Placement::Exists {
                shard: a.shard,
                island: a.island,
                active: false,
            })
            .collect();
        let activated = atoll_pg::allocate::execute(config, snapshot, &to_activate, true)
            .await
            .map_err(Failure::from)?;
        for a in &mut done {
            a.active |= activated.iter().any(|x| x.shard == a.shard && x.active);
        }
    }
    Ok((done, report))
}

/// Whether `schema` is at the current version after `report`'s run (which covered every
/// inactive shard of the range): it did not fail, and no canary failure kept it from
/// starting.
fn migrated_ok(report: &RunReport, schema: &str) -> bool {
    report.status != "canary_failed" && !report.failures.iter().any(|f| f.schema == schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::migration::{plan, SchemaState};
    use atoll_core::IslandId;

    fn set() -> MigrationSet {
        let mut files = Vec::new();
        for v in ["1.a.sh", "2.b.sh", "3.c.sh"] {
            files.push((
                format!("{v}.up.sql"),
                "alter table t drop column x;".to_string(),
            ));
            files.push((format!("{v}.dn.sql"), String::new()));
        }
        MigrationSet::parse(files).expect("valid")
    }

    #[test]
    fn plan_text_is_one_line_per_group() {
        let states: Vec<SchemaState> = (1..=100)
            .map(|n| SchemaState {
                schema: format!("sh{n:04}"),
                island: IslandId((n % 2) as u16),
                applied: if n == 42 {
                    vec!["1.a.sh".into()]
                } else {
                    vec![]
                },
                checksums: Default::default(),
            })
            .collect();
        let p = plan(&set(), &states);
        let text = render_plan(&set(), &p, Path::new("m"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "3 migrations in m (targets: sh)");
        assert_eq!(
            lines[1],
            "3 versions 1.a.sh .. 3.c.sh -> 99 schemas: sh0001-sh0041, sh0043-sh0100"
        );
        assert_eq!(lines[2], "versions 2.b.sh, 3.c.sh -> 1 schema: sh0042");
        assert_eq!(lines[3], "0 schemas up to date");
        assert!(lines[4].starts_with("unsafe: 1.a.sh.up.sql contains DROP COLUMN"));
    }

    #[test]
    fn report_lists_every_failure() {
        let r = RunReport {
            run_id: 7,
            kind: "apply",
            status: "failed",
            schemas_total: 3,
            schemas_ok: 1,
            versions_applied: 2,
            canary: vec!["sh0001".into()],
            failures: ["sh0002", "sh0003"]
                .iter()
                .map(|s| atoll_migrate::SchemaFailure {
                    schema: s.to_string(),
                    island: IslandId(1),
                    version: "2.b.sh".into(),
                    file: "2.b.sh.up.sql".into(),
                    error: "ERROR: boom [XX000]".into(),
                })
                .collect(),
            not_started: 1,
            finalizer: vec!["public".into()],
            finalizer_skipped: true,
            elapsed_ms: 1500,
        };
        let text = render_report(&r);
        assert!(text
            .starts_with("run 7 apply: 1 of 3 schemas done, 2 versions, 1.5 s (canary: sh0001)"));
        assert!(text.contains("failed: sh0002 (island 1) 2.b.sh.up.sql: ERROR: boom [XX000]"));
        assert!(text.contains("failed: sh0003 (island 1)"));
        assert!(text.contains("finalizer skipped (public): 2 shards failed"));
    }
}
