//! The `atoll` catalog schema on each island master, and the one place that reads and
//! writes it: no other crate sends catalog SQL. One module per catalog area, each with
//! typed accessors:
//!
//! | module | tables | kept on |
//! |---|---|---|
//! | this one | `atoll.meta`, `atoll.catalog_steps` | every island master |
//! | [`registry`] | `atoll.shards` (active flag, weight, generation; changes announced on `atoll_shards`) | every island master, for its own shards |
//! | [`moves`] | `atoll.moves` (with a finished move's timings from step 11), `atoll.move_ticks` | the source and destination masters of a move |
//! | [`move_status`] | reads `atoll.moves` (times, table-sync slots) for status | every island master |
//! | [`migration_runs`] | `atoll.migration_runs`, `atoll.migration_lock`, `atoll.migration_state()` | the coordination island's master |
//! | [`migration_shards`] | `atoll.migration_shards` (a run's per-schema state), the control columns of `atoll.migration_runs` | the coordination island's master |
//! | [`global_copy`] | `atoll.global_copy` (this island's `sh0000` is a read-only copy of shard 0's tables), `atoll.global_copy_read_only()` | a copy island's master |
//! | [`global_handoff`] | `atoll.global_handoff` (a move of shard 0 handing its copies over: slots and switch position) | shard 0's destination master |
//! | [`id_leases`] | `atoll.id_leases` | the coordination island's master |
//! | [`action_log`] | `atoll.action_log` (who did what through the control plane, and how it ended) | the coordination island's master |
//! | [`shard_endpoints`] | `atoll.shard_endpoints` (node addresses, `auth_kind`, keychain alias) | the coordination island's master |
//!
//! The DDL is a list of numbered steps (`steps/NNN_name.sql`), each applied once per island
//! and tracked by name in `atoll.catalog_steps`, so subsystems add steps independently. The
//! catalog version is the number of the last step applied.

pub mod action_log;
pub mod global_copy;
pub mod global_handoff;
pub mod id_leases;
pub mod migration_runs;
pub mod migration_shards;
pub mod move_status;
pub mod moves;
pub mod registry;
pub mod shard_endpoints;

use crate::error::PgError;
use atoll_core::{IslandId, NodeConfig};
use tokio_postgres::Client;

/// Catalog steps, applied in order: (version, name, SQL).
pub const STEPS: &[(u32, &str, &str)] = &[
    (1, "core", include_str!("steps/001_core.sql")),
    (2, "migrate", include_str!("steps/002_migrate.sql")),
    (3, "move", include_str!("steps/003_move.sql")),
    (4, "id_leases", include_str!("steps/004_id_leases.sql")),
    (5, "move_abort", include_str!("steps/005_move_abort.sql")),
    (
        6,
        "shard_notices",
        include_str!("steps/006_shard_notices.sql"),
    ),
    (
        7,
        "migration_shards",
        include_str!("steps/007_migration_shards.sql"),
    ),
    (
        8,
        "shard_endpoints",
        include_str!("steps/008_shard_endpoints.sql"),
    ),
    (
        9,
        "move_identity",
        include_str!("steps/009_move_identity.sql"),
    ),
    (10, "action_log", include_str!("steps/010_action_log.sql")),
    (
        11,
        "move_timings",
        include_str!("steps/011_move_timings.sql"),
    ),
    (12, "global_copy", include_str!("steps/012_global_copy.sql")),
    (
        13,
        "global_handoff",
        include_str!("steps/013_global_handoff.sql"),
    ),
];

/// Whether `table` (qualified, e.g. `atoll.moves`) exists: a catalog step not yet
/// installed reads as absent, so callers can say "run `atoll init`".
pub(crate) async fn has_table(
    client: &impl tokio_postgres::GenericClient,
    node: &NodeConfig,
    table: &str,
) -> Result<bool, PgError> {
    let q = |e| PgError::query(node, e);
    client
        .query_one("select to_regclass($1) is not null", &[&table])
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)
}

/// The catalog version this build installs.
pub fn current_version() -> u32 {
    STEPS.iter().map(|s| s.0).max().unwrap_or(0)
}

/// What a master's catalog says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CatalogMeta {
    /// The cluster id `atoll init` gave the cluster, the same on every island.
    pub cluster_id: String,
    /// The island this master's catalog says it belongs to.
    pub island: IslandId,
    /// The catalog version installed there (see [`current_version`]).
    pub version: u32,
}

/// What `install` did on one island.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstallOutcome {
    /// The island whose master was installed.
    pub island: IslandId,
    /// The cluster id written to its catalog.
    pub cluster_id: String,
    /// The catalog version found before; 0 on a fresh master.
    pub from_version: u32,
    /// The catalog version after the install.
    pub to_version: u32,
    /// Names of the catalog steps this install ran; empty when it was up to date.
    pub steps_applied: Vec<String>,
}

