//! Benchmark of `atoll move`: a shard of about `--mb` MB (default 500) moves between two
//! sandbox islands while a writer inserts into it at `--rate` inserts/s (default 1650,
//! pg-microsharding's measurement condition), retrying "shard absent" like atoll-client.
//! Reported: total time, the initial copy's throughput against a plain `COPY ... TO STDOUT`
//! piped into `COPY ... FROM STDIN` of the same table between the same servers, measured in
//! the same run, the write pause, the longest gap between two acknowledged writes, and the
//! errors that reached the writer; then per round the writer's cut-over gap next to the
//! pause and every stall over `--stall-ms` (default 10) placed in its phase with its cause
//! (`common/explain.rs`; `--json PATH` writes it).
//!
//! `--tables N` (default 1) gives the shard N tables of `--mb` each (the writer writes to
//! the first): each round then copies every table plainly, one after the other, and the
//! move is compared with the sum and the maximum of those COPYs.
//!
//! ```sh
//! cargo bench -p atoll-move --bench move_shard -- --mb 500 --rate 1650 --rounds 3
//! ```

mod common;

use atoll_testkit::{master, writer};
use common::explain::{explain, RoundInput};
use common::{arg, ends, move_and_drop_backup, server_log, setup, Mark, Timeline, Writer};
use futures::{pin_mut, SinkExt, StreamExt};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mb = arg("--mb", 500);
    let rate = arg("--rate", 1650);
    let rounds = arg("--rounds", 3).max(1);
    let stall_ms = arg("--stall-ms", 10.0_f64).max(1.0);
    let n_tables = arg("--tables", 1_u32).max(1);
    let run_start = std::time::Instant::now();
    let bench = setup(mb).await?;
    let mut tables = vec!["items".to_string()];
    tables.extend(
        common::big_tables(
            &bench.tc,
            atoll_core::IslandId(0),
            bench.shard,
            n_tables - 1,
        )
        .await?,
    );
    server_log::log_more(&bench.tc).await?;
    let clock = server_log::ClockPair::now();
    let (config, s, items) = (&bench.config, bench.shard, bench.items);
    let (rows, size_mb) = (items.rows, items.size_mb);

    // Rounds on a shared machine: each round a plain COPY (out of the island holding the
    // shard, into the other, same table shape: primary key only, like the move's initial
    // copy) and then the move itself, both under the same writer, so neighbours' load
    // hits both alike. The shard goes back and forth.
    let w = Writer::start(config, s, rate).await;
    let mut rounds_out = Vec::new();
    let mut timelines = Vec::new();
    for round in 0..rounds {
        let (snap, from, to) = ends(config, s).await?;
        let a = master(config, &snap, from).await?;
        let b = master(config, &snap, to).await?;
        let timeline = Timeline::new(true);
        let mut copies = Vec::new();
        for t in &tables {
            copies.push(plain_copy(&a, &b, &s.schema(), t, &timeline).await?);
        }
        let copy_secs: f64 = copies.iter().sum();
        let copy_max = copies.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "round {round}: plain COPY of {} table(s) {copy_secs:.1} s (longest {copy_max:.1} s), {:.1} MiB/s",
            tables.len(),
            size_mb * tables.len() as f64 / copy_secs
        );
        timeline.mark(Mark::Bench("move"));
        let (report, took) = move_and_drop_backup(config, &snap, s, to, &timeline).await?;
        let total = took.as_secs_f64();
        rounds_out.push((copy_secs, copy_max, total, report));
        timelines.push((from, to, timeline));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let writer_end = std::time::Instant::now();
    let (stats, secs) = w.stop().await?;
    let audit = writer::audit_writes(config, s, &stats).await?;
    let events = server_log::read(&bench.tc, clock);
    let inputs: Vec<RoundInput> = timelines
        .iter()
        .enumerate()
        .map(|(i, (from, to, tl))| RoundInput {
            n: i,
            from: *from,
            to: *to,
            timeline: tl,
            report: Some(&rounds_out[i].3),
            start: tl.started(),
            end: timelines
                .get(i + 1)
                .map(|(_, _, n)| n.started())
                .unwrap_or(writer_end),
        })
        .collect();
    let explained = explain(&inputs, &stats, &events, run_start, stall_ms);

    println!(
        "shard: table {size_mb:.0} MiB, {:.0} MiB with its PK and one secondary index ({rows} rows); writer {:.0} inserts/s (target {rate}) for {secs:.0} s",
        items.total_mb,
        stats.acked.len() as f64 / secs
    );
    println!();
    println!("| round | move total | initial copy | plain COPY out+in (sum of {} table(s)) | ratio | longest table's plain COPY | move total / it | move total / initial copy | write pause (cutover) | verification block |", tables.len());
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    let all_mb = size_mb * tables.len() as f64;
    for (i, (copy_secs, copy_max, total, r)) in rounds_out.iter().enumerate() {
        let move_copy = r.copy_ms as f64 / 1e3;
        let move_rate = all_mb / move_copy;
        let plain = all_mb / copy_secs;
        ratios.push(move_rate / plain);
        println!(
            "| {i} ({}->{}) | {total:.1} s | {move_copy:.1} s = {move_rate:.1} MiB/s | {copy_secs:.1} s = {plain:.1} MiB/s | {:.0}% | {copy_max:.1} s | {:.2}x | {:.2}x | {:.1} ms (lock {:.1}, apply wait {:.1}, seq+checks+switch {:.1}) | {:.1} ms |",
            r.from.map(|x| x.0).unwrap_or(0),
            r.to.map(|x| x.0).unwrap_or(0),
            move_rate / plain * 100.0,
            total / copy_max,
            total / move_copy,
            r.pause_ms,
            r.lock_ms,
            r.apply_wait_ms,
            r.verify_and_switch_ms,
            r.verify_block_ms
        );
    }
    println!();
    println!(
        "median copy ratio (move / plain COPY): {:.0}%",
        common::median(&mut ratios) * 100.0
    );
    println!(
        "longest gap between two acknowledged writes over all rounds: {:.1} ms",
        stats.max_gap.as_secs_f64() * 1e3
    );
    println!("errors reaching the writer: {}", stats.errors.len());
    println!(
        "rows: {} acknowledged, {} present; {} lost, {} duplicated (payload), {} duplicated (primary key); present but never acknowledged: {} (tried, reported failed), {} (never tried); {} failed writes absent",
        audit.acked,
        audit.present,
        audit.lost.len(),
        audit.duplicated.len(),
        audit.duplicated_ids,
        audit.unacknowledged.len(),
        audit.unattempted.len(),
        audit.failed_absent
    );
    println!();
    common::explain::print(&explained);
    if let Some(path) = common::arg_str("--json") {
        std::fs::write(&path, serde_json::to_vec_pretty(&explained)?)?;
    }
    if !stats.errors.is_empty() {
        eprintln!("writer errors: {:?}", stats.errors);
    }
    anyhow::ensure!(audit.is_clean(), "rows: {audit:?}");
    Ok(())
}

/// Pipes `COPY ... TO STDOUT` from the source into `COPY ... FROM STDIN` on the
/// destination (a new table with the same columns and primary key); returns seconds.
async fn plain_copy(
    src: &tokio_postgres::Client,
    dst: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    timeline: &Timeline,
) -> anyhow::Result<f64> {
    timeline.mark(Mark::Bench("plain COPY"));
    dst.batch_execute(
        "create table public.baseline (id bigint primary key, payload bigint not null, note text)",
    )
    .await?;
    let t = Instant::now();
    {
        let out = src
            .copy_out(&format!(
                "copy {schema}.{table} (id, payload, note) to stdout"
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
    timeline.mark(Mark::Bench("checkpoint"));
    dst.batch_execute("drop table public.baseline; checkpoint")
        .await?;
    src.batch_execute("checkpoint").await?;
    timeline.mark(Mark::Bench("plain COPY done"));
    Ok(secs)
}
