//! `... CONCURRENTLY` files: a failed build leaves an invalid index, which the next run
//! drops and builds again.

use crate::*;

#[test]
fn concurrently_files() {
    let env = base();
    put(&env, V6);
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
