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
