//! Benchmark of `atoll migrate` on a fresh sandbox (2 islands, masters only): the 3-file
//! migration of the issue (create a table; add a column and an index; backfill 100 rows)
//! applied to 1,000, then 100, then 5,000 newly allocated shards, and the dry run
//! (`migrate plan`) on 1,000 up-to-date shards. Times include discovery and connecting,
//! as a command run would.
//!
//! ```sh
//! cargo bench -p atoll-migrate --bench migrate [-- --parallelism N] [--cli PATH/TO/atoll]
//! ```

use atoll_core::{allocation, Config, ShardNo, Snapshot};
use atoll_migrate::{Event, RunOptions};
use atoll_pg::{Discoverer, DiscoveryOptions};
use atoll_testkit::TestCluster;
use std::path::Path;
use std::time::Instant;

const FILES: &[(&str, &str, &str)] = &[
    (
        "20240101000001.create_items.sh",
        "create table items (id bigint primary key, title text not null);",
        "drop table items;",
    ),
    (
        "20240101000002.items_status.sh",
        "alter table items add column status text not null default 'new';\n\
         create index items_status_idx on items (status);",
        "drop index items_status_idx; alter table items drop column status;",
    ),
    (
        "20240101000003.items_backfill.sh",
        "insert into items (id, title) select g, 'item ' || g from generate_series(1, 100) g;",
        "delete from items;",
    ),
];

async fn discover(config: &Config) -> Snapshot {
    let options = DiscoveryOptions {
        sizes: false,
        ..DiscoveryOptions::default()
    };
    Discoverer::new(config.clone(), options).discover().await
}

async fn allocate(config: &Config, from: u16, count: u16) -> anyhow::Result<()> {
    let snapshot = discover(config).await;
    let shards: Vec<ShardNo> = (from..from + count)
        .map(ShardNo::try_from)
        .collect::<Result<_, _>>()?;
    let plan = allocation::plan(&snapshot, &shards, None)?;
    atoll_pg::allocate::execute(config, &snapshot, &plan, true).await?;
    Ok(())
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let parallelism: usize = arg("--parallelism").map_or(Ok(8), |p| p.parse())?;
    let tc = TestCluster::new(2, 0).await?;
    let config = tc.config().clone();
    let dir = tc.sandbox().dir().join("migrations");
    std::fs::create_dir_all(&dir)?;
    for (v, up, dn) in FILES {
        std::fs::write(dir.join(format!("{v}.up.sql")), up)?;
        std::fs::write(dir.join(format!("{v}.dn.sql")), dn)?;
    }
    let set = atoll_migrate::read_dir(&dir)?;
    let opts = RunOptions {
        parallelism,
        ..RunOptions::default()
    };
    println!("parallelism {parallelism} per island, 2 islands, canary 1");
    println!("| shards | wall time (s) | ms per shard | versions applied |");
    println!("|---:|---:|---:|---:|");
    let mut per_shard = Vec::new();
    let mut next = 1u16;
    let mut plan_ms = None;
    for n in [1000u16, 100, 5000] {
        allocate(&config, next, n).await?;
        next += n;
        let t = Instant::now();
        let snapshot = discover(&config).await;
        let report = atoll_migrate::apply(&config, &snapshot, &set, &opts, &|_: Event| {}).await?;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            report.status == atoll_migrate::RunOutcome::Done,
            "run failed: {:?}",
            report.failures.first()
        );
        anyhow::ensure!(
            report.schemas_ok == n as usize,
            "migrated {}",
            report.schemas_ok
        );
        let ms = secs * 1000.0 / n as f64;
        per_shard.push((n, ms));
        println!(
            "| {n} | {secs:.2} | {ms:.2} | {} |",
            report.versions_applied
        );
        if n == 1000 {
            // Dry run over exactly 1,000 up-to-date shards, best of 5.
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                let snapshot = discover(&config).await;
                let plan = atoll_migrate::plan_only(&config, &snapshot, &set).await?;
                best = best.min(t.elapsed().as_secs_f64());
                anyhow::ensure!(plan.up_to_date == 1000 && plan.is_up_to_date());
            }
            plan_ms = Some(best * 1000.0);
            if let Some(cli) = arg("--cli") {
                let mut best_cli = f64::MAX;
                for _ in 0..5 {
                    let t = Instant::now();
                    let out = std::process::Command::new(Path::new(&cli))
                        .arg("--config")
                        .arg(tc.config_path())
                        .args(["migrate", "plan", "--dir"])
                        .arg(&dir)
                        .output()?;
                    anyhow::ensure!(out.status.success(), "atoll migrate plan failed");
                    best_cli = best_cli.min(t.elapsed().as_secs_f64());
                }
                println!(
                    "`atoll migrate plan` process on 1,000 up-to-date shards: {:.0} ms (best of 5)",
                    best_cli * 1000.0
                );
            }
        }
    }
    // The dry run over everything allocated (6,100 up-to-date shards), best of 3.
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let snapshot = discover(&config).await;
        let plan = atoll_migrate::plan_only(&config, &snapshot, &set).await?;
        best = best.min(t.elapsed().as_secs_f64());
        anyhow::ensure!(plan.up_to_date == 6100 && plan.is_up_to_date());
    }
    println!(
        "migrate plan (library, incl. discovery) on 6,100 up-to-date shards: {:.0} ms (best of 3)",
        best * 1000.0
    );
    if let Some(ms) = plan_ms {
        println!("migrate plan (library, incl. discovery) on 1,000 up-to-date shards: {ms:.0} ms (best of 5)");
    }
    let at = |n: u16| {
        per_shard
            .iter()
            .find(|p| p.0 == n)
            .map_or(f64::NAN, |p| p.1)
    };
    println!(
        "per-shard cost 5,000 vs 100: {:.2}x; 1,000 shards vs pg-mig 87 s: {:.1}x faster; 100 vs pg-mig 9-11 s: {:.1}x faster",
        at(5000) / at(100),
        87.0 / (at(1000) * 1000.0 / 1000.0),
        10.0 / (at(100) * 100.0 / 1000.0),
    );
    Ok(())
}
