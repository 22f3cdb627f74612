//! Replica reads through `atoll proxy` (one island with a replica): after
//! `SET atoll.read = 'replica'` a read outside a transaction runs on the replica (the node
//! says it is in recovery), in the simple and the extended protocol; a write, a locking
//! read and anything inside a transaction run on the master; `'master'` (and `RESET ALL`)
//! bring reads back to the master. With `--replica-max-lag-ms`, a replica whose replay
//! is paused behind new writes serves no replica reads (the master does) until it
//! catches up.

mod proxy_kit;

use anyhow::Result;
use atoll_testkit::TestCluster;

#[test]
fn reads_go_to_a_replica_when_asked() -> Result<()> {
    let tc = TestCluster::setup(1, 1).shards(0..=1).start_blocking()?;
    tc.psql(
        tc.master_ports()[0],
        "create table sh0001.t (id int primary key, v text); insert into sh0001.t values (1, 'a')",
    );
    let p = proxy_kit::start(&tc, &[])?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(tc.discover());
    let replica = "set atoll.read = 'replica'";
    let where_ = "select pg_is_in_recovery() from sh0001.t where id = 1";
    // The replica has to be known to discovery and have replayed the table.
    atoll_testkit::wait::poll_until(
        "the proxy reads from the replica",
        std::time::Duration::from_secs(30),
        || p.ok(&[replica, where_]) == "t",
    );
    assert_eq!(p.ok(&[where_]), "f", "the default is the master");
    assert_eq!(
        p.ok(&[replica, "begin", where_, "commit"]),
        "f",
        "inside a transaction"
    );
    assert_eq!(
        p.ok(&[
            replica,
            "insert into sh0001.t values (2, 'b') returning pg_is_in_recovery()"
        ]),
        "f"
    );
    assert_eq!(p.ok(&[replica, &format!("{where_} for update")]), "f");
    assert_eq!(p.ok(&[replica, "set atoll.read = 'master'", where_]), "f");
    assert_eq!(p.ok(&[replica, "reset all", where_]), "f");

    // The extended protocol (the setting too): pgbench -M extended and prepared, whose
    // script fails (division by zero) if a read ever lands on the master.
    let script = tc.sandbox().dir().join("ro.sql");
    std::fs::write(
        &script,
        "set atoll.read = 'replica';\nselect pg_is_in_recovery()::int as rec from sh0001.t where id = 1 \\gset\n\\if :rec = 0\nselect 1/0;\n\\endif\n",
    )?;
    for mode in ["extended", "prepared"] {
        let out = p.pgbench(&["-c", "2", "-t", "20", "-M", mode], &[&script]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{mode}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(proxy_kit::processed(&text), Some(40), "{mode}: {text}");
    }
    assert_eq!(p.server.terminate()?, Some(0));
    Ok(())
}

#[test]
fn a_lagging_replica_serves_no_replica_reads() -> Result<()> {
    let tc = TestCluster::setup(1, 1).shards(0..=1).start_blocking()?;
    let master = tc.master_ports()[0];
    let replica_port = tc.sandbox().islands()[0].nodes[1].port;
    tc.psql(master, "create table sh0001.t (id int primary key)");
    tc.psql(master, "insert into sh0001.t values (1)");
    let p = proxy_kit::start(&tc, &["--replica-max-lag-ms", "500"])?;
    let on_replica = || {
        p.ok(&[
            "set atoll.read = 'replica'",
            "select pg_is_in_recovery() from sh0001.t where id = 1",
        ]) == "t"
    };
    let wait = std::time::Duration::from_secs(30);
    atoll_testkit::wait::poll_until("the proxy reads from the replica", wait, on_replica);

    // Replay paused, then a write: the replica falls behind and stays there.
    tc.psql(replica_port, "select pg_wal_replay_pause()");
    tc.psql(master, "insert into sh0001.t values (2)");
    atoll_testkit::wait::poll_until("the lagging replica is passed over", wait, || !on_replica());
    for _ in 0..5 {
        assert!(!on_replica(), "a read went to the lagging replica");
    }
    tc.psql(replica_port, "select pg_wal_replay_resume()");
    atoll_testkit::wait::poll_until("the caught-up replica reads again", wait, on_replica);
    assert_eq!(p.server.terminate()?, Some(0));
    Ok(())
}
