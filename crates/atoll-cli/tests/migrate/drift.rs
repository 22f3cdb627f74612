//! What the plan refuses: unsafe statements without consent, and a directory that has
//! drifted from what the shards applied (a missing file, a file merged out of order).

use crate::*;

#[test]
fn unsafe_needs_consent() {
    let env = base();
    put(&env, V5);
    let (code, text, _) = env.migrate(&["plan"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("unsafe:") && text.contains("DROP COLUMN"),
        "{text}"
    );
    let (code, _, err) = env.migrate(&["apply"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--allow-unsafe"), "{err}");
    assert_eq!(env.applied(V5), 0);
    let (code, report) = env.migrate_json(&["apply", "--allow-unsafe"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V5), 64);
}

#[test]
fn drift_is_refused() {
    let env = history(&[V1, V2, VP, V5]);
    put(&env, V7);
    // An applied version whose files are gone.
    env.rename(V5, "sql", "sql.bak");
    let (code, text, _) = env.migrate(&["plan"]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains(&format!("applied version {V5} has no file on disk")),
        "{text}"
    );
    let (code, _, err) = env.migrate(&["apply"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(V5) && err.contains("drifted"), "{err}");
    env.rename(V5, "sql.bak", "sql");
    // A file merged out of order: older than versions already applied.
    let late = "20240101000045.late_merge.sh";
    env.write(late, "create table late (id int);", "drop table late;");
    let (code, _, err) = env.migrate(&["apply"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("out of order"), "{err}");
    std::fs::remove_file(env.dir.join(format!("{late}.up.sql"))).expect("rm");
    std::fs::remove_file(env.dir.join(format!("{late}.dn.sql"))).expect("rm");
    assert_eq!(env.applied(V7), 0);
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V7), 64);
}
