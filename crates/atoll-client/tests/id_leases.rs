//! Leased ID node ids on a real sandbox (one island, no replica): concurrent clusters get
//! distinct node ids and make unique IDs; a released node id rests for the reuse window;
//! an expired lease is taken over, its old holder notices at renewal and refuses IDs until
//! it leases again; a lease that cannot be renewed (master down) stops IDs at its deadline.
//! Time passing is simulated by setting `expires_at` in the past (relative to the server's
//! `now()`, so the test's own speed does not matter), never by sleeping.

use anyhow::{bail, ensure, Context, Result};
use atoll_client::{ClientError, Cluster, ClusterOptions, Id, IdGenerator, IdNode, LeaseOptions};
use atoll_core::{Config, NodeConfig};
use atoll_pg::catalog::id_leases::{self, LeaseRequest};
use atoll_testkit::{shard, TestCluster, TestSandbox};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

const CLUSTERS: usize = 20;

fn leased(opts: LeaseOptions) -> ClusterOptions {
    ClusterOptions {
        refresh_period: Duration::from_millis(300),
        id_node: IdNode::Lease(opts),
        ..Default::default()
    }
}

/// Short enough that the loss and the unrenewable deadline show within seconds, long enough
/// that a lease statement's bound (`min(renew_every, ttl/4)` = 1 s) holds on a slow machine.
fn short_lease(nodes: std::ops::Range<u16>) -> LeaseOptions {
    LeaseOptions {
        ttl: Duration::from_secs(8),
        renew_every: Duration::from_secs(1),
        nodes,
        ..Default::default()
    }
}

/// The lease island's master (the only island here) and a connection to it.
async fn master(config: &Config) -> Result<(NodeConfig, Client)> {
    let snapshot = atoll_pg::Discoverer::new(config.clone(), Default::default())
        .discover()
        .await;
    let node = atoll_pg::master_node(config, &snapshot, config.islands[0].id)?;
    let client = atoll_pg::connect(&node).await?;
    Ok((node, client))
}

/// Makes a lease have ended `secs` before the server's now, as if that much time had
/// passed: an absolute time, so how long the test took so far does not matter.
async fn ended_ago(c: &Client, node: u16, secs: i32) -> Result<()> {
    c.execute(
        "update atoll.id_leases set expires_at = now() - make_interval(secs => $2) where node = $1",
        &[&i32::from(node), &f64::from(secs)],
    )
    .await?;
    Ok(())
}

fn request<'a>(token: &'a str, nodes: std::ops::Range<u16>) -> LeaseRequest<'a> {
    LeaseRequest {
        token,
        holder: "test",
        ttl: Duration::from_secs(3600),
        reuse_after: LeaseOptions::default().reuse_after,
        nodes,
    }
}

/// Another process takes `node` over as if its lease had expired an hour ago, in one
/// transaction: a renewal by the holder running meanwhile waits on the row lock and then
/// finds the thief's token, instead of moving the expiry forward between the two steps.
async fn steal(c: &Client, node_cfg: &NodeConfig, node: u16, thief: &str) -> Result<()> {
    c.batch_execute("begin").await?;
    let taken = async {
        ended_ago(c, node, 3600).await?;
        Ok::<_, anyhow::Error>(
            id_leases::acquire(c, node_cfg, &request(thief, node..node + 1)).await?,
        )
    }
    .await;
    match taken {
        Ok(Some(n)) if n == node => Ok(c.batch_execute("commit").await?),
        other => {
            c.batch_execute("rollback").await?;
            bail!("taking node {node} over: {other:?}")
        }
    }
}

