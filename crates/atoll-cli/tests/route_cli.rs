//! `atoll route` against a real sandbox (2 islands): a statement goes to the island where
//! the shard it names is active, by qualified name, hint or session setting; two shards
//! and bad hints are refused with exit 2 and the SQLSTATE a router answers.

use anyhow::Result;
use atoll_core::ShardNo;
use atoll_testkit::{cli, TestCluster};

#[test]
fn route_names_the_shard_and_its_master() -> Result<()> {
    let tc = TestCluster::setup(2, 0).shards(0..=3).start_blocking()?;
    let snap = tokio::runtime::Runtime::new()?.block_on(tc.discover());
    let atoll = cli::Cli::new(env!("CARGO_BIN_EXE_atoll"), tc.config_path());
    let island_of = |n: i64| snap.active_island(ShardNo::new(n).unwrap()).unwrap().0;

    let out = atoll.run(&[
        "--json",
        "route",
        "select * from SH0002.users where id = $1",
    ]);
    let r = cli::json(&out);
    assert_eq!(r["schema"], "sh0002", "{r}");
    assert_eq!(r["why"], "qualified", "{r}");
    assert_eq!(r["island"], island_of(2), "{r}");
    assert!(
        r["master"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1")),
        "{r}"
    );

    let out = atoll.run(&[
        "--json",
        "route",
        "--search-path",
        "public, sh0003",
        "select 1 from users",
    ]);
    let r = cli::json(&out);
    assert_eq!(
        (r["schema"].as_str(), r["why"].as_str()),
        (Some("sh0003"), Some("search_path")),
        "{r}"
    );
    let out = atoll.run(&[
        "--json",
        "route",
        "--shard",
        "1",
        "/* atoll:shard=3 */ select 1",
    ]);
    assert_eq!(cli::json(&out)["why"], "shard_hint");
    let out = atoll.run(&["route", "select now()"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("sh0000 (no shard named"), "{text}");

    let out = atoll.run(&["route", "select * from sh0001.a, sh0002.b"]);
    assert_eq!(out.status.code(), Some(2));
    let err = cli::stderr(&out);
    assert!(
        err.contains("SQLSTATE 0A000") && err.contains("sh0001 and sh0002"),
        "{err}"
    );
    let out = atoll.run(&["route", "/* atoll:shard=99999 */ select 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        cli::stderr(&out).contains("SQLSTATE 22023"),
        "{}",
        cli::stderr(&out)
    );
    let out = atoll.run(&["--json", "route", "set atoll.shard = 2"]);
    assert_eq!(cli::json(&out)["session_change"]["setting"], "shard");
    Ok(())
}
