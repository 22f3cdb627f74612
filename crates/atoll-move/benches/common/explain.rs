//! The benchmark that explains itself: per round the gap the writer saw at the cut-over
//! (first write that failed or did not land on the source -> first write acknowledged on
//! the destination) next to the server's pause, and every stall of the writer (two
//! acknowledgements further apart than `--stall-ms`) with the phases it fell in and its
//! likely cause: the move's own write blocks, the client's re-route, and what the servers
//! logged meanwhile (checkpoints, new connections, slow statements, autovacuum, WAL
//! senders starting, errors).

use super::phases::{Phase, Phases};
use super::server_log::{EventKind, ServerEvent};
use super::Timeline;
use atoll_core::move_plan::MoveStep;
use atoll_core::IslandId;
use atoll_move::MoveReport;
use atoll_testkit::writer::{RouteChange, WriterStats};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One round as it ran.
pub struct RoundInput<'a> {
    pub n: usize,
    pub from: IslandId,
    pub to: IslandId,
    pub timeline: &'a Timeline,
    pub report: Option<&'a MoveReport>,
    /// The round's window: stalls beginning in `[start, end)` are the round's.
    pub start: Instant,
    pub end: Instant,
}

/// One round's cut-over as the writer saw it, next to the server's pause.
#[derive(Debug, Clone, Serialize)]
pub struct RoundGap {
    pub n: usize,
    pub from: u16,
    pub to: u16,
    pub pause_ms: f64,
    pub lock_ms: f64,
    pub apply_wait_ms: f64,
    /// Sequences, checks and the switch's commit.
    pub rest_ms: f64,
    pub verify_block_ms: f64,
    /// First failed or not-on-the-source write -> first write acknowledged on the new
    /// island (`None`: the round has no write on the new island).
    pub cutover_gap_ms: Option<f64>,
    pub cutover_began: Option<String>,
    pub cutover_ended: Option<String>,
    /// How and when the writer's client learned the new island.
    pub reroute: Option<String>,
    /// The longest gap between two acknowledgements in the round and where it fell.
    pub longest_gap_ms: f64,
    pub longest_at: String,
    pub longest_phases: Vec<Phase>,
    /// Stalls (gaps over `--stall-ms`) and errors reaching the writer in the round.
    pub stalls: usize,
    pub errors: usize,
}

