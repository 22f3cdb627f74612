//! The run as a control plane: per-schema states in the catalog (`migrate status`,
//! `migrate runs`), the halt policy, retried retryable failures, `migrate stop` and resume.

use crate::support::{migrate_in_background, session, wait_for};
use crate::*;

/// Latest run's schemas in `state`, on the coordination island.
fn in_state(state: &str) -> String {
    format!(
        "select count(*) from atoll.migration_shards where state = '{state}' \
         and run_id = (select max(run_id) from atoll.migration_runs)"
    )
}

/// Shards whose table `table` holds exactly one row.
fn once(env: &Env, table: &str) -> i64 {
    env.sum(&format!(
        "select count(*) from (select schemaname from pg_tables \
         where tablename = '{table}' offset 0) t \
         where (xpath('/row/c/text()', query_to_xml(format('select count(*) as c from %I.{table}', \
         t.schemaname), false, true, '')))[1]::text = '1'"
    ))
}

#[test]
fn halt_stops_after_the_first_failure_and_status_says_so() {
    let env = base();
    env.write(
        V3,
        "create table orders (id bigint primary key);",
        "drop table orders;",
    );
    let p42 = env.port_of("sh0042");
    env.psql(p42, "create table sh0042.orders (x int)");
    let (code, report) = env.migrate_json(&["apply", "--on-failure", "halt", "--parallelism", "1"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["status"], "halted", "{report}");
    assert_eq!(
        report["failures"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    let applied = env.applied(V3);
    assert!(applied < 63, "the halt left shards untouched: {applied}");
    let (code, status) = env.migrate_json(&["status"]);
    assert_eq!(code, 1, "{status}");
    assert_eq!(status["run"]["status"], "halted");
    assert_eq!(status["shards"]["first_failure"]["schema"], "sh0042");
    assert_eq!(
        status["shards"]["first_failure"]["file"],
        format!("{V3}.up.sql")
    );
    let halted = status["shards"]["counts"]["halted"].as_i64().unwrap_or(0);
    let done = status["shards"]["counts"]["done"].as_i64().unwrap_or(0);
    assert_eq!(done, applied, "{status}");
    // Every shard not done or failed is halted, untouched on its server.
    assert_eq!(halted, 64 - applied - 1, "{status}");
    assert_eq!(
        env.psql(env.ports[0], &in_state("halted")),
        halted.to_string()
    );
    let (code, text, _) = env.migrate(&["status"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains(" apply halted: 64 schemas (every shard)"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("first failure: sh0042 (island "),
        "{text}"
    );
    assert!(lines[1].contains("already exists"), "{text}");
    assert!(text.contains(&format!("halted {halted}: ")), "{text}");
    assert!(text.contains("halted: sh0042 failed"), "{text}");
    let (code, text, _) = env.migrate(&["runs"]);
    assert_eq!(code, 0);
    assert!(
        text.lines().next().unwrap_or("").contains(" apply halted "),
        "{text}"
    );
    // A run that does not halt: the rest is migrated, the failure listed.
    let (code, report) = env.migrate_json(&["apply", "--max-failures", "5", "--canary", "0"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(env.applied(V3), 63);
}

#[test]
fn a_lock_timeout_is_retried_and_applied_once() {
    let env = base();
    env.write(
        V3,
        "alter table users add column age int;\ninsert into users (id) values (1000);",
        "alter table users drop column age; delete from users where id = 1000;",
    );
    let p3 = env.port_of("sh0003");
    let mut holder = session(&env, p3, "atoll_test_retry_holder");
    holder.send("begin;\nlock table sh0003.users;\n");
    wait_for(
        &env,
        p3,
        "select count(*) from pg_locks l join pg_class c on c.oid = l.relation \
         where c.relname = 'users' and c.relnamespace = 'sh0003'::regnamespace and l.granted",
        "1",
    );
    let run = migrate_in_background(
        &env,
        &[
            "apply",
            "--canary",
            "0",
            "--lock-timeout-ms",
            "200",
            "--lock-retries",
            "8",
        ],
    );
    // The catalog shows the shard's retries while the holder keeps its lock.
    wait_for(
        &env,
        env.ports[0],
        "select count(*) from atoll.migration_shards where schema_name = 'sh0003' \
         and state = 'running' and attempts >= 2",
        "1",
    );
    holder.send("commit;\n");
    holder.finish();
    let out = run.finish();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(env.applied(V3), 64);
    assert_eq!(
        env.psql(p3, "select count(*) from sh0003.users where id = 1000"),
        "1"
    );
    let (_, status) = env.migrate_json(&["status"]);
    assert_eq!(status["shards"]["counts"]["done"], 64, "{status}");
}

#[test]
fn stop_then_resume_migrates_every_shard_exactly_once() {
    let env = base();
    env.write(
        V11,
        "create table slow (n int);\ninsert into slow values (1);\nselect pg_sleep(0.3);",
        "drop table slow;",
    );
    let plan = env.dir.parent().expect("parent").join("plan.json");
    let (code, _, err) = env.migrate(&["plan", "--out", plan.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    let run = migrate_in_background(
        &env,
        &[
            "apply",
            "--plan",
            plan.to_str().expect("utf8"),
            "--parallelism",
            "1",
        ],
    );
    let running_done = "select count(*) from atoll.migration_shards s \
                        join atoll.migration_runs r using (run_id) \
                        where r.status = 'running' and s.state = 'done'";
    atoll_testkit::poll_until("4 shards done", std::time::Duration::from_secs(30), || {
        env.psql(env.ports[0], running_done)
            .parse::<i64>()
            .unwrap_or(0)
            >= 4
    });
    let (code, text, err) = env.migrate(&["stop"]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("stop requested"), "{text}");
    let out = run.finish();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["status"], "stopped", "{report}");
    let stopped_at = env.applied(V11);
    assert!(stopped_at < 64, "stopped after {stopped_at}");
    let (_, status) = env.migrate_json(&["status"]);
    assert_eq!(status["run"]["status"], "stopped", "{status}");
    assert_eq!(status["shards"]["counts"]["done"], stopped_at, "{status}");
    // Nothing is running: stop has nothing to stop.
    let (code, _, err) = env.migrate(&["stop"]);
    assert_eq!(code, 1, "{err}");
    // Resumed with the same plan: the shards this plan's first run did are accepted.
    let (code, report) = env.migrate_json(&["apply", "--plan", plan.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["schemas_total"], 64 - stopped_at, "{report}");
    assert_eq!(env.applied(V11), 64);
    assert_eq!(once(&env, "slow"), 64);
}

#[test]
fn a_connection_lost_before_the_commit_is_retried_and_applied_once() {
    let env = base();
    env.write(
        V3,
        "create table lost (n int);\ninsert into lost values (1);\nselect pg_sleep(2);",
        "drop table lost;",
    );
    let p3 = env.port_of("sh0003");
    let run = migrate_in_background(&env, &["apply", "--shards", "3", "--lock-retries", "2"]);
    let sleeping = "select coalesce(max(pid), 0) from pg_stat_activity \
                    where query like '%pg_sleep(2)%' and pid <> pg_backend_pid()";
    atoll_testkit::poll_until("the file runs", std::time::Duration::from_secs(30), || {
        env.psql(p3, sleeping) != "0"
    });
    // The worker's backend dies mid-transaction: nothing committed, the worker
    // reconnects and runs the file again.
    let pid = env.psql(p3, sleeping);
    env.psql(p3, &format!("select pg_terminate_backend({pid})"));
    let out = run.finish();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(env.psql(p3, "select count(*) from sh0003.lost"), "1");
    assert_eq!(env.applied(V3), 1);
    let (_, status) = env.migrate_json(&["status"]);
    assert_eq!(status["shards"]["counts"]["done"], 1, "{status}");
    let attempts = env.psql(
        env.ports[0],
        "select attempts from atoll.migration_shards where schema_name = 'sh0003' \
         and run_id = (select max(run_id) from atoll.migration_runs)",
    );
    assert_eq!(attempts, "2");
}

/// While the canary runs, the other shards wait in `waiting for canary`; `status --watch`
/// follows the run, one JSON document a second, and ends with it.
#[test]
fn status_watch_follows_a_run_from_waiting_for_canary_to_done() {
    let env = base();
    env.write(
        V11,
        "create table slow (n int);\nselect pg_sleep(case when current_schema() = 'sh0001' then 3 else 0 end);",
        "drop table slow;",
    );
    let run = migrate_in_background(&env, &["apply", "--canary", "1"]);
    let waiting = "select count(*) from atoll.migration_shards s \
                   join atoll.migration_runs r using (run_id) \
                   where r.status = 'running' and s.state = 'waiting_for_canary'";
    atoll_testkit::poll_until(
        "shards waiting for the canary",
        std::time::Duration::from_secs(30),
        || env.psql(env.ports[0], waiting).parse::<i64>().unwrap_or(0) > 0,
    );
    let (code, text, err) = env.migrate(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("waiting for canary"), "{text}");
    // Blocks until the run ends.
    let (code, out, err) = env.migrate(&["--json", "status", "--watch"]);
    assert_eq!(code, 0, "{err}");
    let views: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .expect("a stream of JSON documents");
    assert!(views.len() >= 2, "{out}");
    assert_eq!(views[0]["run"]["status"], "running", "{out}");
    let last = &views[views.len() - 1];
    assert_eq!(last["run"]["status"], "done", "{out}");
    assert_eq!(last["shards"]["counts"]["done"], 64, "{out}");
    let out = run.finish();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(env.applied(V11), 64);
}
