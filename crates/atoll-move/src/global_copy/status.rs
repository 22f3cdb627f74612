//! Each island's copy as it is: its record, its subscription and apply worker on the
//! copy's master, its slot and lag on shard 0's master, and what is wrong with it.

use super::{source_island, subscription, GlobalCopyError};
use crate::db::Db;
use atoll_core::{Config, IslandId, Snapshot};
use atoll_pg::catalog::global_copy::{self, CopyState};

/// Lag past which a copy is reported as lagging.
const LAG_BYTES: i64 = 64 << 20;
const LAG_MS: f64 = 10_000.0;

/// What is wrong with a copy, if anything.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "health", content = "why", rename_all = "snake_case")]
pub enum CopyHealth {
    /// Ready, subscribed, applying, within the lag bounds.
    Healthy,
    /// Other islands have a copy and this one has none (a new island, say).
    Missing,
    /// Its creation was interrupted (state `creating` or `copying`).
    Unfinished,
    /// Its subscription is missing or disabled, its apply worker not running, or its slot
    /// gone: it no longer follows shard 0.
    Broken(String),
    /// Behind by more than 64 MiB or 10 s.
    Lagging,
}

/// One island's copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopyStatus {
    /// The island.
    pub island: IslandId,
    /// How far its creation got; `None` without a copy.
    pub state: Option<CopyState>,
    /// The tables copied.
    pub tables: Vec<String>,
    /// Whether the subscription exists and is enabled.
    pub subscription_enabled: Option<bool>,
    /// Whether its apply worker runs.
    pub worker_running: bool,
    /// WAL of shard 0's master the copy has not confirmed, bytes.
    pub lag_bytes: Option<i64>,
    /// The walsender's replay lag for it, ms (none when idle and caught up).
    pub lag_ms: Option<f64>,
    /// The verdict.
    #[serde(flatten)]
    pub health: CopyHealth,
    /// The command that repairs it, when it needs one.
    pub repair: Option<String>,
}

/// Every island's copy but shard 0's island; empty when no island has one (the feature
/// is not in use). A copy island whose master cannot be reached is reported broken when
/// other islands show copies exist.
pub async fn status(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Vec<CopyStatus>, GlobalCopyError> {
    let source = source_island(snapshot)?;
    let src = Db::connect(config, snapshot, source).await?;
    let mut out = Vec::new();
    for island in config.islands.iter().map(|i| i.id).filter(|i| *i != source) {
        match Db::connect(config, snapshot, island).await {
            Ok(dst) => out.push(one(&src, &dst).await?),
            Err(e) => out.push(unreachable(island, &e)),
        }
    }
    if out.iter().all(|c| c.state.is_none()) {
        return Ok(Vec::new());
    }
    Ok(out)
}

/// A copy island whose master could not be reached: what is known of it.
fn unreachable(island: IslandId, e: &crate::MoveError) -> CopyStatus {
    CopyStatus {
        island,
        state: None,
        tables: Vec::new(),
        subscription_enabled: None,
        worker_running: false,
        lag_bytes: None,
        lag_ms: None,
        health: CopyHealth::Broken(format!("its master cannot be reached: {e}")),
        repair: None,
    }
}

async fn one(src: &Db, dst: &Db) -> Result<CopyStatus, GlobalCopyError> {
    let island = dst.island;
    let name = subscription(island);
    let row = global_copy::get(&dst.client, &dst.node).await?;
    let sub = dst
        .opt(
            "select s.subenabled, exists (select 1 from pg_stat_subscription w
                                          where w.subid = s.oid and w.pid is not null and w.relid is null)
             from pg_subscription s where s.subname = $1",
            &[&name],
        )
        .await?;
    let (enabled, worker) = match &sub {
        Some(r) => (Some(r.get::<_, bool>(0)), r.get::<_, bool>(1)),
        None => (None, false),
    };
    let slot = src
        .opt(
            "select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8,
                    (select (extract(epoch from replay_lag) * 1000)::float8
                     from pg_stat_replication where application_name = $1 limit 1)
             from pg_replication_slots where slot_name = $1",
            &[&name],
        )
        .await?;
    let (lag_bytes, lag_ms) = match &slot {
        Some(r) => (r.get::<_, Option<i64>>(0), r.get::<_, Option<f64>>(1)),
        None => (None, None),
    };
    let health = match (&row, enabled, worker, slot.is_some()) {
        (None, ..) => CopyHealth::Missing,
        (Some(r), ..) if r.state != CopyState::Ready => CopyHealth::Unfinished,
        (Some(r), ..) if r.source_island != src.island => CopyHealth::Broken(format!(
            "it follows island {}, but shard 0 is on island {} now",
            r.source_island, src.island
        )),
        (_, None, ..) => CopyHealth::Broken("its subscription is missing".into()),
        (_, Some(false), ..) => CopyHealth::Broken("its subscription is disabled".into()),
        (_, _, _, false) => {
            CopyHealth::Broken("its replication slot on shard 0's master is gone".into())
        }
        (_, _, false, _) => {
            CopyHealth::Broken("its apply worker is not running (see the server log)".into())
        }
        _ if lag_bytes.unwrap_or(0) > LAG_BYTES || lag_ms.unwrap_or(0.0) > LAG_MS => {
            CopyHealth::Lagging
        }
        _ => CopyHealth::Healthy,
    };
    let repair = (health != CopyHealth::Healthy).then(|| "atoll global replicate".to_string());
    Ok(CopyStatus {
        island,
        state: row.as_ref().map(|r| r.state),
        tables: row.map(|r| r.tables).unwrap_or_default(),
        subscription_enabled: enabled,
        worker_running: worker,
        lag_bytes,
        lag_ms,
        health,
        repair,
    })
}
