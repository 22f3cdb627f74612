//! `--replica-identity-full` (see [`atoll_core::replica_identity`]): the tables without a
//! primary key or replica identity get `REPLICA IDENTITY FULL` on the source before the
//! publication exists, in one transaction with the list persisted on the move's source row;
//! after the switch both copies get their identity back (with the triggers that fire in
//! replica sessions, which the destination held back until then), after an abort the
//! source does. Every step is idempotent, so a resume after a kill repeats it.
//!
//! The destination needs no `FULL` of its own: PostgreSQL applies a change whose old row
//! was sent whole (the publisher's identity is `FULL`) by scanning the table for it.

use crate::context::MoveContext;
use crate::db::Db;
use crate::ddl::SchemaDdl;
use crate::error::MoveError;
use atoll_core::replica_identity::{IdentityRestore, OriginalIdentity};
use atoll_pg::catalog::moves;

/// The tables of `ddl` whose identity cannot replicate updates and deletes.
pub(crate) fn needed(ddl: &SchemaDdl) -> Vec<IdentityRestore> {
    ddl.tables
        .iter()
        .filter(|t| !t.has_identity())
        .filter_map(|t| {
            Some(IdentityRestore {
                table: t.name.clone(),
                original: OriginalIdentity::from_relreplident(t.replident)?,
            })
        })
        .collect()
}

/// Records `tables` on the move's source row and sets `FULL` on them, in one transaction.
pub(crate) async fn set_full(
    src: &Db,
    id: i64,
    schema: &str,
    tables: &[IdentityRestore],
) -> Result<(), MoveError> {
    if tables.is_empty() {
        return Ok(());
    }
    src.exec("begin").await?;
    let done = async {
        moves::record_identity_restore(&src.client, &src.node, id, tables).await?;
        for t in tables {
            src.exec(&t.set_full_sql(schema)).await?;
        }
        src.exec("commit").await
    }
    .await;
    if done.is_err() {
        // The session may be gone with it; then the server rolled back already.
        let _ = src.exec("rollback").await;
    }
    done
}

/// What the move plan says of `tables`: what is done to them, and its cost.
pub(crate) fn plan_note(tables: &[IdentityRestore]) -> Option<String> {
    if tables.is_empty() {
        return None;
    }
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    Some(format!(
        "REPLICA IDENTITY FULL for the move on {} (no primary key or replica identity; restored after the switch or an abort): updates and deletes on them scan the whole table on the destination while the move catches up, and send whole old rows through the slot",
        names.join(", ")
    ))
}

/// Gives the tables of `schema` on `db` their recorded identity back (tables or a schema
/// that no longer exist are skipped).
pub(crate) async fn restore(
    db: &Db,
    schema: &str,
    tables: &[IdentityRestore],
) -> Result<(), MoveError> {
    for t in tables {
        let qualified = format!(
            "{}.{}",
            atoll_core::quote::ident(schema),
            atoll_core::quote::ident(&t.table)
        );
        let exists: bool = db
            .one("select to_regclass($1) is not null", &[&qualified])
            .await?
            .get(0);
        if exists {
            db.exec(&t.restore_sql(schema)).await?;
        }
    }
    Ok(())
}

/// After the switch, before the activation: the destination's `ENABLE REPLICA` and
/// `ENABLE ALWAYS` triggers get their own states back (they were plain ones while the
/// destination applied the source's changes), so no application write on the destination
/// ever meets them in the wrong state. The source's copy (its backup schema) kept them.
/// Run again after the activation (for a move activated by a version that restored them
/// only then); a trigger the destination already has in its own state is left alone, so
/// that pass takes no lock on the live tables.
pub(crate) async fn restore_replica_triggers(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    let Some(backup) = cx.rec.backup_schema.clone() else {
        return Ok(());
    };
    let schema = cx.rec.shard.schema();
    let done = crate::ddl::replica_triggers(&cx.dst, &schema).await?;
    for t in crate::ddl::replica_triggers(&cx.src, &backup).await? {
        if !done.contains(&t) {
            cx.dst.exec(&t.sql(&schema, true)).await?;
        }
    }
    Ok(())
}

/// After the activation: the destination's tables get their identity back, and so do the
/// source's (in its backup schema).
pub(crate) async fn after_switch(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    let tables = moves::identity_restore(&cx.src.client, &cx.src.node, cx.rec.id).await?;
    let schema = cx.rec.shard.schema();
    restore(&cx.dst, &schema, &tables).await?;
    if let Some(backup) = cx.rec.backup_schema.clone() {
        restore(&cx.src, &backup, &tables).await?;
    }
    restore_replica_triggers(cx).await?;
    cx.report.replica_identity_full = tables.iter().map(|t| t.to_string()).collect();
    Ok(())
}

/// After an abort: the source's tables get their identity back.
pub(crate) async fn after_abort(src: &Db, id: i64, schema: &str) -> Result<(), MoveError> {
    let tables = moves::identity_restore(&src.client, &src.node, id).await?;
    restore(src, schema, &tables).await
}
