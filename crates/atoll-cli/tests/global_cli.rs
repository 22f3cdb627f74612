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

/// Polls `sql` on `port` until it prints `want`.
fn wait_for(tc: &TestCluster, port: u16, sql: &str, want: &str) {
    atoll_testkit::poll_until(
        &format!("`{sql}` on {port} prints {want}"),
        std::time::Duration::from_secs(20),
        || tc.psql(port, sql) == want,
    );
}

/// Shard 0's migrations reach its copy in the right order, with no apply error on the
/// copy: a migration adding a NOT NULL column with a default, filling it, indexing it and
/// checking it (the copy gets the column before any row of the new shape, its NOT NULL
/// and CHECK after it caught up), then one dropping a column (the copy keeps it until
/// it has every row written without it). `schema diff` compares the copy with shard 0.
#[test]
fn shard_zero_migrations_reach_the_copies() -> Result<()> {
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
    let out = atoll.run(&["global", "replicate"]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    let dir = tc.sandbox().dir().join("migrations");
    std::fs::create_dir_all(&dir)?;
    let dir_arg = dir.to_string_lossy().into_owned();
    let write = |version: &str, up: &str| -> Result<()> {
        std::fs::write(dir.join(format!("{version}.up.sql")), up)?;
        std::fs::write(dir.join(format!("{version}.dn.sql")), "select 1;")?;
        Ok(())
    };
    write(
        "20260101000010.plan.sh",
        "-- $atoll_shards=0\n\
         alter table settings add column plan text not null default 'free';\n\
         update settings set plan = 'paid' where key = 'a';\n\
         create index settings_plan_idx on settings (plan);\n\
         alter table settings add constraint settings_plan_check check (plan in ('free', 'paid'));\n",
    )?;
    let out = atoll.run(&["migrate", "apply", "--dir", &dir_arg]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    tc.psql(
        ports[0],
        "insert into sh0000.settings values ('b', '2', 'paid')",
    );
    let copy = ports[1];
    wait_for(
        &tc,
        copy,
        "select string_agg(key || '=' || plan, ',' order by key) from sh0000.settings",
        "a=paid,b=paid",
    );
    let shape = tc.psql(
        copy,
        "select (select attnotnull from pg_attribute where attrelid = 'sh0000.settings'::regclass and attname = 'plan'),
                to_regclass('sh0000.settings_plan_idx') is not null,
                exists (select 1 from pg_constraint where conname = 'settings_plan_check')",
    );
    assert_eq!(shape, "t|t|t");
    let errors = "select coalesce(sum(apply_error_count), 0) from pg_stat_subscription_stats";
    assert_eq!(tc.psql(copy, errors), "0");

    // (Shard 0 has other tables than sh0001-sh0002: that difference is not the copy's.)
    let in_sync = || {
        let out = atoll.run(&["--json", "schema", "diff"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        report["global_copies"][0]["in_sync"].clone()
    };
    assert_eq!(in_sync(), true);

    write(
        "20260101000020.drop_value.sh",
        "-- $atoll_shards=0\nalter table settings drop column value;\n",
    )?;
    let out = atoll.run(&["migrate", "apply", "--dir", &dir_arg, "--allow-unsafe"]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    tc.psql(ports[0], "insert into sh0000.settings values ('c', 'free')");
    wait_for(
        &tc,
        copy,
        "select string_agg(key, ',' order by key) from sh0000.settings",
        "a,b,c",
    );
    let value_left = "select count(*) from pg_attribute where attrelid = 'sh0000.settings'::regclass and attname = 'value' and not attisdropped";
    assert_eq!(tc.psql(copy, value_left), "0");
    assert_eq!(tc.psql(copy, errors), "0");
    assert!(atoll.run(&["global", "status"]).status.success());

    // A copy changed by hand is drift, and `replicate` brings it back.
    tc.psql(copy, "drop index sh0000.settings_plan_idx");
    let out = atoll.run(&["schema", "diff"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("island 1: shard 0's copy differs"), "{text}");
    assert_eq!(in_sync(), false);
    assert!(atoll.run(&["global", "replicate"]).status.success());
    assert_eq!(in_sync(), true);
    Ok(())
}

/// The copied tables from `[global]` in atoll.toml. An island without the copy the other
/// islands hold (as a new island is) gets it from `atoll init`, with the same tables; `atoll move` of shard 0 then hands the copies over.
#[test]
fn init_gives_an_island_without_a_copy_the_copy() -> Result<()> {
    let tc = TestCluster::setup(3, 0)
        .shards(0..=1)
        .on_island(IslandId(0))
        .start_blocking()?;
    let ports = tc.master_ports();
    tc.psql(
        ports[0],
        "create table sh0000.settings (key text primary key); insert into sh0000.settings values ('a'), ('b');
         create table sh0000.other (id int primary key)",
    );
    // The tables from `[global]` in atoll.toml.
    let mut toml = std::fs::read_to_string(tc.config_path())?;
    toml.push_str("\n[global]\ntables = [\"settings\"]\n");
    std::fs::write(tc.config_path(), toml)?;
    let atoll = cli::Cli::new(env!("CARGO_BIN_EXE_atoll"), tc.config_path());
    let out = atoll.run(&["--json", "global", "replicate"]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    assert_eq!(cli::json(&out)["tables"], serde_json::json!(["settings"]));
    tc.psql(ports[2], "drop subscription atoll_global_2");
    tc.psql(
        ports[2],
        "drop schema sh0000 cascade; delete from atoll.global_copy",
    );
    let out = atoll.run(&["global", "status"]);
    assert_eq!(out.status.code(), Some(3));

    let out = atoll.run(&["--json", "init"]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    let islands = cli::json(&out);
    assert_eq!(islands[2]["global_copy_created"], true, "{islands}");
    assert_eq!(islands[1]["global_copy_created"], false, "{islands}");
    assert_eq!(
        tc.psql(
            ports[2],
            "select string_agg(key, ',' order by key) from sh0000.settings"
        ),
        "a,b"
    );
    assert_eq!(
        tc.psql(ports[2], "select to_regclass('sh0000.other') is null"),
        "t"
    );
    assert!(atoll.run(&["global", "status"]).status.success());

    // `atoll move` of shard 0 hands the copies over: island 2's copy makes room, island
    // 1's follows island 2, island 0 gets one.
    let out = atoll.run(&["move", "--shard", "0", "--to", "2"]);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("copies follow its new master"), "{text}");
    tc.psql(ports[2], "insert into sh0000.settings values ('c')");
    for port in [ports[0], ports[1]] {
        let sql = "select string_agg(key, ',' order by key) from sh0000.settings";
        wait_for(&tc, port, sql, "a,b,c");
    }
    let out = atoll.run(&["global", "status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    Ok(())
}

/// `atoll global replicate` killed (SIGKILL) while a copy is being made is finished by
/// running it again: nothing half-made is left unreported or repeated.
#[test]
fn a_killed_replicate_is_finished_by_running_it_again() -> Result<()> {
    use std::io::BufRead;
    let tc = TestCluster::setup(2, 0)
        .shards(0..=1)
        .on_island(IslandId(0))
        .start_blocking()?;
    let ports = tc.master_ports();
    tc.psql(
        ports[0],
        "create table sh0000.events (id bigint primary key, body text);
         insert into sh0000.events select g, repeat('x', 200) from generate_series(1, 300000) g",
    );
    let atoll = cli::Cli::new(env!("CARGO_BIN_EXE_atoll"), tc.config_path());
    for stage in ["subscribing", "copying"] {
        let mut child = atoll
            .command()
            .args(["global", "replicate"])
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().expect("piped");
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line?;
            let reached = line.contains(stage);
            seen.push(line);
            if reached {
                break;
            }
        }
        child.kill()?;
        child.wait()?;
        assert!(seen.iter().any(|l| l.contains(stage)), "{seen:?}");
        // Reported, not hidden: the copy is unfinished until replicate runs again.
        let out = atoll.run(&["global", "status"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(3), "{stage}: {text}");
        let out = atoll.run(&["--json", "global", "replicate"]);
        assert!(out.status.success(), "{stage}: {}", cli::stderr(&out));
        assert_eq!(
            cli::json(&out)["copies"][0]["rows"][0][1],
            300_000,
            "{stage}"
        );
        assert!(atoll.run(&["global", "status"]).status.success());
        // Start over for the next stage: the copy dropped by hand.
        tc.psql(ports[1], "drop subscription atoll_global_1");
        tc.psql(
            ports[1],
            "drop schema sh0000 cascade; delete from atoll.global_copy",
        );
    }
    Ok(())
}
