//! `atoll migrate` and `atoll schema diff` end to end: the built binary against a real
//! sandbox of 2 islands and 64 shards. One sandbox, one test function, steps in order,
//! each step building on the migration directory the previous one left (as a project's
//! history would).

mod common;
/// REINDEX CONCURRENTLY leftovers and pg-mig's per-file directives.
#[path = "migrate/fixes.rs"]
mod fixes;
/// Steps that run after the main history (they add versions the steps above must not see).
#[path = "migrate/later.rs"]
mod later;
/// Lock timeouts, hooks, `allocate --migrate`, `migrate new`, switching from pg-mig.
#[path = "migrate/ops.rs"]
mod ops;

use common::{ok, Env};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const V1: &str = "20240101000010.users.sh";
const V2: &str = "20240101000020.nick.sh";
const VP: &str = "20240101000030.settings.public";
const V3: &str = "20240101000040.orders.sh";
const VP2: &str = "20240101000041.settings_v.public";
const V4: &str = "20240101000050.ticks.sh";
const V5: &str = "20240101000060.drop_name.sh";
const V6: &str = "20240101000090.nick_uniq.sh";
const V7: &str = "20240101000080.after_drift.sh";
const V8: &str = "20240101000100.age.sh";
const V9: &str = "20240101000110.hooked.sh";
const V10: &str = "20240101000120.after_pg_mig.sh";

#[test]
fn migrate_end_to_end() {
    let env = Env::new(2);
    ok(&env.atoll(&["allocate", "--shards", "1-64"]));

    malformed_names_apply_nothing(&env);
    first_apply_and_finalizer(&env);
    canary_failure_stops_the_run(&env);
    one_failing_shard_leaves_others_consistent(&env);
    concurrent_apply_refused_then_kill_and_resume(&env);
    unsafe_needs_consent(&env);
    drift_is_refused(&env);
    concurrently_files(&env);
    undo(&env);
    schema_diff_finds_a_dropped_column(&env);
    ops::lock_timeout_with_bounded_retry(&env);
    ops::before_and_after_hooks(&env);
    ops::allocate_migrate_and_new(&env);
    ops::switch_from_pg_mig(&env);
    later::undo_needs_consent_for_a_destructive_down_file(&env);
    later::lost_lock_stops_the_run(&env);
    later::reindex_concurrently(&env);
    later::already_applied_is_not_counted(&env);
    later::running_index_build_is_not_dropped(&env);
    later::allocate_rerun_migrates_every_inactive_shard(&env);
    fixes::interrupted_reindex_leftovers_are_dropped(&env);
    fixes::pg_mig_directives_cap_parallelism(&env);
    fixes::lost_lock_stops_steps_waiting_for_a_slot(&env);
}

