//! Every advisory lock atoll takes, in one place: its key, where it is taken, and what it
//! keeps apart. `docs/architecture.md` has the same list as a table.
//!
//! In atoll a *lock* is always a PostgreSQL advisory lock. The table lock a move takes on
//! the source shard's tables for its last milliseconds is a different thing and is called
//! the *write pause* (`atoll-move`'s `pause.rs`).
//!
//! Keys are eight ASCII bytes ("atoll" and a suffix) read as a big-endian `i64`, so they
//! are recognisable in `pg_locks` (`classid` = high half, `objid` = low half) and cannot
//! collide with each other.

use crate::error::PgError;
use atoll_core::{NodeConfig, ShardNo};
use tokio_postgres::GenericClient;

/// `atoll init` on one island master, transaction level: two concurrent inits of the same
/// island apply each catalog step once. Key "atollcat".
pub const CATALOG_INSTALL: i64 = 0x6174_6f6c_6c63_6174;

/// A migration run, session level, on the coordination island's master for the whole run
/// (the server releases it if the process dies). Excludes a second run and the start of a
/// move. Key "\0atollmi".
pub const MIGRATION_RUN: i64 = 0x0061_746f_6c6c_6d69;

/// Counting free replication capacity and then using it (creating the slot and the
/// subscription), session level, per island master, taken on the source and the
/// destination of a move, lower island first: parallel moves take turns. Key "atollcap".
pub const CAPACITY: i64 = 0x6174_6f6c_6c63_6170;

/// A rebalance, session level, on the coordination island's master, from its plan to its
/// last move: two rebalances would plan on the same state and move the same shards. Key
/// "atollreb".
pub const REBALANCE: i64 = 0x6174_6f6c_6c72_6562;

/// The move lock of `shard`, session level, on the source island's master, held by
/// whatever starts, resumes or aborts a move of that shard (and by `cleanup` while it
/// looks at that shard's backups). "atollm" in the high six bytes, the shard below.
pub fn move_of(shard: ShardNo) -> i64 {
    MOVE_BASE + i64::from(shard.get())
}

const MOVE_BASE: i64 = 0x6174_6f6c_6c6d_0000;

/// Whether some session holds the session-level advisory lock `key` on this node,
/// looked up in `pg_locks` rather than tried: a probe that took the lock for a moment
/// would make a concurrent probe, or a starting holder, believe it was taken.
pub async fn is_held(
    client: &impl GenericClient,
    node: &NodeConfig,
    key: i64,
) -> Result<bool, PgError> {
    Ok(holder(client, node, key).await?.is_some())
}

/// Who holds the session-level lock `key` on this node, for a refusal's message: the
/// holder session's `application_name`, its client address and since when it holds the
/// session; `None` when nobody does.
pub async fn holder(
    client: &impl GenericClient,
    node: &NodeConfig,
    key: i64,
) -> Result<Option<String>, PgError> {
    let q = |e| PgError::query(node, e);
    // A bigint advisory key is kept as classid = high half, objid = low half, objsubid = 1.
    let row = client
        .query_opt(
            "select coalesce(nullif(a.application_name, ''), 'a session') || ' (backend pid '
                    || l.pid || coalesce(', from ' || host(a.client_addr), '')
                    || ', connected ' || to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') || ')'
               from pg_locks l join pg_stat_activity a on a.pid = l.pid
              where l.locktype = 'advisory' and l.granted and l.objsubid = 1
                and l.database = (select oid from pg_database where datname = current_database())
                and l.classid = ($1::int8 >> 32)::oid
                and l.objid = ($1::int8 & 4294967295)::oid
              limit 1",
            &[&key],
        )
        .await
        .map_err(q)?;
    row.map(|r| r.try_get(0).map_err(q)).transpose()
}

/// Tries to take the session-level lock `key`; false when another session holds it.
pub async fn try_take(
    client: &impl GenericClient,
    node: &NodeConfig,
    key: i64,
) -> Result<bool, PgError> {
    let q = |e| PgError::query(node, e);
    client
        .query_one("select pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)
}

/// Takes the session-level lock `key`, waiting for it.
pub async fn take(client: &impl GenericClient, node: &NodeConfig, key: i64) -> Result<(), PgError> {
    client
        .execute("select pg_advisory_lock($1)", &[&key])
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// Releases the session-level lock `key` held by this session.
pub async fn release(
    client: &impl GenericClient,
    node: &NodeConfig,
    key: i64,
) -> Result<(), PgError> {
    client
        .execute("select pg_advisory_unlock($1)", &[&key])
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_spell_their_names() {
        let bytes = |k: i64| k.to_be_bytes();
        assert_eq!(&bytes(CATALOG_INSTALL), b"atollcat");
        assert_eq!(&bytes(CAPACITY), b"atollcap");
        assert_eq!(&bytes(REBALANCE), b"atollreb");
        assert_eq!(&bytes(MIGRATION_RUN), b"\0atollmi");
        let first = move_of(ShardNo::new(0).unwrap());
        let last = move_of(ShardNo::new(9999).unwrap());
        assert_eq!(&bytes(first)[..6], b"atollm");
        for k in [CATALOG_INSTALL, CAPACITY, MIGRATION_RUN, REBALANCE] {
            assert!(!(first..=last).contains(&k), "{k:x} inside the move range");
        }
    }
}