/// Reads the catalog meta; `None` when `atoll init` has not run on this node.
pub async fn read_meta(client: &Client, node: &NodeConfig) -> Result<Option<CatalogMeta>, PgError> {
    let q = |e| PgError::query(node, e);
    if !has_table(client, node, "atoll.meta").await? {
        return Ok(None);
    }
    let rows = client
        .query("select key, value from atoll.meta", &[])
        .await
        .map_err(q)?;
    let get = |k: &str| {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == k)
            .map(|r| r.get::<_, String>(1))
    };
    let (Some(cluster_id), Some(island), Some(version)) =
        (get("cluster_id"), get("island"), get("catalog_version"))
    else {
        return Ok(None);
    };
    let bad = |what: &str, v: &str| {
        PgError::Refused(format!(
            "node {node}: atoll.meta {what} = {v:?} is malformed"
        ))
    };
    Ok(Some(CatalogMeta {
        cluster_id,
        island: IslandId(island.parse().map_err(|_| bad("island", &island))?),
        version: version
            .parse()
            .map_err(|_| bad("catalog_version", &version))?,
    }))
}

/// Installs or upgrades the catalog on one island master, in one transaction, serialised
/// with any concurrent `init` by an advisory lock. Refuses a master that already belongs to
/// another cluster or island, or whose catalog is newer than this build.
pub async fn install(
    client: &mut Client,
    node: &NodeConfig,
    island: IslandId,
    cluster_id: &str,
) -> Result<InstallOutcome, PgError> {
    let q = |e| PgError::query(node, e);
    let tx = client.transaction().await.map_err(q)?;
    tx.execute(
        "select pg_advisory_xact_lock($1)",
        &[&crate::locks::CATALOG_INSTALL],
    )
    .await
    .map_err(q)?;
    tx.batch_execute(
        "create schema if not exists atoll;
         create table if not exists atoll.catalog_steps (
             step text primary key,
             version integer not null,
             applied_at timestamptz not null default now()
         );",
    )
    .await
    .map_err(q)?;
    let applied: Vec<(String, i32)> = tx
        .query("select step, version from atoll.catalog_steps", &[])
        .await
        .map_err(q)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let from_version = applied.iter().map(|a| a.1 as u32).max().unwrap_or(0);
    if from_version > current_version() {
        return Err(PgError::Refused(format!(
            "island {island}: catalog version {from_version} is newer than this atoll ({}); upgrade atoll",
            current_version()
        )));
    }
    if !applied.is_empty() {
        check_membership(&tx, node, island, cluster_id).await?;
    }
    let mut steps_applied = Vec::new();
    for (version, name, sql) in STEPS {
        if applied.iter().any(|a| a.0 == *name) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(q)?;
        tx.execute(
            "insert into atoll.catalog_steps (step, version) values ($1, $2)",
            &[name, &(*version as i32)],
        )
        .await
        .map_err(q)?;
        steps_applied.push(name.to_string());
    }
    let to_version = from_version.max(current_version());
    tx.execute(
        "insert into atoll.meta (key, value) values ('cluster_id', $1), ('island', $2), ('catalog_version', $3)
         on conflict (key) do update set value = excluded.value",
        &[&cluster_id, &island.to_string(), &to_version.to_string()],
    )
    .await
    .map_err(q)?;
    tx.commit().await.map_err(q)?;
    Ok(InstallOutcome {
        island,
        cluster_id: cluster_id.to_string(),
        from_version,
        to_version,
        steps_applied,
    })
}

/// Refuses a catalog that belongs to another cluster, or says it is another island.
async fn check_membership(
    client: &impl tokio_postgres::GenericClient,
    node: &NodeConfig,
    island: IslandId,
    cluster_id: &str,
) -> Result<(), PgError> {
    let rows = client
        .query(
            "select key, value from atoll.meta where key in ('cluster_id', 'island')",
            &[],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    for r in rows {
        let (k, v): (&str, &str) = (r.get(0), r.get(1));
        match k {
            "cluster_id" if v != cluster_id => {
                return Err(PgError::Refused(format!(
                    "island {island} (node {node}) belongs to another cluster {v}, not {cluster_id}"
                )))
            }
            "island" if v != island.to_string() => {
                return Err(PgError::Refused(format!(
                    "node {node} is configured as island {island} but its catalog says island {v}"
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A new random cluster id (128 bits, hex).
pub fn new_cluster_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// `atoll init`: installs or upgrades the catalog on every island master. All masters are
/// checked first (reachable, same cluster), so a refusal installs nothing anywhere. A new
/// cluster gets a new id; islands added later join the id the others already have.
pub async fn init(
    config: &atoll_core::Config,
    snapshot: &atoll_core::Snapshot,
) -> Result<Vec<InstallOutcome>, PgError> {
    let mut masters = Vec::new();
    for island in &config.islands {
        masters.push((
            island.id,
            crate::master::master_node(config, snapshot, island.id)?,
        ));
    }
    let mut ids: Vec<(IslandId, String)> = snapshot
        .islands
        .iter()
        .filter_map(|i| Some((i.id, i.cluster_id.clone()?)))
        .collect();
    ids.dedup_by(|a, b| a.1 == b.1);
    let cluster_id = match ids.as_slice() {
        [] => new_cluster_id(),
        [(_, id)] => id.clone(),
        [(a, x), (b, y), ..] => {
            return Err(PgError::Refused(format!(
                "islands disagree on the cluster id: island {a} has {x}, island {b} has {y}; refusing to init"
            )))
        }
    };
    let mut out = Vec::new();
    for (island, node) in masters {
        let mut client =
            crate::connect::connect_with_timeout(&node, config.connect_timeout).await?;
        out.push(install(&mut client, &node, island, &cluster_id).await?);
    }
    Ok(out)
}