/// Waits (bounded, generously) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        ensure!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// 20 clusters leasing at once get 20 distinct node ids, and their IDs (same shards, same
/// second) are all unique. Closing them releases their leases.
async fn concurrent_clusters(config: &Config, c: &Client) -> Result<()> {
    let connecting =
        (0..CLUSTERS).map(|_| Cluster::connect(config.clone(), leased(LeaseOptions::default())));
    let clusters = futures::future::try_join_all(connecting).await?;
    let nodes: Vec<u16> = clusters
        .iter()
        .map(|cl| cl.id_lease().and_then(|s| s.node).context("no lease"))
        .collect::<Result<_>>()?;
    let distinct: HashSet<u16> = nodes.iter().copied().collect();
    ensure!(
        distinct.len() == CLUSTERS,
        "node ids not distinct: {nodes:?}"
    );
    // Nobody else leases here, so they are the lowest ones.
    ensure!(distinct == (0..CLUSTERS as u16).collect(), "{nodes:?}");

    let mut tasks = Vec::new();
    for cl in &clusters {
        let cl = cl.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..600 {
                ids.push(cl.new_id(shard(i % 3 + 1)).await?);
            }
            Ok::<_, ClientError>(ids)
        }));
    }
    let mut seen = HashSet::new();
    for (t, node) in tasks.into_iter().zip(&nodes) {
        for id in t.await?? {
            ensure!(IdGenerator::parts(id).map(|p| p.node) == Some(*node));
            ensure!(seen.insert(id), "duplicate ID {id}");
        }
    }
    ensure!(seen.len() == CLUSTERS * 600);

    // All but the last are closed (awaited); the last is just dropped, which releases its
    // lease in the background.
    let mut clusters = clusters;
    let dropped = clusters.pop().context("no clusters")?;
    // Two clones closing at once: each returns only once the lease is released.
    let first = &clusters[0];
    let first_node = nodes[0];
    let node = master(config).await?.0;
    let (x, y) = (first.clone(), first.clone());
    let (ra, rb) = tokio::join!(
        async {
            x.close().await;
            id_leases::list(c, &node).await
        },
        async {
            y.close().await;
            id_leases::list(c, &node).await
        }
    );
    for rows in [ra?, rb?] {
        ensure!(
            rows.iter().any(|r| r.node == first_node && r.released),
            "close() returned before node {first_node} was released: {rows:?}"
        );
    }
    for cl in &clusters {
        cl.close().await;
        let err = cl.try_new_id(shard(1)).unwrap_err();
        ensure!(matches!(err, ClientError::NoIdLease { .. }), "{err}");
    }
    drop(dropped);
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = id_leases::list(c, &node).await?;
        if rows.iter().all(|r| r.released) || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(rows.len() == CLUSTERS, "{rows:?}");
    ensure!(
        rows.iter().all(|r| r.released && r.expires_in_s <= 0.0),
        "{rows:?}"
    );
    ensure!(rows
        .iter()
        .all(|r| r.holder.as_deref().is_some_and(|h| h.contains(" pid "))));
    Ok(())
}

/// A released node id is not handed out again until `reuse_after` has passed.
async fn released_ids_rest(node: &NodeConfig, c: &Client) -> Result<()> {
    let rest = LeaseOptions::default().reuse_after.as_secs() as i32;
    // Asked with an hour's rest, so however long the test took since the releases, the
    // released node ids are still resting.
    let hour = LeaseRequest {
        reuse_after: Duration::from_secs(3600),
        ..request("r1", 0..1000)
    };
    let next = id_leases::acquire(c, node, &hour).await?;
    ensure!(
        next == Some(CLUSTERS as u16),
        "released ids reused at once: {next:?}"
    );
    ended_ago(c, 1, rest - 5).await?; // ended 5 s short of the window: still resting
    ended_ago(c, 0, rest + 1).await?; // ended longer ago than the window: free
    let next = id_leases::acquire(c, node, &request("r2", 0..1000)).await?;
    ensure!(next == Some(0), "{next:?}");
    let next = id_leases::acquire(c, node, &request("r3", 0..1000)).await?;
    ensure!(next == Some(CLUSTERS as u16 + 1), "{next:?}");
    for (n, t) in [
        (CLUSTERS as u16, "r1"),
        (0, "r2"),
        (CLUSTERS as u16 + 1, "r3"),
    ] {
        ensure!(id_leases::release(c, node, n, t).await?);
    }
    Ok(())
}

