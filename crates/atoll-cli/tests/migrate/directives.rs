//! pg-mig's per-file directives `$parallelism_per_host` and `$parallelism_global`.

use crate::support::shards;
use crate::*;

const V16: &str = "20240101000180.one_per_island.sh";
const V17: &str = "20240101000190.one_at_a_time.sh";

/// pg-mig's `$parallelism_per_host` and `$parallelism_global`, checked without timing:
/// a per-island file fails where it cannot take an island-wide advisory lock (so two of
/// its schemas ran at once); a global file logs when each schema's transaction started
/// and ended, and no two intervals on either island (one clock: one machine) overlap.
#[test]
fn pg_mig_directives_cap_parallelism() {
    let env = &base();
    env.write(
        V16,
        "-- $parallelism_per_host=1\n\
         select 1 / pg_try_advisory_xact_lock(7001, 7002)::int;\n\
         select pg_sleep(0.01);",
        "select 1;",
    );
    for p in &env.ports {
        env.psql(
            *p,
            "create schema atoll_test; \
             create table atoll_test.par (schema text primary key, s timestamptz, e timestamptz)",
        );
    }
    env.write(
        V17,
        "-- $parallelism_global = 1\n\
         insert into atoll_test.par values (current_schema(), clock_timestamp());\n\
         select pg_sleep(0.01);\n\
         update atoll_test.par set e = clock_timestamp() where schema = current_schema();",
        "select 1;",
    );
    let (code, plan) = env.migrate_json(&["plan"]);
    assert_eq!(code, 0, "{plan}");
    let throttled = plan["throttled"].as_array().expect("throttled");
    let of = |version: &str| {
        throttled
            .iter()
            .find(|t| t["file"] == format!("{version}.up.sql"))
            .unwrap_or_else(|| panic!("{version} not throttled: {plan}"))
    };
    assert_eq!(of(V16)["directives"]["parallelism_per_host"], 1, "{plan}");
    assert_eq!(of(V17)["directives"]["parallelism_global"], 1, "{plan}");
    let (code, report) = env.migrate_json(&["apply", "--parallelism", "8"]);
    assert_eq!(code, 0, "{report}");
    let n = shards(env);
    assert_eq!(env.applied(V16), n);
    assert_eq!(env.applied(V17), n);
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for p in &env.ports {
        let rows = env.psql(
            *p,
            "select (extract(epoch from s) * 1e6)::bigint || ' ' || \
                    (extract(epoch from e) * 1e6)::bigint from atoll_test.par",
        );
        for line in rows.lines() {
            let (s, e) = line.split_once(' ').expect("two numbers");
            spans.push((s.parse().expect("s"), e.parse().expect("e")));
        }
        env.psql(*p, "drop schema atoll_test cascade");
    }
    assert_eq!(spans.len() as i64, n);
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "two schemas ran at once: {w:?}");
    }
}
