//! `atoll migrate` and `atoll schema diff` end to end: the built binary against real
//! sandboxes of 2 islands and 64 shards. One module per feature; every test starts its own
//! cluster and writes the history it needs (`history`), so each can run (and fail) alone.

#[path = "../common/mod.rs"]
mod common;

mod allocate;
mod apply;
mod concurrently;
mod control;
mod converge;
mod directives;
mod drift;
mod files;
mod hooks;
mod locks;
mod pg_mig;
mod plans;
mod reindex;
mod resume;
mod schema_diff;
mod scoped;
mod support;
mod undo;

use common::{ok, Env};

/// Shards every test allocates: sh0001-sh0064.
const SHARDS: i64 = 64;

const V1: &str = "20240101000010.users.sh";
const V2: &str = "20240101000020.nick.sh";
const VP: &str = "20240101000030.settings.public";
const V3: &str = "20240101000040.orders.sh";
const VP2: &str = "20240101000041.settings_v.public";
const V4: &str = "20240101000050.ticks.sh";
const V5: &str = "20240101000060.drop_name.sh";
const V6: &str = "20240101000090.nick_uniq.sh";
const V7: &str = "20240101000080.after_drift.sh";
const V9: &str = "20240101000110.hooked.sh";
const V10: &str = "20240101000120.after_pg_mig.sh";
const V11: &str = "20240101000130.slow.sh";
const V13: &str = "20240101000150.raced.sh";

/// The files of the versions more than one test writes: (version, up, down).
const FILES: &[(&str, &str, &str)] = &[
    (
        V1,
        "create table users (id bigint primary key, name text);",
        "drop table users;",
    ),
    (
        V2,
        "alter table users add column nick text;\ncreate index users_nick_idx on users (nick); -- trailing comment",
        "drop index users_nick_idx; alter table users drop column nick;",
    ),
    (
        VP,
        "create table settings (k text primary key, v text);",
        "drop table settings;",
    ),
    (
        V5,
        "alter table users drop column name;",
        "alter table users add column name text;",
    ),
    (
        V6,
        "create unique index concurrently users_nick_uniq on users (nick);",
        "drop index concurrently users_nick_uniq;",
    ),
    (V7, "create table later (id int);", "drop table later;"),
    (V9, "create table hooked (id int);", "drop table hooked;"),
    (
        V10,
        "create table after_pg_mig (id int);",
        "drop table after_pg_mig;",
    ),
    (
        V11,
        "create table slow (n int primary key);\nselect pg_sleep(0.2);",
        "drop table slow;",
    ),
    (V13, "create table raced (id int);", "drop table raced;"),
];

/// Writes `version`'s files from [`FILES`].
fn put(env: &Env, version: &str) {
    let (_, up, dn) = FILES
        .iter()
        .find(|f| f.0 == version)
        .unwrap_or_else(|| panic!("{version} is not in FILES"));
    env.write(version, up, dn);
}

/// A fresh cluster with sh0001-sh0064 allocated (inactive, as `atoll allocate` leaves them)
/// and an empty migration directory.
fn fresh() -> Env {
    let env = Env::new(2);
    ok(&env.atoll(&["allocate", "--shards", "1-64"]));
    env
}

/// A fresh cluster with `versions` written and applied (with `--allow-unsafe`, so that a
/// destructive version can be part of a test's history).
fn history(versions: &[&str]) -> Env {
    let env = fresh();
    for v in versions {
        put(&env, v);
    }
    let (code, report) = env.migrate_json(&["apply", "--allow-unsafe"]);
    assert_eq!(code, 0, "history {versions:?}: {report}");
    env
}

/// The history most tests start from: `users` with `nick` on every shard, `settings` in
/// `public`.
fn base() -> Env {
    history(&[V1, V2, VP])
}
