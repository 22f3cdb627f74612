//! Scoped runs: `--shards` and `--island` on plan, apply and undo touch only those
//! shards (checked on the servers); the non-shard schemas run once every shard is done.

use crate::*;

fn has_orders(env: &Env, schema: &str) -> bool {
    env.psql(
        env.port_of(schema),
        &format!("select to_regclass('{schema}.orders') is not null"),
    ) == "t"
}

#[test]
fn scoped_runs_touch_only_their_shards() {
    let env = base();
    env.write(V3, "create table orders (id bigint);", "drop table orders;");
    env.write(
        VP2,
        "alter table settings add column note text;",
        "alter table settings drop column note;",
    );
    let (code, plan) = env.migrate_json(&["plan", "--shards", "1-10,42"]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan["groups"][0]["schemas"], "sh0001-sh0010, sh0042");
    assert_eq!(plan["groups"].as_array().map(Vec::len), Some(1), "{plan}");

    let (code, report) = env.migrate_json(&["apply", "--shards", "1-10,42"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V3), 11);
    assert!(has_orders(&env, "sh0042") && has_orders(&env, "sh0010"));
    assert!(!has_orders(&env, "sh0011") && !has_orders(&env, "sh0043"));
    // public waits for the rest of the keyspace.
    assert!(
        report["finalizer_held"]
            .as_str()
            .unwrap_or("")
            .contains("53 shards outside this run"),
        "{report}"
    );
    let public_has =
        format!("select count(*) from public.atoll_migrations where version = '{VP2}'");
    assert_eq!(env.psql(env.ports[0], &public_has), "0");

    // An island's shards only.
    let on_island_1 = env.psql(
        env.ports[1],
        "select count(*) from pg_namespace where nspname ~ '^sh[0-9]{4}$' \
         and to_regclass(nspname || '.orders') is null",
    );
    let (code, report) = env.migrate_json(&["apply", "--island", "1"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["schemas_total"].to_string(), on_island_1);
    assert_eq!(
        env.psql(
            env.ports[1],
            "select count(*) from pg_namespace where nspname ~ '^sh[0-9]{4}$' \
             and to_regclass(nspname || '.orders') is null"
        ),
        "0"
    );
    assert_eq!(env.psql(env.ports[0], &public_has), "0");

    // The rest: now the finalizer runs.
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V3), 64);
    assert_eq!(env.psql(env.ports[0], &public_has), "1");

    // A scoped undo of a shard version.
    let (code, report) = env.migrate_json(&["undo", VP2, "--allow-unsafe"]);
    assert_eq!(code, 0, "{report}");
    let (code, report) = env.migrate_json(&["undo", V3, "--shards", "5-9", "--allow-unsafe"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V3), 59);
    assert!(!has_orders(&env, "sh0005") && has_orders(&env, "sh0010"));
}
