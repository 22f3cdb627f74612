//! `atoll.global_copy` (catalog step 12): on a copy island's master, the record that its
//! `sh0000` schema is a read-only copy of shard 0's cluster-wide tables, kept by logical
//! replication from shard 0's master, and how far its creation got. Discovery reads the
//! table to leave the copy out of the shards ([`crate::discovery`]).
//!
//! Writers: `atoll-move`'s global copies only, through these functions.

use crate::error::PgError;
use atoll_core::{IslandId, NodeConfig};
use tokio_postgres::GenericClient;

/// How far a copy's creation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    /// The schema exists (tables, keys, read-only triggers); no subscription yet.
    Creating,
    /// The subscription exists and copies the rows.
    Copying,
    /// Copied, caught up and verified; replication keeps it current.
    Ready,
}

impl CopyState {
    /// The `state` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Creating => "creating",
            CopyState::Copying => "copying",
            CopyState::Ready => "ready",
        }
    }

    fn parse(s: &str) -> Option<CopyState> {
        [CopyState::Creating, CopyState::Copying, CopyState::Ready]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// A copy's record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyRow {
    /// The island whose master it replicates from (shard 0's).
    pub source_island: IslandId,
    /// The publication on the source.
    pub publication: String,
    /// The subscription here (and its slot on the source, same name).
    pub subscription: String,
    /// The tables copied, unqualified.
    pub tables: Vec<String>,
    /// How far its creation got.
    pub state: CopyState,
}

fn table_error(node: &NodeConfig, e: tokio_postgres::Error) -> PgError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
        return PgError::Refused(format!(
            "node {node}: atoll.global_copy does not exist; run `atoll init` to upgrade the catalog"
        ));
    }
    PgError::query(node, e)
}

/// This master's copy record, if it holds a copy.
pub async fn get(
    client: &impl GenericClient,
    node: &NodeConfig,
) -> Result<Option<CopyRow>, PgError> {
    let row = client
        .query_opt(
            "select source_island, publication, subscription, tables, state
             from atoll.global_copy where schema = 'sh0000'",
            &[],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    let Some(r) = row else { return Ok(None) };
    let island: i32 = r.get(0);
    let state: String = r.get(4);
    let bad = |what: String| PgError::Refused(format!("node {node}: atoll.global_copy: {what}"));
    Ok(Some(CopyRow {
        source_island: u16::try_from(island)
            .map(IslandId)
            .map_err(|_| bad(format!("source island {island}")))?,
        publication: r.get(1),
        subscription: r.get(2),
        tables: r.get(3),
        state: CopyState::parse(&state).ok_or_else(|| bad(format!("state {state:?}")))?,
    }))
}

/// Records the tables the copy now holds (`atoll global replicate --tables`).
pub async fn set_tables(
    client: &impl GenericClient,
    node: &NodeConfig,
    tables: &[String],
) -> Result<(), PgError> {
    client
        .execute(
            "update atoll.global_copy set tables = $1, changed_at = now() where schema = 'sh0000'",
            &[&tables],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    Ok(())
}

/// Records that the copy now follows `island`'s master (shard 0 moved there).
pub async fn set_source(
    client: &impl GenericClient,
    node: &NodeConfig,
    island: IslandId,
) -> Result<(), PgError> {
    client
        .execute(
            "update atoll.global_copy set source_island = $1, changed_at = now() where schema = 'sh0000'",
            &[&i32::from(island.0)],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    Ok(())
}

/// Forgets this master's copy (its schema is being dropped: shard 0 moves here).
pub async fn delete(client: &impl GenericClient, node: &NodeConfig) -> Result<(), PgError> {
    client
        .execute("delete from atoll.global_copy where schema = 'sh0000'", &[])
        .await
        .map_err(|e| table_error(node, e))?;
    Ok(())
}

/// The schemas this master holds as copies (none when its catalog predates step 12).
pub async fn copy_schemas(
    client: &impl GenericClient,
    node: &NodeConfig,
) -> Result<Vec<String>, PgError> {
    if !super::has_table(client, node, "atoll.global_copy").await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query("select schema from atoll.global_copy", &[])
        .await
        .map_err(|e| table_error(node, e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records a new copy (state `creating`); part of the transaction creating its schema.
pub async fn insert(
    client: &impl GenericClient,
    node: &NodeConfig,
    row: &CopyRow,
) -> Result<(), PgError> {
    client
        .execute(
            "insert into atoll.global_copy (schema, source_island, publication, subscription, tables, state)
             values ('sh0000', $1, $2, $3, $4, $5)",
            &[
                &i32::from(row.source_island.0),
                &row.publication,
                &row.subscription,
                &row.tables,
                &row.state.as_str(),
            ],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    Ok(())
}

/// Moves the copy to `state`.
pub async fn set_state(
    client: &impl GenericClient,
    node: &NodeConfig,
    state: CopyState,
) -> Result<(), PgError> {
    client
        .execute(
            "update atoll.global_copy set state = $1, changed_at = now() where schema = 'sh0000'",
            &[&state.as_str()],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    Ok(())
}

/// The statements that make `schema.table` refuse writes (not replication's).
pub fn read_only_sql(qualified: &str) -> String {
    format!(
        "create trigger atoll_read_only before insert or update or delete on {qualified}
             for each statement execute function atoll.global_copy_read_only();
         create trigger atoll_read_only_truncate before truncate on {qualified}
             for each statement execute function atoll.global_copy_read_only();"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_what_they_write_and_match_the_step() {
        let step = include_str!("steps/012_global_copy.sql");
        for s in [CopyState::Creating, CopyState::Copying, CopyState::Ready] {
            assert_eq!(CopyState::parse(s.as_str()), Some(s));
            assert!(step.contains(&format!("'{}'", s.as_str())));
        }
    }
}
