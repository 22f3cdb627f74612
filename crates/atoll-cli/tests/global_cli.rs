//! `atoll global` as a user runs it on a real sandbox (2 islands, shard 0 on island 0):
//! an unknown table refused with exit 2; `replicate` makes the copy (`--json` report);
//! `global status` and `status` healthy; a disabled copy makes both unhealthy (exit 3),
//! naming the island and the repairing command; `replicate` again repairs it.

use anyhow::Result;
use atoll_core::IslandId;
use atoll_testkit::{cli, TestCluster};

#[test]
fn global_replicate_status_and_repair_from_the_cli() -> Result<()> {
    let tc = TestCluster::setup(2, 0)
        .shards(0..=2)
        .on_island(IslandId(0))
        .start_blocking()?;
    let ports = tc.master_ports();
    tc.psql(
        ports[0],
        "create table sh0000.settings (key text primary key, value text); insert into sh0000.settings values ('a', '1')",
    );
    let atoll = cli::Cli::new(env!("CARGO_BIN_EXE_atoll"), tc.config_path());

    let out = atoll.run(&["global", "replicate", "--tables", "settings,nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", cli::stderr(&out));
    assert!(cli::stderr(&out).contains("sh0000.nope does not exist"));

    let out = atoll.run(&["--json", "global", "replicate"]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    let report = cli::json(&out);
    assert_eq!(report["copies"][0]["island"], 1, "{report}");
    assert_eq!(report["copies"][0]["rows"][0][1], 1, "{report}");

    let out = atoll.run(&["global", "status"]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .into_owned()
            .contains("island 1: ready"),
        "{}",
        String::from_utf8_lossy(&out.stdout).into_owned()
    );
    let out = atoll.run(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout).into_owned()
    );

    tc.psql(ports[1], "alter subscription atoll_global_1 disable");
    for args in [&["global", "status"][..], &["status"][..]] {
        let out = atoll.run(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {text}");
        assert!(
            text.contains("subscription is disabled"),
            "{args:?}: {text}"
        );
        assert!(
            text.contains("run `atoll global replicate`"),
            "{args:?}: {text}"
        );
    }
    let out = atoll.run(&["global", "replicate"]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    assert!(atoll.run(&["global", "status"]).status.success());
    Ok(())
}
