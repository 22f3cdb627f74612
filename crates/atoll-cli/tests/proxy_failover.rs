//! `atoll proxy` through a failover (one island, master + replica, the replica promoted by
//! hand): while the master is down a statement gets a clean error (08006 naming the
//! shard, or 57P03 after the 5 s hold that waits for the island's master), not a hang; once the replica is promoted the proxy finds it (its
//! cluster view is read again after a node's connection fails) and writes go there.

mod proxy_kit;

use anyhow::Result;
use atoll_testkit::TestCluster;
use proxy_kit::PASSWORD;
use std::time::{Duration, Instant};

#[test]
fn a_failover_gives_a_clean_error_then_the_new_master() -> Result<()> {
    let tc = TestCluster::setup(1, 1).shards(0..=1).start_blocking()?;
    tc.psql(
        tc.master_ports()[0],
        "create table sh0001.t (id int primary key)",
    );
    let p = proxy_kit::start(&tc, &["--connect-timeout-ms", "2000"])?;
    assert_eq!(p.ok(&["insert into sh0001.t values (1) returning id"]), "1");
    // The replica has replayed the insert before the master goes.
    let replica_port = tc.master_ports()[0] + 1;
    let count_on_replica = || {
        let out = std::process::Command::new("psql")
            .args([
                "-X",
                "-At",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-p", &replica_port.to_string()])
            .args(["-c", "select count(*) from sh0001.t"])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    atoll_testkit::wait::poll_until("the replica has the row", Duration::from_secs(30), || {
        count_on_replica() == "1"
    });

    tc.sandbox().stop_node(0, 0)?;
    let started = Instant::now();
    let out = p.psql(PASSWORD, "app", &["insert into sh0001.t values (2)"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    // Either the dead master's refusal or, once the island is found unreadable, the
    // bounded hold's end (the failover may come within it).
    let clean = err.contains("08006") || err.contains("57P03");
    assert!(clean && err.contains("sh0001"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    tc.sandbox().promote_node(0, 1)?;
    atoll_testkit::wait::poll_until(
        "writes reach the new master",
        Duration::from_secs(60),
        || {
            p.psql(PASSWORD, "app", &["insert into sh0001.t values (3)"])
                .status
                .success()
        },
    );
    assert_eq!(
        p.ok(&["select string_agg(id::text, ',' order by id) from sh0001.t"]),
        "1,3"
    );
    assert_eq!(count_on_replica(), "2");
    assert_eq!(p.server.terminate()?, Some(0));
    Ok(())
}
