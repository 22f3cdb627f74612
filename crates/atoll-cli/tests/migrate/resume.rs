//! One run at a time, and a killed run resumed: the second run is refused naming the
//! holder; after the kill, the next run finishes what the first started, exactly once.

use crate::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn concurrent_apply_refused_then_kill_and_resume() {
    let env = base();
    // Slow enough (64 shards x 0.15 s, one worker per island) to be interrupted.
    env.write(
        V4,
        "create table ticks (n int);\ninsert into ticks values (5);\nselect pg_sleep(0.15);",
        "drop table ticks;",
    );
    let dir = env.dir.to_string_lossy().to_string();
    let mut child = env
        .command()
        .args(["migrate", "apply", "--parallelism", "1", "--dir", &dir])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn apply");
    let started = Instant::now();
    while env.applied(V4) < 6 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "first run made no progress"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, err) = env.migrate(&["apply"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("holds the cluster lock"), "{err}");
    assert!(err.contains(&format!("pid {}", child.id())), "{err}");
    child.kill().expect("kill");
    child.wait().expect("wait");
    env.wait_until_unlocked(atoll_pg::locks::MIGRATION_RUN);
    let partial = env.applied(V4);
    assert!(partial > 0 && partial < 64, "killed run applied {partial}");
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V4), 64);
    // Applied exactly once everywhere: one row per shard's ticks table.
    assert_eq!(
        env.sum("select count(*) from (select 1 from pg_tables where tablename = 'ticks') t"),
        64
    );
    let rows = env.sum(
        "select coalesce(sum((xpath('/row/c/text()', query_to_xml(format('select count(*) as c from %I.ticks', schemaname), false, true, '')))[1]::text::int), 0) from pg_tables where tablename = 'ticks'",
    );
    assert_eq!(rows, 64);
    let statuses = env.psql(
        env.ports[0],
        "select string_agg(status, ',' order by run_id) from atoll.migration_runs where kind = 'apply'",
    );
    assert!(statuses.contains("interrupted"), "{statuses}");
    assert!(statuses.ends_with("done"), "{statuses}");
}
