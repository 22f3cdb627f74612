//! `atoll migrate`'s text output: the plan and a run's report.

use atoll_core::migration::{MigrationSet, Plan};
use atoll_migrate::{RunOutcome, RunReport};
use std::path::Path;

fn versions(v: &[String]) -> String {
    match v {
        [one] => format!("version {one}"),
        [a, b] => format!("versions {a}, {b}"),
        [first, .., last] => format!("{} versions {first} .. {last}", v.len()),
        [] => "nothing".into(),
    }
}

pub fn render_plan(set: &MigrationSet, plan: &Plan, dir: &Path) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} migrations in {} (targets: {})",
        set.migrations.len(),
        dir.display(),
        set.targets().join(", ")
    );
    for g in &plan.groups {
        let what = if g.count == 1 { "schema" } else { "schemas" };
        let _ = writeln!(
            out,
            "{} -> {} {what}: {}",
            versions(&g.pending),
            g.count,
            g.schemas
        );
    }
    let _ = writeln!(out, "{} schemas up to date", plan.up_to_date);
    for d in &plan.drift {
        if let Some(why) = &d.drift {
            let _ = writeln!(out, "drift: {} (island {}): {why}", d.schema, d.island);
        }
    }
    for u in &plan.unsafe_pending {
        let _ = writeln!(
            out,
            "unsafe: {} contains {} (apply needs --allow-unsafe)",
            u.file, u.statement
        );
    }
    for line in disclosure(plan) {
        let _ = writeln!(out, "{line}");
    }
    for t in &plan.throttled {
        let _ = writeln!(out, "throttled: {} ({})", t.file, t.directives);
    }
    for c in &plan.changed {
        let _ = writeln!(
            out,
            "changed: {} was edited after {} schemas applied it (e.g. {}); the edit will not run there, write a new migration",
            c.file, c.count, c.example
        );
    }
    for i in &plan.ignored {
        let _ = writeln!(
            out,
            "ignored: {} (island {}) matches target {} but is not a shard name (a leftover copy?); it is never migrated",
            i.schema, i.island, i.target
        );
    }
    for t in &plan.unmatched_targets {
        let _ = writeln!(out, "note: no schema matches target {t}");
    }
    out
}

/// Per table an unsafe statement touches: the shards holding data in it, the totals, and
/// the largest few (the whole list is in `--json` and the plan file).
fn disclosure(plan: &Plan) -> Vec<String> {
    use std::collections::BTreeMap;
    let mut by_table: BTreeMap<&str, Vec<&atoll_core::migration::UnsafeShard>> = BTreeMap::new();
    for u in &plan.unsafe_shards {
        by_table.entry(&u.table).or_default().push(u);
    }
    by_table
        .into_iter()
        .map(|(table, mut shards)| {
            let rows: i64 = shards.iter().map(|u| u.rows).sum();
            let bytes: i64 = shards.iter().map(|u| u.bytes).sum();
            let with_rows = shards.iter().filter(|u| u.rows > 0).count();
            shards.sort_by(|a, b| b.rows.cmp(&a.rows).then(b.bytes.cmp(&a.bytes)));
            let top: Vec<String> = shards
                .iter()
                .filter(|u| u.rows > 0)
                .take(5)
                .map(|u| format!("{} {} rows {}", u.schema, u.rows, size(u.bytes)))
                .collect();
            format!(
                "unsafe data: {table} on {} shards holds ~{rows} rows, {} ({with_rows} shards with rows{}{})",
                shards.len(),
                size(bytes),
                if top.is_empty() { "" } else { "; most: " },
                top.join(", ")
            )
        })
        .collect()
}

