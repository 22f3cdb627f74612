//! The soak's verdict: per-move records judged against the writer's timeline, the
//! percentiles, and which invariants failed.

use crate::common::Timeline;
use crate::Settings;
use atoll_core::move_plan::MoveStep;
use atoll_core::IslandId;
use atoll_move::MoveReport;
use atoll_testkit::writer::{Audit, WriterStats};
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One move as it ran; judged against the writer's timeline afterwards.
pub struct MoveRun {
    pub from: IslandId,
    pub to: IslandId,
    pub timeline: Timeline,
    pub outcome: Result<(MoveReport, Duration), String>,
}

/// The moves of the run and why they ended.
pub struct Moves {
    pub runs: Vec<MoveRun>,
    pub stopped_by_time_bound: bool,
}

/// One line of the per-move table (and of the JSON).
#[derive(Debug, Serialize)]
pub struct MoveRecord {
    pub n: usize,
    pub from: u16,
    pub to: u16,
    pub error: Option<String>,
    pub duration_ms: f64,
    pub pause_ms: f64,
    pub lock_ms: f64,
    pub apply_wait_ms: f64,
    pub verify_and_switch_ms: f64,
    pub verify_block_ms: f64,
    pub acked: usize,
    pub writer_errors: usize,
    pub longest_gap_ms: f64,
    /// Where the longest gap began and ended (`None`: before the move's first step).
    pub gap_began: Option<AfterStep>,
    pub gap_ended: Option<AfterStep>,
}

/// A moment as the last step a move reached before it, and how long after.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AfterStep {
    pub step: MoveStep,
    pub after_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Rows {
    pub acked: usize,
    pub present: usize,
    pub lost: usize,
    pub duplicated_payloads: usize,
    pub duplicated_ids: i64,
    /// Tried by the writer, reported failed, yet present.
    pub unacknowledged_present: usize,
    /// Present, never tried by the writer.
    pub unattempted_present: usize,
    /// Failed writes that are absent, as they should be.
    pub failed_absent: usize,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub finished_unix_s: u64,
    pub settings: Settings,
    pub shard_mib: f64,
    pub elapsed_s: f64,
    pub moves_done: usize,
    pub moves_failed: usize,
    pub stopped_by_time_bound: bool,
    pub writer_inserts_per_s: f64,
    pub writer_errors: usize,
    /// Over the writer's whole run, warm-up before the first move included.
    pub writer_longest_gap_ms: f64,
    /// Over the moves' windows.
    pub longest_gap_ms: f64,
    pub gap_p50_ms: f64,
    pub gap_p99_ms: f64,
    pub pause_p50_ms: f64,
    pub pause_p99_ms: f64,
    pub pause_max_ms: f64,
    /// The pause's `LOCK TABLE`s (the `lock` part), p50 over the moves.
    pub lock_p50_ms: f64,
    /// Anchor: a `select 1` round trip to island 0's master after the moves, median of 200.
    pub round_trip_ms: f64,
    pub rows: Option<Rows>,
    pub failures: Vec<String>,
    pub passed: bool,
    pub moves: Vec<MoveRecord>,
    /// Per move: the cut-over gap next to the pause, the stalls placed in phases.
    pub explained: Option<crate::common::explain::Explained>,
}

/// The longest gap between two acknowledgements whose second falls in `[from, to)`: when
/// it began and how long it was.
fn longest_gap(acked_at: &[Instant], from: Instant, to: Instant) -> Option<(Instant, Duration)> {
    let first = acked_at.partition_point(|t| *t < from).max(1);
    let last = acked_at.partition_point(|t| *t < to);
    (first..last)
        .map(|k| (acked_at[k - 1], acked_at[k] - acked_at[k - 1]))
        .max_by_key(|(_, gap)| *gap)
}

/// The last step reached at or before `at`, and how long before it.
fn step_before(steps: &[(MoveStep, Instant)], at: Instant) -> Option<AfterStep> {
    steps
        .iter()
        .rev()
        .find(|(_, t)| *t <= at)
        .map(|(step, t)| AfterStep {
            step: *step,
            after_ms: ms(at - *t),
        })
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The nearest-rank percentile `p` (0..=1) of `values` (0 when empty).
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or(0.0)
}

