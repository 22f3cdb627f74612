//! `/metrics` in the Prometheus text format, rendered from the snapshot and the catalog
//! view at scrape time (a collector, not counters kept on the side). Labels are per island
//! and per node, never per shard, so a scrape stays small at 10,000 shards. Names follow
//! postgres_exporter's where one exists (`pg_replication_lag_seconds`), atoll's own
//! otherwise.

use crate::api::island_views;
use crate::view::{now_unix_ms, CatalogView};
use atoll_client::ClientStats;
use atoll_core::move_plan::MoveStep;
use atoll_core::{NodeRole, NodeState, Snapshot};
use std::fmt::Write;

/// One metric family being written: its header once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition.
pub fn render(s: &Snapshot, catalog: &CatalogView, stats: &ClientStats) -> String {
    let mut out = String::new();
    nodes(&mut out, s);
    islands(&mut out, s);
    moves(&mut out, catalog);
    migration(&mut out, catalog);
    let age = now_unix_ms().saturating_sub(s.taken_at_unix_ms) as f64 / 1e3;
    for (name, kind, help, v) in [
        (
            "atoll_snapshot_age_seconds",
            "gauge",
            "Age of the discovery snapshot served.",
            age,
        ),
        (
            "atoll_snapshot_problems",
            "gauge",
            "Problems the snapshot reports (status shows them).",
            s.problems.len() as f64,
        ),
        (
            "atoll_shards_active",
            "gauge",
            "Shards active on exactly one island.",
            s.active_shards().count() as f64,
        ),
        (
            "atoll_discovery_rounds_total",
            "counter",
            "Discovery rounds installed since start.",
            stats.discovery_rounds as f64,
        ),
        (
            "atoll_shard_notices_applied_total",
            "counter",
            "Shard notices that updated the snapshot.",
            stats.notices_applied as f64,
        ),
        (
            "atoll_discovery_seconds",
            "gauge",
            "Duration of the last discovery round.",
            stats.last_discovery_us as f64 / 1e6,
        ),
        (
            "atoll_catalog_read_seconds",
            "gauge",
            "Duration of the last read of the catalog's moves.",
            catalog.read_seconds,
        ),
        (
            "atoll_catalog_read_ok",
            "gauge",
            "1 when the last read of the catalog succeeded.",
            f64::from(u8::from(catalog.error.is_none())),
        ),
    ] {
        Family::new(&mut out, name, kind, help).sample(name, &[], v);
    }
    out
}

/// A gauge per node (labels island and node) with `value`'s answer; a node for which it
/// has none is left out.
type NodeValue = fn(&NodeState) -> Option<f64>;

const NODE_GAUGES: [(&str, &str, NodeValue); 4] = [
    (
        "atoll_node_up",
        "1 when discovery could read the node.",
        |n| Some(f64::from(u8::from(n.error.is_none()))),
    ),
    (
        "atoll_node_is_master",
        "1 on the node that takes writes (not in recovery).",
        |n| n.role.map(|r| f64::from(u8::from(r == NodeRole::Master))),
    ),
    (
        "pg_replication_lag_seconds",
        "Seconds since the replica's last replayed transaction (0 when fully replayed).",
        |n| n.lag_seconds.filter(|_| n.role == Some(NodeRole::Replica)),
    ),
    (
        "atoll_replication_lag_bytes",
        "Bytes of WAL the replica is behind its master.",
        |n| {
            n.lag_bytes
                .filter(|_| n.role == Some(NodeRole::Replica))
                .map(|b| b as f64)
        },
    ),
];

fn nodes(out: &mut String, s: &Snapshot) {
    for (name, help, value) in NODE_GAUGES {
        let mut f = Family::new(out, name, "gauge", help);
        for i in &s.islands {
            let island = i.id.to_string();
            for n in &i.nodes {
                if let Some(v) = value(n) {
                    f.sample(name, &[("island", &island), ("node", &n.addr)], v);
                }
            }
        }
    }
}

fn islands(out: &mut String, s: &Snapshot) {
    let views = island_views(s);
    let mut f = Family::new(
        out,
        "atoll_island_shards",
        "gauge",
        "Shards active on the island.",
    );
    for v in &views {
        f.sample(
            "atoll_island_shards",
            &[("island", &v.id.to_string())],
            v.shards_active as f64,
        );
    }
    let mut f = Family::new(
        out,
        "atoll_island_bytes",
        "gauge",
        "Bytes of the shards active on the island.",
    );
    for v in &views {
        f.sample(
            "atoll_island_bytes",
            &[("island", &v.id.to_string())],
            v.bytes_active as f64,
        );
    }
}

fn moves(out: &mut String, c: &CatalogView) {
    let mut f = Family::new(
        out,
        "atoll_moves",
        "gauge",
        "Unfinished moves by the last step they reached.",
    );
    for step in MoveStep::ALL {
        let n = c.moves.iter().filter(|m| m.step == step).count();
        f.sample("atoll_moves", &[("step", step.as_str())], n as f64);
    }
    let h = &c.move_stats;
    h.pause.render(
        out,
        "atoll_move_pause_seconds",
        "Finished moves' pause: from the lock request to the destination's activation, the longest a writer waited.",
    );
    h.write_block.render(
        out,
        "atoll_move_write_block_seconds",
        "Finished moves' time with writes blocked: the pause plus the comparison's brief freeze.",
    );
    h.duration.render(
        out,
        "atoll_move_duration_seconds",
        "Finished moves' whole duration (of the run that finished them).",
    );
}

/// The newest migration run: its schemas by state, and whether it runs.
fn migration(out: &mut String, c: &CatalogView) {
    let Some(m) = &c.migration else { return };
    let name = "atoll_migration_run_schemas";
    let help = "Schemas of the newest migration run, by state (done, failed, total).";
    let mut f = Family::new(out, name, "gauge", help);
    let run = m.run.run_id.to_string();
    for (state, n) in [
        ("done", m.run.schemas_done),
        ("failed", m.run.schemas_failed),
        ("total", m.run.schemas_total),
    ] {
        f.sample(name, &[("run", &run), ("state", state)], f64::from(n));
    }
    let name = "atoll_migration_run_running";
    let running = c.migration_running().is_some();
    Family::new(
        out,
        name,
        "gauge",
        "1 while a migration run holds the cluster lock.",
    )
    .sample(name, &[], f64::from(u8::from(running)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        Family::new(&mut out, "x", "gauge", "h").sample("x", &[("a", "q\"b\\n\nl")], 1.0);
        assert!(out.ends_with("x{a=\"q\\\"b\\\\n\\nl\"} 1\n"), "{out}");
    }

    #[test]
    fn nodes_islands_and_moves_are_rendered_per_island_not_per_shard() {
        let s = crate::testdata::snapshot(50);
        let text = render(&s, &CatalogView::default(), &ClientStats::default());
        for line in [
            "atoll_node_up{island=\"0\",node=\"m:1\"} 1",
            "atoll_node_is_master{island=\"0\",node=\"r:2\"} 0",
            "pg_replication_lag_seconds{island=\"0\",node=\"r:2\"} 0.5",
            "atoll_replication_lag_bytes{island=\"0\",node=\"r:2\"} 1000",
            "atoll_island_shards{island=\"0\"} 50",
            "atoll_island_bytes{island=\"0\"} 50000",
            "atoll_moves{step=\"prepared\"} 0",
            "atoll_shards_active 50",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        // No sample carries a shard label: the size does not grow with the shards.
        assert!(!text.contains("shard="), "{text}");
    }
}
