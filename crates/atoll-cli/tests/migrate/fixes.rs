//! Steps after `later`: the leftovers of an interrupted REINDEX CONCURRENTLY, and pg-mig's
//! per-file directives.

use super::*;
use std::io::Write;
use std::process::{Child, Output};

const V15A: &str = "20240101000165.slow_note.sh";
const V15: &str = "20240101000170.reindex_again.sh";

/// Shard schemas on both islands.
fn shards(env: &Env) -> i64 {
    env.sum("select count(*) from pg_namespace where nspname ~ '^sh[0-9]{4}$'")
}

/// Polls `sql` on `port` until it returns `want`, failing after 20 s.
fn wait_for(env: &Env, port: u16, sql: &str, want: &str) {
    let started = Instant::now();
    while env.psql(port, sql) != want {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {sql} = {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed and reaped when dropped, so that a failing assert leaves no
/// psql session holding locks (or run of `atoll`) behind.
pub(crate) struct Guard(Option<Child>);

impl Guard {
    pub(crate) fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child taken")
    }

    /// Sends `sql` to the session's stdin.
    pub(crate) fn send(&mut self, sql: &str) {
        let stdin = self.child().stdin.as_mut().expect("stdin");
        stdin.write_all(sql.as_bytes()).expect("write");
        stdin.flush().expect("flush");
    }

    /// Closes stdin and waits for the process to end.
    pub(crate) fn finish(mut self) -> Output {
        let mut child = self.0.take().expect("child taken");
        drop(child.stdin.take());
        child.wait_with_output().expect("wait")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A psql session reading SQL from its stdin, named `app` in pg_stat_activity.
pub(crate) fn session(env: &Env, port: u16, app: &str) -> Guard {
    let child = Command::new(env.sb.pg_bin().join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-q"])
        .env("PGAPPNAME", app)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn psql");
    Guard(Some(child))
}

/// `atoll migrate --json <args>` running in the background.
fn migrate_in_background(env: &Env, args: &[&str]) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_atoll"))
        .arg("--config")
        .arg(env.sb.config_path())
        .args(["--json", "migrate"])
        .args(args)
        .arg("--dir")
        .arg(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atoll");
    Guard(Some(child))
}

fn pid_of(app: &str) -> String {
    format!("select coalesce(max(pid), 0) from pg_stat_activity where application_name = '{app}'")
}

fn idle_in_transaction(app: &str) -> String {
    format!(
        "select count(*) from pg_stat_activity where application_name = '{app}' \
         and state = 'idle in transaction'"
    )
}

/// A REINDEX CONCURRENTLY killed mid-build leaves invalid `_ccnew` copies. While its
/// backend still lives they are not touched (the schema fails after the configured wait);
/// once it is gone, the retry drops them and records the version once, and a reader of
/// the table (whose plan locks the copies too) neither holds that up nor is named.
pub fn interrupted_reindex_leftovers_are_dropped(env: &Env) {
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

const V16: &str = "20240101000180.one_per_island.sh";
const V17: &str = "20240101000190.one_at_a_time.sh";

/// pg-mig's `$parallelism_per_host` and `$parallelism_global`, checked without timing:
/// a per-island file fails where it cannot take an island-wide advisory lock (so two of
/// its schemas ran at once); a global file logs when each schema's transaction started
/// and ended, and no two intervals on either island (one clock: one machine) overlap.
pub fn pg_mig_directives_cap_parallelism(env: &Env) {
    env.write(
        V16,
        "-- $parallelism_per_host=1\n\
         select 1 / pg_try_advisory_xact_lock(7001, 7002)::int;\n\
         select pg_sleep(0.01);",
        "select 1;",
    );
    for p in &env.ports {
        env.psql(
            *p,
            "create schema atoll_test; \
             create table atoll_test.par (schema text primary key, s timestamptz, e timestamptz)",
        );
    }
    env.write(
        V17,
        "-- $parallelism_global = 1\n\
         insert into atoll_test.par values (current_schema(), clock_timestamp());\n\
         select pg_sleep(0.01);\n\
         update atoll_test.par set e = clock_timestamp() where schema = current_schema();",
        "select 1;",
    );
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0, "{plan}");
    let throttled = plan["throttled"].as_array().expect("throttled");
    let of = |version: &str| {
        throttled
            .iter()
            .find(|t| t["file"] == format!("{version}.up.sql"))
            .unwrap_or_else(|| panic!("{version} not throttled: {plan}"))
    };
    assert_eq!(of(V16)["directives"]["parallelism_per_host"], 1, "{plan}");
    assert_eq!(of(V17)["directives"]["parallelism_global"], 1, "{plan}");
    let (code, report) = env.migrate_json(&["apply", "--parallelism", "8"]);
    assert_eq!(code, 0, "{report}");
    let n = shards(env);
    assert_eq!(env.applied(V16), n);
    assert_eq!(env.applied(V17), n);
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for p in &env.ports {
        let rows = env.psql(
            *p,
            "select (extract(epoch from s) * 1e6)::bigint || ' ' || \
                    (extract(epoch from e) * 1e6)::bigint from atoll_test.par",
        );
        for line in rows.lines() {
            let (s, e) = line.split_once(' ').expect("two numbers");
            spans.push((s.parse().expect("s"), e.parse().expect("e")));
        }
        env.psql(*p, "drop schema atoll_test cascade");
    }
    assert_eq!(spans.len() as i64, n);
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "two schemas ran at once: {w:?}");
    }
}

const V18: &str = "20240101000200.gated.sh";

/// A lost cluster lock also stops the steps waiting for a `$parallelism_global` slot:
/// once the step holding the slot ends, none of them runs its DDL unlocked. The step in
/// the slot waits on an advisory lock the test holds (on both islands), so that the run
/// loses its lock while every other worker waits for the slot; the gate opens only once
/// the run has said it lost the lock.
pub fn lost_lock_stops_steps_waiting_for_a_slot(env: &Env) {
    env.write(
        V18,
        "-- $parallelism_global=1\nselect pg_advisory_xact_lock(9101);",
        "select 1;",
    );
    let mut gates: Vec<Guard> = Vec::new();
    for p in &env.ports {
        let mut gate = session(env, *p, "atoll_test_gate");
        gate.send("select pg_advisory_lock(9101);\n");
        gates.push(gate);
    }
    let gated = "select count(*) from pg_locks where locktype = 'advisory' and objid = 9101";
    wait_for_sum(env, gated, env.ports.len() as i64);
    let mut run = Guard(Some(
        Command::new(env!("CARGO_BIN_EXE_atoll"))
            .arg("--config")
            .arg(env.sb.config_path())
            .args(["migrate", "apply", "--parallelism", "8", "--canary", "0"])
            .arg("--dir")
            .arg(&env.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn atoll"),
    ));
    // Read on a thread, so that a run that never says it lost the lock fails the test
    // by a timeout instead of hanging it.
    let stderr = run.child().stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // One step holds the slot, waiting at the gate.
    wait_for_sum(
        env,
        "select count(*) from pg_locks where locktype = 'advisory' and objid = 9101 \
         and not granted",
        1,
    );
    let killed = env.psql(
        env.ports[0],
        "select count(pg_terminate_backend(pid)) from pg_locks where locktype = 'advisory' \
         and granted and pid not in \
         (select pid from pg_stat_activity where application_name = 'atoll_test_gate')",
    );
    assert_eq!(killed, "1");
    let mut said = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("cluster lock lost") => break,
            Ok(line) => said.push(line),
            Err(e) => panic!("the run did not notice its lost lock ({e}): {said:?}"),
        }
    }
    for gate in gates {
        gate.finish();
    }
    let out = run.0.take().expect("run").wait_with_output().expect("wait");
    // The reader thread ends at the pipe's end, after the process exited: wait for it
    // (try_iter could miss the last lines it has not passed on yet).
    let rest: Vec<String> = rx.iter().collect();
    assert_eq!(out.status.code(), Some(1), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("lost its cluster lock")),
        "{rest:?}"
    );
    // Only the step that held the slot ran; the waiting ones did not.
    assert_eq!(env.applied(V18), 1);
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V18), shards(env));
}

/// Polls `sql` on every island until its values add up to `want`, failing after 20 s.
fn wait_for_sum(env: &Env, sql: &str, want: i64) {
    let started = Instant::now();
    while env.sum(sql) != want {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {sql} = {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
