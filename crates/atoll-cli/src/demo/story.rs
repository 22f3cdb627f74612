//! `atoll demo --story`: what atoll is for, on the sandbox just set up. A migration creates
//! a table in every shard; an application writes to all of them through atoll-client;
//! meanwhile one shard is moved to another island and the cluster is rebalanced; at the
//! end every acknowledged row is counted where its shard now lives.

use super::writer::{self, Checked, Written, TABLE};
use crate::exit::Failure;
use crate::progress::Progress;
use crate::Context;
use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use atoll_move::{MoveOptions, RebalanceRequest};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The migration the story applies (a fixed version, so a re-run finds it applied).
const VERSION: &str = "20260101000000.demo_events.sh";

/// What the story did, for the summary and `--json`.
#[derive(Debug, serde::Serialize)]
pub struct Story {
    /// Schemas the migration was applied to (0 when a previous demo applied it).
    pub migrated: usize,
    /// The shard moved by hand: shard, from, to, total ms, write pause ms.
    pub moved: MovedShard,
    /// Moves the rebalance made.
    pub rebalanced: Vec<MovedShard>,
    /// What the application wrote.
    pub written: Written,
    /// What the shards hold of it.
    pub checked: Checked,
}

/// One move of the story.
#[derive(Debug, serde::Serialize)]
pub struct MovedShard {
    /// The shard.
    pub shard: ShardNo,
    /// Its island before.
    pub from: IslandId,
    /// Its island after.
    pub to: IslandId,
    /// The whole move, ms.
    pub total_ms: u64,
    /// From the lock request to activation on the destination, ms.
    pub pause_ms: f64,
}

impl Story {
    /// Whether the application saw what atoll promises: no error, nothing lost or doubled.
    pub fn clean(&self) -> bool {
        self.written.errors.is_empty() && self.checked.lost == 0 && self.checked.duplicated == 0
    }
}

/// Runs the story on the sandbox whose migration directory is `dir`.
pub async fn run(
    ctx: &Context,
    config: &Config,
    snapshot: &Snapshot,
    dir: &Path,
) -> Result<Story, Failure> {
    let migrated = migrate(ctx, config, snapshot, dir).await?;
    let shards: Vec<ShardNo> = snapshot.active_shards().map(|(s, _)| s).collect();
    let app =
        atoll_client::Cluster::connect(config.clone(), atoll_client::ClusterOptions::default())
            .await
            .map_err(|e| Failure::failed(format!("the demo application cannot start: {e}")))?;
    let run_tag = i64::from(rand_tag());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(writer::write(app.clone(), shards, run_tag, stop.clone()));
    // Writes flow for a moment before and after the moves, so the gap is measured on a
    // steady stream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moves = move_and_rebalance(ctx, config, snapshot).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer
        .await
        .map_err(|e| Failure::failed(format!("the demo writer stopped: {e}")))?;
    let (moved, rebalanced) = moves?;
    let checked = writer::check(&app, &written, run_tag)
        .await
        .map_err(Failure::failed)?;
    app.close().await;
    Ok(Story {
        migrated,
        moved,
        rebalanced,
        written,
        checked,
    })
}

/// A tag for this run's rows (the time in ms is unique enough for a demo).
fn rand_tag() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u32)
        .unwrap_or(0)
}

async fn migrate(
    ctx: &Context,
    config: &Config,
    snapshot: &Snapshot,
    dir: &Path,
) -> Result<usize, Failure> {
    std::fs::create_dir_all(dir)
        .and_then(|_| {
            std::fs::write(
                dir.join(format!("{VERSION}.up.sql")),
                format!(
                    "create table {TABLE} (id bigint primary key default id_gen(), run bigint not null,\n\
                     seq bigint not null, at timestamptz not null default now());\n"
                ),
            )?;
            std::fs::write(dir.join(format!("{VERSION}.dn.sql")), format!("drop table {TABLE};\n"))
        })
        .map_err(|e| Failure::failed(format!("writing the demo migration in {}: {e}", dir.display())))?;
    let set = atoll_migrate::read_dir(dir)?;
    let view = Progress::new(ctx).run();
    let report = atoll_migrate::apply(
        config,
        snapshot,
        &set,
        &atoll_migrate::RunOptions::default(),
        &|e| view.on(e),
    )
    .await;
    view.finish();
    let report = report?;
    if !report.status.is_success() {
        return Err(Failure::failed(format!(
            "the demo migration failed on {} schemas (see `atoll migrate plan --dir {}`)",
            report.failures.len(),
            dir.display()
        )));
    }
    Ok(report.schemas_ok)
}

