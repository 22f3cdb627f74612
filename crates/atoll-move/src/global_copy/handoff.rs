//! Moving shard 0 while it has read-only copies: the copies are handed over to its new
//! master without copying their rows again and without losing or repeating a change.
//!
//! 1. [`make_room`], before the move: the destination's own copy is dropped (shard 0 is
//!    about to live there), refused while shards reference shard 0's tables by foreign
//!    key on either island (those keys would point at the copy being dropped, or at the
//!    source's backup schema after the move).
//! 2. [`prepare`], once the destination has caught up: there, the publication and one
//!    logical slot per copy, recorded in `atoll.global_handoff` (catalog step 13).
//! 3. [`mark_switch`], between the switch and the activation: the destination's WAL
//!    position. Before it, the destination's changes to shard 0's tables are the move's
//!    own catch-up, which the copies already have from the old master; after it, only
//!    the new master's writes.
//!    An abort drops what [`prepare`] made ([`undo`]).
//! 4. [`repoint`], after the move (`atoll global replicate`): per copy, caught up with the
//!    old master, its new slot advanced to the switch position, its subscription replaced
//!    by one reading that slot without copying (one transaction on the copy), the old
//!    slot dropped. The old master then gets a copy of its own like any other island.

use super::create::caught_up;
use super::{subscription, GlobalCopyError, PUBLICATION, SCHEMA};
use crate::context::MoveContext;
use crate::db::{ident, literal, Db};
use crate::error::MoveError;
use crate::replication::{drop_slot, sub_oid};
use atoll_core::{Config, ShardNo, Snapshot};
use atoll_pg::catalog::global_copy::{self, CopyRow};
use atoll_pg::catalog::global_handoff::{self, Handoff};
use std::time::Duration;

/// Whether `db` publishes shard 0's tables to copies.
async fn publishes(db: &Db) -> Result<bool, MoveError> {
    Ok(db
        .one(
            "select exists (select 1 from pg_publication where pubname = $1)",
            &[&PUBLICATION],
        )
        .await?
        .get(0))
}

