//! `before.sql` and `after.sql`: run once per island around a run, and a version a hook
//! (or an earlier run's backend) recorded between plan and fan-out is not counted twice.

use crate::*;

#[test]
fn before_and_after_hooks() {
    let env = &base();
    let before = env.dir.join("before.sql");
    let after = env.dir.join("after.sql");
    std::fs::write(
        &before,
        "create table if not exists public.hook_log (id serial, what text);\n\
         insert into public.hook_log (what) values ('before');",
    )
    .expect("write");
    std::fs::write(
        &after,
        "insert into public.hook_log (what) values ('after');",
    )
    .expect("write");
    put(env, V9);
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    // Once per island, around the run.
    for p in &env.ports {
        let log = env.psql(
            *p,
            "select string_agg(what, ',' order by id) from public.hook_log",
        );
        assert_eq!(log, "before,after", "port {p}");
    }
    std::fs::remove_file(before).expect("rm");
    std::fs::remove_file(after).expect("rm");
}

#[test]
fn already_applied_is_not_counted() {
    let env = &base();
    // As if an earlier run's backend had committed sh0001's version after the plan was
    // made: before.sql (run between plan and fan-out) records it.
    let before = env.dir.join("before.sql");
    std::fs::write(
        &before,
        format!(
            "do $$ begin if to_regnamespace('sh0001') is not null then \
             insert into sh0001.atoll_migrations (version, name, checksum) \
             values ('{V13}', 'raced', 'x'); end if; end $$;"
        ),
    )
    .expect("write");
    put(env, V13);
    let (code, report) = env.migrate_json(&["apply"]);
    std::fs::remove_file(before).expect("rm");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["schemas_total"], SHARDS, "{report}");
    assert_eq!(report["versions_applied"], SHARDS - 1, "{report}");
    assert_eq!(env.applied(V13), SHARDS);
}