/// Move `i`'s record: its window runs from its start to the next move's (or the writer's
/// end).
fn record(i: usize, runs: &[MoveRun], stats: &WriterStats, writer_end: Instant) -> MoveRecord {
    let run = &runs[i];
    let from = run.timeline.started();
    let to = runs
        .get(i + 1)
        .map(|r| r.timeline.started())
        .unwrap_or(writer_end);
    let steps = run.timeline.steps();
    let gap = longest_gap(&stats.acked_at, from, to);
    let report = run.outcome.as_ref().ok();
    let r = report.map(|(r, _)| r.clone()).unwrap_or_default();
    MoveRecord {
        n: i + 1,
        from: run.from.0,
        to: run.to.0,
        error: run.outcome.as_ref().err().cloned(),
        duration_ms: report.map(|(_, took)| ms(*took)).unwrap_or(0.0),
        pause_ms: r.pause_ms,
        lock_ms: r.lock_ms,
        apply_wait_ms: r.apply_wait_ms,
        verify_and_switch_ms: r.verify_and_switch_ms,
        verify_block_ms: r.verify_block_ms,
        acked: stats
            .acked_at
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count(),
        writer_errors: stats
            .errors
            .iter()
            .filter(|e| e.at >= from && e.at < to)
            .count(),
        longest_gap_ms: gap.map(|(_, g)| ms(g)).unwrap_or(0.0),
        gap_began: gap.and_then(|(at, _)| step_before(&steps, at)),
        gap_ended: gap.and_then(|(at, g)| step_before(&steps, at + g)),
    }
}

pub fn summarize(
    settings: &Settings,
    moves: &Moves,
    stats: &WriterStats,
    writer_end: Instant,
    audit: anyhow::Result<Audit>,
) -> Summary {
    let records: Vec<MoveRecord> = (0..moves.runs.len())
        .map(|i| record(i, &moves.runs, stats, writer_end))
        .collect();
    let gaps: Vec<f64> = records.iter().map(|r| r.longest_gap_ms).collect();
    let done: Vec<&MoveRecord> = records.iter().filter(|r| r.error.is_none()).collect();
    let pauses: Vec<f64> = done.iter().map(|r| r.pause_ms).collect();
    let mut failures: Vec<String> = records
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("move {}: {e}", r.n)))
        .collect();
    if done.len() < settings.moves as usize {
        failures.push(format!("{} of {} moves done", done.len(), settings.moves));
    }
    if let Some(e) = stats.errors.first() {
        failures.push(format!(
            "{} errors reached the writer, the first: {}",
            stats.errors.len(),
            e.message
        ));
    }
    let rows = match audit {
        Ok(a) => {
            failures.extend(audit_failures(&a));
            Some(Rows {
                acked: a.acked,
                present: a.present,
                lost: a.lost.len(),
                duplicated_payloads: a.duplicated.len(),
                duplicated_ids: a.duplicated_ids,
                unacknowledged_present: a.unacknowledged.len(),
                unattempted_present: a.unattempted.len(),
                failed_absent: a.failed_absent,
            })
        }
        Err(e) => {
            failures.push(format!("rows not checked: {e:#}"));
            None
        }
    };
    Summary {
        finished_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        settings: settings.clone(),
        shard_mib: 0.0,
        elapsed_s: 0.0,
        moves_done: done.len(),
        moves_failed: records.len() - done.len(),
        stopped_by_time_bound: moves.stopped_by_time_bound,
        writer_inserts_per_s: 0.0,
        writer_errors: stats.errors.len(),
        writer_longest_gap_ms: ms(stats.max_gap),
        longest_gap_ms: gaps.iter().copied().fold(0.0, f64::max),
        gap_p50_ms: percentile(&gaps, 0.5),
        gap_p99_ms: percentile(&gaps, 0.99),
        pause_p50_ms: percentile(&pauses, 0.5),
        pause_p99_ms: percentile(&pauses, 0.99),
        pause_max_ms: pauses.iter().copied().fold(0.0, f64::max),
        lock_p50_ms: percentile(&done.iter().map(|r| r.lock_ms).collect::<Vec<_>>(), 0.5),
        round_trip_ms: 0.0,
        rows,
        passed: failures.is_empty(),
        failures,
        moves: records,
        explained: None,
    }
}

/// The row invariants `a` breaks, each with a few examples.
fn audit_failures(a: &Audit) -> Vec<String> {
    let few = |v: &[i64]| v.iter().take(10).copied().collect::<Vec<_>>();
    let mut out = Vec::new();
    if !a.lost.is_empty() {
        out.push(format!(
            "{} acknowledged rows lost: {:?}",
            a.lost.len(),
            few(&a.lost)
        ));
    }
    if !a.duplicated.is_empty() {
        let n = a.duplicated.len();
        out.push(format!("{n} payloads duplicated: {:?}", few(&a.duplicated)));
    }
    if a.duplicated_ids != 0 {
        out.push(format!("{} rows share a primary key", a.duplicated_ids));
    }
    if !a.unacknowledged.is_empty() {
        let n = a.unacknowledged.len();
        out.push(format!(
            "{n} unacknowledged rows present: {:?}",
            few(&a.unacknowledged)
        ));
    }
    if !a.unattempted.is_empty() {
        let n = a.unattempted.len();
        out.push(format!(
            "{n} rows present that the writer never tried: {:?}",
            few(&a.unattempted)
        ));
    }
    out
}
