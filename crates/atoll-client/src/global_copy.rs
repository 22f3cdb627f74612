//! Reads of shard 0's tables from the read-only copy on a nearer island (`atoll global
//! replicate`), when the caller asked for one ([`crate::ClusterOptions::home_island`],
//! [`crate::Cluster::global_near`]) and the copy can answer as fresh as asked:
//! - `Freshness::Master`: never the copy;
//! - `Freshness::StaleReplica`: the copy (it may lag, like a replica);
//! - `Freshness::Timeline`: the copy only once it has applied the caller's last write to
//!   shard 0 (its subscription's origin has passed the write's position on shard 0's
//!   master), else the usual path.
//!
//! Anything else — no ready copy there (per the snapshot), shard 0 on that island already,
//! a failed statement (a table not copied) — answers `None`, and the read takes the usual
//! path to shard 0's island, so a copy never makes a read fail or go stale past what was
//! asked.

use crate::attempt::{self, now_ms};
use crate::cluster::State;
use crate::timeline::Freshness;
use atoll_core::{IslandId, ShardNo};
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Whether the copy on the connection's island has applied shard 0's WAL up to `$2`.
const APPLIED_SQL: &str = "select coalesce((select o.remote_lsn >= $2::text::pg_lsn
    from pg_replication_origin_status o join pg_subscription s on o.external_id = 'pg_' || s.oid
    where s.subname = $1), false)";

/// The rows from the copy on `near`, or `None` to read the usual way.
pub(crate) async fn read(
    state: &State,
    wait: Duration,
    near: IslandId,
    freshness: Freshness<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Option<Vec<Row>> {
    if matches!(freshness, Freshness::Master) {
        return None;
    }
    let source = state.snapshot.active_island(ShardNo::GLOBAL).ok()?;
    // A copy still following shard 0's former master (it moved) cannot answer.
    let island = state
        .snapshot
        .island(near)
        .filter(|i| i.global_copy == Some(source))?;
    if near == source {
        return None;
    }
    let addr = island.master()?.addr.as_str();
    let client = attempt::get(state, near, addr).await.ok()?;
    if let Freshness::Timeline(t) = freshness {
        if let Some((written_on, lsn)) = t.required(ShardNo::GLOBAL, now_ms()) {
            if written_on != source {
                return None;
            }
            let sub = format!("atoll_global_{}", near.0);
            if !applied(&client, &sub, lsn, wait).await? {
                return None;
            }
        }
    }
    attempt::run(&client, near, addr, sql, params).await.ok()
}

/// Whether the copy has applied `lsn`, asked every 2 ms for up to `wait`; `None` when it
/// cannot be asked.
async fn applied(
    client: &deadpool_postgres::Object,
    sub: &str,
    lsn: atoll_core::Lsn,
    wait: Duration,
) -> Option<bool> {
    let stmt = client.prepare_cached(APPLIED_SQL).await.ok()?;
    let lsn = commit_end(lsn).to_string();
    let deadline = Instant::now() + wait;
    loop {
        let row = client.query_one(&stmt, &[&sub, &lsn]).await.ok()?;
        if row.try_get::<_, bool>(0).ok()? {
            return Some(true);
        }
        if Instant::now() >= deadline {
            return Some(false);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The position a copy's origin reports for the write whose timeline position is `l`.
/// The timeline holds the insert position read after the commit; when the commit record
/// ended at a page boundary that position is past the next page's header (24 bytes, 40 at
/// a segment's start), while the origin records the record's end. No record fits in a
/// header's length, so taking the page's start instead claims no other write.
fn commit_end(l: atoll_core::Lsn) -> atoll_core::Lsn {
    const PAGE: u64 = 8192;
    const SEGMENT: u64 = 16 << 20;
    match l.0 {
        p if p % SEGMENT == 40 => atoll_core::Lsn(p - 40),
        p if p % PAGE == 24 => atoll_core::Lsn(p - 24),
        p => atoll_core::Lsn(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::Lsn;

    #[test]
    fn a_position_past_a_page_header_is_the_page_start() {
        assert_eq!(commit_end(Lsn(0x158_2018)), Lsn(0x158_2000));
        assert_eq!(
            commit_end(Lsn(0x200_0028)),
            Lsn(0x200_0000),
            "a segment's long header"
        );
        assert_eq!(commit_end(Lsn(0x158_2030)), Lsn(0x158_2030));
        assert_eq!(commit_end(Lsn(24)), Lsn(0));
    }
}
