//! Point SELECT by ID: atoll-client (`shard_for_id` + pooled connection + cached prepared
//! statement, on the master) against the same SELECT on one plain tokio-postgres
//! connection with a prepared statement, on the same node, in the same run, interleaved in
//! rounds so both see the same machine load. Prints per-query latency percentiles and the
//! median overhead.
//!
//! ```sh
//! cargo run -p atoll-cli --release -- demo --dir /tmp/atoll-bench --shards 0-16
//! cargo bench -p atoll-client --bench point_select -- \
//!     --config /tmp/atoll-bench/atoll.toml --rounds 20 --per-round 1000
//! ```

use anyhow::{bail, Context, Result};
use atoll_client::{Cluster, ClusterOptions, Freshness, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Args {
    config: Option<PathBuf>,
    rounds: usize,
    per_round: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        config: None,
        rounds: 20,
        per_round: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => a.config = Some(it.next().context("--config needs a path")?.into()),
            "--rounds" => a.rounds = it.next().context("--rounds needs a number")?.parse()?,
            "--per-round" => {
                a.per_round = it.next().context("--per-round needs a number")?.parse()?
            }
            // `cargo bench` adds it to every bench binary's arguments.
            "--bench" => {}
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(a)
}

async fn time_plain(
    plain: &atoll_client::tokio_postgres::Client,
    stmt: &atoll_client::tokio_postgres::Statement,
    id: i64,
) -> Result<Duration> {
    let s = Instant::now();
    let rows = plain.query(stmt, &[&id]).await?;
    let d = s.elapsed();
    if rows.len() != 1 {
        bail!("plain: id {id} not found");
    }
    Ok(d)
}

async fn time_client(cluster: &Cluster, sql: &str, id: i64) -> Result<Duration> {
    let s = Instant::now();
    let rows = cluster
        .shard_for_id(id)?
        .query(sql, &[&id], Freshness::Master)
        .await?;
    let d = s.elapsed();
    if rows.len() != 1 {
        bail!("client: id {id} not found");
    }
    Ok(d)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = args()?;
    let cluster = Cluster::load(args.config.as_deref(), ClusterOptions::default()).await?;
    let shard = cluster
        .shards()
        .into_iter()
        .next()
        .context("no active shard")?;
    let schema = shard.schema();
    shard
        .write(
            &format!("create table if not exists {schema}.bench (id bigint primary key, v text not null)"),
            &[],
            Write::idempotent(),
        )
        .await?;
    let mut ids = Vec::new();
    for i in 0..1000 {
        let id = shard.new_db_id().await?;
        shard
            .write(
                &format!("insert into {schema}.bench values ($1, $2)"),
                &[&id.get(), &format!("value {i}")],
                Write::once(),
            )
            .await?;
        ids.push(id.get());
    }
    let sql = format!("select v from {schema}.bench where id = $1");

    // The plain connection goes to the same node the client routes to.
    let snapshot = cluster.snapshot();
    let island = snapshot.active_island(shard.no())?;
    let node = atoll_pg::master_node(&cluster.config(), &snapshot, island)?;
    let plain = atoll_pg::connect(&node).await?;
    let stmt = plain.prepare(&sql).await?;

    let (mut t_plain, mut t_client) = (Vec::new(), Vec::new());
    // Per round: median client / median plain. The machine is shared, so load changes
    // between rounds; within a round both ran interleaved under the same load.
    let mut round_ratios = Vec::new();
    for round in 0..args.rounds + 1 {
        let warmup = round == 0;
        let (mut rp, mut rc) = (Vec::new(), Vec::new());
        for i in 0..args.per_round {
            let id = ids[i % ids.len()];
            // Alternate which goes first, so neither always runs right after the other.
            let (a, b) = if i % 2 == 0 {
                let a = time_plain(&plain, &stmt, id).await?;
                (a, time_client(&cluster, &sql, id).await?)
            } else {
                let b = time_client(&cluster, &sql, id).await?;
                (time_plain(&plain, &stmt, id).await?, b)
            };
            rp.push(a);
            rc.push(b);
        }
        if !warmup {
            round_ratios.push(pct(&mut rc, 0.5).as_secs_f64() / pct(&mut rp, 0.5).as_secs_f64());
            t_plain.extend(rp);
            t_client.extend(rc);
        }
    }
    // What the client adds before the query goes out, measured alone: route by ID, take a
    // pooled connection to the master, look up the cached prepared statement, give it back.
    let mut t_path = Vec::new();
    for i in 0..args.per_round * 5 {
        let id = ids[i % ids.len()];
        let s = Instant::now();
        let conn = cluster.shard_for_id(id)?.master_connection().await?;
        let st = conn.prepare_cached(&sql).await?;
        drop((st, conn));
        t_path.push(s.elapsed());
    }
    let n = t_plain.len();
    let (p50, c50) = (pct(&mut t_plain, 0.5), pct(&mut t_client, 0.5));
    let (p90, c90) = (pct(&mut t_plain, 0.9), pct(&mut t_client, 0.9));
    let (p99, c99) = (pct(&mut t_plain, 0.99), pct(&mut t_client, 0.99));
    let path50 = pct(&mut t_path, 0.5);
    round_ratios.sort_by(f64::total_cmp);
    let ratio = round_ratios[round_ratios.len() / 2];
    println!(
        "point SELECT by ID on {} ({} queries each, interleaved, {} rounds)",
        node.addr(),
        n,
        args.rounds
    );
    println!("                    p50        p90        p99");
    println!("plain tokio-pg   {p50:>9.1?}  {p90:>9.1?}  {p99:>9.1?}");
    println!("atoll-client     {c50:>9.1?}  {c90:>9.1?}  {c99:>9.1?}");
    println!(
        "overhead at the median, all queries: {:+.1}%",
        (c50.as_secs_f64() / p50.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "overhead at the median, median over rounds: {:+.1}% (rounds from {:+.1}% to {:+.1}%)",
        (ratio - 1.0) * 100.0,
        (round_ratios[0] - 1.0) * 100.0,
        (round_ratios[round_ratios.len() - 1] - 1.0) * 100.0
    );
    println!(
        "client path alone (route + pool + cached statement): median {path50:.2?} = {:.1}% of the plain median",
        path50.as_secs_f64() / p50.as_secs_f64() * 100.0
    );
    shard
        .write(
            &format!("drop table {schema}.bench"),
            &[],
            Write::idempotent(),
        )
        .await?;
    Ok(())
}
