//! A password given by reference never shows up in any output, even with debug logging
//! and through a move, whose subscription connection string carries it.

use atoll_testkit::TestSandbox;
use std::process::Command;

const PASSWORD: &str = "pw-never-printed-4711";

#[test]
fn passwords_never_reach_output() {
    let sb = TestSandbox::new(2, 0).expect("sandbox");
    // The sandbox trusts loopback, so any password works; what matters is where it goes.
    let text = std::fs::read_to_string(sb.config_path()).unwrap();
    let text = text.replace(
        "[defaults]\n",
        "[defaults]\npassword = \"env:ATOLL_TEST_PASSWORD\"\n",
    );
    let cfg = sb.dir().join("with-password.toml");
    std::fs::write(&cfg, text).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_atoll"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("ATOLL_TEST_PASSWORD", PASSWORD)
            .env("ATOLL_LOG", "debug")
            .output()
            .expect("run atoll");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {all}");
        assert!(
            !all.contains(PASSWORD),
            "{args:?} printed the password: {all}"
        );
        all
    };
    run(&["init"]);
    let placed = run(&[
        "--json",
        "allocate",
        "--shards",
        "1",
        "--island",
        "0",
        "--activate",
    ]);
    assert!(placed.contains("\"island\": 0"), "{placed}");
    run(&["-vv", "status", "--json"]);
    sb.psql(
        sb.islands()[0].nodes[0].port,
        "create table sh0001.t (id bigint primary key); insert into sh0001.t select generate_series(1, 100)",
    )
    .unwrap();
    let moved = run(&["-vv", "move", "--shard", "1", "--to", "1"]);
    assert!(
        moved.contains("sh0001 moved from island 0 to island 1"),
        "{moved}"
    );
    // And the server never kept it where a status query would show it.
    let kept = sb
        .psql(
            sb.islands()[1].nodes[0].port,
            "select count(*) from pg_subscription",
        )
        .unwrap();
    assert_eq!(
        kept, "0",
        "the subscription (and its connection string) is gone"
    );
}
