//! `atoll schema diff`: shards grouped by live schema, the odd one named with what differs.

use crate::*;
use serde_json::Value;

#[test]
fn schema_diff_finds_a_dropped_column() {
    let env = base();
    let out = env.atoll(&["schema", "diff"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("64 shards share"));
    let p42 = env.port_of("sh0042");
    env.psql(p42, "alter table sh0042.users drop column nick");
    let out = env.atoll(&["schema", "diff"]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sh0042 differs: column users.nick text missing"),
        "{text}"
    );
    let out = env.atoll(&["--json", "schema", "diff"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let groups = &report["groups"];
    assert_eq!(report["global_copies"], serde_json::json!([]));
    assert_eq!(groups[0]["count"], 63);
    assert_eq!(groups[1]["members"], serde_json::json!(["sh0042"]));
    env.psql(p42, "alter table sh0042.users add column nick text");
    // Defaults and functions count too; every shard's own `id_gen()` (its ID base differs)
    // compares equal, as the 64 above show.
    env.psql(
        p42,
        "alter table sh0042.users alter column nick set default 'x'; \
         create function sh0042.f() returns int language sql as $$ select 1 $$",
    );
    let out = env.atoll(&["schema", "diff"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("column users.nick text missing")
            && text.contains("column users.nick text default 'x'::text extra")
            && text.contains("function f(): "),
        "{text}"
    );
}
