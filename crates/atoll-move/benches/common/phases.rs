//! The phases of one round, placed in time: from the move's progress callback (its steps
//! and notes), its report (the pause's parts, the verification block), the writer's client
//! (when it routed the shard to the new island) and the bench's own marks.

use super::{Mark, Timeline};
use atoll_core::move_plan::MoveStep;
use atoll_core::IslandId;
use atoll_move::MoveReport;
use atoll_testkit::writer::RouteChange;
use std::time::{Duration, Instant};

/// Where in a round a moment fell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the first move (the writer's warm-up).
    WarmUp,
    /// Safety checks, the schema on the destination, the subscription.
    Prepare,
    /// The initial copy, the secondary indexes, the first catch-up.
    Copy,
    /// Catching up and comparing the copies, writes flowing.
    CatchUp,
    /// The brief write block before the comparison.
    VerifyBlock,
    /// The pause's `LOCK TABLE`s.
    Lock,
    /// In the pause: waiting until the destination applied everything (step `paused`).
    ApplyWait,
    /// In the pause: copying sequence positions (step `synced`).
    Sequences,
    /// In the pause: comparing schemas, privileges (step `verified`).
    Checks,
    /// In the pause: deactivating, renaming, committing (step `switched`).
    SwitchCommit,
    /// The write pause as a whole (its parts above).
    Pause,
    /// Switched on the source, not yet active on the destination.
    Switch,
    /// Active on the destination, the writer's client not yet routing there.
    Reroute,
    /// Dropping the subscription and publication (writes flow to the new island).
    DropReplication,
    /// The bench drops the backup schema (`atoll cleanup`).
    BackupDrop,
    /// The bench's plain COPY of the table (`move_shard` only).
    PlainCopy,
    /// The bench's `CHECKPOINT`s after the plain COPY (`move_shard` only).
    BenchCheckpoint,
    /// After the round's work, before the next.
    Between,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::WarmUp => "warm-up",
            Phase::Prepare => "prepare",
            Phase::Copy => "copy",
            Phase::CatchUp => "catch-up",
            Phase::VerifyBlock => "verify block",
            Phase::Lock => "pause: lock",
            Phase::ApplyWait => "pause: apply wait",
            Phase::Sequences => "pause: sequences",
            Phase::Checks => "pause: checks",
            Phase::SwitchCommit => "pause: switch commit",
            Phase::Pause => "pause",
            Phase::Switch => "switch",
            Phase::Reroute => "client re-route",
            Phase::DropReplication => "drop replication",
            Phase::BackupDrop => "backup drop",
            Phase::PlainCopy => "plain COPY",
            Phase::BenchCheckpoint => "bench CHECKPOINT",
            Phase::Between => "between",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub phase: Phase,
    pub from: Instant,
    pub to: Instant,
}

/// A round's phases; sub-phases (lock, verify block) lie inside others.
#[derive(Debug, Clone, Default)]
pub struct Phases {
    pub spans: Vec<Span>,
    pub steps: Vec<(MoveStep, Instant)>,
    /// When the writer's client first routed the shard to the destination after the
    /// switch, and whether a shard notice did it (else a discovery round).
    pub rerouted: Option<(Instant, bool)>,
    /// When the client stopped routing to the source (the switch's notice, or the first
    /// reroute), if after the switch.
    pub client_saw_switch: Option<Instant>,
}

