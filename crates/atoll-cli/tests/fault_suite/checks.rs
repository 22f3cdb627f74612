//! The invariants checked after every command of a path, from the islands: shard 1 is
//! active on exactly one island or OFFLINE (inactive everywhere), no replication object is
//! left without an unfinished move owning it, and `atoll status --json` lists exactly what
//! remains (the unfinished move, its replication objects, the backups).

use super::world::{Truth, World};
use serde_json::Value;
use std::collections::BTreeSet;

/// Where shard 1 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    On(u16),
    Offline,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::On(i) => write!(f, "on {i}"),
            Place::Offline => f.write_str("OFFLINE"),
        }
    }
}

/// What an observation found.
#[derive(Debug, Clone)]
pub struct Seen {
    pub place: Place,
    pub truth: Truth,
    /// `moves.unfinished[0].finish_by` of status, when a move is unfinished.
    pub finish_by: Option<String>,
}

/// Reads the truth and `status --json`, and checks them against each other and the
/// invariants. Retried a few times while the truth moves under the reads (a running
/// copy's table-sync slots).
pub fn observe(w: &World) -> Result<Seen, String> {
    let mut last = String::new();
    for _ in 0..5 {
        let before = w.truth();
        let (code, status) = w.status()?;
        if w.truth() != before {
            last = "the islands kept changing during status".into();
            continue;
        }
        return judge(before, code, &status);
    }
    Err(last)
}

fn judge(truth: Truth, code: i32, status: &Value) -> Result<Seen, String> {
    if !truth.flag_without_schema.is_empty() {
        return Err(format!(
            "shard 1 is flagged active without its schema on {:?}",
            truth.flag_without_schema
        ));
    }
    let place = match truth.active[..] {
        [i] => Place::On(i),
        [] => Place::Offline,
        _ => return Err(format!("shard 1 is active on islands {:?}", truth.active)),
    };
    let unfinished = truth.unfinished();
    let moves = &status["moves"];
    let listed: Vec<(i64, String)> = array(&moves["unfinished"])
        .iter()
        .map(|m| (m["id"].as_i64().unwrap_or(0), text(&m["step"])))
        .collect();
    let want: Vec<(i64, String)> = unfinished
        .iter()
        .map(|(id, step, _)| (*id, step.clone()))
        .collect();
    if listed != want {
        return Err(format!(
            "status lists unfinished moves {listed:?}, the islands hold {want:?}"
        ));
    }
    let repl: BTreeSet<String> = array(&moves["replication"])
        .iter()
        .map(|o| format!("{} {} {}", o["island"], text(&o["kind"]), text(&o["name"])))
        .collect();
    let truth_repl: BTreeSet<String> = truth.replication.iter().cloned().collect();
    if repl != truth_repl {
        return Err(format!(
            "status lists replication objects {repl:?}, the islands hold {truth_repl:?}"
        ));
    }
    if unfinished.is_none() && !truth_repl.is_empty() {
        return Err(format!(
            "replication objects left with no unfinished move: {truth_repl:?}"
        ));
    }
    if let Some(stray) = array(&moves["replication"])
        .iter()
        .find(|o| o["owned"] != true)
    {
        return Err(format!("a stray replication object: {stray}"));
    }
    let backups: BTreeSet<String> = array(&moves["backups"])
        .iter()
        .map(|b| format!("{} {}", b["island"], text(&b["schema"])))
        .collect();
    let truth_backups: BTreeSet<String> = truth.backups.iter().cloned().collect();
    if backups != truth_backups {
        return Err(format!(
            "status lists backups {backups:?}, the islands hold {truth_backups:?}"
        ));
    }
    let problems = array(&status["move_problems"]).len();
    if unfinished.is_some() && (code != 3 || problems == 0) {
        return Err(format!(
            "an unfinished move, yet status exits {code} with {problems} move problems"
        ));
    }
    let finish_by = array(&moves["unfinished"])
        .first()
        .map(|m| text(&m["finish_by"]));
    Ok(Seen {
        place,
        truth,
        finish_by,
    })
}

/// A clean start (and end) of a path: active on one island, nothing unfinished, no
/// replication object, no backup, and status healthy.
pub fn require_clean(w: &World) -> Result<u16, String> {
    let seen = observe(w)?;
    let (code, status) = w.status()?;
    match seen.place {
        Place::On(i) if seen.truth.is_clean() && code == 0 && status["healthy"] == true => Ok(i),
        _ => Err(format!(
            "not clean: {:?}, status exit {code}: {}",
            seen.truth, status["problems"]
        )),
    }
}

fn array(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}
