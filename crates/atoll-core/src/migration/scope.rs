//! A run's scope: `--shards 1-100,4242` and `--island N` on `migrate plan|apply|undo`.
//! A scoped run migrates only the shards inside; the non-shard schemas (the finalizer)
//! run only when the whole keyspace is up to date afterwards ([`Scope::finalizer_allowed`]).

use super::plan::{Plan, SchemaState};
use super::MigrationError;
use crate::island::IslandId;
use crate::shard::{ShardNo, ShardRange};
use serde::Serialize;
use std::collections::BTreeSet;

/// Which shards a run may touch; the default is every shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// Only these shard numbers (`--shards`); `None`: every shard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<String>,
    /// Only shards whose schema is on this island (`--island`); `None`: every island.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub island: Option<IslandId>,
    #[serde(skip)]
    set: Option<BTreeSet<ShardNo>>,
}

impl Scope {
    /// A scope from the flags' values; `shards` is the text of `--shards`.
    pub fn new(shards: Option<&str>, island: Option<IslandId>) -> Result<Scope, MigrationError> {
        let set = match shards {
            None => None,
            Some(text) => {
                let r: ShardRange = text.parse().map_err(|e: crate::ShardError| {
                    MigrationError::BadScope(format!("--shards {text:?}: {e}"))
                })?;
                Some(r.shards().iter().copied().collect::<BTreeSet<_>>())
            }
        };
        Ok(Scope {
            shards: set
                .as_ref()
                .map(|s| ShardRange::from_shards(s.iter().copied().collect()).to_string()),
            island,
            set,
        })
    }

    /// True when the scope is every shard on every island.
    pub fn is_whole(&self) -> bool {
        self.set.is_none() && self.island.is_none()
    }

    /// Whether the run may touch `schema` on `island`. Non-shard schemas are never in a
    /// narrowed scope: they belong to the finalizer.
    pub fn contains(&self, schema: &str, island: IslandId) -> bool {
        let Ok(shard) = ShardNo::from_schema(schema) else {
            return self.is_whole();
        };
        self.island.is_none_or(|i| i == island)
            && self.set.as_ref().is_none_or(|s| s.contains(&shard))
    }

    /// Refuses a scope naming shards the cluster does not have, or an island that holds
    /// none: one line naming them, before anything runs.
    pub fn check(
        &self,
        states: &[SchemaState],
        islands: &[IslandId],
    ) -> Result<(), MigrationError> {
        if let Some(i) = self.island {
            if !islands.contains(&i) {
                return Err(MigrationError::BadScope(format!(
                    "--island {i}: no such island in the config"
                )));
            }
        }
        if let Some(set) = &self.set {
            let present: BTreeSet<ShardNo> = states
                .iter()
                .filter_map(|s| ShardNo::from_schema(&s.schema).ok())
                .collect();
            let missing: Vec<ShardNo> = set.difference(&present).copied().collect();
            if !missing.is_empty() {
                return Err(MigrationError::BadScope(format!(
                    "--shards: {} not in the cluster (shards {})",
                    if missing.len() == 1 {
                        "shard is"
                    } else {
                        "shards are"
                    },
                    ShardRange::from_shards(missing)
                )));
            }
        }
        Ok(())
    }

    /// The non-shard schemas may run only when no shard outside the scope has anything
    /// pending or drifted (those inside must then succeed too, which the run checks).
    pub fn finalizer_allowed(&self, whole: &Plan) -> bool {
        whole
            .schemas
            .iter()
            .filter(|s| s.is_shard() && !self.contains(&s.schema, s.island))
            .all(|s| s.pending.is_empty() && s.drift.is_none())
    }

    /// The scope as one line: `shards 1-100,4242 on island 1`, `every shard`.
    pub fn describe(&self) -> String {
        match (&self.shards, self.island) {
            (None, None) => "every shard".into(),
            (Some(s), None) => format!("shards {s}"),
            (None, Some(i)) => format!("the shards on island {i}"),
            (Some(s), Some(i)) => format!("shards {s} on island {i}"),
        }
    }
}
