//! Step `schema_copied`: the shard's schema created on the destination from the source's
//! dump (the pre-data section with the primary keys and replica identity indexes; no
//! secondary indexes yet, see [`crate::ddl`]), in one transaction together with the
//! destination's reference row, so a crash leaves either both or neither.

use crate::context::MoveContext;
use crate::db::ident;
use crate::error::MoveError;
use crate::store::{self, MoveRole};
use atoll_core::move_plan::{MoveRecord, MoveStep};
use atoll_pg::catalog::moves;

pub(crate) async fn copy_schema(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    if store::step_of(&cx.dst, cx.rec.id, MoveRole::Destination)
        .await?
        .is_some()
    {
        return Ok(()); // done before a crash: the reference row commits with the schema
    }
    crate::safety::check_destination_schema(cx.rec.shard, &cx.dst).await?;
    let ddl = cx.ddl().await?.clone();
    let schema = cx.rec.shard.schema();
    let rec = MoveRecord {
        step: MoveStep::SchemaCopied,
        ..cx.rec.clone()
    };
    // The destination mirrors `--replica-identity-full` until the switch, so the schemas
    // compare equal in the pause (`crate::replica_identity`).
    let full = moves::identity_restore(&cx.src.client, &cx.src.node, cx.rec.id).await?;
    let node = cx.dst.node.clone();
    let (tx, ctx) = cx.dst.tx().await?;
    tx.batch_execute(&format!(
        "set local check_function_bodies = off; create schema {}",
        ident(&schema)
    ))
    .await
    .map_err(|e| ctx.err(e))?;
    for stmt in &ddl.pre_copy {
        tx.batch_execute(stmt).await.map_err(|e| ctx.err(e))?;
    }
    for t in &full {
        tx.batch_execute(&t.set_full_sql(&schema))
            .await
            .map_err(|e| ctx.err(e))?;
    }
    moves::insert(&tx, &node, &rec, MoveRole::Destination).await?;
    tx.commit().await.map_err(|e| ctx.err(e))
}
