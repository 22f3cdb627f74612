//! Benchmark of `atoll move`: a shard of about `--mb` MB (default 500) moves between two
//! sandbox islands while a writer inserts into it at `--rate` inserts/s (default 1650,
//! pg-microsharding's measurement condition), retrying "shard absent" like atoll-client.
//! Reported: total time, the initial copy's throughput against a plain `COPY ... TO STDOUT`
//! piped into `COPY ... FROM STDIN` of the same table between the same servers, measured in
//! the same run, the write pause, the longest gap between two acknowledged writes, and the
//! errors that reached the writer.
//!
//! ```sh
//! cargo bench -p atoll-move --bench move_shard -- --mb 500 --rate 1650 --rounds 3
//! ```

use atoll_core::IslandId;
use atoll_move::MoveOptions;
use atoll_testkit::{discover, master, shard, writer, TestCluster};
use futures::{pin_mut, SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mb = arg("--mb", 500);
    let rate = arg("--rate", 1650);
    let rounds = arg("--rounds", 3).max(1);
    let tc = TestCluster::setup(2, 0)
        .shards([1])
        .on_island(IslandId(0))
        .start()
        .await?;
    let config = tc.config().clone();
    let s = shard(1);
    let src = tc.master(IslandId(0)).await?;

    // ~182 bytes per row in the heap (measured).
    let rows = mb * 1024 * 1024 / 182;
    let t = Instant::now();
    src.batch_execute(&format!(
        "create table sh0001.items (id bigint primary key default sh0001.id_gen(),
                                    payload bigint not null, note text);
         insert into sh0001.items (payload, note)
           select -g, md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text) || md5((g + 3)::text)
           from generate_series(1, {rows}) g;
         create index on sh0001.items (payload);"
    ))
    .await?;
    src.batch_execute("vacuum analyze sh0001.items").await?;
    let size: i64 = src
        .query_one("select pg_table_size('sh0001.items')", &[])
        .await?
        .get(0);
    let size_mb = size as f64 / 1048576.0;
    let total_size: i64 = src
        .query_one("select pg_total_relation_size('sh0001.items')", &[])
        .await?
        .get(0);
    eprintln!(
        "built {rows} rows, table {size_mb:.0} MiB (+ indexes) in {:.0} s",
        t.elapsed().as_secs_f64()
    );

    // Rounds on a shared machine: each round a plain COPY (out of the island holding the
    // shard, into the other, same table shape: primary key only, like the move's initial
    // copy) and then the move itself, both under the same writer, so neighbours' load
    // hits both alike. The shard goes back and forth.
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer::paced(
        config.clone(),
        shard(1),
        stop.clone(),
        Some(rate),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut rounds_out = Vec::new();
    for round in 0..rounds {
        let snap = discover(&config).await;
        let from = snap.active_island(s)?;
        let to = IslandId(1 - from.0);
        let a = master(&config, &snap, from).await?;
        let b = master(&config, &snap, to).await?;
        let copy_secs = plain_copy(&a, &b, &s.schema()).await?;
        eprintln!(
            "round {round}: plain COPY {copy_secs:.1} s, {:.1} MiB/s",
            size_mb / copy_secs
        );
        let t = Instant::now();
        let report =
            atoll_move::start_move(&config, &snap, s, to, &MoveOptions::default(), timeline(t))
                .await?;
        let total = t.elapsed().as_secs_f64();
        // The backup is not needed here; dropping it keeps the disk small.
        atoll_move::cleanup(&config, &discover(&config).await, 0, false).await?;
        rounds_out.push((copy_secs, total, report));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (stats, secs) = w.await?;
    writer::check_acked(&config, s, &stats.acked).await;

    println!(
        "shard: table {size_mb:.0} MiB, {:.0} MiB with its PK and one secondary index ({rows} rows); writer {:.0} inserts/s (target {rate}) for {secs:.0} s",
        total_size as f64 / 1048576.0,
        stats.acked.len() as f64 / secs
    );
    println!();
    println!("| round | move total | initial copy | plain COPY out+in | ratio | write pause (cutover) | verification block |");
    println!("|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (i, (copy_secs, total, r)) in rounds_out.iter().enumerate() {
        let move_rate = size_mb / (r.copy_ms as f64 / 1e3);
        let plain = size_mb / copy_secs;
        ratios.push(move_rate / plain);
        println!(
            "| {i} ({}->{}) | {total:.1} s | {:.1} s = {move_rate:.1} MiB/s | {copy_secs:.1} s = {plain:.1} MiB/s | {:.0}% | {:.1} ms (lock {:.1}, apply wait {:.1}, seq+checks+switch {:.1}) | {:.1} ms |",
            r.from.map(|x| x.0).unwrap_or(0),
            r.to.map(|x| x.0).unwrap_or(0),
            r.copy_ms as f64 / 1e3,
            move_rate / plain * 100.0,
            r.pause_ms,
            r.lock_ms,
            r.apply_wait_ms,
            r.verify_and_switch_ms,
            r.verify_block_ms
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!();
    println!(
        "median copy ratio (move / plain COPY): {:.0}%",
        ratios[ratios.len() / 2] * 100.0
    );
    println!(
        "longest gap between two acknowledged writes over all rounds: {:.1} ms",
        stats.max_gap.as_secs_f64() * 1e3
    );
    println!("errors reaching the writer: {}", stats.errors.len());
    println!(
        "acknowledged rows present exactly once on the active copy: {} of {}",
        stats.acked.len(),
        stats.acked.len()
    );
    if !stats.errors.is_empty() {
        eprintln!("writer errors: {:?}", stats.errors);
    }
    Ok(())
}

/// Prints steps and notes with their time since `t0` to stderr.
fn timeline(t0: Instant) -> atoll_move::Progress {
    Arc::new(move |shard, e| match e {
        atoll_move::MoveEvent::Copy { .. } => {}
        other => eprintln!("{:>8.3} s {shard}: {other:?}", t0.elapsed().as_secs_f64()),
    })
}

/// Pipes `COPY ... TO STDOUT` from the source into `COPY ... FROM STDIN` on the
/// destination (a new table with the same columns and primary key); returns seconds.
async fn plain_copy(
    src: &tokio_postgres::Client,
    dst: &tokio_postgres::Client,
    schema: &str,
) -> anyhow::Result<f64> {
    dst.batch_execute(
        "create table public.baseline (id bigint primary key, payload bigint not null, note text)",
    )
    .await?;
    let t = Instant::now();
    {
        let out = src
            .copy_out(&format!(
                "copy {schema}.items (id, payload, note) to stdout"
            ))
            .await?;
        let sink = dst
            .copy_in::<_, std::io::Cursor<Vec<u8>>>(
                "copy public.baseline (id, payload, note) from stdin",
            )
            .await?;
        pin_mut!(out);
        pin_mut!(sink);
        // PostgreSQL sends one message per row; forward them in 1 MiB batches, as a
        // `psql | psql` pipe would.
        let mut buf = Vec::with_capacity(1 << 20);
        while let Some(chunk) = out.next().await {
            buf.extend_from_slice(&chunk?);
            if buf.len() >= 1 << 20 {
                sink.send(std::io::Cursor::new(std::mem::take(&mut buf)))
                    .await?;
            }
        }
        if !buf.is_empty() {
            sink.send(std::io::Cursor::new(buf)).await?;
        }
        sink.finish().await?;
    }
    let secs = t.elapsed().as_secs_f64();
    dst.batch_execute("drop table public.baseline; checkpoint")
        .await?;
    src.batch_execute("checkpoint").await?;
    Ok(secs)
}
