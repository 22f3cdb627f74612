//! Setup shared by the atoll-client integration tests: a cluster (atoll-testkit) whose
//! shards have an `items` table, client options, and the hand-made cluster changes (replay
//! pause, move, failover) the tests then assert about.

#![allow(dead_code)]

use anyhow::{anyhow, ensure, Result};
use atoll_client::{Cluster, ClusterOptions, Id, IdNode, ShardNo};
use atoll_core::{Config, IslandId, NodeConfig, Snapshot};
use atoll_testkit::{TestCluster, TestSandbox};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SHARDS: i64 = 8;

pub use atoll_testkit::shard;

/// 2 islands x (master + replica), shards 0..=SHARDS active, each with `items`.
pub async fn prepare() -> Result<TestCluster> {
    let tc = TestCluster::setup(2, 1).shards(0..=SHARDS).start().await?;
    tc.on_each_shard(&atoll_testkit::shards(0..=SHARDS), |sc| {
        format!("create table {sc}.items (id bigint primary key, name text not null)")
    })
    .await?;
    Ok(tc)
}

pub fn options(window_ms: u64) -> ClusterOptions {
    ClusterOptions {
        refresh_period: Duration::from_millis(300),
        shard_absent_window: Duration::from_millis(window_ms),
        id_node: IdNode::Fixed(7),
        ..Default::default()
    }
}