impl Phases {
    /// Builds the phases of one round from what was recorded.
    pub fn of(
        timeline: &Timeline,
        report: Option<&MoveReport>,
        routes: &[RouteChange],
        to: IslandId,
    ) -> Phases {
        let marks = timeline.marks();
        let steps = timeline.steps();
        let at = |s: MoveStep| steps.iter().find(|(x, _)| *x == s).map(|(_, t)| *t);
        let bench = |name: &'static str| {
            marks
                .iter()
                .find(|(m, _)| *m == Mark::Bench(name))
                .map(|(_, t)| *t)
        };
        let mut spans = Vec::new();
        let mut span = |phase, from: Option<Instant>, to: Option<Instant>| {
            if let (Some(from), Some(to)) = (from, to) {
                if to > from {
                    spans.push(Span { phase, from, to });
                }
            }
        };
        let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1e3);
        span(Phase::PlainCopy, bench("plain COPY"), bench("checkpoint"));
        span(
            Phase::BenchCheckpoint,
            bench("checkpoint"),
            bench("plain COPY done"),
        );
        let move_start = bench("move").unwrap_or(timeline.started());
        span(Phase::Prepare, Some(move_start), at(MoveStep::Subscribed));
        span(
            Phase::Copy,
            at(MoveStep::Subscribed),
            at(MoveStep::CaughtUp),
        );
        let pause_start = report.and_then(|r| {
            at(MoveStep::Paused).and_then(|p| p.checked_sub(ms(r.lock_ms + r.apply_wait_ms)))
        });
        span(Phase::CatchUp, at(MoveStep::CaughtUp), pause_start);
        let compared = marks
            .iter()
            .find(|(m, _)| matches!(m, Mark::Note(n) if n == "comparing the copies"))
            .map(|(_, t)| *t);
        if let (Some(c), Some(r)) = (compared, report) {
            span(
                Phase::VerifyBlock,
                c.checked_sub(ms(r.verify_block_ms)),
                Some(c),
            );
        }
        if let (Some(p), Some(r)) = (pause_start, report) {
            span(Phase::Lock, Some(p), p.checked_add(ms(r.lock_ms)));
        }
        let lock_end = pause_start
            .zip(report)
            .and_then(|(p, r)| p.checked_add(ms(r.lock_ms)));
        span(Phase::ApplyWait, lock_end, at(MoveStep::Paused));
        span(Phase::Sequences, at(MoveStep::Paused), at(MoveStep::Synced));
        span(Phase::Checks, at(MoveStep::Synced), at(MoveStep::Verified));
        span(
            Phase::SwitchCommit,
            at(MoveStep::Verified),
            at(MoveStep::Switched),
        );
        span(Phase::Pause, pause_start, at(MoveStep::Switched));
        span(
            Phase::Switch,
            at(MoveStep::Switched),
            at(MoveStep::Activated),
        );
        let switched = at(MoveStep::Switched);
        let rerouted = switched.and_then(|s| reroute(routes, s, to));
        let client_saw_switch = switched.and_then(|s| {
            routes
                .iter()
                .find(|c| c.at >= s && c.island != routes_before(routes, s))
                .map(|c| c.at)
        });
        let activated = at(MoveStep::Activated);
        span(Phase::Reroute, activated, rerouted.map(|(t, _)| t));
        let drop_from = match (activated, rerouted) {
            (Some(a), Some((r, _))) => Some(a.max(r)),
            (a, _) => a,
        };
        span(Phase::DropReplication, drop_from, at(MoveStep::CleanedUp));
        span(
            Phase::BackupDrop,
            bench("dropping the backup"),
            bench("backup dropped"),
        );
        Phases {
            spans,
            steps,
            rerouted,
            client_saw_switch,
        }
    }

    /// The narrowest span holding `t`; `Between` when none does.
    pub fn at(&self, t: Instant) -> Phase {
        self.spans
            .iter()
            .filter(|s| s.from <= t && t < s.to)
            .min_by_key(|s| s.to - s.from)
            .map(|s| s.phase)
            .unwrap_or(Phase::Between)
    }

    /// The phases `[from, to]` touches, in order of their start.
    pub fn touched(&self, from: Instant, to: Instant) -> Vec<Phase> {
        let mut v: Vec<&Span> = self
            .spans
            .iter()
            .filter(|s| s.from <= to && from < s.to)
            .collect();
        v.sort_by_key(|s| s.from);
        let mut out: Vec<Phase> = v.into_iter().map(|s| s.phase).collect();
        out.dedup();
        if out.is_empty() {
            out.push(Phase::Between);
        }
        out
    }

    pub fn span(&self, phase: Phase) -> Option<Span> {
        self.spans.iter().find(|s| s.phase == phase).copied()
    }

    pub fn step(&self, step: MoveStep) -> Option<Instant> {
        self.steps.iter().find(|(s, _)| *s == step).map(|(_, t)| *t)
    }

    /// `t` as the last step before it plus milliseconds (`start` before the first).
    pub fn after_step(&self, t: Instant) -> String {
        match self.steps.iter().rev().find(|(_, s)| *s <= t) {
            Some((step, s)) => format!("{step}+{:.0}", (t - *s).as_secs_f64() * 1e3),
            None => "start".to_string(),
        }
    }
}

/// The route the client had just before `t`.
fn routes_before(routes: &[RouteChange], t: Instant) -> Option<IslandId> {
    routes
        .iter()
        .rev()
        .find(|c| c.at < t)
        .and_then(|c| c.island)
}

/// When, at or after `switched`, the client first routed to `to`, and whether a shard
/// notice did it (its `notices_applied` counter went up with the change).
fn reroute(routes: &[RouteChange], switched: Instant, to: IslandId) -> Option<(Instant, bool)> {
    let i = routes
        .iter()
        .position(|c| c.at >= switched && c.island == Some(to))?;
    let by_notice = i > 0 && routes[i].notices_applied > routes[i - 1].notices_applied;
    Some((routes[i].at, by_notice))
}
