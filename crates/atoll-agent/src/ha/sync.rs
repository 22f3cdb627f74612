//! Synchronous mode on the leader: `synchronous_standby_names = 'ANY 1 (…)'` over the
//! replicas that stream, with `synchronous_commit = on`, and the same set in etcd for the
//! election. The etcd set must always hold every standby PostgreSQL may count on (a
//! candidate waits for all of them), so a change grows etcd first and shrinks it last.
//! With no replica streaming the last set is kept: commits wait rather than go
//! unprotected. In asynchronous mode the setting is cleared.

use super::etcd::Etcd;
use crate::config::AgentConfig;
use crate::error::AgentError;
use atoll_core::ha::{standby_name, standby_names_setting, IslandKeys, SyncSet};
use tokio_postgres::Client;

/// Brings the local master's settings and etcd's set in line with the streaming replicas.
pub async fn manage(
    cfg: &AgentConfig,
    synchronous: bool,
    etcd: &Etcd,
    keys: &IslandKeys,
) -> Result<(), AgentError> {
    let c = atoll_pg::connect_as(&cfg.node, "atoll-agent-ha", cfg.cluster.connect_timeout).await?;
    let current = setting(cfg, &c, "synchronous_standby_names").await?;
    if !synchronous {
        if !current.is_empty() {
            set(cfg, &c, "reset synchronous_standby_names").await?;
        }
        return Ok(());
    }
    if setting(cfg, &c, "synchronous_commit").await? != "on" {
        set(cfg, &c, "set synchronous_commit = 'on'").await?;
    }
    let streaming: Vec<String> = c
        .query(
            "select application_name from pg_stat_replication where state = 'streaming'",
            &[],
        )
        .await
        .map_err(|e| AgentError::query(&cfg.node, e))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let peers = cfg.island_peers();
    let mut want: Vec<String> = peers
        .iter()
        .map(|n| n.addr())
        .filter(|a| streaming.contains(&standby_name(a)))
        .collect();
    let recorded = read_set(etcd, keys).await;
    if want.is_empty() {
        // Keep the last set (or all peers): commits wait for a standby to come back.
        want = match &recorded {
            Some(s) if s.master == cfg.node.addr() && !s.standbys.is_empty() => s.standbys.clone(),
            _ => peers.iter().map(|n| n.addr()).collect(),
        };
    }
    want.sort();
    let names: Vec<String> = want.iter().map(|a| standby_name(a)).collect();
    let desired = standby_names_setting(&names);
    let etcd_set = recorded
        .filter(|s| s.master == cfg.node.addr())
        .map(|s| s.standbys);
    if etcd_set.as_ref() == Some(&want) && current == desired {
        return Ok(());
    }
    let mut union = etcd_set.unwrap_or_default();
    union.extend(want.iter().cloned());
    union.sort();
    union.dedup();
    write_set(etcd, keys, &cfg.node.addr(), union).await?;
    if current != desired {
        let sql = format!(
            "set synchronous_standby_names = {}",
            atoll_core::quote::literal(&desired)
        );
        set(cfg, &c, &sql).await?;
        tracing::info!(setting = %desired, "synchronous standbys");
        // The reload reaches the walsenders asynchronously: let it land before etcd stops
        // naming a standby the server may still count on.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    write_set(etcd, keys, &cfg.node.addr(), want).await
}

async fn setting(cfg: &AgentConfig, c: &Client, name: &str) -> Result<String, AgentError> {
    Ok(c.query_one("select current_setting($1)", &[&name])
        .await
        .map_err(|e| AgentError::query(&cfg.node, e))?
        .get(0))
}

/// `alter system <change>` and a reload.
async fn set(cfg: &AgentConfig, c: &Client, change: &str) -> Result<(), AgentError> {
    // Two statements: ALTER SYSTEM refuses to run in the implicit transaction of a batch.
    for sql in [
        format!("alter system {change}"),
        "select pg_reload_conf()".into(),
    ] {
        c.batch_execute(&sql)
            .await
            .map_err(|e| AgentError::query(&cfg.node, e))?;
    }
    Ok(())
}

/// The recorded set, if any (an unreadable one counts as none).
pub async fn read_set(etcd: &Etcd, keys: &IslandKeys) -> Option<SyncSet> {
    let (e, _) = etcd.get(&keys.sync()).await.ok()?;
    serde_json::from_str(&e?.value).ok()
}

async fn write_set(
    etcd: &Etcd,
    keys: &IslandKeys,
    master: &str,
    standbys: Vec<String>,
) -> Result<(), AgentError> {
    let s = SyncSet {
        master: master.to_string(),
        standbys,
    };
    let text = serde_json::to_string(&s).map_err(|e| AgentError::Unexpected(e.to_string()))?;
    etcd.put(&keys.sync(), text, None)
        .await
        .map_err(|e| AgentError::Unexpected(e.to_string()))
}
