//! `atoll allocate --migrate`: new shards get the whole history before they are
//! activated; a failed migration activates nothing, and a rerun finishes the job. Also
//! `atoll migrate new`.

use crate::*;
use serde_json::Value;
use std::path::Path;

#[test]
fn allocate_migrate_and_new() {
    let env = &history(&[V1, V2, VP, V9]);
    let dir = env.dir.to_string_lossy().to_string();
    let out = env.atoll(&[
        "--json",
        "allocate",
        "--shards",
        "65-66",
        "--activate",
        "--migrate",
        "--migrations-dir",
        &dir,
    ]);
    ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["migrate"]["status"], "done", "{v}");
    assert_eq!(v["migrate"]["schemas_total"], 2, "{v}");
    assert_eq!(v["allocated"][0]["active"], true, "{v}");
    assert_eq!(v["allocated"][1]["active"], true, "{v}");
    assert_eq!(env.applied(V9), SHARDS + 2);
    // Activated after (not before) the migration: both are active, and migrated.
    assert_eq!(
        env.sum("select count(*) from atoll.shards where shard in (65, 66) and active"),
        2
    );
    // A bad migration directory allocates nothing.
    let missing = env.tc.sandbox().dir().join("no-such-dir");
    let out = env.atoll(&[
        "allocate",
        "--shards",
        "68",
        "--migrate",
        "--migrations-dir",
        &missing.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        env.sum("select count(*) from pg_namespace where nspname = 'sh0068'"),
        0
    );
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0);
    assert_eq!(plan["up_to_date"], 67);

    let new_dir = env.tc.sandbox().dir().join("new-migrations");
    let nd = new_dir.to_string_lossy().to_string();
    let (code, out, err) = env.migrate(&["new", "add_x", "--target", "sh", "--dir", &nd]);
    assert_eq!(code, 0, "{err}");
    let names: Vec<String> = std::fs::read_dir(&new_dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{out}");
    assert!(names.iter().all(|n| n.contains(".add_x.sh.")), "{names:?}");
    let (code, _, err) = env.migrate(&["new", "bad name", "--dir", &nd]);
    assert_eq!(code, 2, "{err}");
    assert!(Path::new(&new_dir).exists());
}

#[test]
fn allocate_rerun_migrates_every_inactive_shard() {
    let env = &history(&[V1, V2, VP, V5, V13]);
    let dir = env.dir.to_string_lossy().to_string();
    let allocate = [
        "--json",
        "allocate",
        "--shards",
        "69-70",
        "--activate",
        "--migrate",
    ];
    // sh0069 exists already (made without --migrate, or left by a killed run) and its
    // migration fails; sh0070 is new.
    ok(&env.atoll(&["allocate", "--shards", "69"]));
    let p69 = env.port_of("sh0069");
    env.psql(p69, "create table sh0069.users (x int)");
    let mut args = allocate.to_vec();
    args.extend(["--migrations-dir", &dir]);
    // sh0069 existed before and may hold data: destructive versions need consent. The
    // refusal names the shard it did create.
    let out = env.atoll(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-unsafe") && err.contains("allocated and left inactive: sh0070"),
        "{err}"
    );
    args.push("--allow-unsafe");
    let out = env.atoll(&args);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["migrate"]["canary"], serde_json::json!(["sh0069"]), "{v}");
    assert_eq!(v["migrate"]["status"], "canary_failed", "{v}");
    let active = "select count(*) from atoll.shards where shard in (69, 70) and active";
    assert_eq!(env.sum(active), 0, "nothing unmigrated is activated");
    // Fixed and run again: both are migrated, then activated.
    env.psql(p69, "drop table sh0069.users");
    let out = env.atoll(&args);
    ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["migrate"]["status"], "done", "{v}");
    assert_eq!(env.sum(active), 2);
    assert_eq!(env.applied(V13), SHARDS + 2);
}
