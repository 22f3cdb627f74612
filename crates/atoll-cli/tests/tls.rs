//! TLS to every node (issue 9): a `--tls` sandbox (self-signed CA, plain TCP refused by
//! pg_hba) with `sslmode = "verify-full"` in its atoll.toml. The CLI, the client's pools and
//! a move's subscription all connect over TLS; a wrong CA is refused before anything
//! changes; against a server without TLS, `require` fails and `prefer` falls back.

use atoll_client::{Cluster, ClusterOptions, Freshness};
use atoll_core::{IslandId, SslMode, TlsConfig};
use atoll_testkit::cli::{json, stderr, Cli};
use atoll_testkit::{write_self_signed_ca, TestCluster};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_atoll");

/// Whether the session of `c` runs over TLS (the server's own view, `pg_stat_ssl`).
async fn encrypted(c: &atoll_pg::tokio_postgres::Client) -> bool {
    c.query_one(
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Runs the CLI off the async worker threads.
async fn atoll(cli: &Cli, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let (cli, args, env) = (
        cli.clone(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli.run_with_env(&a, &e)
    })
    .await
    .unwrap()
}

/// A copy of the sandbox's config with `sslrootcert` pointing at `ca`.
fn config_with_ca(tc: &TestCluster, ca: &Path) -> PathBuf {
    let text = std::fs::read_to_string(tc.config_path()).unwrap();
    let good = tc.config().islands[0].nodes[0]
        .tls
        .root_cert
        .clone()
        .unwrap();
    assert!(text.contains(&*good.to_string_lossy()), "{text}");
    let path = tc.sandbox().dir().join("wrong-ca.toml");
    std::fs::write(
        &path,
        text.replace(&*good.to_string_lossy(), &ca.to_string_lossy()),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_client_and_moves_use_verified_tls() {
    tokio::time::timeout(Duration::from_secs(300), tls_cluster())
        .await
        .expect("the scenario finishes within 5 minutes");
}

async fn tls_cluster() {
    let t0 = Instant::now();
    let tc = TestCluster::setup(2, 0)
        .tls()
        .shards([1])
        .on_island(IslandId(0))
        .start()
        .await
        .unwrap();
    let node = &tc.config().islands[0].nodes[0];
    assert_eq!(node.tls.mode, SslMode::VerifyFull);
    tc.on_each_shard(&atoll_testkit::shards([1]), |sc| {
        format!("create table {sc}.t (id bigint primary key); insert into {sc}.t select generate_series(1, 500);")
    })
    .await
    .unwrap();
    eprintln!("tls cluster up in {:?}", t0.elapsed());

    // atoll-pg's own connections are encrypted.
    let c = tc.master(IslandId(0)).await.unwrap();
    assert!(encrypted(&c).await);
    islands_env_carries_tls(node).await;

    // The CLI.
    let cli = tc.cli(BIN);
    let status = json(&atoll(&cli, &["--json", "status"], &[]).await);
    assert!(status.to_string().contains("island"), "{status}");

    // The client's pools.
    let cluster = Cluster::connect(tc.config().clone(), ClusterOptions::default())
        .await
        .unwrap();
    let rows = cluster
        .shard(atoll_testkit::shard(1))
        .query(
            "select count(*)::bigint, (select ssl from pg_stat_ssl where pid = pg_backend_pid()) from sh0001.t",
            &[],
            Freshness::Master,
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 500);
    assert!(
        rows[0].get::<_, bool>(1),
        "the pool's connection is encrypted"
    );
    // The shard-notice listener connects to every master over TLS too (pg_hba allows no
    // other connection), and is encrypted.
    let listeners = "select count(*) filter (where s.ssl), count(*) from pg_stat_activity a
                      join pg_stat_ssl s using (pid) where a.application_name = 'atoll-client notices'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = c.query_one(listeners, &[]).await.unwrap();
        let (encrypted, all): (i64, i64) = (r.get(0), r.get(1));
        if all >= 1 {
            assert_eq!(
                encrypted, all,
                "the notice listener's connection is encrypted"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the notice listener never connected over TLS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    cluster.close().await;

    wrong_ca_is_refused(&tc, &cli).await;

    // A move: stopped once subscribed, the source's WAL sender for the subscription is an
    // encrypted connection (pg_hba allows no other), then resumed to the end.
    let out = atoll(
        &cli,
        &["move", "--shard", "1", "--to", "1"],
        &[("ATOLL_MOVE_STOP_AFTER", "subscribed")],
    )
    .await;
    assert!(
        stderr(&out).contains("stopped after step subscribed"),
        "{}",
        stderr(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let walsenders = loop {
        let rows = c
            .query(
                "select ssl from pg_stat_ssl join pg_stat_activity using (pid)
                  where backend_type = 'walsender'",
                &[],
            )
            .await
            .unwrap();
        if !rows.is_empty() || Instant::now() > deadline {
            break rows.iter().map(|r| r.get::<_, bool>(0)).collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!walsenders.is_empty(), "no WAL sender for the subscription");
    assert!(walsenders.iter().all(|ssl| *ssl), "{walsenders:?}");
    let report = json(&atoll(&cli, &["--json", "move", "--resume", "--shard", "1"], &[]).await);
    assert_eq!(report["to"], 1, "{report}");
    let on_dest = tc.master(IslandId(1)).await.unwrap();
    let n: i64 = on_dest
        .query_one("select count(*) from sh0001.t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
    eprintln!("tls scenario done in {:?}", t0.elapsed());
}

/// `ATOLL_ISLANDS` with `?sslmode=verify-full&sslrootcert=` connects encrypted; without
/// them (plain text) the hostssl-only server refuses.
async fn islands_env_carries_tls(node: &atoll_core::NodeConfig) {
    assert!(node.password.is_none(), "the sandbox trusts loopback");
    let ca = node.tls.root_cert.clone().unwrap();
    let base = format!(
        "0={}@{}:{}/{}",
        node.user, node.host, node.port, node.database
    );
    let tls = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    let from_env = atoll_core::Config::from_islands_env(&tls).unwrap();
    let c = atoll_pg::connect(&from_env.islands[0].nodes[0])
        .await
        .unwrap();
    assert!(encrypted(&c).await);
    let plain = atoll_core::Config::from_islands_env(&base).unwrap();
    let e = atoll_pg::connect(&plain.islands[0].nodes[0])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no encryption"), "{e}");
}

/// Another self-signed CA as `sslrootcert`: `status` and `move` fail with one line naming
/// the node and the certificate problem, and the move changed nothing.
async fn wrong_ca_is_refused(tc: &TestCluster, cli: &Cli) {
    let ca = tc.sandbox().dir().join("other-ca.crt");
    write_self_signed_ca(&ca, "some other CA").unwrap();
    let wrong = Cli::new(BIN, config_with_ca(tc, &ca));
    for args in [&["status"][..], &["move", "--shard", "1", "--to", "1"][..]] {
        let out = atoll(&wrong, args, &[]).await;
        assert!(!out.status.success(), "{args:?} succeeded with a wrong CA");
        let err = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        let line = err
            .lines()
            .find(|l| l.contains("UnknownIssuer"))
            .unwrap_or_else(|| panic!("{args:?}: no certificate problem named: {err}"));
        eprintln!("{args:?} with a wrong CA: {line}");
        assert!(
            line.contains("127.0.0.1:")
                && line.contains("TLS handshake failed")
                && line.contains(&*ca.to_string_lossy()),
            "{line}"
        );
    }
    // Nothing changed: no move recorded, the shard still on island 0 only.
    let list = json(&atoll(cli, &["--json", "move", "--list"], &[]).await);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    let snap = tc.discover().await;
    assert_eq!(
        snap.active_island(atoll_testkit::shard(1)).unwrap(),
        IslandId(0)
    );
    let dest = tc.master(IslandId(1)).await.unwrap();
    let subs: i64 = dest
        .query_one("select count(*) from pg_subscription", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(subs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_fails_and_prefer_falls_back_without_server_tls() {
    let tc = TestCluster::setup(1, 0).start().await.unwrap();
    let mut node = tc.config().islands[0].nodes[0].clone();
    node.tls = TlsConfig {
        mode: SslMode::Require,
        root_cert: None,
    };
    let Err(err) = atoll_pg::connect(&node).await else {
        panic!("require connected to a server without TLS");
    };
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("node {node}: ")) && msg.contains("does not support TLS"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    node.tls.mode = SslMode::Prefer;
    let c = atoll_pg::connect(&node).await.unwrap();
    assert!(
        !encrypted(&c).await,
        "prefer fell back to a plain connection"
    );
}
