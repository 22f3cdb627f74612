//! `atoll proxy` with real clients against a real sandbox (2 islands, shards 0-3): psql's
//! statements run on the master of the island where the shard they name is active (checked
//! by the port that answers), a cross-shard statement is refused with its SQLSTATE and the
//! session goes on, a transaction stays on its shard, session settings route unqualified
//! statements, a wrong password or unknown user gets the same refusal, pgbench runs through
//! it in the simple, extended and prepared protocols, tokio-postgres' named statements run
//! in many transactions over shared pooled connections, and the admin database answers.

mod proxy_kit;

use anyhow::Result;
use atoll_core::ShardNo;
use atoll_testkit::TestCluster;
use proxy_kit::PASSWORD;

#[test]
fn real_clients_through_the_proxy() -> Result<()> {
    let tc = TestCluster::setup(2, 0).shards(0..=3).start_blocking()?;
    let rt = tokio::runtime::Runtime::new()?;
    let snap = rt.block_on(tc.discover());
    let port_of = |n: i64| {
        let island = snap.active_island(ShardNo::new(n).unwrap()).unwrap();
        tc.master_ports()[island.0 as usize]
    };
    for n in 0..=3 {
        tc.psql(
            port_of(n),
            &format!("create table sh{n:04}.t (id bigint primary key, v text)"),
        );
    }
    let p = proxy_kit::start(&tc, &["--pool-size", "8"])?;
    let port = p.port;

    // Routed by the name, by a hint, by the session's settings.
    for n in 1..=3 {
        let q = format!("select current_setting('port') from sh{n:04}.t union all select current_setting('port')");
        assert_eq!(p.ok(&[&q]), port_of(n).to_string(), "shard {n}");
    }
    assert_eq!(
        p.ok(&["/* atoll:shard=2 */ select current_setting('port')"]),
        port_of(2).to_string()
    );
    assert_eq!(
        p.ok(&["set atoll.shard = 3", "select current_setting('port')"]),
        port_of(3).to_string()
    );
    assert_eq!(
        p.ok(&[
            "set search_path to sh0001",
            "insert into t values (10, 'sp')",
            "select count(*) from t"
        ]),
        "1"
    );

    // Two shards refused with the SQLSTATE; the session goes on.
    let out = p.psql(
        PASSWORD,
        "app",
        &["select 1 from sh0001.t, sh0002.t", "select 42"],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("0A000") && err.contains("sh0001 and sh0002"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // A transaction stays on its shard — one on another island than shard 0, so that
    // the deferred BEGIN is seen to go there — unqualified statements included; naming
    // another shard inside it is refused and the transaction goes on.
    let far = (1..=3)
        .find(|n| port_of(*n) != port_of(0))
        .expect("a shard off shard 0's island");
    let other = if far == 1 { 2 } else { 1 };
    let (ins1, ins2) = (
        format!("insert into sh{far:04}.t values (1, 'a')"),
        format!("insert into sh{far:04}.t values (2, 'b')"),
    );
    let cross = format!("select 1 from sh{other:04}.t");
    let out = p.psql(
        PASSWORD,
        "app",
        &[
            "begin",
            &ins1,
            "select current_setting('port')",
            &cross,
            &ins2,
            "commit",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains(&format!("the transaction runs on sh{far:04}")),
        "{err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        port_of(far).to_string()
    );
    let count = format!("select count(*) from sh{far:04}.t where id < 3");
    assert_eq!(tc.psql(port_of(far), &count), "2");

    // The same refusal for a wrong password and an unknown user.
    for (pw, user) in [("wrong", "app"), (PASSWORD, "nobody")] {
        let out = p.psql(pw, user, &["select 1"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            err.contains(&format!(
                "password authentication failed for user \"{user}\""
            )),
            "{err}"
        );
    }

    // pgbench, 4 clients, simple and extended protocol, two shards' scripts, each a
    // transaction.
    let dir = tc.sandbox().dir();
    for n in [1, 2] {
        std::fs::write(
            dir.join(format!("s{n}.sql")),
            // BEGIN names no shard: the proxy sends it with the INSERT, to its shard, and
            // the unqualified SELECT stays there.
            format!("\\set id random(1000, 1000000000000)\nbegin;\ninsert into sh{n:04}.t values (:id, 'pgbench') on conflict do nothing;\nselect current_setting('port');\ncommit;\n"),
        )?;
    }
    for mode in ["simple", "extended", "prepared"] {
        let (s1, s2) = (dir.join("s1.sql"), dir.join("s2.sql"));
        let out = p.pgbench(&["-c", "4", "-j", "2", "-t", "50", "-M", mode], &[&s1, &s2]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{mode}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("number of transactions actually processed: 200/200"),
            "{mode}: {text}"
        );
    }
    let rows = |n: i64| {
        tc.psql(
            port_of(n),
            &format!("select count(*) from sh{n:04}.t where v = 'pgbench'"),
        )
        .parse::<i64>()
        .unwrap()
    };
    assert_eq!(rows(1) + rows(2), 600);

    // tokio-postgres prepares named statements: each prepared once, run in many
    // transactions on whichever pooled connection they get (two clients, so connections
    // are shared); a statement that fails to prepare gets the node's error and the session
    // goes on; a closed statement's name can be prepared again.
    rt.block_on(async {
        let conn =
            format!("host=127.0.0.1 port={port} user=app password={PASSWORD} dbname=postgres");
        let connect = || async {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
        };
        let (mut a, b) = (connect().await, connect().await);
        let insert = format!("insert into sh{far:04}.t values ($1, $2)");
        let count = format!("select count(*) from sh{far:04}.t where v = $1");
        let (ins_a, ins_b) = (
            a.prepare(&insert).await.unwrap(),
            b.prepare(&insert).await.unwrap(),
        );
        let (count_a, count_b) = (
            a.prepare(&count).await.unwrap(),
            b.prepare(&count).await.unwrap(),
        );
        let runs = (0..20i64).map(|i| {
            let (a, b, ins_a, ins_b) = (&a, &b, &ins_a, &ins_b);
            async move {
                a.execute(ins_a, &[&(5000 + i), &"tp"]).await.unwrap();
                b.execute(ins_b, &[&(6000 + i), &"tp"]).await.unwrap();
            }
        });
        futures::future::join_all(runs).await;
        let n: i64 = b.query_one(&count_b, &[&"tp"]).await.unwrap().get(0);
        assert_eq!(n, 40);
        let tx = a.transaction().await.unwrap();
        tx.execute(&ins_a, &[&7000i64, &"tp"]).await.unwrap();
        let n: i64 = tx.query_one(&count_a, &[&"tp"]).await.unwrap().get(0);
        assert_eq!(n, 41);
        tx.rollback().await.unwrap();
        let e = a
            .prepare("select * from sh0001.no_such_table")
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE),
            "{e:?}"
        );
        drop(count_a);
        let n: i64 = a.query_one(&count, &[&"tp"]).await.unwrap().get(0);
        assert_eq!(n, 40);

        // A cancel request reaches the node connection the statement runs on.
        let token = b.cancel_token();
        let started = std::time::Instant::now();
        let sleeper = b.simple_query("select pg_sleep(30) from sh0002.t limit 1");
        let cancel = async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        };
        let (slept, ()) = tokio::join!(sleeper, cancel);
        let e = slept.unwrap_err();
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
            "{e:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // The session goes on.
        let n: i64 = b.query_one(&count_b, &[&"tp"]).await.unwrap().get(0);
        assert_eq!(n, 40);
    });

    // Session settings in transaction pooling: kept for the session, replayed on each
    // transaction's connection and reset before it goes back (no other client sees them);
    // state that cannot be kept is refused, naming the fix.
    let (out, err) = p.with_errors(&[
        "set statement_timeout = '50ms'",
        "select pg_sleep(1) from sh0001.t limit 1",
        "show statement_timeout",
        "reset statement_timeout",
        "select 'after'",
    ]);
    assert!(err.contains("57014"), "{err}");
    assert_eq!(out, "50ms\nafter");
    let shows: Vec<String> = (0..6).map(|_| p.ok(&["show statement_timeout"])).collect();
    assert!(shows.iter().all(|s| s == "0"), "{shows:?}");
    // A SET committed inside a transaction changed its connection: reset before another
    // session uses it (the pool hands out the newest idle connection first).
    p.ok(&[
        "begin",
        "select 1 from sh0001.t limit 1",
        "set statement_timeout = '77ms'",
        "commit",
    ]);
    let on_1 = |sql: &str| p.ok(&["set atoll.shard = 1", sql]);
    let shows: Vec<String> = (0..4).map(|_| on_1("show statement_timeout")).collect();
    assert!(shows.iter().all(|s| s == "0"), "{shows:?}");
    // A transaction that does not commit takes its changes with it, as in PostgreSQL:
    // rolled back, or failed (then ended by COMMIT, which PostgreSQL answers ROLLBACK).
    let (out, err) = p.with_errors(&[
        "set statement_timeout = '5s'",
        "begin",
        "set statement_timeout = '66ms'",
        "rollback",
        "show statement_timeout",
        "begin",
        "set statement_timeout = '67ms'",
        "select 1 / 0",
        "commit",
        "show statement_timeout",
        "begin",
        "set statement_timeout = '68ms'",
        "commit",
        "show statement_timeout",
        "begin",
        "set statement_timeout = '69ms'",
        "/* a comment first */ rollback",
        "show statement_timeout",
    ]);
    assert!(err.contains("22012"), "{err}");
    assert_eq!(out, "5s\n5s\n68ms\n68ms");
    // Sessions with the same settings share connections as they are; one with other
    // settings gets exactly its own.
    let with = |set: &str| {
        p.ok(&[
            set,
            "set atoll.shard = 1",
            "show work_mem",
            "show statement_timeout",
        ])
    };
    for _ in 0..3 {
        assert_eq!(with("set work_mem = '5MB'"), "5MB\n0");
        assert_eq!(with("set statement_timeout = '9s'"), "4MB\n9s");
    }
    let (out, err) = p.with_errors(&["listen jobs", "select 'on'"]);
    assert!(
        err.contains("0A000") && err.contains("--pool-mode session"),
        "{err}"
    );
    assert_eq!(out, "on");
    let sp = proxy_kit::start(&tc, &["--pool-mode", "session"])?;
    let out = sp.psql(
        PASSWORD,
        "app",
        &[
            "select pg_backend_pid() = pg_backend_pid() from sh0001.t limit 1",
            "listen jobs",
            "prepare q as select 40 + 2",
            "execute q",
            "select 1 from sh0002.t",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("session (session pooling) runs on sh0001"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t\n42");
    assert_eq!(sp.server.terminate()?, Some(0));

    // The admin database: the proxy's own views; anything else refused.
    let admin = |sql: &str| p.psql_db(PASSWORD, "app", "atoll", &[sql]);
    let out = admin("show atoll.shards");
    let shards = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(shards.lines().count(), 4, "{shards}");
    assert!(
        shards.contains(&format!(
            "3|sh0003|{}|",
            snap.active_island(ShardNo::new(3).unwrap()).unwrap()
        )),
        "{shards}"
    );
    let out = admin("SHOW atoll.pools;");
    let pools = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(pools.lines().all(|l| l.ends_with("|8")), "{pools}");
    // /metrics: transactions by shard, the refusals and the node errors by SQLSTATE.
    let metrics = p.metrics();
    for series in [
        "atoll_proxy_clients 0",
        "atoll_proxy_errors_total{sqlstate=\"0A000\"}",
        "atoll_proxy_errors_total{sqlstate=\"42P01\"} 1",
        "atoll_proxy_errors_total{sqlstate=\"57014\"} 2",
        "atoll_proxy_transactions_total{shard=\"1\"}",
        "atoll_proxy_server_connections{node=",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    let out = admin("select 1");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("42601") && err.contains("SHOW atoll.pools"),
        "{err}"
    );

    // `atoll proxy status`: the same state, from /status, as JSON and as lines.
    let atoll = tc.cli(env!("CARGO_BIN_EXE_atoll"));
    let out = atoll.run(&["--json", "proxy", "status", "--metrics", &p.metrics]);
    let v = atoll_testkit::cli::json(&out);
    assert_eq!(v["pool_mode"], "transaction", "{v}");
    assert_eq!(v["database"], "postgres", "{v}");
    assert_eq!(v["islands"].as_array().map(Vec::len), Some(2), "{v}");
    let shards: u64 = v["islands"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["shards"].as_u64())
        .sum();
    assert_eq!(shards, 4, "{v}");
    assert!(
        v["pools"][0]["limit"] == 8 && v["holds"]["expired"] == 0,
        "{v}"
    );
    let out = atoll.run(&["proxy", "status", "--metrics", &p.metrics]);
    atoll_testkit::cli::ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("transaction pooling") && text.contains("limit    8"),
        "{text}"
    );
    // Nothing there: exit 1, one line naming the address.
    let out = atoll.run(&["proxy", "status", "--metrics", "127.0.0.1:1"]);
    let err = atoll_testkit::cli::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("atoll proxy at 127.0.0.1:1") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(p.server.terminate()?, Some(0));
    Ok(())
}