/// Renew and release answer for the token that holds the lease only.
async fn takeover_statements(node: &NodeConfig, c: &Client) -> Result<()> {
    let ttl = Duration::from_secs(60);
    ensure!(id_leases::acquire(c, node, &request("x", 600..601)).await? == Some(600));
    ensure!(id_leases::acquire(c, node, &request("y", 600..601))
        .await?
        .is_none());
    ensure!(id_leases::renew(c, node, 600, "x", ttl).await?);
    ended_ago(c, 600, 3600).await?;
    ensure!(id_leases::acquire(c, node, &request("y", 600..601)).await? == Some(600));
    ensure!(
        !id_leases::renew(c, node, 600, "x", ttl).await?,
        "old holder still renews"
    );
    ensure!(!id_leases::release(c, node, 600, "x").await?);
    ensure!(id_leases::renew(c, node, 600, "y", ttl).await?);
    ensure!(id_leases::release(c, node, 600, "y").await?);
    ensure!(
        !id_leases::renew(c, node, 600, "y", ttl).await?,
        "renewed after release"
    );
    Ok(())
}

/// A cluster whose expired lease was taken over notices at its next renewal, refuses IDs
/// while no node id is free, and resumes once it leases again.
async fn cluster_loses_and_recovers(
    config: &Config,
    node: &NodeConfig,
    c: &Client,
) -> Result<Cluster> {
    let a = Cluster::connect(config.clone(), leased(short_lease(500..501))).await?;
    ensure!(a.id_lease().and_then(|s| s.node) == Some(500));
    let before: Vec<Id> = (0..200)
        .map(|i| a.try_new_id(shard(i % 2 + 1)))
        .collect::<Result<_, _>>()?;

    // The lease "expired an hour ago" and another process takes node 500.
    steal(c, node, 500, "thief").await?;
    // Its only node id is held by the thief: no lease, so IDs are refused, saying why.
    until("the old holder refuses IDs, naming the lost lease", || {
        matches!(
            a.try_new_id(shard(1)),
            Err(ClientError::NoIdLease { why })
                if why.contains("node id 500 was taken over") && why.contains("500..501")
        )
    })
    .await?;
    until("the status shows the loss", || {
        a.id_lease()
            .is_some_and(|s| s.node.is_none() && s.losses == 1)
    })
    .await?;

    // The thief is gone long enough: the old holder leases node 500 again and continues.
    ensure!(id_leases::release(c, node, 500, "thief").await?);
    ended_ago(c, 500, 3600).await?;
    until("a new lease", || {
        a.id_lease().and_then(|s| s.node) == Some(500)
    })
    .await?;
    ensure!(a.id_lease().is_some_and(|s| s.acquisitions == 2));
    let mut seen: HashSet<Id> = before.into_iter().collect();
    for i in 0..200 {
        ensure!(
            seen.insert(a.new_id(shard(i % 2 + 1)).await?),
            "duplicate after re-lease"
        );
    }
    Ok(a)
}

/// With its master down, the cluster cannot renew: IDs stop at the lease's deadline, and
/// resume (same node id, no new lease) once a renewal gets through.
async fn unrenewable_lease_stops_ids(sb: &TestSandbox, a: &Cluster) -> Result<()> {
    let island = sb.islands()[0].id;
    sb.stop_node(island, 0)?;
    until("IDs are refused", || {
        matches!(a.try_new_id(shard(1)), Err(ClientError::NoIdLease { .. }))
    })
    .await?;
    let err = a.try_new_id(shard(1)).unwrap_err().to_string();
    ensure!(err.contains("not renewed in time"), "{err}");
    sb.start_node(island, 0)?;
    until("IDs resume", || a.try_new_id(shard(1)).is_ok()).await?;
    let st = a.id_lease().context("no lease status")?;
    ensure!(
        st.node == Some(500) && st.acquisitions == 2 && st.losses == 1,
        "{st:?}"
    );
    a.close().await;
    Ok(())
}

#[test]
fn id_leases_end_to_end() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tc = TestCluster::new(1, 0).await?;
        let (sb, config) = (tc.sandbox(), tc.config().clone());
        let (node, c) = master(&config).await?;
        concurrent_clusters(&config, &c)
            .await
            .context("concurrent clusters")?;
        released_ids_rest(&node, &c)
            .await
            .context("released ids rest")?;
        takeover_statements(&node, &c)
            .await
            .context("takeover statements")?;
        let a = cluster_loses_and_recovers(&config, &node, &c)
            .await
            .context("loss and recovery")?;
        drop(c);
        unrenewable_lease_stops_ids(sb, &a)
            .await
            .context("unrenewable lease")?;
        Ok::<_, anyhow::Error>(())
    })?;
    drop(rt);
    Ok(())
}
