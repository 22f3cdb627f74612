//! Safety checks run before a move creates anything. Each failure names its problem
//! (`table_without_primary_key`, `unsupported_object`, `foreign_key_to_other_schema`,
//! `destination_has_schema`, `replica_lag`, `missing_role`, `pg_dump`; replication
//! capacity is `capacity.rs`, `password_logging` is in `quiet.rs`)
//! and refuses.

use crate::db::Db;
use crate::ddl::SchemaDdl;
use crate::error::MoveError;
use atoll_core::{IslandId, ShardNo, Snapshot};

pub(crate) fn check_tables(
    shard: ShardNo,
    ddl: &SchemaDdl,
    replica_identity_full: bool,
) -> Result<(), MoveError> {
    if let Some(u) = ddl.unsupported.first() {
        return Err(MoveError::Unsafe {
            shard,
            check: "unsupported_object",
            detail: format!("{u} cannot be moved by logical replication here"),
        });
    }
    let bad: Vec<String> = ddl
        .tables
        .iter()
        .filter(|t| !t.has_identity())
        .map(|t| format!("{}.{}", shard.schema(), t.name))
        .collect();
    if !bad.is_empty() && !replica_identity_full {
        return Err(MoveError::Unsafe {
            shard,
            check: "table_without_primary_key",
            detail: format!(
                "{} has no primary key or replica identity, so updates and deletes could not be replicated; either give it one (a primary key, or ALTER TABLE ... REPLICA IDENTITY USING INDEX / FULL), or pass --replica-identity-full to have the move set REPLICA IDENTITY FULL on it for the move and restore it after (updates and deletes on it then scan the table on the destination while the move catches up)",
                bad.join(", ")
            ),
        });
    }
    Ok(())
}

/// Foreign keys to tables of other schemas (a global table in shard 0's schema, say): the
/// destination must have each referenced table, else the move would fail half-way when
/// the key is created there. Refused by name before anything is created.
pub(crate) async fn check_foreign_refs(
    shard: ShardNo,
    dst: &Db,
    refs: &[crate::ddl::ForeignRef],
) -> Result<(), MoveError> {
    let mut missing = Vec::new();
    for r in refs {
        let found: bool = dst
            .one(
                "select exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                                 where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p'))",
                &[&r.schema, &r.table],
            )
            .await?
            .get(0);
        if !found {
            missing.push(format!(
                "{}.{} references {}.{}",
                shard.schema(),
                r.constraint,
                r.schema,
                r.table
            ));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let zero = ShardNo::GLOBAL.schema();
    let remedy = if refs.iter().any(|r| r.schema == zero) {
        "copy shard 0's tables there first (`atoll global replicate`, see docs/global.md), or drop the foreign key"
    } else {
        "create that table there first (with the rows the keys need), or drop the foreign key"
    };
    Err(MoveError::Unsafe {
        shard,
        check: "foreign_key_to_other_schema",
        detail: format!(
            "foreign key {}, which island {} does not have; {remedy}",
            missing.join(", "),
            dst.island
        ),
    })
}

pub(crate) async fn check_destination_schema(shard: ShardNo, dst: &Db) -> Result<(), MoveError> {
    let exists: bool = dst
        .one(
            "select exists (select 1 from pg_namespace where nspname = $1)",
            &[&shard.schema()],
        )
        .await?
        .get(0);
    if exists {
        return Err(MoveError::Unsafe {
            shard,
            check: "destination_has_schema",
            detail: format!(
                "island {} already has schema {}; refusing to overwrite it",
                dst.island,
                shard.schema()
            ),
        });
    }
    Ok(())
}

/// The destination island's replicas must be reachable and within `max_lag_bytes`, so
/// reads from them see the shard soon after it becomes active there.
pub(crate) fn check_replicas(
    shard: ShardNo,
    snapshot: &Snapshot,
    island: IslandId,
    max_lag_bytes: u64,
) -> Result<(), MoveError> {
    let Some(isl) = snapshot.island(island) else {
        return Ok(());
    };
    for (i, n) in isl.nodes.iter().enumerate() {
        if Some(i) == isl.master {
            continue;
        }
        let problem = match (&n.error, n.lag_bytes) {
            (Some(e), _) => Some(format!("replica {} of island {island} is unreachable: {e}", n.addr)),
            (None, Some(l)) if l > max_lag_bytes => Some(format!(
                "replica {} of island {island} lags {l} bytes behind its master (limit {max_lag_bytes})",
                n.addr
            )),
            (None, None) => Some(format!("replica {} of island {island} reports no lag", n.addr)),
            _ => None,
        };
        if let Some(detail) = problem {
            return Err(MoveError::Unsafe {
                shard,
                check: "replica_lag",
                detail,
            });
        }
    }
    Ok(())
}

/// Roles named by the schema's owners, grants and policies that the destination lacks.
/// Roles are cluster-wide in PostgreSQL, so a move cannot bring them; refusing here keeps
/// the move from failing half-way at the post-copy DDL.
pub(crate) async fn check_roles(
    shard: ShardNo,
    dst: &Db,
    roles: &[String],
) -> Result<(), MoveError> {
    let missing: Vec<String> = dst
        .query(
            "select r from unnest($1::text[]) r
              where not exists (select 1 from pg_roles where rolname = r) order by 1",
            &[&roles],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(MoveError::Unsafe {
        shard,
        check: "missing_role",
        detail: format!(
            "role(s) {} own, are granted or are named by policies in {} but do not exist on island {}; create them there first (roles are per PostgreSQL cluster)",
            missing.join(", "),
            shard.schema(),
            dst.island
        ),
    })
}
