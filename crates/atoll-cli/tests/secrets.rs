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

/// `[endpoints]`: a config that lists only the coordination island reaches every island
/// through the endpoint records, with credentials by alias from a keychain file; the
/// secret is never printed, an alias whose variable is unset is named, and a malformed
/// record is refused by name (exit 2).
#[test]
fn endpoint_records_supply_the_islands_and_credentials() {
    let sb = TestSandbox::new(2, 0).expect("sandbox");
    let (p0, p1) = (sb.islands()[0].nodes[0].port, sb.islands()[1].nodes[0].port);
    let base = Command::new(env!("CARGO_BIN_EXE_atoll"))
        .arg("--config")
        .arg(sb.config_path())
        .arg("init")
        .output()
        .expect("run atoll");
    assert!(
        base.status.success(),
        "{}",
        String::from_utf8_lossy(&base.stderr)
    );
    sb.psql(
        p0,
        &format!(
            "insert into atoll.shard_endpoints (island, host, port, \"user\", database, auth_kind, credential_alias) values \
             (0, '127.0.0.1', {p0}, 'postgres', 'postgres', 'none', null), \
             (1, '127.0.0.1', {p1}, 'postgres', 'postgres', 'password', 'dev/island1')"
        ),
    )
    .unwrap();
    std::fs::write(
        sb.dir().join("keychain.toml"),
        "[aliases]\n\"dev/island1\" = \"env:ATOLL_EP_TEST_PW\"\n",
    )
    .unwrap();
    let cfg = sb.dir().join("endpoints.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cluster]\nname = \"sandbox\"\n[defaults]\nuser = \"postgres\"\ndatabase = \"postgres\"\n\
             [[island]]\nid = 0\nnodes = [{{ host = \"127.0.0.1\", port = {p0} }}]\n\
             [endpoints]\nkeychain = \"keychain.toml\"\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str], password: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_atoll"));
        c.arg("--config")
            .arg(&cfg)
            .args(args)
            .env("ATOLL_LOG", "debug");
        match password {
            Some(p) => c.env("ATOLL_EP_TEST_PW", p),
            None => c.env_remove("ATOLL_EP_TEST_PW"),
        };
        let out = c.output().expect("run atoll");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(PASSWORD),
            "{args:?} printed the password: {all}"
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            all,
        )
    };
    // Both islands, though the config lists one.
    let (code, out, all) = run(&["--json", "status"], Some(PASSWORD));
    assert_eq!(code, Some(0), "{all}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    let islands = status["islands"].as_array().expect("islands");
    assert_eq!(islands.len(), 2, "{status}");
    assert!(out.contains(&format!("127.0.0.1:{p1}")), "{status}");
    // The alias's variable unset: island 1 cannot be reached, and the variable is named.
    let (_, _, all) = run(&["status"], None);
    assert!(all.contains("ATOLL_EP_TEST_PW"), "{all}");
    // A malformed record: refused by name, before anything else.
    sb.psql(
        p0,
        &format!("update atoll.shard_endpoints set auth_kind = 'kerberos' where port = {p1}"),
    )
    .unwrap();
    let (code, _, all) = run(&["status"], Some(PASSWORD));
    assert_eq!(code, Some(2), "{all}");
    assert!(
        all.contains(&format!("island 1 node 127.0.0.1:{p1}")) && all.contains("kerberos"),
        "{all}"
    );
}