fn size(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} kB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub fn render_report(r: &RunReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if r.status == RunOutcome::NothingToDo {
        let _ = writeln!(
            out,
            "run {} {}: every schema is up to date",
            r.run_id, r.kind
        );
        return out;
    }
    let _ = writeln!(
        out,
        "run {} {}: {} of {} schemas done, {} versions, {:.1} s (canary: {})",
        r.run_id,
        r.kind,
        r.schemas_ok,
        r.schemas_total,
        r.versions_applied,
        r.elapsed_ms as f64 / 1000.0,
        if r.canary.is_empty() {
            "none".to_string()
        } else {
            r.canary.join(", ")
        }
    );
    if r.status == RunOutcome::Halted {
        let _ = writeln!(
            out,
            "halted: {} failed; {} schemas not started (running ones finished)",
            r.failures.first().map_or("a schema", |f| f.schema.as_str()),
            r.not_started
        );
    }
    if r.status == RunOutcome::Stopped {
        let _ = writeln!(
            out,
            "stopped by `migrate stop`: {} schemas not started; run apply again to resume",
            r.not_started
        );
    }
    if r.status == RunOutcome::CanaryFailed {
        let _ = writeln!(
            out,
            "canary failed: the run stopped, {} schemas not started",
            r.not_started
        );
    }
    for f in &r.failures {
        let _ = writeln!(
            out,
            "failed: {} (island {}) {}: {}",
            f.schema, f.island, f.file, f.error
        );
    }
    if r.finalizer_skipped {
        let _ = writeln!(
            out,
            "finalizer skipped ({}): {} shards failed",
            r.finalizer.join(", "),
            r.failures.len()
        );
    } else if let Some(why) = &r.finalizer_held {
        let _ = writeln!(out, "finalizer held: {why}");
    } else if !r.finalizer.is_empty() && r.status != RunOutcome::CanaryFailed {
        let _ = writeln!(out, "finalizer: {}", r.finalizer.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::migration::{plan, SchemaState};
    use atoll_core::IslandId;

    fn set() -> MigrationSet {
        let mut files = Vec::new();
        for v in ["1.a.sh", "2.b.sh", "3.c.sh"] {
            files.push((
                format!("{v}.up.sql"),
                "alter table t drop column x;".to_string(),
            ));
            files.push((format!("{v}.dn.sql"), String::new()));
        }
        MigrationSet::parse(files).expect("valid")
    }

    #[test]
    fn plan_text_is_one_line_per_group() {
        let states: Vec<SchemaState> = (1..=100)
            .map(|n| SchemaState {
                schema: format!("sh{n:04}"),
                island: IslandId((n % 2) as u16),
                applied: if n == 42 {
                    vec!["1.a.sh".into()]
                } else {
                    vec![]
                },
                checksums: Default::default(),
            })
            .collect();
        let p = plan(&set(), &states);
        let text = render_plan(&set(), &p, Path::new("m"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "3 migrations in m (targets: sh)");
        assert_eq!(
            lines[1],
            "3 versions 1.a.sh .. 3.c.sh -> 99 schemas: sh0001-sh0041, sh0043-sh0100"
        );
        assert_eq!(lines[2], "versions 2.b.sh, 3.c.sh -> 1 schema: sh0042");
        assert_eq!(lines[3], "0 schemas up to date");
        assert!(lines[4].starts_with("unsafe: 1.a.sh.up.sql contains DROP COLUMN"));
    }

    #[test]
    fn report_lists_every_failure() {
        let r = RunReport {
            run_id: 7,
            kind: atoll_migrate::RunKind::Apply,
            status: RunOutcome::Failed,
            schemas_total: 3,
            schemas_ok: 1,
            versions_applied: 2,
            canary: vec!["sh0001".into()],
            failures: ["sh0002", "sh0003"]
                .iter()
                .map(|s| atoll_migrate::SchemaFailure {
                    schema: s.to_string(),
                    island: IslandId(1),
                    version: "2.b.sh".into(),
                    file: "2.b.sh.up.sql".into(),
                    error: "ERROR: boom [XX000]".into(),
                })
                .collect(),
            not_started: 1,
            finalizer: vec!["public".into()],
            finalizer_skipped: true,
            finalizer_held: None,
            elapsed_ms: 1500,
        };
        let text = render_report(&r);
        assert!(text
            .starts_with("run 7 apply: 1 of 3 schemas done, 2 versions, 1.5 s (canary: sh0001)"));
        assert!(text.contains("failed: sh0002 (island 1) 2.b.sh.up.sql: ERROR: boom [XX000]"));
        assert!(text.contains("failed: sh0003 (island 1)"));
        assert!(text.contains("finalizer skipped (public): 2 shards failed"));
    }
}
