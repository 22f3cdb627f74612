//! `atoll migrate undo`: only the latest version, and a destructive down file only with
//! consent.

use crate::*;

#[test]
fn undo_refuses_all_but_the_latest_version() {
    let env = history(&[V1, V2, VP, V7, V6]);
    // V7 is applied everywhere but is not the latest: refused.
    let (code, _, err) = env.migrate(&["undo", V7]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("undo that first"), "{err}");
    let (code, report) = env.migrate_json(&["undo", "20240101000090"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["kind"], "undo");
    assert_eq!(env.applied(V6), 0);
    assert_eq!(
        env.sum("select count(*) from pg_class where relname = 'users_nick_uniq'"),
        0
    );
    let (_, plan) = env.migrate_json(&["plan"]);
    assert_eq!(plan["groups"][0]["pending"], serde_json::json!([V6]));
    assert_eq!(plan["groups"][0]["count"], 64);
    let (code, report) = env.migrate_json(&["apply"]);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn undo_needs_consent_for_a_destructive_down_file() {
    let env = history(&[V1, V2, VP, V10]);
    // V10's down file drops a table.
    let (code, _, err) = env.migrate(&["undo", V10]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{V10}.dn.sql")) && err.contains("--allow-unsafe"),
        "{err}"
    );
    assert_eq!(env.applied(V10), SHARDS);
    let (code, report) = env.migrate_json(&["undo", V10, "--allow-unsafe"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(env.applied(V10), 0);
}
