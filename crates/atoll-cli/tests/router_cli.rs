//! `atoll router check`, `explain` and the router process against a real sandbox
//! (2 islands): the explained cell is the one serving the island where the ID's shard is
//! active; spoofed routing headers are counted as removed; a bad config is one line and
//! exit 2; the router process prints its address and exits 0 on SIGTERM.

use anyhow::Result;
use atoll_core::{Id, IslandId};
use atoll_testkit::{cli, shard, TestCluster};

fn router_toml(atoll: &std::path::Path, pattern: &str) -> String {
    format!(
        "[router]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\natoll_config = \"{}\"\ndefault_cell = \"newest\"\n\
         [[cell]]\nname = \"eu0\"\naddrs = [\"127.0.0.1:1\"]\nislands = [0]\n\
         [[cell]]\nname = \"eu1\"\naddrs = [\"127.0.0.1:2\"]\nislands = [1]\n\
         [[cell]]\nname = \"newest\"\naddrs = [\"127.0.0.1:3\"]\n\
         [[rule]]\nname = \"object\"\nsource = \"path\"\npattern = '{pattern}'\nkind = \"id\"\n",
        atoll.display()
    )
}

#[test]
fn check_explain_and_serve() -> Result<()> {
    let cluster = TestCluster::setup(2, 0).shards(1..=2).start_blocking()?;
    let dir = cluster.config_path().parent().unwrap().to_path_buf();
    let path = dir.join("router.toml");
    std::fs::write(
        &path,
        router_toml(&cluster.config_path(), r"^/o/(?P<id>\d+)"),
    )?;
    let atoll = cli::Cli::new(env!("CARGO_BIN_EXE_atoll"), &path);

    let out = atoll.run(&["router", "check", "--json"]);
    let v = cli::json(&out);
    assert_eq!(v["rules"][0]["name"], "object");
    assert_eq!(v["cells"].as_array().unwrap().len(), 3);
    let out = atoll.run(&["router", "check"]);
    cli::ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1. object"));

    let rt = tokio::runtime::Runtime::new()?;
    let snap = rt.block_on(cluster.discover());
    let s = shard(2);
    let island = snap.active_island(s)?;
    let id = Id::new(cluster.config().env_digit, s, 7)?.get();
    let out = atoll.run(&[
        "router",
        "explain",
        "GET",
        &format!("/o/{id}/x?y=1"),
        "-H",
        "X-Atoll-Cell-Redirect: eu1",
        "--json",
    ]);
    let v = cli::json(&out);
    let cell = if island == IslandId(0) { "eu0" } else { "eu1" };
    assert_eq!(v["decision"]["cell"], cell, "{v}");
    assert_eq!(v["decision"]["source"], "rule");
    assert_eq!(v["decision"]["shard"], 2);
    assert_eq!(v["decision"]["island"], island.0);
    assert_eq!(v["stripped_headers"], 1);
    let out = atoll.run(&["router", "explain", "GET", "/static/x"]);
    cli::ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cell newest"));

    // Bad input: one line naming the file and the rule, exit 2.
    std::fs::write(
        &path,
        router_toml(&cluster.config_path(), r"^/o/(?P<id>\d+"),
    )?;
    let out = atoll.run(&["router", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = cli::stderr(&out);
    assert!(
        err.contains("rule \"object\"") && err.contains("pattern"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = atoll.run(&["router", "explain", "GET", "no-slash"]);
    assert_eq!(out.status.code(), Some(2));

    // The router process: prints its address, exits 0 on SIGTERM.
    std::fs::write(
        &path,
        router_toml(&cluster.config_path(), r"^/o/(?P<id>\d+)"),
    )?;
    let (router, v) = atoll.spawn_server(&["router", "--json"])?;
    let admin = v["admin"].as_str().unwrap().to_string();
    let metrics = std::net::TcpStream::connect(&admin).is_ok();
    let code = router.terminate()?;
    assert!(metrics, "admin listener not reachable");
    assert_eq!(code, Some(0));
    Ok(())
}
