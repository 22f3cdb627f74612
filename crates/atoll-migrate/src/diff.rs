//! `schema diff`: the live schema of every microshard reduced to facts (tables, columns
//! with types, indexes, constraints), one query per island master; grouping and
//! explanation are pure ([`atoll_core::migration::group_signatures`]).

use crate::error::MigrateError;
use crate::state::Masters;
use atoll_core::migration::{group_signatures, SignatureGroup};
use atoll_core::{Config, Snapshot};
use atoll_pg::PgError;
use futures::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet};

/// Facts of every shard schema. The schema's own name is cut out of definitions
/// (`ON sh0042.users`), so identical shards give identical facts.
const FACTS_SQL: &str = "
with s as (select oid, nspname::text as nsp from pg_namespace where nspname ~ '^sh[0-9]{4}$'),
t as (select s.nsp, c.oid, c.relname::text as rel from s join pg_class c
      on c.relnamespace = s.oid and c.relkind in ('r', 'p'))
select s.nsp, null::text from s
union all
select t.nsp, 'table ' || t.rel from t
union all
select t.nsp, 'column ' || t.rel || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || case when a.attnotnull then ' not null' else '' end
from t join pg_attribute a on a.attrelid = t.oid and a.attnum > 0 and not a.attisdropped
union all
select s.nsp, 'index ' || ic.relname || ': '
       || replace(pg_get_indexdef(i.indexrelid), ' ' || s.nsp || '.', ' ')
from s join pg_class ic on ic.relnamespace = s.oid and ic.relkind in ('i', 'I')
join pg_index i on i.indexrelid = ic.oid
union all
select s.nsp, 'constraint ' || c.relname || '.' || con.conname || ': '
       || replace(pg_get_constraintdef(con.oid), s.nsp || '.', '')
from s join pg_constraint con on con.connamespace = s.oid
join pg_class c on c.oid = con.conrelid";

/// Reads every shard's facts and groups the shards by them. A schema present on two
/// islands (a copy left by a move) is keyed `shNNNN@island`.
pub async fn schema_diff(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Vec<SignatureGroup>, MigrateError> {
    let masters = Masters::connect(config, snapshot).await?;
    let per_island = try_join_all(
        masters
            .nodes
            .iter()
            .map(|(island, node, client)| async move {
                let rows = client
                    .query(FACTS_SQL, &[])
                    .await
                    .map_err(|e| PgError::query(node, e))?;
                Ok::<_, MigrateError>((*island, rows))
            }),
    )
    .await?;
    let mut facts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut owner: BTreeMap<String, atoll_core::IslandId> = BTreeMap::new();
    for (island, rows) in per_island {
        let mut here: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in rows {
            let set = here.entry(r.get(0)).or_default();
            if let Some(f) = r.get::<_, Option<String>>(1) {
                set.insert(f);
            }
        }
        for (schema, set) in here {
            let key = match owner.get(&schema) {
                Some(_) => format!("{schema}@{island}"),
                None => {
                    owner.insert(schema.clone(), island);
                    schema
                }
            };
            facts.insert(key, set);
        }
    }
    Ok(group_signatures(&facts))
}
