//! One attempt at running a statement on a shard: route (snapshot → island → node), take a
//! pooled connection, run, and on failure say what went wrong in terms of
//! [`crate::action::Fault`]. The retry loop around it lives in [`crate::shard`].

use crate::action::Fault;
use crate::cluster::{Shared, State};
use crate::error::{describe, ClientError};
use crate::timeline::Freshness;
use atoll_core::{IslandId, Lsn, ShardNo, SnapshotIsland};
use deadpool_postgres::{Object, PoolError, TimeoutType, Timeouts};
use rand::Rng;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a statement must go.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    Master,
    Read(Freshness<'a>),
}

/// A failed attempt, with what the retry policy needs to know.
pub(crate) struct Failed {
    pub fault: FaultKind,
    pub island: Option<IslandId>,
    pub node: Option<String>,
    pub msg: String,
}

pub(crate) enum FaultKind {
    Sql(String),
    ConnectFailed,
    ConnectionLost,
    ShardNotActive,
    NoMaster,
    PoolExhausted,
    Other,
}

impl Failed {
    pub(crate) fn fault(&self) -> Fault<'_> {
        match &self.fault {
            FaultKind::Sql(c) => Fault::Sql(c),
            FaultKind::ConnectFailed => Fault::ConnectFailed,
            FaultKind::ConnectionLost => Fault::ConnectionLost,
            FaultKind::ShardNotActive => Fault::ShardNotActive,
            FaultKind::NoMaster => Fault::NoMaster,
            FaultKind::PoolExhausted | FaultKind::Other => Fault::Other,
        }
    }

    pub(crate) fn into_error(self, shard: ShardNo, waited: Duration) -> ClientError {
        let node = self.node.unwrap_or_else(|| "?".into());
        match self.fault {
            FaultKind::ShardNotActive => ClientError::ShardAbsent {
                shard,
                waited,
                reason: self.msg,
            },
            FaultKind::NoMaster => ClientError::NoMaster {
                shard,
                island: self.island.unwrap_or(IslandId(0)),
                waited,
            },
            FaultKind::ConnectFailed | FaultKind::PoolExhausted => ClientError::Connect {
                shard,
                node,
                msg: self.msg,
            },
            FaultKind::Sql(code) => ClientError::Query {
                shard,
                node,
                code: Some(code),
                msg: self.msg,
                provably_not_run: true,
            },
            FaultKind::ConnectionLost | FaultKind::Other => ClientError::Query {
                shard,
                node,
                code: None,
                msg: self.msg,
                provably_not_run: false,
            },
        }
    }

    fn pg(e: &tokio_postgres::Error, island: IslandId, node: &str, sent: bool) -> Failed {
        let fault = match e.code() {
            Some(c) => FaultKind::Sql(c.code().to_string()),
            None if e.is_closed() || is_io(e) => {
                if sent {
                    FaultKind::ConnectionLost
                } else {
                    FaultKind::ConnectFailed
                }
            }
            None => FaultKind::Other,
        };
        Failed {
            fault,
            island: Some(island),
            node: Some(node.to_string()),
            msg: describe(e),
        }
    }

    fn pool(e: PoolError, island: IslandId, node: &str) -> Failed {
        let (fault, msg) = match &e {
            PoolError::Backend(pg) => (FaultKind::ConnectFailed, describe(pg)),
            // Every pooled connection is busy: the node is fine, and another node or a
            // retry would not help after waiting the whole wait timeout.
            PoolError::Timeout(TimeoutType::Wait) => (
                FaultKind::PoolExhausted,
                "no free pooled connection within the wait timeout (pool_max_size reached)".into(),
            ),
            other => (FaultKind::ConnectFailed, other.to_string()),
        };
        Failed {
            fault,
            island: Some(island),
            node: Some(node.to_string()),
            msg,
        }
    }
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.is::<std::io::Error>() {
            return true;
        }
        src = s.source();
    }
    false
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The node chosen for an attempt.
pub(crate) struct Plan<'s> {
    pub island: IslandId,
    pub addr: &'s str,
    /// A replica not known to have replayed this far: check it directly first.
    pub check: Option<Lsn>,
    pub master: Option<&'s str>,
}

fn pick<'s>(v: &[&'s str]) -> Option<&'s str> {
    match v.len() {
        0 => None,
        1 => Some(v[0]),
        n => Some(v[rand::thread_rng().gen_range(0..n)]),
    }
}

pub(crate) fn plan<'s>(
    shared: &Shared,
    state: &'s State,
    shard: ShardNo,
    target: Target<'_>,
    avoid: Option<&str>,
) -> Result<Plan<'s>, Failed> {
    let island_id = state.snapshot.active_island(shard).map_err(|e| Failed {
        fault: FaultKind::ShardNotActive,
        island: None,
        node: None,
        msg: e.to_string(),
    })?;
    let no_master = || Failed {
        fault: FaultKind::NoMaster,
        island: Some(island_id),
        node: None,
        msg: format!("island {island_id} has no reachable master"),
    };
    let island: &SnapshotIsland = state.snapshot.island(island_id).ok_or_else(no_master)?;
    let master = island
        .master()
        .map(|m| m.addr.as_str())
        .filter(|a| Some(*a) != avoid);
    let need = match target {
        Target::Master | Target::Read(Freshness::Master) => None,
        Target::Read(Freshness::StaleReplica) => Some(None),
        Target::Read(Freshness::Timeline(t)) => match t.required(shard, now_ms()) {
            // Written on another island (the shard has moved since): that position says
            // nothing about this island's WAL, so only the master is sure to have the write.
            Some((written_on, _)) if written_on != island_id => None,
            Some((_, lsn)) => Some(Some(lsn)),
            None => Some(None),
        },
    };
    let with = |addr, check| Plan {
        island: island_id,
        addr,
        check,
        master,
    };
    let Some(need) = need else {
        return master.map(|m| with(m, None)).ok_or_else(no_master);
    };
    let replicas: Vec<&str> = island
        .replicas()
        .map(|r| r.addr.as_str())
        .filter(|a| Some(*a) != avoid)
        .collect();
    let Some(need) = need else {
        return match pick(&replicas).or(master) {
            Some(a) => Ok(with(a, None)),
            None => Err(no_master()),
        };
    };
    let caught_up: Vec<&str> = island
        .replicas()
        .filter(|r| Some(r.addr.as_str()) != avoid)
        .filter(|r| r.lsn.max(shared.replayed(&r.addr)) >= Some(need))
        .map(|r| r.addr.as_str())
        .collect();
    if let Some(a) = pick(&caught_up) {
        return Ok(with(a, None));
    }
    match (pick(&replicas), master) {
        (Some(r), _) => Ok(with(r, Some(need))),
        (None, Some(m)) => Ok(with(m, None)),
        (None, None) => Err(no_master()),
    }
}

