//! Applying: the plan's groups, the keyspace-wide finalizer in `public`, a failing canary,
//! and one failing shard that leaves every other shard consistent.

use crate::*;

#[test]
fn first_apply_and_finalizer() {
    let env = fresh();
    put(&env, V1);
    put(&env, V2);
    put(&env, VP);
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

#[test]
fn canary_failure_stops_the_run() {
    let env = base();
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
    // The run record says it halted, naming the canary that failed first (the two
    // canaries may be on different islands, which run one each at the same time).
    let run = env.psql(
        env.ports[0],
        "select status || ' ' || message from atoll.migration_runs order by run_id desc limit 1",
    );
    assert!(
        (run.starts_with("halted halted: canary sh0001 failed")
            || run.starts_with("halted halted: canary sh0002 failed"))
            && run.contains("division by zero")
            && run.ends_with("62 schemas not started"),
        "{run}"
    );
}

#[test]
fn one_failing_shard_leaves_others_consistent() {
    let env = base();
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