/// A gap between two acknowledgements over the threshold, placed and explained.
#[derive(Debug, Clone, Serialize)]
pub struct Stall {
    /// Round 0: before the first move.
    pub round: usize,
    /// When it began, seconds since the run's start.
    pub at_s: f64,
    pub ms: f64,
    pub began: String,
    pub ended: String,
    pub phases: Vec<Phase>,
    pub errors: usize,
    pub cause: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub stall_ms: f64,
    pub rounds: Vec<RoundGap>,
    /// The five longest stalls of the run.
    pub top: Vec<Stall>,
    /// The five longest that touch none of the move's write blocks (verify block, pause,
    /// switch, client re-route).
    pub top_outside: Vec<Stall>,
    pub stalls: usize,
    /// The servers' checkpoints during the run: island, start (s since the run's start),
    /// duration (ms), the log's summary.
    pub checkpoints: Vec<(u16, f64, f64, String)>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Places every stall of the writer's run and explains each round's cut-over.
pub fn explain(
    rounds: &[RoundInput],
    stats: &WriterStats,
    server: &[ServerEvent],
    run_start: Instant,
    stall_ms: f64,
) -> Explained {
    let phases: Vec<Phases> = rounds
        .iter()
        .map(|r| Phases::of(r.timeline, r.report, &stats.routes, r.to))
        .collect();
    let round_of = |t: Instant| rounds.iter().rposition(|r| r.start <= t);
    let mut stalls: Vec<(Option<usize>, Stall)> = Vec::new();
    let mut prev = stats.attempts.first().map(|a| a.started);
    for a in &stats.attempts {
        if a.outcome.is_err() {
            continue;
        }
        if let Some(p) = prev {
            let gap = ms(a.ended - p);
            if gap >= stall_ms {
                let i = round_of(p);
                let ctx = Context {
                    round: i.map(|i| (&rounds[i], &phases[i])),
                    stats,
                    server,
                };
                stalls.push((i, ctx.stall(p, a.ended, run_start)));
            }
        }
        prev = Some(a.ended);
    }
    let out_rounds = rounds
        .iter()
        .zip(&phases)
        .enumerate()
        .map(|(i, (r, ph))| {
            let mine: Vec<&Stall> = stalls
                .iter()
                .filter(|(k, _)| *k == Some(i))
                .map(|(_, s)| s)
                .collect();
            round_gap(r, ph, stats, &mine)
        })
        .collect();
    let mut all: Vec<Stall> = stalls.into_iter().map(|(_, s)| s).collect();
    let count = all.len();
    all.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    let top_outside = all
        .iter()
        .filter(|s| !s.phases.iter().any(|p| blocks_writes(*p)))
        .take(5)
        .cloned()
        .collect();
    all.truncate(5);
    let checkpoints = server
        .iter()
        .filter(|e| e.kind == EventKind::Checkpoint)
        .map(|e| {
            let at = e.from.checked_duration_since(run_start).unwrap_or_default();
            (
                e.island.0,
                at.as_secs_f64(),
                ms(e.to - e.from),
                e.text.clone(),
            )
        })
        .collect();
    Explained {
        stall_ms,
        rounds: out_rounds,
        top: all,
        top_outside,
        stalls: count,
        checkpoints,
    }
}

fn round_gap(r: &RoundInput, ph: &Phases, stats: &WriterStats, mine: &[&Stall]) -> RoundGap {
    let rep = r.report.cloned().unwrap_or_default();
    let window: Vec<_> = stats
        .attempts
        .iter()
        .filter(|a| a.started >= r.start && a.started < r.end)
        .collect();
    let on = |a: &&atoll_testkit::writer::Attempt, i: IslandId| a.outcome == Ok(Some(i));
    let arrived = window.iter().position(|a| on(a, r.to));
    let left = window.iter().position(|a| !on(a, r.from));
    let cutover = match (left, arrived) {
        (Some(l), Some(a)) if l <= a => Some((window[l].started, window[a].ended)),
        _ => None,
    };
    let reroute = match (ph.rerouted, ph.step(MoveStep::Switched)) {
        (Some((t, notice)), Some(sw)) => {
            let act = ph
                .step(MoveStep::Activated)
                .map(|a| format!(", activated{:+.1} ms", signed_ms(t, a)))
                .unwrap_or_default();
            Some(format!(
                "{} at switched+{:.1} ms{act}",
                if notice { "notice" } else { "discovery" },
                ms(t - sw)
            ))
        }
        _ => None,
    };
    let longest = mine.iter().max_by(|a, b| a.ms.total_cmp(&b.ms));
    let longest_ack = longest_ack_gap(stats, r.start, r.end);
    RoundGap {
        n: r.n,
        from: r.from.0,
        to: r.to.0,
        pause_ms: rep.pause_ms,
        lock_ms: rep.lock_ms,
        apply_wait_ms: rep.apply_wait_ms,
        rest_ms: rep.verify_and_switch_ms,
        verify_block_ms: rep.verify_block_ms,
        cutover_gap_ms: cutover.map(|(b, e)| ms(e - b)),
        cutover_began: cutover.map(|(b, _)| format!("{} ({})", ph.after_step(b), ph.at(b).name())),
        cutover_ended: cutover.map(|(_, e)| format!("{} ({})", ph.after_step(e), ph.at(e).name())),
        reroute,
        longest_gap_ms: longest_ack.map(|(_, g)| ms(g)).unwrap_or(0.0),
        longest_at: longest_ack
            .map(|(b, g)| format!("{} .. {}", ph.after_step(b), ph.after_step(b + g)))
            .unwrap_or_default(),
        longest_phases: longest_ack
            .map(|(b, g)| ph.touched(b, b + g))
            .or_else(|| longest.map(|s| s.phases.clone()))
            .unwrap_or_default(),
        stalls: mine.len(),
        errors: stats
            .errors
            .iter()
            .filter(|e| e.at >= r.start && e.at < r.end)
            .count(),
    }
}

/// `a - b` in milliseconds, negative when `a` is earlier.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        ms(a - b)
    } else {
        -ms(b - a)
    }
}

