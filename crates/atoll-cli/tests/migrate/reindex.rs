//! REINDEX CONCURRENTLY and CREATE INDEX CONCURRENTLY meeting other backends: allowed as
//! safe, a build still running elsewhere is waited for (not dropped under it), and the
//! invalid leftovers of a killed REINDEX are dropped only once its backend is gone.

use crate::support::{
    idle_in_transaction, migrate_in_background, pid_of, session, shards, wait_for,
};
use crate::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const V12: &str = "20240101000140.reindex.sh";
const V14: &str = "20240101000160.slow_idx.sh";
const V15A: &str = "20240101000165.slow_note.sh";
const V15: &str = "20240101000170.reindex_again.sh";

#[test]
fn reindex_concurrently() {
    let env = &history(&[V1, V2, VP, V11]);
    env.write(V12, "reindex table concurrently slow;", "select 1;");
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0, "{plan}");
    assert!(plan["unsafe_pending"]
        .as_array()
        .is_some_and(|u| u.is_empty()));
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["versions_applied"], SHARDS, "{report}");
    assert_eq!(env.applied(V12), SHARDS);
}

/// An invalid index that another backend is still building (a killed run's backend) is
/// waited for, not dropped under it.
#[test]
fn running_index_build_is_not_dropped() {
    let env = &history(&[V1, V2, VP, V11]);
    let p3 = env.port_of("sh0003");
    let psql = |sql: &str| {
        Command::new(env.tc.sandbox().pg_bin().join("psql"))
            .args(["-h", "127.0.0.1", "-p", &p3.to_string(), "-U", "postgres"])
            .args(["-d", "postgres", "-c", sql])
            .current_dir("/")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn psql")
    };
    // A writer keeps the build waiting (with its invalid index in the catalog) for 3 s.
    let mut writer =
        psql("begin; insert into sh0003.slow values (1000); select pg_sleep(3); commit;");
    let wrote = "select count(*) from pg_locks l join pg_class c on c.oid = l.relation \
                 where c.relname = 'slow' and c.relnamespace = 'sh0003'::regnamespace \
                 and l.granted and l.mode = 'RowExclusiveLock'";
    let building = "select count(*) from pg_stat_progress_create_index p \
                    where p.index_relid = to_regclass('sh0003.slow_n_idx')";
    let started = Instant::now();
    while env.psql(p3, wrote) != "1" {
        assert!(started.elapsed() < Duration::from_secs(10), "no writer");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut builder = psql("create index concurrently slow_n_idx on sh0003.slow (n);");
    while env.psql(p3, building) != "1" {
        assert!(started.elapsed() < Duration::from_secs(10), "no build");
        std::thread::sleep(Duration::from_millis(20));
    }
    let oid = "select 'sh0003.slow_n_idx'::regclass::oid || ' ' || i.indisvalid \
               from pg_index i where i.indexrelid = 'sh0003.slow_n_idx'::regclass";
    let before = env.psql(p3, oid);
    assert!(before.ends_with(" false"), "{before}");
    env.write(
        V14,
        "create index concurrently slow_n_idx on slow (n);",
        "drop index concurrently slow_n_idx;",
    );
    // No canary and enough workers: sh0003 starts at once, while the build still waits (any
    // CREATE INDEX CONCURRENTLY in the database waits for the writer, a canary's too).
    // No lock retries: only waiting for the build, not retrying a drop, may pass.
    let (code, report) = env.migrate_json(&[
        "apply",
        "--canary",
        "0",
        "--parallelism",
        "8",
        "--lock-retries",
        "0",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V14), SHARDS);
    // The same index, finished by its own builder: not dropped and rebuilt.
    let after = env.psql(p3, oid);
    assert_eq!(after, before.replace(" false", " true"));
    builder.wait().expect("builder");
    writer.wait().expect("writer");
}

/// A REINDEX CONCURRENTLY killed mid-build leaves invalid `_ccnew` copies. While its
/// backend still lives they are not touched (the schema fails after the configured wait);
/// once it is gone, the retry drops them and records the version once, and a reader of
/// the table (whose plan locks the copies too) neither holds that up nor is named.
#[test]
fn interrupted_reindex_leftovers_are_dropped() {
    let env = &history(&[V1, V2, VP, V11]);
    // A text column gives `slow` a TOAST table, whose index REINDEX TABLE copies too.
    env.write(V15A, "alter table slow add column note text;", "select 1;");
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    let p3 = env.port_of("sh0003");
    let indexes_of_slow = "select i.indexrelid from pg_index i join pg_class t \
                           on i.indrelid in (t.oid, t.reltoastrelid) \
                           where t.oid = 'sh0003.slow'::regclass";
    let of_slow = format!("{indexes_of_slow} and not i.indisvalid");
    let invalid = format!(
        "select count(*) from pg_class c where c.oid in ({of_slow}) \
         and c.relname like '%\\_ccnew'"
    );
    let invalid = invalid.as_str();
    let in_toast = format!(
        "select count(*) from pg_class c where c.oid in ({of_slow}) \
         and c.relnamespace = 'pg_toast'::regnamespace"
    );
    assert_eq!(env.psql(p3, invalid), "0");
    // REINDEX TABLE copies each index of the table and of its TOAST table.
    let expected = env.psql(p3, &format!("select count(*) from ({indexes_of_slow}) i"));
    assert_ne!(expected, "0");
    // A writer idle in its transaction holds the REINDEX in its wait for lockers, right
    // after it has committed its new (invalid) copies.
    let mut writer = session(env, p3, "atoll_test_writer");
    writer.send("begin;\ninsert into sh0003.slow values (2001);\n");
    wait_for(env, p3, &idle_in_transaction("atoll_test_writer"), "1");
    let mut reindexer = session(env, p3, "atoll_test_reindex");
    reindexer.send("reindex table concurrently sh0003.slow;\n");
    wait_for(
        env,
        p3,
        "select count(*) from pg_stat_activity where application_name = 'atoll_test_reindex' \
         and wait_event_type = 'Lock'",
        "1",
    );
    // The copies, committed before the wait.
    wait_for(env, p3, invalid, &expected);
    assert_eq!(env.psql(p3, &in_toast), "1");
    let reindex_pid = env.psql(p3, &pid_of("atoll_test_reindex"));

    // Its backend still works on them: not dropped; sh0003 fails naming it and the table.
    env.write(V15, "reindex table concurrently slow;", "select 1;");
    let (code, report) =
        env.migrate_json(&["apply", "--canary", "0", "--index-build-wait-secs", "1"]);
    assert_eq!(code, 1, "{report}");
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0]["schema"], "sh0003", "{report}");
    let error = failures[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("pid {reindex_pid}")), "{error}");
    assert!(error.contains("table slow"), "{error}");
    assert_eq!(env.psql(p3, invalid), expected);

    // Killed: its copies stay behind, invalid.
    env.psql(p3, &format!("select pg_terminate_backend({reindex_pid})"));
    reindexer.finish();
    wait_for(env, p3, &pid_of("atoll_test_reindex"), "0");
    assert_eq!(env.psql(p3, invalid), expected);
    writer.finish();
    wait_for(env, p3, &pid_of("atoll_test_writer"), "0");

    // A reader of the table: planning its query locked every index of the table,
    // the invalid copies included, and it keeps those locks until it commits.
    let mut reader = session(env, p3, "atoll_test_reader");
    reader.send("begin;\nselect count(*) from sh0003.slow;\n");
    wait_for(env, p3, &idle_in_transaction("atoll_test_reader"), "1");
    let reader_pid = env.psql(p3, &pid_of("atoll_test_reader"));
    let reader_locks = format!(
        "select count(*) from pg_locks where pid = {reader_pid} and relation in ({of_slow})"
    );
    assert_ne!(env.psql(p3, &reader_locks), "0");
    // The retry does not take it for a REINDEX at work: it goes on to drop the copies,
    // whose DROP INDEX CONCURRENTLY waits (as any does) for the reader's transaction.
    let run = migrate_in_background(
        env,
        &[
            "apply",
            "--index-build-wait-secs",
            "1",
            "--lock-timeout-ms",
            "300000",
        ],
    );
    wait_for(
        env,
        p3,
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock' \
         and query ilike 'drop index concurrently%'",
        "1",
    );
    reader.send("commit;\n");
    let out = run.finish();
    reader.finish();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout} / {:?}", out.stderr));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["versions_applied"], 1, "{report}");
    assert!(!stdout.contains(&format!("pid {reader_pid}")), "{report}");
    assert_eq!(env.psql(p3, invalid), "0");
    assert_eq!(env.psql(p3, &in_toast), "0");
    let any_invalid = "select count(*) from pg_index i join pg_class c on c.oid = i.indexrelid \
                       where c.relnamespace = 'sh0003'::regnamespace and not i.indisvalid";
    assert_eq!(env.psql(p3, any_invalid), "0");
    assert_eq!(env.applied(V15), shards(env));
}
