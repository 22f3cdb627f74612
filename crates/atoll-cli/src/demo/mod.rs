//! `atoll demo`: the main job on a fresh machine — a running, initialised sandbox with
//! active shards — and, with `--story`, what atoll is for, shown on it ([`story`]).

mod story;
mod writer;

use crate::cluster::{Cluster, Need};
use crate::exit::Failure;
use crate::output::print_json;
use crate::sandbox::{publish_config, up, UpArgs, DEFAULT_DIR};
use crate::{CmdResult, Context};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Sandbox directory
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Shards to allocate and activate
    #[arg(long, default_value = "0-64")]
    pub shards: atoll_core::ShardRange,
    /// Then show atoll at work: a migration on every shard, an application writing to all
    /// of them, a shard moved and the cluster rebalanced under it, every row checked
    #[arg(long)]
    pub story: bool,
    /// Then run the control plane (`atoll serve`) on this address and print the console's
    /// URL, until Ctrl-C
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<std::net::SocketAddr>,
}

/// How long the demo waits for replicas to replay what the setup wrote before it shows
/// their lag (a fresh cluster would otherwise show the allocation's WAL as lag).
const SETTLE: Duration = Duration::from_secs(10);

pub fn run(ctx: &Context, args: DemoArgs) -> CmdResult {
    let sandbox = up(
        ctx,
        &UpArgs {
            dir: args.dir.clone(),
            islands: None,
            replicas: None,
            base_port: None,
            tls: false,
            agents: false,
            ha: false,
            ha_ttl: 10,
            synchronous: false,
        },
    )?;
    publish_config(&sandbox)?;
    let config = atoll_core::Config::from_file(&sandbox.config_path()).map_err(Failure::input)?;
    let rt = crate::runtime()?;
    rt.block_on(async {
        let mut cluster = Cluster::discover(config, Need::Masters).await?;
        let init = atoll_pg::catalog::init(&cluster.config, &cluster.snapshot).await?;
        cluster.rediscover().await;
        let Cluster { config, snapshot } = &cluster;
        let plan = atoll_core::allocation::plan(snapshot, args.shards.shards(), None)
            .map_err(Failure::input)?;
        let done = atoll_pg::allocate::execute(config, snapshot, &plan, true).await?;
        cluster.rediscover().await;
        let story = match args.story {
            true => {
                let dir = sandbox.dir().join("demo-migrations");
                Some(story::run(ctx, &cluster.config, &cluster.snapshot, &dir).await?)
            }
            false => None,
        };
        settle(&mut cluster).await;
        let Cluster { config, snapshot } = &cluster;
        if ctx.json {
            print_json(&serde_json::json!({
                "init": init, "allocated": done, "story": story, "status": snapshot
            }))?;
        } else {
            println!(
                "catalog v{} on {} islands; {} shards allocated ({} new), all active",
                atoll_pg::catalog::current_version(),
                init.len(),
                done.len(),
                done.iter().filter(|a| a.created).count()
            );
            if let Some(s) = &story {
                print!("{}", story::render(s));
            }
            print!("{}", crate::status::render(config, snapshot, false));
            println!(
                "next: atoll --config {} status   |   stop: atoll sandbox down --dir {}",
                sandbox.config_path().display(),
                sandbox.dir().display()
            );
        }
        let code = if story.as_ref().is_some_and(|s| !s.clean()) {
            ExitCode::from(crate::exit::FAILED)
        } else if snapshot.problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(crate::exit::UNHEALTHY)
        };
        if let Some(addr) = args.serve {
            let serve = atoll_serve::ServeConfig::new(addr, config.clone());
            crate::serve::until_signal(ctx, serve).await?;
        }
        Ok(code)
    })
}

/// Rediscovers until every replica has replayed its master's WAL, for at most [`SETTLE`].
async fn settle(cluster: &mut Cluster) {
    let deadline = Instant::now() + SETTLE;
    loop {
        cluster.rediscover().await;
        let behind = cluster
            .snapshot
            .islands
            .iter()
            .flat_map(|i| &i.nodes)
            .any(|n| n.lag_bytes.is_some_and(|b| b > 0));
        if !behind || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