/// The longest gap between two acknowledgements whose second falls in `[from, to)`.
fn longest_ack_gap(stats: &WriterStats, from: Instant, to: Instant) -> Option<(Instant, Duration)> {
    let at = &stats.acked_at;
    let first = at.partition_point(|t| *t < from).max(1);
    let last = at.partition_point(|t| *t < to);
    (first..last)
        .map(|k| (at[k - 1], at[k] - at[k - 1]))
        .max_by_key(|(_, g)| *g)
}

struct Context<'a> {
    round: Option<(&'a RoundInput<'a>, &'a Phases)>,
    stats: &'a WriterStats,
    server: &'a [ServerEvent],
}

impl Context<'_> {
    fn stall(&self, b: Instant, e: Instant, run_start: Instant) -> Stall {
        let errors = self
            .stats
            .errors
            .iter()
            .filter(|x| x.at > b && x.at <= e)
            .count();
        let (began, ended, phases) = match self.round {
            Some((_, ph)) => (
                format!("{} ({})", ph.after_step(b), ph.at(b).name()),
                format!("{} ({})", ph.after_step(e), ph.at(e).name()),
                ph.touched(b, e),
            ),
            None => ("warm-up".into(), "warm-up".into(), vec![Phase::WarmUp]),
        };
        let mut parts = self.move_cause(b, e, &phases);
        if errors > 0 {
            parts.push(format!("{errors} errors reached the writer"));
        }
        parts.extend(client_cause(&self.stats.routes, b, e));
        let server = server_cause(self.server, b, e);
        let quiet = server.is_empty();
        parts.extend(server);
        if quiet && !phases.iter().any(|p| blocks_writes(*p)) {
            parts.push("nothing logged by the servers (client or OS scheduling)".into());
        }
        Stall {
            round: self.round.map(|(r, _)| r.n).unwrap_or(0),
            at_s: (b - run_start).as_secs_f64(),
            ms: ms(e - b),
            began,
            ended,
            phases,
            errors,
            cause: parts.join("; "),
        }
    }

    /// The move's part: its write blocks and the client's re-route.
    fn move_cause(&self, b: Instant, e: Instant, phases: &[Phase]) -> Vec<String> {
        let Some((r, ph)) = self.round else {
            return Vec::new();
        };
        let rep = r.report.cloned().unwrap_or_default();
        let mut out = Vec::new();
        if phases.contains(&Phase::Pause) || phases.contains(&Phase::Lock) {
            let part = |p: Phase| ph.span(p).map(|s| ms(s.to - s.from)).unwrap_or(0.0);
            out.push(format!(
                "write pause {:.1} ms (lock {:.1}, apply wait {:.1}, sequences {:.1}, checks {:.1}, switch commit {:.1})",
                rep.pause_ms,
                rep.lock_ms,
                rep.apply_wait_ms,
                part(Phase::Sequences),
                part(Phase::Checks),
                part(Phase::SwitchCommit)
            ));
        } else if phases.contains(&Phase::VerifyBlock) {
            out.push(format!("verification block {:.1} ms", rep.verify_block_ms));
        }
        if let (Some(sw), Some(act)) = (ph.step(MoveStep::Switched), ph.step(MoveStep::Activated)) {
            if e > sw && b < act {
                out.push(format!(
                    "activation {:.1} ms after the switch",
                    ms(act - sw)
                ));
            }
            if let Some((t, notice)) = ph.rerouted {
                if e >= t && b <= t {
                    out.push(format!(
                        "client routed to island {} by {} at activated{:+.1} ms, acknowledged {:.1} ms later",
                        r.to,
                        if notice { "notice" } else { "discovery" },
                        signed_ms(t, act),
                        ms(e - t)
                    ));
                }
            }
        }
        if out.is_empty() {
            let names: Vec<&str> = phases.iter().map(|p| p.name()).collect();
            out.push(format!(
                "no write block of the move (during {})",
                names.join(", ")
            ));
        }
        out
    }
}

fn blocks_writes(p: Phase) -> bool {
    matches!(
        p,
        Phase::Lock
            | Phase::ApplyWait
            | Phase::Sequences
            | Phase::Checks
            | Phase::SwitchCommit
            | Phase::Pause
            | Phase::Switch
            | Phase::Reroute
            | Phase::VerifyBlock
    )
}

