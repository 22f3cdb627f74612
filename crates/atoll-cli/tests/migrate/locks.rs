//! The locks a run meets: a shard's table lock held by the application (lock timeout,
//! bounded retries), and the run's own cluster lock lost mid-run (the run stops before its
//! next step, also the steps waiting for a `$parallelism_global` slot, and a move can
//! start).

use crate::support::{session, shards, wait_for_sum, Guard};
use crate::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const V8: &str = "20240101000100.age.sh";

#[test]
fn lock_timeout_with_bounded_retry() {
    let env = &base();
    env.write(
        V8,
        "alter table users add column age int;",
        "alter table users drop column age;",
    );
    let p3 = env.port_of("sh0003");
    // Another session holds sh0003.users, as a long transaction of the app would, until
    // the test releases it.
    let mut holder = session(env, p3, "atoll_test_v8_holder");
    holder.send("begin;\nlock table sh0003.users;\n");
    let held = "select count(*) from pg_locks l join pg_class c on c.oid = l.relation \
                where c.relname = 'users' and c.relnamespace = 'sh0003'::regnamespace \
                and l.granted and l.mode = 'AccessExclusiveLock'";
    let started = Instant::now();
    while env.psql(p3, held) != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "lock never taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // 0 would mean "wait forever" to PostgreSQL: refused.
    let (code, _, err) = env.migrate(&["apply", "--lock-timeout-ms", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lock-timeout-ms"), "{err}");
    // No retry: the busy shard gives up quickly with the lock timeout, the others go on.
    let (code, report) = env.migrate_json(&[
        "apply",
        "--canary",
        "0",
        "--lock-timeout-ms",
        "100",
        "--lock-retries",
        "0",
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["failures"][0]["schema"], "sh0003", "{report}");
    let error = report["failures"][0]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("lock timeout") && error.contains("55P03"),
        "{error}"
    );
    assert_eq!(env.applied(V8), 63);
    // Bounded retries with backoff outlast the holder: the run times out on the lock at
    // least once (it says so with -v), then the holder commits and a retry goes through.
    let mut run = env
        .command()
        .args([
            "-v",
            "--json",
            "migrate",
            "apply",
            "--lock-timeout-ms",
            "200",
        ])
        .args(["--lock-retries", "6", "--dir"])
        .arg(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atoll");
    let stderr = run.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let started = Instant::now();
    loop {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("lock timeout, retrying") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = run.kill();
                panic!("the run never retried after a lock timeout: {e}");
            }
        }
    }
    holder.send("commit;\n");
    holder.finish();
    let out = run.wait_with_output().expect("wait atoll");
    let err = reader.join().expect("stderr reader");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(out.status.code(), Some(0), "{report} / {err}");
    assert_eq!(env.applied(V8), 64);
}

const V19: &str = "20240101000210.quick.sh";

/// The run's lock session ends (a network cut, a restart, an operator's kill): the run
/// starts no further step, not even within the second before its next progress update, so
/// a move may start at once; it stops with "lost its cluster lock" and resumes when run
/// again.
#[test]
fn lost_lock_stops_the_run() {
    let env = &base();
    // Pending as after an undo: the run after the lost one applies it too.
    put(env, V10);
    env.write(
        V19,
        "create table quick (n int primary key);\nselect pg_sleep(0.05);",
        "drop table quick;",
    );
    // The shard to move once the lock is lost; last in its island's queue.
    let home = env
        .ports
        .iter()
        .position(|p| *p == env.port_of("sh0064"))
        .expect("island");
    ok(&env.atoll(&["shard", "activate", "64"]));
    let dir = env.dir.to_string_lossy().to_string();
    let child = env
        .command()
        .args(["migrate", "apply", "--parallelism", "1", "--canary", "0"])
        .args(["--dir", &dir])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn apply");
    let mut run = Guard(Some(child));
    let started = Instant::now();
    while env.applied(V19) < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = env.psql(
        env.ports[0],
        "select count(pg_terminate_backend(pid)) from pg_locks where locktype = 'advisory' and granted",
    );
    assert_eq!(killed, "1");
    // At most the steps already running (one per island) finish after the kill.
    let at_kill = env.applied(V19);
    env.wait_until_unlocked(atoll_pg::locks::MIGRATION_RUN);
    let to = (1 - home).to_string();
    let moved = env.atoll(&["move", "--shard", "64", "--to", &to]);
    let out = run.0.take().expect("run").wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("lost its cluster lock"), "{err}");
    ok(&moved);
    let partial = env.applied(V19);
    assert!(
        partial <= at_kill + env.ports.len() as i64,
        "the run went on unlocked: {at_kill} applied at the kill, {partial} in the end"
    );
    assert_eq!(
        env.sum(
            "select count(*) from pg_tables where schemaname = 'sh0064' and tablename = 'quick'"
        ),
        0,
        "the moved shard got the migration"
    );
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V19), SHARDS);
    assert_eq!(env.applied(V10), SHARDS);
}

const V18: &str = "20240101000200.gated.sh";

/// A lost cluster lock also stops the steps waiting for a `$parallelism_global` slot:
/// once the step holding the slot ends, none of them runs its DDL unlocked. The step in
/// the slot waits on an advisory lock the test holds (on both islands), so that the run
/// loses its lock while every other worker waits for the slot; the gate opens only once
/// the run has said it lost the lock.
#[test]
fn lost_lock_stops_steps_waiting_for_a_slot() {
    let env = &base();
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
        env.command()
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
