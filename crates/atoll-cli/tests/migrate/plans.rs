//! Reviewed plans: `migrate plan --out` then `apply --plan` applies exactly that, and
//! refuses (exit 2, nothing applied) when a file or a shard changed since, or the file is
//! malformed, edited, or for another cluster.

use crate::*;
use atoll_core::migration::PlanFile;

const V3_UP: &str = "create table orders (id bigint primary key);\ninsert into orders values (1);";

fn plan_to(env: &Env, name: &str) -> std::path::PathBuf {
    let out = env.dir.parent().expect("parent").join(name);
    let (code, text, err) = env.migrate(&["plan", "--out", out.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains(&format!("wrote {}", out.display())), "{text}");
    out
}

fn apply_plan(env: &Env, path: &std::path::Path) -> (i32, String, String) {
    env.migrate(&["apply", "--plan", path.to_str().expect("utf8")])
}

#[test]
fn a_reviewed_plan_is_applied_exactly_or_refused() {
    let env = base();
    env.write(V3, V3_UP, "drop table orders;");
    let path = plan_to(&env, "plan.json");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    assert_eq!(file["format"], 1);
    assert_eq!(file["groups"][0]["shards"], "1-64");
    assert_eq!(file["groups"][0]["applied"], serde_json::json!([V1, V2]));
    assert_eq!(file["groups"][0]["pending"][0]["version"], V3);
    assert_eq!(
        file["groups"][0]["pending"][0]["file"],
        format!("{V3}.up.sql")
    );
    assert!(file["cluster_id"].as_str().is_some_and(|c| !c.is_empty()));

    // A planned file edited: refused naming it, nothing applied.
    env.write(
        V3,
        &format!("{V3_UP}\ninsert into orders values (2);"),
        "drop table orders;",
    );
    let (code, out, err) = apply_plan(&env, &path);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "migration file {V3}.up.sql changed since the plan"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(env.applied(V3), 0);
    env.write(V3, V3_UP, "drop table orders;");

    // A later file added: not part of the plan, so not applied by it.
    env.write(V7, "create table later (id int);", "drop table later;");

    // A shard migrated by hand in between: refused naming it.
    let p42 = env.port_of("sh0042");
    env.psql(
        p42,
        &format!(
            "create table sh0042.orders (id bigint); insert into sh0042.atoll_migrations \
             (version, name, checksum) values ('{V3}', 'orders', 'by hand')"
        ),
    );
    let (code, out, err) = apply_plan(&env, &path);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("schema sh0042 (island "), "{err}");
    assert!(
        err.contains(&format!(
            "has applied up to {V3} since, the plan expected up to {V2}"
        )),
        "{err}"
    );
    assert_eq!(env.applied(V3), 1);
    env.psql(
        p42,
        &format!(
            "drop table sh0042.orders; delete from sh0042.atoll_migrations where version = '{V3}'"
        ),
    );

    // Unchanged since: applied exactly (V3 everywhere, V7 nowhere).
    let (code, out, err) = apply_plan(&env, &path);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(env.applied(V3), 64);
    assert_eq!(env.applied(V7), 0);
    // Applying it again: every schema was finished by this plan's own run, nothing to do.
    let (code, out, err) = apply_plan(&env, &path);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("every schema is up to date"), "{out}");
    assert_eq!(env.applied(V7), 0);
}

#[test]
fn bad_plan_files_and_scopes_are_refused_with_one_line() {
    let env = base();
    env.write(V3, V3_UP, "drop table orders;");
    let path = plan_to(&env, "plan.json");
    let text = std::fs::read_to_string(&path).expect("read");
    let dir = env.dir.parent().expect("parent");
    let refused = |name: &str, content: &str, want: &str| {
        let p = dir.join(name);
        std::fs::write(&p, content).expect("write");
        let (code, out, err) = apply_plan(&env, &p);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.contains(&format!("plan file {}: {want}", p.display())),
            "{name}: {err}"
        );
        assert_eq!(env.applied(V3), 0, "{name}");
    };
    refused("malformed.json", "{\"format\": 1,", "not a plan file");
    refused(
        "tampered.json",
        &text.replace("\"1-64\"", "\"1-63\""),
        "its content does not match its digest",
    );
    let mut other = PlanFile::parse("x", &text).expect("parse");
    other.cluster_id = "another-cluster".into();
    other.digest = other.digest_of();
    let other = serde_json::to_string(&other).expect("json");
    refused(
        "other.json",
        &other,
        "it was made for cluster another-cluster, this is cluster ",
    );
    let (code, _, err) = apply_plan(&env, &dir.join("absent.json"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("absent.json: cannot read it"), "{err}");

    for (shards, want) in [
        ("1-10000", "shard number 10000 is out of range"),
        (
            "60-70",
            "--shards: shards are not in the cluster (shards 65-70)",
        ),
        ("7-3", "is not a shard range"),
    ] {
        let (code, out, err) = env.migrate(&["apply", "--shards", shards]);
        assert_eq!(code, 2, "{shards}: {out}{err}");
        assert!(err.contains(want), "{shards}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (code, _, err) = env.migrate(&["plan", "--island", "9"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--island 9: no such island"), "{err}");
    assert_eq!(env.applied(V3), 0);
}

#[test]
fn a_plan_discloses_the_data_an_unsafe_statement_touches_per_shard() {
    let env = base();
    let p5 = env.port_of("sh0005");
    env.psql(
        p5,
        "insert into sh0005.users (id, name) select g, 'x' from generate_series(1, 3) g; \
         analyze sh0005.users",
    );
    put(&env, V5);
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(
        plan["unsafe_pending"][0]["tables"],
        serde_json::json!(["users"])
    );
    let shards = plan["unsafe_shards"].as_array().expect("unsafe_shards");
    assert_eq!(shards.len(), 64, "{plan}");
    let sh5 = shards
        .iter()
        .find(|u| u["schema"] == "sh0005")
        .expect("sh0005");
    assert_eq!(sh5["rows"], 3, "{sh5}");
    assert!(sh5["bytes"].as_i64().unwrap_or(0) > 0, "{sh5}");
    let path = plan_to(&env, "unsafe.json");
    let (_, text, _) = env.migrate(&["plan"]);
    assert!(
        text.contains("unsafe data: users on 64 shards holds ~3 rows")
            && text.contains("(1 shards with rows; most: sh0005 3 rows"),
        "{text}"
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    assert_eq!(
        file["groups"][0]["unsafe_shards"].as_array().map(Vec::len),
        Some(64)
    );
    // The reviewed plan still needs consent for its destructive statement.
    let (code, _, err) = apply_plan(&env, &path);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unsafe statement DROP COLUMN"), "{err}");
    let (code, out, err) = env.migrate(&[
        "apply",
        "--allow-unsafe",
        "--plan",
        path.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(env.applied(V5), 64);
}