pub(crate) async fn get(state: &State, island: IslandId, addr: &str) -> Result<Object, Failed> {
    let np = state.pools.get(addr).ok_or_else(|| Failed {
        fault: FaultKind::ConnectFailed,
        island: Some(island),
        node: Some(addr.to_string()),
        msg: "node is not in the configuration any more".into(),
    })?;
    let pool = np.pool.as_ref().map_err(|msg| Failed {
        fault: FaultKind::ConnectFailed,
        island: Some(island),
        node: Some(addr.to_string()),
        msg: msg.clone(),
    })?;
    // Fast path: a free connection without arming a timer (no clock read, no timer entry);
    // only when none is free, wait with the configured timeout.
    let free = Timeouts {
        wait: Some(Duration::ZERO),
        create: Some(state.config.connect_timeout),
        recycle: None,
    };
    match pool.timeout_get(&free).await {
        Ok(o) => Ok(o),
        Err(PoolError::Timeout(TimeoutType::Wait)) => {
            pool.get().await.map_err(|e| Failed::pool(e, island, addr))
        }
        Err(e) => Err(Failed::pool(e, island, addr)),
    }
}

/// A connection for `target`, with the island and node it is on.
pub(crate) async fn connection<'s>(
    shared: &Shared,
    state: &'s State,
    shard: ShardNo,
    target: Target<'_>,
    avoid: Option<&str>,
) -> Result<(Object, IslandId, &'s str), Failed> {
    let p = plan(shared, state, shard, target, avoid)?;
    let client = get(state, p.island, p.addr).await?;
    let Some(need) = p.check else {
        return Ok((client, p.island, p.addr));
    };
    // The snapshot's replay position is older than the write: ask the replica itself.
    // Cached like every statement: this runs on each timeline read that needs a check.
    let stmt = client
        .prepare_cached("select pg_last_wal_replay_lsn()::text")
        .await
        .map_err(|e| Failed::pg(&e, p.island, p.addr, false))?;
    let row = client
        .query_one(&stmt, &[])
        .await
        .map_err(|e| Failed::pg(&e, p.island, p.addr, false))?;
    let replayed = row
        .try_get::<_, Option<&str>>(0)
        .ok()
        .flatten()
        .and_then(Lsn::parse);
    if let Some(l) = replayed {
        shared.note_replayed(p.addr, l);
        if l >= need {
            return Ok((client, p.island, p.addr));
        }
    }
    drop(client);
    let m = p.master.ok_or(Failed {
        fault: FaultKind::NoMaster,
        island: Some(p.island),
        node: None,
        msg: format!("island {} has no reachable master", p.island),
    })?;
    let client = get(state, p.island, m).await?;
    Ok((client, p.island, m))
}

/// SQLSTATEs after which this connection's cached prepared statements may point at
/// dropped or recreated objects (a shard moved away and back, DDL): the cache is cleared.
fn invalidates_statements(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code().map(|c| c.code()),
        Some("3F000" | "42P01" | "0A000" | "26000")
    )
}

/// Runs `sql` on `client` as a cached prepared statement.
pub(crate) async fn run(
    client: &Object,
    island: IslandId,
    addr: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, Failed> {
    let stmt = match client.prepare_cached(sql).await {
        Ok(s) => s,
        Err(e) => return Err(Failed::pg(&e, island, addr, false)),
    };
    // A pooled connection can die while idle (the master restarted) and still be handed
    // out; with the statement cached, nothing has gone over the wire yet. Once sent, a
    // broken connection means "may have run", so say "provably not run" while it is true:
    // then a non-idempotent write may be retried on the restarted master.
    if client.is_closed() {
        return Err(Failed {
            fault: FaultKind::ConnectFailed,
            island: Some(island),
            node: Some(addr.to_string()),
            msg: "pooled connection was closed before the statement was sent".into(),
        });
    }
    client.query(&stmt, params).await.map_err(|e| {
        if invalidates_statements(&e) {
            client.statement_cache.clear();
        }
        Failed::pg(&e, island, addr, true)
    })
}

/// The WAL position a replica must replay to include everything this connection committed.
/// The *insert* position, not the write position: with `synchronous_commit = off` a commit
/// record may be inserted but not yet written, and the replica would otherwise be judged
/// caught up one flush too early.
pub(crate) async fn committed_lsn(client: &Object) -> Option<Lsn> {
    let stmt = client
        .prepare_cached("select pg_current_wal_insert_lsn()::text")
        .await
        .ok()?;
    let row = client.query_one(&stmt, &[]).await.ok()?;
    Lsn::parse(row.try_get::<_, &str>(0).ok()?)
}
