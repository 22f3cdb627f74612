//! `schema plan --like`: the DDL that converges drifted shards, written as migrations
//! narrowed to each group's shards (`$atoll_shards`), applied only there, and `schema diff`
//! reports one group afterwards.

use crate::*;

#[test]
fn drift_plan_converges_every_shard_to_the_reference() {
    let env = base();
    let p42 = env.port_of("sh0042");
    env.psql(p42, "alter table sh0042.users drop column nick");
    let p43 = env.port_of("sh0043");
    env.psql(
        p43,
        "alter table sh0043.users alter column nick set default 'x'",
    );
    let p50 = env.port_of("sh0050");
    env.psql(p50, "drop table sh0050.users");
    let p44 = env.port_of("sh0044");
    env.psql(p44, "alter table sh0044.users drop constraint users_pkey");
    let out = env.atoll(&["schema", "diff"]);
    assert_eq!(out.status.code(), Some(3));

    let dir = env.dir.to_str().expect("utf8");
    let out = env.atoll(&["--json", "schema", "plan", "--like", "sh0001"]);
    assert_eq!(out.status.code(), Some(3));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let groups = plan["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 4, "{plan}");
    assert!(
        groups
            .iter()
            .all(|g| g["not_generated"] == serde_json::json!([])),
        "{plan}"
    );
    let out = env.atoll(&[
        "schema",
        "plan",
        "--like",
        "1",
        "--write-migration",
        "--dir",
        dir,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("sh0043 (1 shards) to match sh0001:"),
        "{text}"
    );
    assert!(
        text.contains("alter table \"users\" alter column \"nick\" drop default;"),
        "{text}"
    );
    assert!(
        text.contains("alter table \"users\" add constraint \"users_pkey\" PRIMARY KEY (id);"),
        "{text}"
    );
    assert_eq!(text.matches("wrote ").count(), 4, "{text}");
    // Each file applies to its group's shards only: four versions in all.
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["versions_applied"], 4, "{report}");
    let out = env.atoll(&["schema", "diff"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("64 shards share the reference signature"),
        "{text}"
    );

    // A CHECK constraint the reference gained: 62 shards lack it, one file for all of
    // them, added NOT VALID then validated.
    for shard in ["sh0001", "sh0002"] {
        env.psql(
            env.port_of(shard),
            &format!("alter table {shard}.users add constraint users_id_check check (id > 0)"),
        );
    }
    let out = env.atoll(&[
        "schema",
        "plan",
        "--like",
        "sh0001",
        "--write-migration",
        "--dir",
        dir,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("sh0003-sh0064 (62 shards) to match sh0001:"),
        "{text}"
    );
    assert!(
        text.contains("add constraint \"users_id_check\" CHECK ((id > 0)) NOT VALID;"),
        "{text}"
    );
    assert!(
        text.contains("validate constraint \"users_id_check\";"),
        "{text}"
    );
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["versions_applied"], 62, "{report}");
    let out = env.atoll(&["schema", "diff"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let valid = env.psql(
        env.port_of("sh0064"),
        "select convalidated from pg_constraint where conname = 'users_id_check' and connamespace = 'sh0064'::regnamespace",
    );
    assert_eq!(valid.trim(), "t");

    // Something that cannot be generated safely is listed, not generated.
    env.psql(p42, "create table sh0042.leftover (id int)");
    let out = env.atoll(&["schema", "plan", "--like", "sh0001"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("not generated: table leftover extra: dropping it is destructive"),
        "{text}"
    );
    let out = env.atoll(&["schema", "plan", "--like", "sh0099"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--like sh0099: no such shard"));
}
