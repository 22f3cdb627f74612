//! [`Shard`]: parameterised SQL on one microshard, to the master or to a fresh-enough
//! replica, with the retry policy of [`crate::action`] around each attempt.

use crate::action::{backoff, decide, may_retry, Action};
use crate::attempt::{self, now_ms, Failed, Target};
use crate::cluster::Cluster;
use crate::error::ClientError;
use crate::master::MasterConnection;
use crate::timeline::{Freshness, Timeline};
use atoll_core::{Id, IslandId, Lsn, ShardNo};
use deadpool_postgres::Object;
use std::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// How a write is run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Write<'a> {
    /// Running it twice has the same effect as once: it may then be retried even when a
    /// connection broke mid-statement.
    pub idempotent: bool,
    /// Records the write's WAL position here, for read-your-writes.
    pub timeline: Option<&'a Timeline>,
}

impl<'a> Write<'a> {
    /// Not idempotent: retried only when it provably did not run.
    pub fn once() -> Write<'a> {
        Write::default()
    }
    /// Idempotent: may be retried even when the connection broke mid-statement.
    pub fn idempotent() -> Write<'a> {
        Write {
            idempotent: true,
            timeline: None,
        }
    }
    /// Also records the write's WAL position in `t`, for read-your-writes.
    pub fn timeline(self, t: &'a Timeline) -> Write<'a> {
        Write {
            timeline: Some(t),
            ..self
        }
    }
}

/// A handle on one microshard; cheap to clone. Whether the shard is active is checked when
/// a statement runs (and waited for, within the shard-absent window).
#[derive(Clone)]
pub struct Shard {
    cluster: Cluster,
    no: ShardNo,
    /// For shard 0: the island whose read-only copy may answer reads (`global_copy.rs`).
    near: Option<IslandId>,
}

/// The retry state of one statement.
struct Retry {
    /// Set at the first failure: the fast path does not read the clock.
    started: Option<Instant>,
    attempt: u32,
    avoid: Option<String>,
}

impl Shard {
    pub(crate) fn new(cluster: Cluster, no: ShardNo) -> Shard {
        Shard {
            cluster,
            no,
            near: None,
        }
    }

    /// Shard 0, read from the copy on `near` when it can answer as fresh as asked.
    pub(crate) fn global_near(cluster: Cluster, near: Option<IslandId>) -> Shard {
        Shard {
            cluster,
            no: ShardNo::GLOBAL,
            near,
        }
    }

    /// The shard's number.
    pub fn no(&self) -> ShardNo {
        self.no
    }

    /// The schema name, `shNNNN`, for building SQL.
    pub fn schema(&self) -> String {
        self.no.schema()
    }