fn malformed_names_apply_nothing(env: &Env) {
    env.write(
        V1,
        "create table users (id bigint primary key, name text);",
        "drop table users;",
    );
    std::fs::write(env.dir.join("create_users.sql"), "select 1;").expect("write");
    let (code, _, err) = env.migrate(&["apply"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("create_users.sql"), "{err}");
    let (code, _, err) = env.migrate(&["plan"]);
    assert_eq!(code, 2, "{err}");
    std::fs::remove_file(env.dir.join("create_users.sql")).expect("rm");
    // A pair with its down file missing is refused too.
    std::fs::write(env.dir.join(format!("{V2}.up.sql")), "select 1;").expect("write");
    let (code, _, err) = env.migrate(&["apply"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(V2), "{err}");
    assert_eq!(env.applied(V1), 0);
}

fn first_apply_and_finalizer(env: &Env) {
    env.write(
        V2,
        "alter table users add column nick text;\ncreate index users_nick_idx on users (nick); -- trailing comment",
        "drop index users_nick_idx; alter table users drop column nick;",
    );
    env.write(
        VP,
        "create table settings (k text primary key, v text);",
        "drop table settings;",
    );
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0, "{plan}");
    let groups = plan["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{plan}");
    assert_eq!(groups[0]["count"], 64);
    assert_eq!(groups[0]["schemas"], "sh0001-sh0064");
    assert_eq!(groups[0]["pending"], serde_json::json!([V1, V2]));
    assert_eq!(groups[1]["schemas"], "public");
    let (code, text, _) = env.migrate(&["plan"]);
    assert_eq!(code, 0);
    assert!(text.contains("-> 64 schemas: sh0001-sh0064"), "{text}");

    // A backup a move kept matches the `sh` prefix but is no shard: listed, never migrated.
    let leftover = "sh0005_moved_1700000000";
    env.psql(env.ports[0], &format!("create schema {leftover}"));
    let (code, text, _) = env.migrate(&["plan"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("ignored: {leftover} (island 0) matches target sh")),
        "{text}"
    );
    let (code, report) = env.migrate_json(&["apply", "--parallelism", "4"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "done");
    assert_eq!(report["versions_applied"], 64 * 2 + 1);
    assert_eq!(
        env.psql(
            env.ports[0],
            &format!("select to_regclass('{leftover}.atoll_migrations') is null")
        ),
        "t"
    );
    env.psql(env.ports[0], &format!("drop schema {leftover}"));
    assert_eq!(report["finalizer"], serde_json::json!(["public"]));
    assert_eq!(env.applied(V1), 64);
    assert_eq!(env.applied(V2), 64);
    // The finalizer ran on island 0 only, and recorded its version in `public`.
    assert_eq!(
        env.psql(env.ports[0], "select count(*) from public.atoll_migrations"),
        "1"
    );
    assert_eq!(
        env.psql(
            env.ports[1],
            "select to_regclass('public.settings') is null"
        ),
        "t"
    );
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0);
    assert_eq!(plan["up_to_date"], 65);
    assert_eq!(plan["groups"], serde_json::json!([]));
    // The run is recorded in the catalog and the lock is free again.
    let run = env.psql(
        env.ports[0],
        "select status || ' ' || schemas_done from atoll.migration_runs order by run_id desc limit 1",
    );
    assert_eq!(run, "done 65");
    assert_eq!(
        env.psql(env.ports[0], "select count(*) from atoll.migration_lock"),
        "0"
    );
}

fn canary_failure_stops_the_run(env: &Env) {
    env.write(V3, "select 1/0;", "select 1;");
    let (code, report) = env.migrate_json(&["apply", "--canary", "2"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["status"], "canary_failed");
    assert_eq!(report["canary"], serde_json::json!(["sh0001", "sh0002"]));
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 2, "{report}");
    assert_eq!(failures[0]["file"], format!("{V3}.up.sql"));
    assert!(failures[0]["error"]
        .as_str()
        .unwrap_or("")
        .contains("division by zero"));
    assert_eq!(report["not_started"], 62);
    assert_eq!(env.applied(V3), 0);
}

fn one_failing_shard_leaves_others_consistent(env: &Env) {
    env.write(
        V3,
        "create table orders (id bigint primary key, user_id bigint not null);\ninsert into orders values (1, 1);",
        "drop table orders;",
    );
    // A keyspace-wide change, run only once every shard has succeeded.
    env.write(
        VP2,
        "alter table settings add column note text;",
        "alter table settings drop column note;",
    );
    let p42 = env.port_of("sh0042");
    env.psql(p42, "create table sh0042.orders (x int)");
    let (code, text, err) = env.migrate(&["apply"]);
    assert_eq!(code, 1, "{text}{err}");
    assert!(
        text.contains("failed: sh0042 (island ") && text.contains(&format!("{V3}.up.sql: ERROR:")),
        "{text}"
    );
    assert!(text.contains("already exists"), "{text}");
    assert!(
        text.contains("run ") && text.contains("63 of 65 schemas done"),
        "{text}"
    );
    assert!(
        text.contains("finalizer skipped (public): 1 shards failed"),
        "{text}"
    );
    let public_has =
        format!("select count(*) from public.atoll_migrations where version = '{VP2}'");
    assert_eq!(env.psql(env.ports[0], &public_has), "0");
    assert_eq!(env.applied(V3), 63);
    // Every other shard has the whole change: the table and its row.
    // (OFFSET 0 keeps the per-table count from running before the name filter.)
    let complete = "select count(*) from (select schemaname from pg_tables \
                    where tablename = 'orders' and schemaname <> 'sh0042' offset 0) t \
                    where (xpath('/row/c/text()', query_to_xml(format('select count(*) as c from %I.orders', t.schemaname), false, true, '')))[1]::text = '1'";
    assert_eq!(env.sum(complete), 63);
    // sh0042 kept its old state: no version row, its own table untouched.
    assert_eq!(
        env.psql(
            p42,
            "select string_agg(version, ',' order by version) from sh0042.atoll_migrations"
        ),
        format!("{V1},{V2}")
    );
    assert_eq!(env.psql(p42, "select count(*) from sh0042.orders"), "0");
    env.psql(p42, "drop table sh0042.orders");
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["versions_applied"], 2,
        "sh0042's V3, then the finalizer"
    );
    assert_eq!(report["finalizer"], serde_json::json!(["public"]));
    assert_eq!(env.applied(V3), 64);
    assert_eq!(env.psql(env.ports[0], &public_has), "1");
}

