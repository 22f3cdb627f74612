//! The paths of the fault suite: how a move is interrupted (a kill), then which command an
//! operator types next (a follow-up). The quick subset runs in `cargo test`; the full
//! matrix with `ATOLL_FAULT_MATRIX=full`.

use atoll_core::move_plan::{AbortAction, MoveStep};
use std::fmt;

/// How the move is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// `atoll move` stops right after recording the step (the hidden test hook).
    Mover(MoveStep),
    /// The mover stops after `first`, then `atoll move --resume` stops after `then`.
    Resume { first: MoveStep, then: MoveStep },
    /// The mover stops after `first`, then `atoll move --abort` stops after `after`.
    Abort { first: MoveStep, after: AbortAction },
    /// `atoll move` gets SIGKILL `delay_ms` after it reports reaching `trigger`.
    Signal { trigger: MoveStep, delay_ms: u64 },
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kill::Mover(s) => write!(f, "mover@{s}"),
            Kill::Resume { first, then } => write!(f, "mover@{first} resume@{then}"),
            Kill::Abort { first, after } => write!(f, "mover@{first} abort@{after}"),
            Kill::Signal { trigger, delay_ms } => write!(f, "SIGKILL {trigger}+{delay_ms}ms"),
        }
    }
}

/// What the operator types after the interruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    Resume,
    Abort,
    RebalanceResume,
    Cleanup,
}

impl FollowUp {
    pub const ALL: [FollowUp; 4] = [
        FollowUp::Resume,
        FollowUp::Abort,
        FollowUp::RebalanceResume,
        FollowUp::Cleanup,
    ];
}

impl fmt::Display for FollowUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FollowUp::Resume => "resume",
            FollowUp::Abort => "abort",
            FollowUp::RebalanceResume => "rebalance --resume",
            FollowUp::Cleanup => "cleanup",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPath {
    pub kill: Kill,
    pub follow: FollowUp,
}

impl fmt::Display for FaultPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.kill, self.follow)
    }
}

fn path(kill: Kill, follow: FollowUp) -> FaultPath {
    FaultPath { kill, follow }
}

/// One kill per persisted step (and one inside the pause) with one follow-up each, a
/// killed abort, a killed resume, and the SIGKILLs of `signals` (follow-ups rotating).
pub fn quick(signals: &[(MoveStep, u64)]) -> Vec<FaultPath> {
    use FollowUp::*;
    use MoveStep::*;
    let mut rotate = [Resume, Abort, RebalanceResume, Cleanup]
        .into_iter()
        .cycle();
    let signals = signals.iter().map(|&(trigger, delay_ms)| {
        let f = rotate.next().unwrap_or(Resume);
        path(Kill::Signal { trigger, delay_ms }, f)
    });
    let mut out = vec![
        path(Kill::Mover(Prepared), Abort),
        path(Kill::Mover(SchemaCopied), Resume),
        path(Kill::Mover(Subscribed), RebalanceResume),
        path(Kill::Mover(CaughtUp), Cleanup),
        path(Kill::Mover(Verified), Abort),
        path(Kill::Mover(Switched), Cleanup),
        path(Kill::Mover(Activated), Abort),
        path(Kill::Mover(CleanedUp), Resume),
        path(
            Kill::Abort {
                first: Switched,
                after: AbortAction::ReactivateSource,
            },
            Resume,
        ),
        path(
            Kill::Resume {
                first: Subscribed,
                then: Switched,
            },
            Abort,
        ),
    ];
    out.extend(signals);
    out
}

/// The actions of an abort from `first` worth stopping after: those that change something
/// (the slot and publication are dropped with the subscription) and leave work behind.
fn abort_stops(first: MoveStep) -> Vec<AbortAction> {
    let plan = first.abort_plan().unwrap_or_default();
    plan.into_iter()
        .filter(|a| {
            !matches!(
                a,
                AbortAction::DropSlot | AbortAction::DropPublication | AbortAction::ForgetMove
            )
        })
        .collect()
}

/// Every kill point, every abort killed after each of its actions, every resume (from
/// each persisted step) killed at each later step, and the SIGKILLs of `signals`, each
/// with every follow-up.
pub fn full(signals: &[(MoveStep, u64)]) -> Vec<FaultPath> {
    let mut out = Vec::new();
    for step in MoveStep::ALL {
        for f in FollowUp::ALL {
            out.push(path(Kill::Mover(step), f));
        }
    }
    let persisted: Vec<MoveStep> = MoveStep::ALL
        .into_iter()
        .filter(|s| s.durable() && !s.is_finished())
        .collect();
    for &first in &persisted {
        for after in abort_stops(first) {
            for f in FollowUp::ALL {
                out.push(path(Kill::Abort { first, after }, f));
            }
        }
    }
    for &first in &persisted {
        for then in MoveStep::ALL.into_iter().filter(|t| *t > first) {
            for f in FollowUp::ALL {
                out.push(path(Kill::Resume { first, then }, f));
            }
        }
    }
    for &(trigger, delay_ms) in signals {
        for f in FollowUp::ALL {
            out.push(path(Kill::Signal { trigger, delay_ms }, f));
        }
    }
    out
}

/// Seeded random SIGKILL moments: `n` (trigger step, delay) pairs in the copy, the pause,
/// the catch-up, between the switch and the activation, and during the subscription's
/// creation (splitmix64, so a seed replays the same moments; the timing of the machine
/// still decides where exactly each kill lands).
pub fn signal_moments(seed: u64, n: usize) -> Vec<(MoveStep, u64)> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    // (trigger, longest delay in ms): each window is about as long as that phase lasts.
    let moments = [
        (MoveStep::Subscribed, 250),
        (MoveStep::Paused, 6),
        (MoveStep::CaughtUp, 120),
        (MoveStep::Switched, 2),
        (MoveStep::SchemaCopied, 300),
    ];
    (0..n)
        .map(|i| {
            let (trigger, max) = moments[i % moments.len()];
            (trigger, next() % (max + 1))
        })
        .collect()
}
