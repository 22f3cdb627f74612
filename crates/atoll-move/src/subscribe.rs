//! Step `subscribed`: a publication of the shard's tables (and the move's tick row) on the
//! source, a subscription copying them on the destination. Idempotent: what a crashed
//! attempt created is found and reused.

use crate::context::MoveContext;
use crate::db::{conninfo, ident, literal};
use crate::error::MoveError;
use crate::quiet;
use crate::replication::{drop_slot, sub_oid, system_id};
use atoll_pg::catalog::moves;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// The longest CREATE SUBSCRIPTION may take (it runs under the capacity lock).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(240);

pub(crate) async fn subscribe(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    let names = cx.rec.names();
    let id = cx.rec.id;
    ensure_publication(cx).await?;
    let mut oid = sub_oid(&cx.dst, &names.subscription).await?;
    if oid.is_none() {
        // A slot left by a CREATE SUBSCRIPTION that died half-way would block a new one.
        drop_slot(&cx.src, &names.slot, Duration::from_secs(10)).await?;
        // A tick row left on the destination would collide with the initial copy.
        moves::delete_tick(&cx.dst.client, &cx.dst.node, id).await?;
        create_subscription(cx).await?;
        oid = sub_oid(&cx.dst, &names.subscription).await?;
    }
    // Recorded on every pass (a crash may have come between creating and recording).
    if let Some(oid) = oid {
        let sysid = system_id(&cx.dst).await?;
        moves::record_subscription(&cx.src.client, &cx.src.node, id, oid, sysid).await?;
    }
    Ok(())
}

/// The publication of the shard's tables and the move's tick row, unless it exists.
async fn ensure_publication(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    let names = cx.rec.names();
    let schema = cx.rec.shard.schema();
    let id = cx.rec.id;
    let has_pub: bool = cx
        .src
        .one(
            "select exists (select 1 from pg_publication where pubname = $1)",
            &[&names.publication],
        )
        .await?
        .get(0);
    if has_pub {
        return Ok(());
    }
    let mut list: Vec<String> = cx
        .ddl()
        .await?
        .tables
        .iter()
        .map(|t| t.qualified(&schema))
        .collect();
    // The tick row travels through the same publication (filtered to this move), so
    // seeing a tick applied on the destination proves everything committed before it on
    // the source was applied too.
    list.push(moves::tick_publication_entry(id));
    cx.src
        .exec(&format!(
            "begin;
             {}
             create publication {} for table {};
             commit;",
            moves::add_tick_sql(id),
            ident(&names.publication),
            list.join(", ")
        ))
        .await
}

/// CREATE SUBSCRIPTION on the destination (which creates the slot on the source and
/// starts the copy), bounded by [`SUBSCRIBE_TIMEOUT`], on a connection of its own: one that
/// logs nothing ([`crate::quiet`]) when the statement carries the source's password.
async fn create_subscription(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    let names = cx.rec.names();
    let (info, secret) = conninfo(&cx.src.node)?;
    // From PostgreSQL 16 the apply runs as each table's owner unless run_as_owner is set;
    // FORCE ROW LEVEL SECURITY would then refuse every change. Running as the
    // subscription's (superuser) owner keeps RLS out of replication.
    let version: i32 = cx
        .dst
        .one("select current_setting('server_version_num')::int4", &[])
        .await?
        .get(0);
    // Masked on `dst` too, and copied to the new connection with it.
    let db = match secret {
        Some(s) => {
            cx.dst.add_mask(s);
            quiet::session(cx.config, &cx.dst, cx.rec.shard).await?
        }
        None => cx.dst.reconnect(cx.config).await?,
    };
    // Bounded: other moves wait on the capacity lock meanwhile, and creating the slot
    // waits for every transaction running on the source to end. The connection is closed
    // (dropped) afterwards, so the setting ends with it.
    db.exec(&format!(
        "set statement_timeout = '{}s'",
        SUBSCRIBE_TIMEOUT.as_secs()
    ))
    .await?;
    let created = db
        .exec(&format!(
            "create subscription {} connection {} publication {}
             with (slot_name = {}, copy_data = true, create_slot = true{})",
            ident(&names.subscription),
            literal(&info),
            ident(&names.publication),
            literal(&names.slot),
            if version >= 160000 {
                ", run_as_owner = true"
            } else {
                ""
            }
        ))
        .await;
    match created {
        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => Err(MoveError::Timeout {
            shard: cx.rec.shard,
            what: format!(
                "creating the subscription on island {}: its replication slot waits for every transaction running on island {} (the source) to end; look for long-running or idle-in-transaction sessions there, then --resume or --abort",
                cx.dst.island, cx.src.island
            ),
            secs: SUBSCRIBE_TIMEOUT.as_secs(),
        }),
        r => r,
    }
}
