//! `atoll status`'s part about moves: what they left behind ([`atoll_move::MoveDebris`]),
//! rendered as text sections, and the problems it makes (each naming the command that ends
//! it). Unfinished moves, stray replication objects and unread masters are problems;
//! backups awaiting cleanup are not.

use atoll_core::move_plan::FinishBy;
use atoll_move::{MoveBackup, MoveDebris, ReplicationLeftover, UnfinishedMove};
use std::fmt::Write;

/// The age `atoll cleanup` drops backups at by default.
pub const CLEANUP_AGE: &str = "7d";

/// Seconds since the Unix epoch, now.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An age as people read it: `45 s`, `12 min`, `3 h`, `2 d`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// The commands that end an unfinished move, as the operator types them.
pub fn commands(m: &UnfinishedMove) -> Vec<String> {
    let n = m.record.shard.get();
    let resume = format!("atoll move --resume --shard {n}");
    let abort = format!("atoll move --abort --shard {n}");
    match m.finish_by {
        FinishBy::ResumeOrAbort => vec![resume, abort],
        FinishBy::Resume => vec![resume],
        FinishBy::Abort => vec![abort],
    }
}

/// One problem line per unfinished move, stray replication object and unread master.
pub fn problems(d: &MoveDebris) -> Vec<String> {
    let mut out = Vec::new();
    for m in &d.unfinished {
        let r = &m.record;
        let what = match m.finish_by {
            FinishBy::ResumeOrAbort => format!(
                "finish it with `{}` or roll it back with `{}`",
                commands(m)[0],
                commands(m)[1]
            ),
            FinishBy::Resume => format!(
                "the destination is active, finish it with `{}`",
                commands(m)[0]
            ),
            FinishBy::Abort => format!(
                "an abort of it started, finish that with `{}`",
                commands(m)[0]
            ),
        };
        out.push(format!(
            "move {} of {} (island {} -> {}) is unfinished at step {}: {what}",
            r.id, r.shard, r.source, r.destination, r.step
        ));
    }
    for o in d.replication.iter().filter(|o| !o.owned) {
        let fix = match o.shard {
            Some(s) => format!(
                "`atoll move --shard {} --to ISLAND --clean-leftovers` drops it before moving the shard",
                s.get()
            ),
            None => "no recorded move owns it; drop it by hand".to_string(),
        };
        out.push(format!(
            "stray {} {} on island {} (no unfinished move owns it): {fix}",
            o.kind.as_str(),
            o.name,
            o.island
        ));
    }
    for u in &d.unread {
        out.push(format!(
            "island {}: moves, replication objects and backups unknown: {}",
            u.island, u.error
        ));
    }
    out
}

/// The text sections: unfinished moves (with what they own), stray replication objects,
/// backups (all of them, or a count with `summary`). Empty when nothing is left.
pub fn render(d: &MoveDebris, summary: bool) -> String {
    let now = now_unix();
    let mut out = String::new();
    if !d.unfinished.is_empty() {
        let _ = writeln!(out, "unfinished moves:");
        for m in &d.unfinished {
            let _ = writeln!(out, "  {}", unfinished_line(m, now));
            let owned: Vec<String> = d
                .replication
                .iter()
                .filter(|o| o.owned && o.move_id == Some(m.record.id))
                .map(object)
                .collect();
            if !owned.is_empty() {
                let _ = writeln!(out, "    replication: {}", owned.join(", "));
            }
            let _ = writeln!(out, "    ends with: `{}`", commands(m).join("` or `"));
        }
    }
    let strays: Vec<String> = d
        .replication
        .iter()
        .filter(|o| !o.owned)
        .map(object)
        .collect();
    if !strays.is_empty() {
        let _ = writeln!(out, "stray replication objects:");
        for s in strays {
            let _ = writeln!(out, "  {s}");
        }
    }
    if summary && !d.backups.is_empty() {
        let _ = writeln!(
            out,
            "backups awaiting cleanup: {} (`atoll cleanup` drops them once {CLEANUP_AGE} old)",
            d.backups.len()
        );
    } else if !d.backups.is_empty() {
        let _ = writeln!(out, "backups awaiting cleanup:");
        for b in &d.backups {
            let _ = writeln!(out, "  {}", backup_line(b, now));
        }
    }
    out
}

fn unfinished_line(m: &UnfinishedMove, now: i64) -> String {
    let r = &m.record;
    let since = match (&m.since, m.since_unix) {
        (Some(t), Some(u)) => format!(" since {t} ({} ago)", age(now - u)),
        _ => String::new(),
    };
    let aborting = match m.abort_started_at_unix {
        Some(t) => format!(", abort started {} ago", age(now - t)),
        None => String::new(),
    };
    format!(
        "{}  move {}  island {} -> {}  step {}{since}{aborting}",
        r.shard, r.id, r.source, r.destination, r.step
    )
}

fn object(o: &ReplicationLeftover) -> String {
    format!("{} {} on island {}", o.kind.as_str(), o.name, o.island)
}

fn backup_line(b: &MoveBackup, now: i64) -> String {
    let old = age(now - b.moved_at_unix as i64);
    let fate = match b.needed_by {
        Some(id) => format!("kept while move {id} is unfinished"),
        None => format!(
            "`atoll cleanup` drops it once {CLEANUP_AGE} old, `atoll cleanup --older-than 0` now"
        ),
    };
    format!(
        "{} on island {} (backup of {}, {old} old): {fate}",
        b.schema, b.island, b.shard
    )
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_in_the_largest_sensible_unit() {
        assert_eq!(age(-3), "0 s");
        assert_eq!(age(45), "45 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(3 * 3600), "3 h");
        assert_eq!(age(9 * 86_400), "9 d");
    }
}
