//! Switching from pg-mig: a shard whose versions live in pg-mig's `mig_versions_const()`
//! counts them as applied, imports them on its first write, and an edited applied file is
//! pointed out.

use crate::*;

#[test]
fn switch_from_pg_mig() {
    let env = &base();
    // A shard pg-mig has migrated so far: its versions live in mig_versions_const().
    ok(&env.atoll(&["allocate", "--shards", "67"]));
    let p67 = env.port_of("sh0067");
    // Every `sh` version of the history.
    let all = [V1, V2];
    let json = serde_json::to_string(&all).expect("json");
    env.psql(
        p67,
        &format!("create function sh0067.mig_versions_const() returns text language sql as $$ select '{json}' $$"),
    );
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0, "{plan}");
    // The allocated shards, sh0067 and `public`.
    assert_eq!(
        plan["up_to_date"],
        SHARDS + 2,
        "pg-mig's versions count as applied: {plan}"
    );
    put(env, V10);
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["schemas_total"], SHARDS + 1, "{report}");
    assert_eq!(report["versions_applied"], SHARDS + 1, "{report}");
    // Imported on first write, then extended.
    assert_eq!(
        env.psql(p67, "select count(*) from sh0067.atoll_migrations"),
        (all.len() + 1).to_string()
    );
    let (_, plan) = env.migrate_json(&["plan"]);
    assert_eq!(plan["up_to_date"], SHARDS + 2);
    // A file edited after it was applied is pointed out (the edit would never run there).
    env.write(
        V10,
        "create table after_pg_mig (id bigint);",
        "drop table after_pg_mig;",
    );
    let (code, text, _) = env.migrate(&["plan"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "changed: {V10}.up.sql was edited after {} schemas applied it",
            SHARDS + 1
        )),
        "{text}"
    );
}