/// Foreign keys of other schemas on `db` that reference `sh0000`'s tables.
async fn keys_to_shard_zero(db: &Db) -> Result<Vec<String>, MoveError> {
    let rows = db
        .query(
            "select n.nspname || '.' || c.relname || '.' || k.conname
             from pg_constraint k join pg_class c on c.oid = k.conrelid
             join pg_namespace n on n.oid = c.relnamespace
             join pg_class f on f.oid = k.confrelid join pg_namespace fn on fn.oid = f.relnamespace
             where k.contype = 'f' and fn.nspname = $1 and n.nspname <> $1 order by 1",
            &[&SCHEMA],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Before a move of shard 0 from `src` to `dst` (see the module doc).
pub(crate) async fn make_room(src: &Db, dst: &mut Db) -> Result<(), MoveError> {
    let copy = global_copy::get(&dst.client, &dst.node).await?;
    if copy.is_none() && !publishes(src).await? {
        return Ok(());
    }
    for (db, what) in [
        (src, "its backup schema after the move"),
        (&*dst, "the copy dropped there"),
    ] {
        let keys = keys_to_shard_zero(db).await?;
        if !keys.is_empty() {
            return Err(MoveError::Unsafe {
                shard: ShardNo::GLOBAL,
                check: "foreign_key_to_shard_zero",
                detail: format!(
                    "shard 0 has copies, and on island {} foreign keys {} reference its tables: they would point at {what}; drop them, move shard 0, run `atoll global replicate`, then create them again",
                    db.island,
                    keys.join(", ")
                ),
            });
        }
    }
    if copy.is_some() {
        let name = subscription(dst.island);
        if sub_oid(dst, &name).await?.is_some() {
            dst.exec(&format!(
                "alter subscription {0} disable; alter subscription {0} set (slot_name = none)",
                ident(&name)
            ))
            .await?;
            dst.exec(&format!("drop subscription {}", ident(&name)))
                .await?;
        }
        drop_slot(src, &name, Duration::from_secs(10)).await?;
        let node = dst.node.clone();
        let (tx, ctx) = dst.tx().await?;
        tx.batch_execute(&format!("drop schema {} cascade", ident(SCHEMA)))
            .await
            .map_err(|e| ctx.err(e))?;
        global_copy::delete(&tx, &node).await?;
        tx.commit().await.map_err(|e| ctx.err(e))?;
    }
    Ok(())
}

/// Once a move of shard 0 caught up: the publication and the copies' slots on the
/// destination, recorded (idempotent).
pub(crate) async fn prepare(cx: &MoveContext<'_>) -> Result<(), MoveError> {
    if cx.rec.shard != ShardNo::GLOBAL || !publishes(&cx.src).await? {
        return Ok(());
    }
    let tables: Vec<String> = cx
        .src
        .query(
            "select tablename::text from pg_publication_tables where pubname = $1 and schemaname = $2 order by 1",
            &[&PUBLICATION, &SCHEMA],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let slots: Vec<String> = cx
        .src
        .query(
            "select slot_name::text from pg_replication_slots where slot_name like 'atoll\\_global\\_%' order by 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    super::create::ensure_publication(&cx.dst, &tables)
        .await
        .map_err(into_move)?;
    for slot in &slots {
        cx.dst
            .exec(&format!(
                "select pg_create_logical_replication_slot({0}, 'pgoutput')
                 where not exists (select 1 from pg_replication_slots where slot_name = {0})",
                literal(slot)
            ))
            .await?;
    }
    let h = Handoff {
        move_id: cx.rec.id,
        source_island: cx.src.island,
        slots,
        switch_lsn: None,
    };
    global_handoff::insert(&cx.dst.client, &cx.dst.node, &h).await?;
    Ok(())
}

fn into_move(e: GlobalCopyError) -> MoveError {
    match e {
        GlobalCopyError::Move(m) => m,
        other => MoveError::Unsafe {
            shard: ShardNo::GLOBAL,
            check: "global_copy_handoff",
            detail: other.to_string(),
        },
    }
}

/// Between a move of shard 0's switch and its activation: the destination's position.
pub(crate) async fn mark_switch(cx: &MoveContext<'_>) -> Result<(), MoveError> {
    if cx.rec.shard != ShardNo::GLOBAL {
        return Ok(());
    }
    if global_handoff::get(&cx.dst.client, &cx.dst.node)
        .await?
        .is_none()
    {
        return Ok(());
    }
    global_handoff::switched(&cx.dst.client, &cx.dst.node, cx.rec.id).await?;
    Ok(())
}

/// An aborted move of shard 0: the handoff it prepared on the destination (slots, which
/// would keep WAL there forever, the publication, the record) goes; the copies keep
/// following the source, which stays shard 0's master.
pub(crate) async fn undo(
    dst: &Db,
    rec: &atoll_core::move_plan::MoveRecord,
) -> Result<(), MoveError> {
    if rec.shard != ShardNo::GLOBAL {
        return Ok(());
    }
    let Some(h) = global_handoff::get(&dst.client, &dst.node)
        .await?
        .filter(|h| h.move_id == rec.id)
    else {
        return Ok(());
    };
    for slot in &h.slots {
        drop_slot(dst, slot, Duration::from_secs(10)).await?;
    }
    dst.exec(&format!(
        "drop publication if exists {}",
        ident(PUBLICATION)
    ))
    .await?;
    global_handoff::delete(&dst.client, &dst.node, rec.id).await?;
    Ok(())
}

/// Hands the copy on `dst` (recorded in `row`) over to shard 0's new master `src`.
pub(super) async fn repoint(
    config: &Config,
    snapshot: &Snapshot,
    src: &Db,
    dst: &mut Db,
    row: &CopyRow,
) -> Result<(), GlobalCopyError> {
    let name = subscription(dst.island);
    let refuse = |why: &str| {
        GlobalCopyError::Refused(format!(
            "island {}'s copy follows island {}, but shard 0 is on island {}: {why}; drop that copy (its subscription, schema sh0000 and atoll.global_copy row) and run `atoll global replicate` to copy it anew",
            dst.island, row.source_island, src.island
        ))
    };
    let h = global_handoff::get(&src.client, &src.node)
        .await?
        .filter(|h| h.source_island == row.source_island && h.slots.contains(&name))
        .ok_or_else(|| refuse("the move prepared no handoff for it"))?;
    let lsn = h
        .switch_lsn
        .clone()
        .ok_or_else(|| refuse("the move has not switched yet"))?;
    let old = Db::connect(config, snapshot, row.source_island).await?;
    if sub_oid(dst, &name).await?.is_some() {
        // Everything the old master had, before the subscription leaves it.
        dst.exec(&format!("alter subscription {} enable", ident(&name)))
            .await?;
        caught_up(&old, dst.island, &name).await?;
    }
    src.exec(&format!(
        "select pg_replication_slot_advance(slot_name, {1}::pg_lsn) from pg_replication_slots
         where slot_name = {0} and confirmed_flush_lsn < {1}::pg_lsn",
        literal(&name),
        literal(&lsn)
    ))
    .await?;
    switch_subscription(config, src, dst, &name).await?;
    drop_slot(&old, &name, Duration::from_secs(10)).await?;
    Ok(())
}

/// On the copy, in one transaction on a session that logs nothing (the statement may
/// carry the new master's password): the old subscription dropped (its slot kept for the
/// caller to drop on the old master), a new one reading the prepared slot without
/// copying, and the record pointed at the new master.
async fn switch_subscription(
    config: &Config,
    src: &Db,
    dst: &mut Db,
    name: &str,
) -> Result<(), GlobalCopyError> {
    let (info, mut db) = super::create::session_with_source(config, src, dst).await?;
    let mut sql = String::new();
    if sub_oid(&db, name).await?.is_some() {
        sql.push_str(&format!(
            "alter subscription {0} disable; alter subscription {0} set (slot_name = none); drop subscription {0};\n",
            ident(name)
        ));
    }
    sql.push_str(&format!(
        "create subscription {} connection {} publication {} with (slot_name = {}, create_slot = false, copy_data = false);",
        ident(name),
        literal(&info),
        ident(PUBLICATION),
        literal(name),
    ));
    let node = db.node.clone();
    let (tx, ctx) = db.tx().await?;
    tx.batch_execute(&sql).await.map_err(|e| ctx.err(e))?;
    global_copy::set_source(&tx, &node, src.island).await?;
    tx.commit().await.map_err(|e| ctx.err(e))?;
    Ok(())
}