/// Discovery rounds the writer's client installed during `[b, e]`.
fn client_cause(routes: &[RouteChange], b: Instant, e: Instant) -> Option<String> {
    let before = routes.iter().rev().find(|c| c.at < b)?;
    let during: Vec<&RouteChange> = routes.iter().filter(|c| c.at >= b && c.at <= e).collect();
    let rounds = during
        .last()
        .map(|c| c.discovery_rounds - before.discovery_rounds)
        .unwrap_or(0);
    (rounds > 0).then(|| format!("{rounds} discovery round(s) installed by the client meanwhile"))
}

/// What the servers logged overlapping `[b, e]`, grouped by island and kind.
fn server_cause(events: &[ServerEvent], b: Instant, e: Instant) -> Vec<String> {
    let slack = Duration::from_millis(2);
    let near: Vec<&ServerEvent> = events
        .iter()
        .filter(|x| x.from <= e + slack && x.to + slack >= b)
        .collect();
    let mut out = Vec::new();
    let mut seen: Vec<(IslandId, EventKind)> = Vec::new();
    for x in &near {
        if seen.contains(&(x.island, x.kind)) {
            continue;
        }
        seen.push((x.island, x.kind));
        let n = near
            .iter()
            .filter(|y| y.island == x.island && y.kind == x.kind)
            .count();
        let what = match x.kind {
            EventKind::Checkpoint => "checkpoint",
            EventKind::Connection => "new connection(s)",
            EventKind::SlowStatement => "slow statement(s)",
            EventKind::Autovacuum => "autovacuum",
            EventKind::WalSender => "WAL sender started",
            EventKind::ReplicationWorker => "replication worker",
            EventKind::Error => "error(s)",
        };
        let text: String = x.text.chars().take(90).collect();
        out.push(format!("island {}: {n} {what} (first: {text})", x.island));
    }
    out
}

/// Prints the per-round table and the five longest stalls.
pub fn print(e: &Explained) {
    println!("| round | server pause (lock, apply wait, rest) | cut-over gap (writer) | from .. to | client re-route | longest gap | its phases | stalls > {:.0} ms | errors |", e.stall_ms);
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &e.rounds {
        let names: Vec<&str> = r.longest_phases.iter().map(|p| p.name()).collect();
        println!(
            "| {} ({}->{}) | {:.1} ms ({:.1}, {:.1}, {:.1}) | {} | {} .. {} | {} | {:.1} ms | {} | {} | {} |",
            r.n,
            r.from,
            r.to,
            r.pause_ms,
            r.lock_ms,
            r.apply_wait_ms,
            r.rest_ms,
            r.cutover_gap_ms.map(|g| format!("{g:.1} ms")).unwrap_or("-".into()),
            r.cutover_began.as_deref().unwrap_or("-"),
            r.cutover_ended.as_deref().unwrap_or("-"),
            r.reroute.as_deref().unwrap_or("-"),
            r.longest_gap_ms,
            names.join(", "),
            r.stalls,
            r.errors
        );
    }
    println!();
    println!(
        "{} stalls over {:.0} ms; the five longest:",
        e.stalls, e.stall_ms
    );
    print_stalls(&e.top);
    println!();
    println!("the five longest outside the move's write blocks:");
    print_stalls(&e.top_outside);
    println!();
    println!("checkpoints: {}", e.checkpoints.len());
    for (island, at, ms, text) in &e.checkpoints {
        println!("- island {island} at {at:.3} s for {ms:.0} ms: {text}");
    }
}

fn print_stalls(stalls: &[Stall]) {
    println!();
    println!("| gap | round | at | from .. to | phases | cause |");
    println!("|---|---|---|---|---|---|");
    for s in stalls {
        let names: Vec<&str> = s.phases.iter().map(|p| p.name()).collect();
        println!(
            "| {:.1} ms | {} | {:.3} s | {} .. {} | {} | {} |",
            s.ms,
            s.round,
            s.at_s,
            s.began,
            s.ended,
            names.join(", "),
            s.cause
        );
    }
}
