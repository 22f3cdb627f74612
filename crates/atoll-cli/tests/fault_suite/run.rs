//! One path of the fault suite, from a verified clean state: the writer starts, the move
//! is interrupted, the follow-up runs and is judged against what the persisted state
//! allows; an OFFLINE shard is brought back with the command the output names; then the
//! writes are checked, and everything is settled (resume or abort, cleanup) and verified
//! clean again for the next path.

use super::checks::{observe, require_clean, Place, Seen};
use super::paths::{FaultPath, FollowUp, Kill};
use super::world::{Run, World, SHARD, WEIGHTS};
use super::writer::{self, Writer, SPAN};
use atoll_core::move_plan::MoveStep;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

/// Runs path number `idx`; its outcome as one line, or what went wrong.
pub fn run_path(w: &World, idx: usize, p: FaultPath) -> Result<String, String> {
    let src = require_clean(w).map_err(|e| format!("before the path: {e}"))?;
    let base = (idx as i64 + 1) * SPAN;
    let writer = Writer::start(w.tc.config().clone(), base);
    let mut log = Vec::new();
    let after = interrupt_and_follow(w, p, src, &mut log);
    let written = writer.stop();
    let place = after?;
    if let Place::On(i) = place {
        writer::check(w, i, base, &written)?;
    }
    let end = settle(w, &mut log)?;
    writer::check(w, end, base, &written)?;
    log.push(format!(
        "{} writes acked ({} errors)",
        written.acked.len(),
        written.errors
    ));
    Ok(log.join("; "))
}

/// After a failed path: settle whatever is left so the next path can start clean; stray
/// replication objects are dropped the way status says (a move with --clean-leftovers).
pub fn recover(w: &World) -> Result<u16, String> {
    let mut log = Vec::new();
    if let Ok(island) = settle(w, &mut log) {
        return Ok(island);
    }
    if let [island] = w.truth().active[..] {
        let to = (1 - island).to_string();
        w.mover(&["--to", &to, "--clean-leftovers"], None);
    }
    settle(w, &mut log)
}

fn interrupt_and_follow(
    w: &World,
    p: FaultPath,
    src: u16,
    log: &mut Vec<String>,
) -> Result<Place, String> {
    let dst = 1 - src;
    kill(w, p.kill, dst, log)?;
    let killed = observe(w)?;
    log.push(format!("killed: {}", describe(&killed)));
    let persisted = killed
        .truth
        .unfinished()
        .map(|(_, step, aborting)| (step.parse::<MoveStep>().ok(), aborting));
    let expect = expect(p.follow, persisted);
    let run = follow_up(w, p.follow);
    if run.code != expect.code || !expect.says.is_none_or(|s| run.text().contains(s)) {
        return Err(format!(
            "{} after {}: expected exit {} saying {:?}, got {}",
            p.follow,
            describe(&killed),
            expect.code,
            expect.says,
            run.brief()
        ));
    }
    let seen = observe(w)?;
    log.push(format!("{}: {}", p.follow, describe(&seen)));
    let want = match expect.end {
        End::Source => Some(Place::On(src)),
        End::Destination => Some(Place::On(dst)),
        End::Unchanged => Some(killed.place),
    };
    if want.is_some_and(|want| want != seen.place) {
        return Err(format!(
            "{} left the shard {}, expected {:?}",
            p.follow, seen.place, want
        ));
    }
    if seen.place != Place::Offline {
        return Ok(seen.place);
    }
    // OFFLINE: the output must name the command that ends it.
    let Some(cmd) = named_command(&run.text()) else {
        return Err(format!(
            "OFFLINE after {}, and its output names no command: {}",
            p.follow,
            run.brief()
        ));
    };
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    let ended = w.atoll(&args, &[]);
    if ended.code != 0 {
        return Err(format!("`{cmd}` (named when OFFLINE): {}", ended.brief()));
    }
    let seen = observe(w)?;
    log.push(format!("`{cmd}`: {}", describe(&seen)));
    match seen.place {
        Place::Offline => Err(format!("still OFFLINE after `{cmd}`")),
        on => Ok(on),
    }
}

fn describe(s: &Seen) -> String {
    match s.truth.unfinished() {
        Some((_, step, true)) => format!("{} at {step} (aborting)", s.place),
        Some((_, step, false)) => format!("{} at {step}", s.place),
        None => format!("{} (no move)", s.place),
    }
}