/// Moves the first active shard other than shard 0 to the next island, then rebalances.
async fn move_and_rebalance(
    ctx: &Context,
    config: &Config,
    snapshot: &Snapshot,
) -> Result<(MovedShard, Vec<MovedShard>), Failure> {
    let (shard, from) = snapshot
        .active_shards()
        .find(|(s, _)| s.get() != 0)
        .ok_or_else(|| Failure::input("the demo needs an active shard besides shard 0"))?;
    let islands: Vec<IslandId> = snapshot.islands.iter().map(|i| i.id).collect();
    let to = islands
        .iter()
        .copied()
        .find(|i| *i > from)
        .or_else(|| islands.first().copied().filter(|i| *i != from))
        .ok_or_else(|| Failure::input("the demo needs two islands to move a shard"))?;
    let opts = MoveOptions::default();
    let view = Progress::new(ctx).moves();
    let report = atoll_move::start_move(config, snapshot, shard, to, &opts, view.sink()).await;
    view.finish();
    let report = report?;
    let moved = MovedShard {
        shard,
        from,
        to,
        total_ms: report.total_ms,
        pause_ms: report.pause_ms,
    };
    let mut cluster =
        crate::cluster::Cluster::discover(config.clone(), crate::cluster::Need::Catalog).await?;
    cluster.rediscover().await;
    let view = Progress::new(ctx).moves();
    let prepared = atoll_move::prepare_rebalance(
        config,
        cluster.snapshot,
        &RebalanceRequest::default(),
        &opts,
        view.sink(),
    )
    .await?;
    let started = Instant::now();
    let outcomes = atoll_move::run_moves(
        config,
        &prepared.snapshot,
        &prepared.plan.moves,
        1,
        &opts,
        view.sink(),
    )
    .await;
    view.finish();
    let mut rebalanced = Vec::new();
    for o in outcomes {
        match (o.report, o.error) {
            (Some(r), _) => rebalanced.push(MovedShard {
                shard: o.shard,
                from: o.from,
                to: o.to,
                total_ms: r.total_ms,
                pause_ms: r.pause_ms,
            }),
            (None, e) => {
                return Err(Failure::failed(format!(
                    "rebalance: moving {} failed after {} ms: {}",
                    o.shard,
                    started.elapsed().as_millis(),
                    e.unwrap_or_default()
                )))
            }
        }
    }
    Ok((moved, rebalanced))
}

/// The story's summary lines.
pub fn render(s: &Story) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let line = |m: &MovedShard| {
        format!(
            "{} island {} -> {} in {:.1} s (write pause {:.0} ms)",
            m.shard,
            m.from,
            m.to,
            m.total_ms as f64 / 1e3,
            m.pause_ms
        )
    };
    let _ = writeln!(
        out,
        "story: migration {VERSION} applied to {} schemas",
        s.migrated
    );
    let _ = writeln!(out, "story: moved {}", line(&s.moved));
    if s.rebalanced.is_empty() {
        let _ = writeln!(
            out,
            "story: rebalance: the islands are balanced, nothing to move"
        );
    }
    for m in &s.rebalanced {
        let _ = writeln!(out, "story: rebalance moved {}", line(m));
    }
    let _ = writeln!(
        out,
        "story: the application wrote {} rows to {} shards meanwhile; errors: {}; longest gap between acknowledged writes: {:.0} ms",
        s.written.rows(),
        s.written.acked.len(),
        s.written.errors.len(),
        s.written.longest_gap_ms
    );
    let _ = writeln!(
        out,
        "story: every acknowledged row checked where its shard lives now: {} lost, {} duplicated",
        s.checked.lost, s.checked.duplicated
    );
    for e in s.written.errors.iter().take(5) {
        let _ = writeln!(out, "story: error: {e}");
    }
    out
}
