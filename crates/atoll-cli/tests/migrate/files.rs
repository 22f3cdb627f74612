//! Migration file names: anything malformed is refused before anything is applied.

use crate::*;

#[test]
fn malformed_names_apply_nothing() {
    let env = fresh();
    put(&env, V1);
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

const V20: &str = "20240101000200.strings_off.sh";
const V21: &str = "20240101000210.hidden_commit.sh";

/// Each file is lexed by the server as atoll split it, with standard_conforming_strings on,
/// even after an earlier file switched it off on the same connection: else `'\''` is a
/// quote for the server, and the `commit` atoll saw inside a string runs.
#[test]
fn an_earlier_file_cannot_change_how_a_file_is_lexed() {
    let env = fresh();
    env.write(V20, "set standard_conforming_strings = off;", "select 1;");
    env.write(
        V21,
        "select '\\''; commit; --'\ncreate table leaked (id int);\nselect 1 / 0;",
        "select 1;",
    );
    let (code, report) = env.migrate_json(&["apply", "--parallelism", "1"]);
    assert_eq!(code, 1, "{report}");
    assert!(env.applied(V20) >= 1, "{report}");
    assert_eq!(env.applied(V21), 0, "{report}");
    let leaked = env.sum("select count(*) from pg_class where relname = 'leaked'");
    assert_eq!(leaked, 0, "{report}");
}