/// Which island's master holds a row with this ID, looked up directly on every master.
pub async fn island_holding(config: &Config, cluster: &Cluster, id: Id) -> Result<Vec<IslandId>> {
    let snapshot = cluster.snapshot();
    let mut out = Vec::new();
    for island in &config.islands {
        let node = atoll_pg::master_node(config, &snapshot, island.id)?;
        let c = atoll_pg::connect(&node).await?;
        let sql = format!(
            "select count(*) from pg_namespace where nspname = '{0}'",
            id.shard().schema()
        );
        let has_schema: i64 = c.query_one(&sql, &[]).await?.get(0);
        if has_schema == 0 {
            continue;
        }
        let sql = format!(
            "select count(*) from {}.items where id = $1",
            id.shard().schema()
        );
        let n: i64 = c.query_one(&sql, &[&id.get()]).await?.get(0);
        if n > 0 {
            out.push(island.id);
        }
    }
    Ok(out)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub async fn set_active(config: &Config, cluster: &Cluster, n: i64, active: bool) -> Result<()> {
    cluster.refresh().await;
    atoll_pg::shard_state::set_active(config, &cluster.snapshot(), shard(n), None, active).await?;
    Ok(())
}

/// Pauses WAL replay on the first replica of `island` and waits until it is paused; the
/// returned connection resumes it (`select pg_wal_replay_resume()`).
pub async fn pause_replay(
    config: &Config,
    snapshot: &Snapshot,
    island: IslandId,
) -> Result<tokio_postgres::Client> {
    let rc = connect_replica(config, snapshot, island).await?;
    rc.batch_execute("select pg_wal_replay_pause()").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state: String = rc
            .query_one("select pg_get_wal_replay_pause_state()", &[])
            .await?
            .get(0);
        if state == "paused" {
            break;
        }
        ensure!(Instant::now() < deadline, "replay did not pause");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(rc)
}

/// Moves shard `no` from island `from` to `to` the way a move does, by hand: copy the
/// schema, its rows and sequence, deactivate at the source, activate at the destination,
/// drop the source. Returns the destination master and how many rows were copied.
pub async fn move_by_hand(
    config: &Config,
    cluster: &Cluster,
    no: ShardNo,
    from: IslandId,
    to: IslandId,
) -> Result<(NodeConfig, usize)> {
    let n = no.get();
    let snap = cluster.snapshot();
    let src = atoll_pg::connect(&atoll_pg::master_node(config, &snap, from)?).await?;
    let dst_node = atoll_pg::master_node(config, &snap, to)?;
    let dst = atoll_pg::connect(&dst_node).await?;
    let schema = no.schema();
    dst.batch_execute(&atoll_pg::allocate::shard_ddl(no, config.env_digit))
        .await?;
    dst.batch_execute(&format!(
        "create table {schema}.items (id bigint primary key, name text not null)"
    ))
    .await?;
    let rows = src
        .query(&format!("select id, name from {schema}.items"), &[])
        .await?;
    let copied = rows.len();
    for r in &rows {
        let (id, name): (i64, String) = (r.get(0), r.get(1));
        dst.execute(
            &format!("insert into {schema}.items values ($1, $2)"),
            &[&id, &name],
        )
        .await?;
    }
    // Keep the moved sequence ahead of the IDs already drawn.
    let last: i64 = src
        .query_one(&format!("select last_value from {schema}.id_seq"), &[])
        .await?
        .get(0);
    dst.execute(&format!("select setval('{schema}.id_seq', $1)"), &[&last])
        .await?;
    cluster.refresh().await;
    atoll_pg::shard_state::set_active(config, &cluster.snapshot(), no, Some(from), false).await?;
    cluster.refresh().await;
    atoll_pg::shard_state::set_active(config, &cluster.snapshot(), no, Some(to), true).await?;
    src.batch_execute(&format!(
        "drop schema {schema} cascade; delete from atoll.shards where shard = {n}"
    ))
    .await?;
    Ok((dst_node, copied))
}

/// Stops the master (node 0) of `island`, promotes node 1, and rewrites the config file
/// without the old master's line (`old_port`), atomically.
pub async fn fail_over_and_repoint(sb: Arc<TestSandbox>, island: u16, old_port: u16) -> Result<()> {
    let sb2 = sb.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        sb2.stop_node(island, 0)?;
        sb2.promote_node(island, 1)?;
        Ok(())
    })
    .await??;
    // Repoint the config: the promoted node only.
    let path = sb.config_path();
    let text = std::fs::read_to_string(&path)?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(&format!("port = {old_port}")))
        .collect();
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, kept.join("\n") + "\n")?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// Pushes `island`'s WAL past `lsn` (segment switches on its master) and waits until its
/// first replica has replayed everything the master has now (so it has every table and
/// row, and a position `lsn` taken on another island would wrongly look replayed there).
pub async fn advance_wal_past(
    config: &Config,
    snapshot: &Snapshot,
    island: IslandId,
    lsn: atoll_client::Lsn,
) -> Result<()> {
    let master = atoll_pg::connect(&atoll_pg::master_node(config, snapshot, island)?).await?;
    let target = lsn.to_string();
    for _ in 0..64 {
        let past: bool = master
            .query_one(
                "select pg_current_wal_insert_lsn() > $1::text::pg_lsn",
                &[&target],
            )
            .await?
            .get(0);
        if past {
            break;
        }
        // A transaction id is WAL, so each switch moves to a new 16 MB segment.
        master
            .batch_execute("select txid_current(); select pg_switch_wal();")
            .await?;
    }
    let now: String = master
        .query_one("select pg_current_wal_insert_lsn()::text", &[])
        .await?
        .get(0);
    let rc = connect_replica(config, snapshot, island).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done: bool = rc
            .query_one(
                "select pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&now],
            )
            .await?
            .get(0);
        if done {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "replica of island {island} did not replay past {lsn}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection to the first replica of `island`, as discovered.
async fn connect_replica(
    config: &Config,
    snapshot: &Snapshot,
    island: IslandId,
) -> Result<tokio_postgres::Client> {
    let replica_addr = snapshot
        .island(island)
        .and_then(|i| i.replicas().next())
        .map(|r| r.addr.clone())
        .ok_or_else(|| anyhow!("island {island} has no replica"))?;
    let replica = config
        .islands
        .iter()
        .flat_map(|i| i.nodes.iter())
        .find(|n| n.addr() == replica_addr)
        .ok_or_else(|| anyhow!("no config for {replica_addr}"))?;
    Ok(atoll_pg::connect(replica).await?)
}