    /// A read. Reads are treated as idempotent: write nothing through this method.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        freshness: Freshness<'_>,
    ) -> Result<Vec<Row>, ClientError> {
        if let Some(near) = self.near {
            let state = self.cluster.shared().state.load_full();
            let wait = self.cluster.options().global_copy_wait;
            let copy = crate::global_copy::read(&state, wait, near, freshness, sql, params).await;
            if let Some(rows) = copy {
                return Ok(rows);
            }
        }
        self.run(sql, params, Target::Read(freshness), true, None)
            .await
    }

    /// A write (or any statement) on the island master, in its own transaction.
    pub async fn write(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        how: Write<'_>,
    ) -> Result<Vec<Row>, ClientError> {
        self.run(sql, params, Target::Master, how.idempotent, how.timeline)
            .await
    }

    /// A new ID from the shard's database generator (`shNNNN.id_gen()`).
    pub async fn new_db_id(&self) -> Result<Id, ClientError> {
        let sql = format!("select {}.id_gen()", self.schema());
        // Drawing a sequence value twice only skips one: safe to retry.
        let rows = self.write(&sql, &[], Write::idempotent()).await?;
        let value = match rows.first() {
            None => None,
            Some(r) => r
                .try_get::<_, Option<i64>>(0)
                .map_err(|e| ClientError::BadDbId {
                    shard: self.no,
                    what: format!("returned a non-bigint: {e}"),
                })?,
        };
        checked_db_id(self.no, value)
    }

    /// A pooled connection to the shard's island master, for a multi-statement transaction.
    /// Waits out an absent shard or a missing master like a statement does; what runs on the
    /// connection afterwards is not retried. Call [`Shard::record_write`] after committing
    /// to keep read-your-writes. Dropping it rolls back a transaction left open (see
    /// [`MasterConnection`]).
    pub async fn master_connection(&self) -> Result<MasterConnection, ClientError> {
        let shared = self.cluster.shared().clone();
        let mut r = self.retry();
        loop {
            let state = shared.state.load_full();
            match attempt::connection(&shared, &state, self.no, Target::Master, r.avoid.as_deref())
                .await
            {
                Ok((client, island, _)) => return Ok(MasterConnection::new(client, island)),
                Err(f) => self.handle(&mut r, f, true).await?,
            }
        }
    }

    /// Records, in `timeline`, the WAL position of what `conn` (from
    /// [`Shard::master_connection`]) has committed, on the island it is connected to.
    pub async fn record_write(&self, conn: &MasterConnection, timeline: &Timeline) {
        self.record(conn, conn.island(), timeline).await;
    }

    fn retry(&self) -> Retry {
        Retry {
            started: None,
            attempt: 0,
            avoid: None,
        }
    }

    async fn run(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        target: Target<'_>,
        idempotent: bool,
        timeline: Option<&Timeline>,
    ) -> Result<Vec<Row>, ClientError> {
        let shared = self.cluster.shared();
        let mut r = self.retry();
        loop {
            let state = shared.state.load_full();
            let avoid = r.avoid.as_deref();
            let failure = match attempt::connection(shared, &state, self.no, target, avoid).await {
                Ok((client, island, addr)) => {
                    match attempt::run(&client, island, addr, sql, params).await {
                        Ok(rows) => {
                            if let Some(t) = timeline {
                                self.record(&client, island, t).await;
                            }
                            return Ok(rows);
                        }
                        Err(f) => f,
                    }
                }
                Err(f) => f,
            };
            self.handle(&mut r, failure, idempotent).await?;
        }
    }

    async fn record(&self, client: &Object, island: IslandId, timeline: &Timeline) {
        let ttl = self.cluster.options().timeline_ttl;
        // If the position cannot be read, the write still happened: pin reads of this shard
        // to the master until the entry expires rather than risk a stale read.
        let lsn = attempt::committed_lsn(client)
            .await
            .unwrap_or(Lsn(u64::MAX));
        timeline.record(self.no, island, lsn, now_ms() + ttl.as_millis() as u64);
    }

    /// Applies the error → action table: returns `Ok` to try again, or the error to give
    /// the caller.
    async fn handle(&self, r: &mut Retry, f: Failed, idempotent: bool) -> Result<(), ClientError> {
        let shared = self.cluster.shared();
        let opts = &shared.options;
        r.attempt += 1;
        let (action, effect) = decide(f.fault());
        let elapsed = r.started.get_or_insert_with(Instant::now).elapsed();
        let in_bounds = elapsed < opts.shard_absent_window && r.attempt < opts.max_attempts;
        if !may_retry(action, effect, idempotent) || !in_bounds {
            return Err(f.into_error(self.no, elapsed));
        }
        tracing::debug!(shard = %self.no, attempt = r.attempt, node = ?f.node, error = %f.msg, ?action, "atoll-client: retrying");
        let remaining = opts.shard_absent_window.saturating_sub(elapsed);
        let wait_limit = (opts.node_timeout * 2).min(remaining);
        let pause = backoff(r.attempt, opts.backoff_initial, opts.backoff_max).min(remaining);
        match action {
            Action::TryAnotherNode => {
                // Another node right away (if there is one), and a rediscovery meanwhile.
                r.avoid = f.node.clone();
                shared.wake.notify_one();
                if r.attempt > 1 {
                    tokio::time::sleep(pause).await;
                }
            }
            Action::RediscoverCluster => {
                r.avoid = None;
                // Placed by a notice (or a round) meanwhile: at once; else the backoff,
                // cut short when a notice or a round places it.
                if !self.placed(None, wait_limit).await {
                    shared.await_route(self.no, None, pause).await;
                }
            }
            Action::RediscoverIsland => {
                r.avoid = None;
                shared.refresh_and_wait(wait_limit).await;
                tokio::time::sleep(pause).await;
            }
            Action::RediscoverIfMoved => {
                r.avoid = None;
                if self.placed(f.island, wait_limit).await {
                    // A notice says where the shard went: there at once, no backoff.
                    return Ok(());
                }
                let state = shared.state.load();
                let now = state.snapshot.active_island(self.no).ok();
                if now.is_some() && now == f.island {
                    let master = now
                        .and_then(|i| state.snapshot.island(i))
                        .and_then(|i| i.master())
                        .map(|m| m.addr.as_str());
                    if f.node.is_none() || f.node.as_deref() == master {
                        // Still where the statement went, on the master: the table really
                        // does not exist.
                        return Err(f.into_error(self.no, elapsed));
                    }
                    // A replica that has not replayed the table's creation yet: another
                    // node (in the end the master) decides.
                    r.avoid = f.node.clone();
                }
            }
            Action::Fail => return Err(f.into_error(self.no, elapsed)),
        }
        Ok(())
    }
}

