//! Moves' events: a bar per shard (bytes copied, current step); a plain line per step;
//! JSON events.

use super::{bar_style, Progress};
use atoll_core::ShardNo;
use atoll_move::MoveEvent;
use indicatif::ProgressBar;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Renders the events of one or more moves running at once.
pub struct MoveView {
    out: Progress,
    bars: Arc<Mutex<HashMap<ShardNo, ProgressBar>>>,
}

impl Progress {
    /// A view for moves.
    pub fn moves(&self) -> MoveView {
        MoveView {
            out: self.clone(),
            bars: Arc::default(),
        }
    }
}

impl MoveView {
    /// The sink atoll-move reports to (called from the moves' tasks).
    pub fn sink(&self) -> atoll_move::Progress {
        let out = self.out.clone();
        let bars = self.bars.clone();
        Arc::new(move |shard, event| {
            out.event(event_json(shard, event));
            if let MoveEvent::Step(s) = event {
                out.line(&format!("{shard}: {s}"));
            }
            if out.multi.is_none() {
                return;
            }
            let mut map = bars.lock().unwrap_or_else(|p| p.into_inner());
            let bar = map.entry(shard).or_insert_with(|| {
                let style = bar_style("{prefix} [{bar:30}] {bytes}/{total_bytes} {msg}");
                let b = out.bar(style, 1).unwrap_or_else(ProgressBar::hidden);
                b.set_prefix(shard.to_string());
                b
            });
            match event {
                MoveEvent::Step(s) => bar.set_message(s.to_string()),
                MoveEvent::Copy { done, total } => {
                    bar.set_length((*total).max(1));
                    bar.set_position((*done).min(*total));
                }
                MoveEvent::Note(n) => bar.set_message(n.clone()),
            }
        })
    }

    /// Leaves every bar at its last state.
    pub fn finish(&self) {
        let map = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        for b in map.values() {
            b.finish();
        }
    }
}

fn event_json(shard: ShardNo, event: &MoveEvent) -> serde_json::Value {
    match event {
        MoveEvent::Step(s) => json!({ "event": "move_step", "shard": shard, "step": s }),
        MoveEvent::Copy { done, total } => {
            json!({ "event": "move_copy", "shard": shard, "done": done, "total": total })
        }
        MoveEvent::Note(n) => json!({ "event": "move_note", "shard": shard, "note": n }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::move_plan::MoveStep;

    #[test]
    fn events_are_one_object_each_named_by_event() {
        let shard = ShardNo::new(7).expect("shard");
        let step = event_json(shard, &MoveEvent::Step(MoveStep::CaughtUp));
        assert_eq!(
            step,
            json!({ "event": "move_step", "shard": 7, "step": "caught_up" })
        );
        let copy = event_json(shard, &MoveEvent::Copy { done: 1, total: 2 });
        assert_eq!(copy["event"], "move_copy");
        assert_eq!(copy["done"], 1);
    }
}