fn concurrent_apply_refused_then_kill_and_resume(env: &Env) {
    // Slow enough (64 shards x 0.15 s, one worker per island) to be interrupted.
    env.write(
        V4,
        "create table ticks (n int);\ninsert into ticks values (5);\nselect pg_sleep(0.15);",
        "drop table ticks;",
    );
    let dir = env.dir.to_string_lossy().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_atoll"))
        .arg("--config")
        .arg(env.sb.config_path())
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

fn unsafe_needs_consent(env: &Env) {
    env.write(
        V5,
        "alter table users drop column name;",
        "alter table users add column name text;",
    );
    let (code, text, _) = env.migrate(&["plan"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("unsafe:") && text.contains("DROP COLUMN"),
        "{text}"
    );
    let (code, _, err) = env.migrate(&["apply"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--allow-unsafe"), "{err}");
    assert_eq!(env.applied(V5), 0);
    let (code, report) = env.migrate_json(&["apply", "--allow-unsafe"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V5), 64);
}

fn drift_is_refused(env: &Env) {
    env.write(V7, "create table later (id int);", "drop table later;");
    // An applied version whose files are gone.
    env.rename(V5, "sql", "sql.bak");
    let (code, text, _) = env.migrate(&["plan"]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains(&format!("applied version {V5} has no file on disk")),
        "{text}"
    );
    let (code, _, err) = env.migrate(&["apply"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(V5) && err.contains("drifted"), "{err}");
    env.rename(V5, "sql.bak", "sql");
    // A file merged out of order: older than versions already applied.
    let late = "20240101000045.late_merge.sh";
    env.write(late, "create table late (id int);", "drop table late;");
    let (code, _, err) = env.migrate(&["apply"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("out of order"), "{err}");
    std::fs::remove_file(env.dir.join(format!("{late}.up.sql"))).expect("rm");
    std::fs::remove_file(env.dir.join(format!("{late}.dn.sql"))).expect("rm");
    assert_eq!(env.applied(V7), 0);
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V7), 64);
}

fn concurrently_files(env: &Env) {
    env.write(
        V6,
        "create unique index concurrently users_nick_uniq on users (nick);",
        "drop index concurrently users_nick_uniq;",
    );
    let p7 = env.port_of("sh0007");
    env.psql(
        p7,
        "insert into sh0007.users (id, nick) values (1, 'x'), (2, 'x')",
    );
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 1, "{report}");
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0]["schema"], "sh0007");
    let valid = "select string_agg(i.indisvalid::text, ',') from pg_index i join pg_class c on c.oid = i.indexrelid where c.relname = 'users_nick_uniq' and c.relnamespace = 'sh0007'::regnamespace";
    assert_eq!(
        env.psql(p7, valid),
        "false",
        "a failed build leaves an invalid index"
    );
    env.psql(p7, "delete from sh0007.users where id = 2");
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.psql(p7, valid), "true", "dropped and rebuilt");
    assert_eq!(env.applied(V6), 64);
    assert_eq!(
        env.sum("select count(*) from pg_class where relname = 'users_nick_uniq'"),
        64
    );
}

fn undo(env: &Env) {
    // V7 is applied everywhere but is not the latest: refused.
    let (code, _, err) = env.migrate(&["undo", V7]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("undo that first"), "{err}");
    let (code, report) = env.migrate_json(&["undo", "20240101000090"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["kind"], "undo");
    assert_eq!(env.applied(V6), 0);
    assert_eq!(
        env.sum("select count(*) from pg_class where relname = 'users_nick_uniq'"),
        0
    );
    let (_, plan) = env.migrate_json(&["plan"]);
    assert_eq!(plan["groups"][0]["pending"], serde_json::json!([V6]));
    assert_eq!(plan["groups"][0]["count"], 64);
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
}

fn schema_diff_finds_a_dropped_column(env: &Env) {
    let out = env.atoll(&["schema", "diff"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("64 shards share"));
    let p42 = env.port_of("sh0042");
    env.psql(p42, "alter table sh0042.users drop column nick");
    let out = env.atoll(&["schema", "diff"]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sh0042 differs: column users.nick text missing"),
        "{text}"
    );
    let out = env.atoll(&["--json", "schema", "diff"]);
    let groups: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(groups[0]["count"], 63);
    assert_eq!(groups[1]["members"], serde_json::json!(["sh0042"]));
    env.psql(p42, "alter table sh0042.users add column nick text");
}