/// The interruption, checked to have stopped where asked.
fn kill(w: &World, kill: Kill, dst: u16, log: &mut Vec<String>) -> Result<(), String> {
    let dst = dst.to_string();
    let to = ["--to", dst.as_str()];
    let stopped = |run: Run, says: String| -> Result<(), String> {
        match run.code == 1 && run.stderr.contains(&says) {
            true => Ok(()),
            false => Err(format!("expected {says:?}, got {}", run.brief())),
        }
    };
    let step = |s: MoveStep| format!("stopped after step {s}");
    match kill {
        Kill::Mover(s) => stopped(w.mover(&to, Some(s.as_str())), step(s)),
        Kill::Resume { first, then } => {
            stopped(w.mover(&to, Some(first.as_str())), step(first))?;
            stopped(w.mover(&["--resume"], Some(then.as_str())), step(then))
        }
        Kill::Abort { first, after } => {
            stopped(w.mover(&to, Some(first.as_str())), step(first))?;
            let hook = format!("abort:{after}");
            let says = format!("abort stopped after {after}");
            stopped(w.mover(&["--abort"], Some(&hook)), says)
        }
        Kill::Signal { trigger, delay_ms } => {
            let note = signal(w, &dst, trigger, delay_ms)?;
            log.push(note);
            Ok(())
        }
    }
}

/// `atoll move` with JSON progress on stderr, SIGKILLed `delay_ms` after it reports
/// `trigger`. Says whether the kill came first or the move ended on its own.
fn signal(w: &World, dst: &str, trigger: MoveStep, delay_ms: u64) -> Result<String, String> {
    let shard = SHARD.to_string();
    let mut child = w
        .cli
        .command()
        .args(["--progress", "json", "move", "--shard", &shard, "--to", dst])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn atoll move: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut seen = false;
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "move_step" && v["step"] == trigger.as_str() {
            seen = true;
            break;
        }
    }
    if seen {
        std::thread::sleep(Duration::from_millis(delay_ms));
    }
    // SIGKILL (Child::kill); the process may have ended already.
    let killed = child.kill().is_ok();
    // The rest of stderr must be drained, or a live child could block on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    Ok(match (seen, status.code()) {
        (true, None) if killed => format!("SIGKILL {delay_ms} ms after {trigger}"),
        (_, code) => format!("the move ended by itself (exit {code:?}) before the SIGKILL"),
    })
}

fn follow_up(w: &World, f: FollowUp) -> Run {
    match f {
        FollowUp::Resume => w.mover(&["--resume"], None),
        FollowUp::Abort => w.mover(&["--abort"], None),
        FollowUp::RebalanceResume => w.atoll(
            &["rebalance", "--resume", "--yes", "--weight-sql", WEIGHTS],
            &[],
        ),
        FollowUp::Cleanup => w.atoll(&["cleanup", "--older-than", "0"], &[]),
    }
}

/// Where a follow-up must leave the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Source,
    Destination,
    Unchanged,
}

struct Expect {
    code: i32,
    says: Option<&'static str>,
    end: End,
}

/// What a follow-up must do from the persisted state (step, abort started), `None` when
/// no move is unfinished.
fn expect(f: FollowUp, persisted: Option<(Option<MoveStep>, bool)>) -> Expect {
    let e = |code, says, end| Expect { code, says, end };
    let abort_cmd = "atoll move --abort --shard 1";
    match (f, persisted) {
        (FollowUp::Cleanup, _) => e(0, None, End::Unchanged),
        (FollowUp::RebalanceResume, None) => e(0, None, End::Unchanged),
        (_, None) => e(2, Some("no unfinished move"), End::Unchanged),
        (FollowUp::Abort, Some((Some(MoveStep::Activated), _))) => {
            e(2, Some("run --resume"), End::Unchanged)
        }
        (FollowUp::Abort, Some(_)) => e(0, None, End::Source),
        (_, Some((_, true))) => e(2, Some(abort_cmd), End::Unchanged),
        (_, Some((_, false))) => e(0, None, End::Destination),
    }
}

/// The first `atoll move ...` command in backticks in `text`.
fn named_command(text: &str) -> Option<String> {
    let start = text.find("`atoll move ")? + 1;
    let len = text[start..].find('`')?;
    Some(text[start..start + len].to_string())
}

/// Ends whatever is unfinished with the command status names first (resume, or abort
/// when only that may), drops every backup, and checks the cluster is clean.
fn settle(w: &World, log: &mut Vec<String>) -> Result<u16, String> {
    for _ in 0..3 {
        let Some(finish_by) = observe(w)?.finish_by else {
            break;
        };
        let how = if finish_by == "abort" {
            "--abort"
        } else {
            "--resume"
        };
        let run = w.mover(&[how], None);
        if run.code != 0 {
            return Err(format!("settling with {how}: {}", run.brief()));
        }
        log.push(format!("settled: {how}"));
    }
    let run = w.atoll(&["cleanup", "--older-than", "0"], &[]);
    if run.code != 0 {
        return Err(format!("cleanup: {}", run.brief()));
    }
    require_clean(w).map_err(|e| format!("after settling: {e}"))
}