impl Shard {
    /// Whether the shard is (or, within `limit`, becomes) routed to an island other than
    /// `away`: at once when the snapshot already says so (a shard notice arrived), else
    /// by whichever comes first, a notice or a discovery round asked for now. `false` when
    /// the round came first and did not place it there (the caller judges that round).
    async fn placed(&self, away: Option<IslandId>, limit: std::time::Duration) -> bool {
        let shared = self.cluster.shared();
        if shared.routed(self.no, away) {
            return true;
        }
        tokio::select! {
            placed = shared.await_route(self.no, away, limit) => placed,
            _ = shared.refresh_and_wait(limit) => shared.routed(self.no, away),
        }
    }
}

/// What `shNNNN.id_gen()` returned, checked: a value, well-formed, and in shard `no` (a
/// generator copied from another shard, or a sequence set by hand, must not hand out IDs
/// that route elsewhere).
fn checked_db_id(no: ShardNo, value: Option<i64>) -> Result<Id, ClientError> {
    let bad = |what: String| ClientError::BadDbId { shard: no, what };
    let v = value.ok_or_else(|| bad("returned no value (NULL or no row)".into()))?;
    let id = Id::parse(v).map_err(|e| bad(format!("returned a malformed ID: {e}")))?;
    if id.shard() != no {
        return Err(bad(format!("returned {v}, an ID of {}", id.shard())));
    }
    Ok(id)
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shard({})", self.no)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_ids_are_checked() {
        let no = ShardNo::new(5).unwrap();
        let good = Id::new(1, no, 17).unwrap();
        assert_eq!(checked_db_id(no, Some(good.get())).unwrap(), good);
        let missing = checked_db_id(no, None).unwrap_err().to_string();
        assert!(missing.contains("NULL or no row"), "{missing}");
        let malformed = checked_db_id(no, Some(0)).unwrap_err().to_string();
        assert!(malformed.contains("malformed"), "{malformed}");
        let elsewhere = Id::new(1, ShardNo::new(6).unwrap(), 17).unwrap();
        let wrong = checked_db_id(no, Some(elsewhere.get()))
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("an ID of sh0006"), "{wrong}");
    }
}
