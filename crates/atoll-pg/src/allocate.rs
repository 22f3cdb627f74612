//! Carrying out an allocation plan ([`atoll_core::allocation::plan`]): creating microshard
//! schemas on island masters, each with what travels inside it (its ID sequence and
//! `id_gen()`), and their registry rows.

use crate::connect::connect_with_timeout;
use crate::error::PgError;
use crate::master::master_node;
use atoll_core::allocation::Placement;
use atoll_core::{Config, Id, IslandId, ShardNo, Snapshot, SEQUENCE_MAX};
use std::collections::BTreeMap;

/// What happened to one shard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Allocated {
    /// The shard.
    pub shard: ShardNo,
    /// The island whose master holds its schema.
    pub island: IslandId,
    /// Whether this run created the schema (false: it existed already).
    pub created: bool,
    /// Whether the shard is active after this run.
    pub active: bool,
}

/// The DDL that makes a microshard: its schema, its ID sequence, and its ID generator.
/// Everything is inside the schema, so it moves with the shard.
pub fn shard_ddl(shard: ShardNo, env_digit: u8) -> String {
    let schema = shard.schema();
    let generator = Id::sql_generator(env_digit, shard, &format!("{schema}.id_seq"));
    format!(
        "create schema {schema};
         create sequence {schema}.id_seq minvalue 1 maxvalue {SEQUENCE_MAX} no cycle;
         create function {schema}.id_gen() returns bigint language sql volatile
           as $$ select {generator} $$;"
    )
}

/// Creates the shards planned as `Create` and, with `activate`, activates every planned
/// shard that is inactive. One transaction per island; islands run one after another, and
/// a failure names the island and leaves the islands done before it complete (a re-run
/// finishes the rest).
pub async fn execute(
    config: &Config,
    snapshot: &Snapshot,
    plan: &[Placement],
    activate: bool,
) -> Result<Vec<Allocated>, PgError> {
    let mut by_island: BTreeMap<IslandId, Vec<&Placement>> = BTreeMap::new();
    for p in plan {
        by_island.entry(p.island()).or_default().push(p);
    }
    let mut out = Vec::with_capacity(plan.len());
    for (island, placements) in by_island {
        let node = master_node(config, snapshot, island)?;
        let mut client = connect_with_timeout(&node, config.connect_timeout).await?;
        let q = |e| PgError::query(&node, e);
        let tx = client.transaction().await.map_err(q)?;
        for p in placements {
            let (shard, created, was_active) = match *p {
                Placement::Create { shard, .. } => {
                    tx.batch_execute(&shard_ddl(shard, config.env_digit))
                        .await
                        .map_err(|e| PgError::Shard {
                            shard,
                            msg: format!("island {island}: {}", crate::error::describe(&e)),
                        })?;
                    (shard, true, false)
                }
                Placement::Exists { shard, active, .. } => (shard, false, active),
            };
            let active = was_active || activate;
            if created || active != was_active {
                crate::catalog::registry::set_active(&tx, &node, shard, active).await?;
            }
            out.push(Allocated {
                shard,
                island,
                created,
                active,
            });
        }
        tx.commit().await.map_err(q)?;
    }
    Ok(out)
}
