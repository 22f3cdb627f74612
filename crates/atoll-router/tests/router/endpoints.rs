//! Shard endpoints with credential aliases on a real sandbox: records written to
//! `atoll.shard_endpoints` on the coordination island, read back validated, turned into a
//! cluster config through a file keychain and used for discovery (directly, and by
//! atoll-client given `[endpoints]`); a malformed record is an
//! error naming it; an IAM kind is refused as not available in this build.

use anyhow::Result;
use atoll_core::IslandId;
use atoll_pg::catalog::shard_endpoints::{self, AuthKind, EndpointRow};
use atoll_pg::endpoints::{cluster_config, FileKeychain};
use atoll_testkit::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_resolve_through_the_keychain() -> Result<()> {
    let cluster = TestCluster::setup(2, 0).start().await?;
    let config = cluster.config().clone();
    let coord = atoll_pg::coordination::coordination_island(&config).unwrap();
    let client = cluster.master(coord).await?;
    let node = config.islands[0].nodes[0].clone();
    let row = |island: u16, kind: &str, alias: Option<&str>| {
        let n = &config.islands[island as usize].nodes[0];
        EndpointRow {
            island: island as i32,
            host: n.host.clone(),
            port: n.port as i32,
            user: Some(n.user.clone()),
            database: Some(n.database.clone()),
            auth_kind: kind.into(),
            credential_alias: alias.map(str::to_string),
        }
    };
    shard_endpoints::upsert(
        &client,
        &node,
        &[
            row(0, "none", None),
            row(1, "password", Some("dev/island1")),
        ],
    )
    .await?;
    let endpoints = shard_endpoints::read(&client, &node).await?;
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints[1].auth_kind, AuthKind::Password);

    let keychain = FileKeychain::parse(
        "[aliases]\n\"dev/island1\" = \"env:ATOLL_ROUTER_TEST_PW\"\n",
        "test keychain",
    )?;
    let built = cluster_config(&config, &endpoints, &keychain)?;
    assert_eq!(built.islands.len(), 2);
    assert_eq!(
        built.islands[1].nodes[0]
            .password
            .as_ref()
            .map(|p| p.to_string())
            .as_deref(),
        Some("env:ATOLL_ROUTER_TEST_PW")
    );
    assert!(!format!("{built:?}").contains("secret-value"));
    // The built config reaches every island (the sandbox trusts loopback, so the
    // password is resolved but not asked for).
    std::env::set_var("ATOLL_ROUTER_TEST_PW", "secret-value");
    let snap = atoll_testkit::discover(&built).await;
    for i in [0, 1] {
        assert!(
            snap.island(IslandId(i)).and_then(|x| x.master()).is_some(),
            "island {i}: {:?}",
            snap.problems
        );
    }

    // atoll-client (and so the router) with `[endpoints]` and only the coordination
    // island in its config reaches both islands.
    let kc_path = cluster.sandbox().dir().join("keychain.toml");
    std::fs::write(
        &kc_path,
        "[aliases]\n\"dev/island1\" = \"env:ATOLL_ROUTER_TEST_PW\"\n",
    )?;
    let n0 = &config.islands[0].nodes[0];
    let text = format!(
        "[cluster]\nname = \"{}\"\n[[island]]\nid = 0\nnodes = [{{ host = \"{}\", port = {}, user = \"{}\", database = \"{}\" }}]\n[endpoints]\nkeychain = \"{}\"\n",
        config.name,
        n0.host,
        n0.port,
        n0.user,
        n0.database,
        kc_path.display()
    );
    let only_coord = atoll_core::Config::parse(&text, atoll_core::ConfigSource::Inline)?;
    let app =
        atoll_client::Cluster::connect(only_coord, atoll_client::ClusterOptions::default()).await?;
    let snap = app.snapshot();
    for i in [0, 1] {
        assert!(
            snap.island(IslandId(i)).and_then(|x| x.master()).is_some(),
            "island {i} through the client: {:?}",
            snap.problems
        );
    }
    drop(app);

    // A malformed record is an error naming it, not skipped.
    shard_endpoints::upsert(
        &client,
        &node,
        &[EndpointRow {
            host: "10.9.9.9".into(),
            ..row(1, "kerberos", None)
        }],
    )
    .await?;
    let err = shard_endpoints::read(&client, &node)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("island 1 node 10.9.9.9") && err.contains("kerberos"),
        "{err}"
    );
    // An IAM kind parses but has no backend here.
    shard_endpoints::upsert(
        &client,
        &node,
        &[EndpointRow {
            host: "10.9.9.9".into(),
            ..row(1, "gcp-iam", Some("sa-router"))
        }],
    )
    .await?;
    let endpoints = shard_endpoints::read(&client, &node).await?;
    let err = cluster_config(&config, &endpoints, &keychain)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gcp-iam is not available in this build"),
        "{err}"
    );
    Ok(())
}
