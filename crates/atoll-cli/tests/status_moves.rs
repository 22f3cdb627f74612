//! `atoll status` shows what moves left behind: an unfinished move (step, since when, the
//! replication objects it owns, the commands that end it), a stray replication object and
//! a backup awaiting cleanup; unfinished moves and strays make the cluster unhealthy.

use atoll_testkit::cli::{json, stderr, Cli};
use atoll_testkit::TestSandbox;
use serde_json::Value;
use std::process::Output;

const UNHEALTHY: i32 = 3;

fn atoll(sb: &TestSandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    Cli::new(env!("CARGO_BIN_EXE_atoll"), sb.config_path()).run_with_env(args, env)
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `status --json`, whatever its exit code, with the code.
fn status_json(sb: &TestSandbox) -> (i32, Value) {
    let out = atoll(sb, &["--json", "status"], &[]);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    (out.status.code().unwrap_or(-1), v)
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v["moves"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().or(o["schema"].as_str()).unwrap().into())
        .collect()
}

#[test]
fn status_shows_unfinished_moves_strays_and_backups() {
    let sb = TestSandbox::new(2, 0).unwrap();
    json(&atoll(&sb, &["--json", "init"], &[]));
    json(&atoll(
        &sb,
        &[
            "--json",
            "allocate",
            "--shards",
            "1-2",
            "--activate",
            "--island",
            "0",
        ],
        &[],
    ));
    let port = sb.islands()[0].nodes[0].port;
    sb.psql(
        port,
        "create table sh0001.items (id bigint primary key default sh0001.id_gen(), payload bigint);
         insert into sh0001.items (payload) select g from generate_series(1, 100) g",
    )
    .unwrap();
    let (code, v) = status_json(&sb);
    assert_eq!((code, v["healthy"].as_bool()), (0, Some(true)), "{v}");
    assert!(v["moves"]["unfinished"].as_array().unwrap().is_empty());

    // Stopped after `subscribed`: listed with its step, since when, what it owns and the
    // commands that end it; unhealthy.
    let out = atoll(
        &sb,
        &["move", "--shard", "1", "--to", "1"],
        &[("ATOLL_MOVE_STOP_AFTER", "subscribed")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = atoll(&sb, &["status"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(UNHEALTHY), "{t}");
    for want in [
        "unfinished moves:",
        "island 0 -> 1  step subscribed since ",
        " UTC (",
        "subscription atoll_move_sh0001_",
        "slot atoll_move_sh0001_",
        "publication atoll_move_sh0001_",
        "finish it with `atoll move --resume --shard 1` or roll it back with `atoll move --abort --shard 1`",
    ] {
        assert!(t.contains(want), "{want:?} in\n{t}");
    }
    let (code, v) = status_json(&sb);
    assert_eq!((code, v["healthy"].as_bool()), (UNHEALTHY, Some(false)));
    let m = &v["moves"]["unfinished"][0];
    assert_eq!(m["step"], "subscribed", "{v}");
    assert_eq!(m["finish_by"], "resume_or_abort");
    assert!(m["since_unix"].as_i64().unwrap() > 1_700_000_000, "{m}");
    let id = m["id"].as_i64().unwrap();
    let own = format!("atoll_move_sh0001_{id}");
    let repl = v["moves"]["replication"].as_array().unwrap();
    for kind in ["subscription", "slot", "publication"] {
        assert!(
            repl.iter()
                .any(|o| o["kind"] == kind && o["name"] == own.as_str() && o["owned"] == true),
            "{kind} {own} in {v}"
        );
    }

    // Its abort killed half-way: only --abort ends it now, and status says so.
    let out = atoll(
        &sb,
        &["move", "--abort", "--shard", "1"],
        &[("ATOLL_MOVE_STOP_AFTER", "abort:drop_subscription")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("abort stopped after drop_subscription"),
        "{}",
        stderr(&out)
    );
    let out = atoll(&sb, &["status"], &[]);
    assert!(
        text(&out)
            .contains("an abort of it started, finish that with `atoll move --abort --shard 1`"),
        "{}",
        text(&out)
    );
    let (_, v) = status_json(&sb);
    assert_eq!(v["moves"]["unfinished"][0]["finish_by"], "abort", "{v}");
    assert!(names(&v, "replication").is_empty(), "{v}");
    let out = atoll(&sb, &["move", "--resume", "--shard", "1"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    json(&atoll(
        &sb,
        &["--json", "move", "--abort", "--shard", "1"],
        &[],
    ));
    let (code, v) = status_json(&sb);
    assert_eq!(code, 0, "{v}");
    assert!(v["moves"]["unfinished"].as_array().unwrap().is_empty());
    assert!(names(&v, "replication").is_empty(), "{v}");

    // A stray object named like a move's: a problem naming --clean-leftovers, which drops it.
    sb.psql(port, "create publication atoll_move_sh0002_42")
        .unwrap();
    let out = atoll(&sb, &["status"], &[]);
    assert_eq!(out.status.code(), Some(UNHEALTHY));
    assert!(
        text(&out).contains("stray publication atoll_move_sh0002_42 on island 0")
            && text(&out).contains("`atoll move --shard 2 --to ISLAND --clean-leftovers`"),
        "{}",
        text(&out)
    );
    json(&atoll(
        &sb,
        &[
            "--json",
            "move",
            "--shard",
            "2",
            "--to",
            "1",
            "--clean-leftovers",
        ],
        &[],
    ));

    // A finished move's backup awaits cleanup: informational (healthy), with its age and
    // the cleanup command; `atoll cleanup --older-than 0` drops it.
    json(&atoll(
        &sb,
        &["--json", "move", "--shard", "1", "--to", "1"],
        &[],
    ));
    let out = atoll(&sb, &["status"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("backups awaiting cleanup:"), "{t}");
    assert!(
        t.contains("(backup of sh0001, ") && t.contains("`atoll cleanup --older-than 0` now"),
        "{t}"
    );
    let (_, v) = status_json(&sb);
    let backups = names(&v, "backups");
    assert_eq!(backups.len(), 2, "{v}");
    assert!(backups.iter().all(|b| b.contains("_moved_")), "{backups:?}");
    assert!(v["moves"]["backups"][0]["needed_by"].is_null());
    assert_eq!(v["move_problems"].as_array().unwrap().len(), 0, "{v}");
    let dropped = json(&atoll(
        &sb,
        &["--json", "cleanup", "--older-than", "0"],
        &[],
    ));
    assert_eq!(dropped.as_array().unwrap().len(), 2);
    let (code, v) = status_json(&sb);
    assert_eq!(code, 0);
    assert!(names(&v, "backups").is_empty(), "{v}");
}
