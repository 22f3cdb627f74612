//! From the files on disk and what each schema says it has applied, what each schema needs:
//! pending versions (grouped, so thousands of shards in one state are one line), drift
//! (an applied list that is not a prefix of the files), unsafe pending statements.

use super::files::{schema_matches_prefix, Migration, MigrationSet};
use super::{Directives, MigrationError};
use crate::island::IslandId;
use crate::shard::ShardNo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one schema on one island master says it has applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaState {
    /// The schema name (`sh0042`, `public`).
    pub schema: String,
    /// The island whose master holds the schema.
    pub island: IslandId,
    /// The versions recorded as applied there, in no particular order.
    pub applied: Vec<String>,
    /// The checksum recorded with an applied version, where one was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

/// Why a schema's applied list is not a prefix of the files on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// Applied here, but no such file (deleted or renamed).
    MissingOnDisk {
        /// The applied version without a file.
        version: String,
    },
    /// On disk and not applied, although a later version is (merged out of order).
    OutOfOrder {
        /// The version on disk that is not applied.
        version: String,
        /// The latest applied version, which comes after it.
        later: String,
    },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::MissingOnDisk { version } => {
                write!(f, "applied version {version} has no file on disk")
            }
            Drift::OutOfOrder { version, later } => write!(
                f,
                "version {version} is not applied but the later {later} is (out of order)"
            ),
        }
    }
}

/// One schema's part of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaPlan {
    /// The schema name.
    pub schema: String,
    /// The island whose master holds the schema.
    pub island: IslandId,
    /// The migration target whose files apply to it (its longest matching prefix).
    pub target: String,
    /// Versions still to apply, in order; empty when up to date or drifted.
    pub pending: Vec<String>,
    /// Why the schema cannot be planned; `None` when its applied list is a prefix of the files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
}

impl SchemaPlan {
    /// Shards fan out; any other schema (`public`) is part of the finalizer.
    pub fn is_shard(&self) -> bool {
        ShardNo::from_schema(&self.schema).is_ok()
    }
}

/// Schemas that need exactly the same versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The versions every schema of the group still needs, in order.
    pub pending: Vec<String>,
    /// How many schemas need exactly these.
    pub count: usize,
    /// The schemas, compacted (`sh0001-sh0064, public`).
    pub schemas: String,
}

/// A destructive statement in a pending file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsafeNote {
    /// The pending version.
    pub version: String,
    /// The file holding the statement.
    pub file: String,
    /// The statement, as reported by the unsafe check.
    pub statement: String,
    /// The tables it touches (what [`UnsafeShard`] measures on each shard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}

/// How much data a table a destructive pending statement touches holds on one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsafeShard {
    /// The shard's schema.
    pub schema: String,
    /// The table.
    pub table: String,
    /// Its rows: PostgreSQL's estimate (`reltuples`, or the live-row count when never
    /// analysed).
    pub rows: i64,
    /// Its size with indexes and TOAST, in bytes.
    pub bytes: i64,
}

/// A pending file that limits its own parallelism (pg-mig's `-- $name=value` lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThrottleNote {
    /// The pending version.
    pub version: String,
    /// Its up file.
    pub file: String,
    /// The limits the file asks for.
    pub directives: Directives,
}

/// An applied file whose text on disk is no longer what was applied (edited afterwards:
/// the edit will never run where the version is applied already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedNote {
    /// The applied version.
    pub version: String,
    /// Its up file.
    pub file: String,
    /// Schemas whose recorded checksum differs.
    pub count: usize,
    /// One schema whose checksum differs, to look at.
    pub example: String,
}

/// A schema whose name matches a shard target's prefix but is not a shard name
/// (`sh0042_old`, `sh0042_moved_1700000000`, a backup a move kept): never migrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredSchema {
    /// The schema name.
    pub schema: String,
    /// The island whose master holds it.
    pub island: IslandId,
    /// The shard target it matched.
    pub target: String,
}

/// The whole plan; pure data, printable and serialisable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Every schema some target matched, sorted by name then island.
    pub schemas: Vec<SchemaPlan>,
    /// Schemas grouped by identical pending versions, largest group first.
    pub groups: Vec<Group>,
    /// How many schemas have nothing pending and no drift.
    pub up_to_date: usize,
    /// The schemas with drift; a plan with any cannot be applied.
    pub drift: Vec<SchemaPlan>,
    /// Destructive statements in pending up files.
    pub unsafe_pending: Vec<UnsafeNote>,
    /// Targets that no schema matched (a typo, or a schema not created yet).
    pub unmatched_targets: Vec<String>,
    /// Files edited after they were applied (a warning, not drift).
    pub changed: Vec<ChangedNote>,
    /// Schemas matching a shard target that are not shards (left out of the run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<IgnoredSchema>,
    /// Pending files with their own parallelism limits, delay or run-alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttled: Vec<ThrottleNote>,
    /// Per shard, the data held by the tables the unsafe statements touch (filled in by
    /// the caller that reads the shards: `atoll-migrate`), by schema then table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsafe_shards: Vec<UnsafeShard>,
}

impl Plan {
    /// The schemas with versions to apply and no drift.
    pub fn pending_schemas(&self) -> impl Iterator<Item = &SchemaPlan> {
        self.schemas
            .iter()
            .filter(|s| s.drift.is_none() && !s.pending.is_empty())
    }
    /// True when no schema has anything pending and none drifted.
    pub fn is_up_to_date(&self) -> bool {
        self.pending_schemas().next().is_none() && self.drift.is_empty()
    }
}

/// Orders recorded versions like files: by the numeric version, then the full name.
pub(crate) fn version_order(v: &str) -> (usize, String, String) {
    let n = v.split('.').next().unwrap_or("").trim_start_matches('0');
    (n.len(), n.to_string(), v.to_string())
}

/// Plans one schema against the files of its target.
fn plan_schema(files: &[&Migration], state: &SchemaState, target: &str) -> SchemaPlan {
    let mut applied = state.applied.clone();
    applied.sort_by_key(|v| version_order(v));
    let mut plan = SchemaPlan {
        schema: state.schema.clone(),
        island: state.island,
        target: target.to_string(),
        pending: Vec::new(),
        drift: None,
    };
    if let Some(v) = applied
        .iter()
        .find(|v| !files.iter().any(|m| m.version == **v))
    {
        plan.drift = Some(Drift::MissingOnDisk { version: v.clone() });
        return plan;
    }
    let on_disk: Vec<&str> = files.iter().map(|m| m.version.as_str()).collect();
    if on_disk.len() >= applied.len() && on_disk[..applied.len()] == applied[..] {
        plan.pending = on_disk[applied.len()..]
            .iter()
            .map(|v| v.to_string())
            .collect();
    } else if let (Some(missing), Some(later)) = (
        on_disk.iter().find(|v| !applied.iter().any(|a| a == *v)),
        applied.last(),
    ) {
        plan.drift = Some(Drift::OutOfOrder {
            version: missing.to_string(),
            later: later.clone(),
        });
    }
    plan
}

/// Whether a target addresses microshards: `sh` followed by at most four digits (`sh`,
/// `sh00`, `sh0042`). Only real shard names (`shNNNN`) are migrated for such a target.
pub fn is_shard_target(target: &str) -> bool {
    target
        .strip_prefix("sh")
        .is_some_and(|d| d.len() <= 4 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The target `schema` is migrated with, or `Err(target)` when its name matches a shard
/// target without being a shard name (a leftover copy such as `sh0042_old`).
fn target_of<'a>(set: &'a MigrationSet, schema: &str) -> Option<Result<&'a str, &'a str>> {
    let target = set.target_for(schema)?;
    if is_shard_target(target) && ShardNo::from_schema(schema).is_err() {
        Some(Err(target))
    } else {
        Some(Ok(target))
    }
}

/// Plans every schema. Schemas that no target matches are left out; schemas that match a
/// shard target without being shards are listed as ignored.
// Long on purpose: per schema, the target match, drift checks and pending versions are
// one decision read top to bottom.
pub fn plan(set: &MigrationSet, states: &[SchemaState]) -> Plan {
    let mut schemas = Vec::new();
    let mut ignored = Vec::new();
    for state in states {
        let target = match target_of(set, &state.schema) {
            None => continue,
            Some(Ok(t)) => t,
            Some(Err(t)) => {
                ignored.push(IgnoredSchema {
                    schema: state.schema.clone(),
                    island: state.island,
                    target: t.to_string(),
                });
                continue;
            }
        };
        // `$atoll_shards` narrows a file's target to the shards it names.
        let files: Vec<&Migration> = set
            .for_target(target)
            .filter(|m| m.up.directives.runs_on(&state.schema))
            .collect();
        schemas.push(plan_schema(&files, state, target));
    }
    schemas.sort_by(|a, b| a.schema.cmp(&b.schema).then(a.island.cmp(&b.island)));
    let mut by_pending: BTreeMap<Vec<String>, Vec<&str>> = BTreeMap::new();
    let mut up_to_date = 0;
    for s in schemas.iter().filter(|s| s.drift.is_none()) {
        if s.pending.is_empty() {
            up_to_date += 1;
        } else {
            by_pending
                .entry(s.pending.clone())
                .or_default()
                .push(&s.schema);
        }
    }
    let mut groups: Vec<Group> = by_pending
        .into_iter()
        .map(|(pending, names)| Group {
            count: names.len(),
            schemas: compact_schemas(&names, 12),
            pending,
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.pending.cmp(&b.pending)));
    let mut unsafe_pending = Vec::new();
    let pending_versions: std::collections::BTreeSet<&str> = schemas
        .iter()
        .filter(|s| s.drift.is_none())
        .flat_map(|s| s.pending.iter().map(String::as_str))
        .collect();
    let mut throttled = Vec::new();
    for m in &set.migrations {
        if pending_versions.contains(m.version.as_str()) {
            if !m.up.directives.is_empty() {
                throttled.push(ThrottleNote {
                    version: m.version.clone(),
                    file: m.up.file.clone(),
                    directives: m.up.directives.clone(),
                });
            }
            for (i, st) in m.up.unsafe_statements.iter().enumerate() {
                unsafe_pending.push(UnsafeNote {
                    version: m.version.clone(),
                    file: m.up.file.clone(),
                    statement: st.clone(),
                    tables: m.up.unsafe_tables.get(i).cloned().unwrap_or_default(),
                });
            }
        }
    }
    let unmatched_targets = set
        .targets()
        .into_iter()
        .filter(|t| !states.iter().any(|s| schema_matches_prefix(&s.schema, t)))
        .map(str::to_string)
        .collect();
    let drift = schemas
        .iter()
        .filter(|s| s.drift.is_some())
        .cloned()
        .collect();
    let changed = changed_files(set, states);
    ignored.sort_by(|a, b| a.schema.cmp(&b.schema).then(a.island.cmp(&b.island)));
    Plan {
        unsafe_shards: Vec::new(),
        throttled,
        ignored,
        changed,
        schemas,
        groups,
        up_to_date,
        drift,
        unsafe_pending,
        unmatched_targets,
    }
}

/// Applied versions whose recorded checksum differs from the file on disk, per version.
fn changed_files(set: &MigrationSet, states: &[SchemaState]) -> Vec<ChangedNote> {
    let mut by_version: BTreeMap<&str, ChangedNote> = BTreeMap::new();
    for state in states {
        for (version, sum) in &state.checksums {
            let Some(m) = set.migrations.iter().find(|m| &m.version == version) else {
                continue;
            };
            if *sum == m.up.checksum {
                continue;
            }
            by_version
                .entry(m.version.as_str())
                .and_modify(|n| n.count += 1)
                .or_insert_with(|| ChangedNote {
                    version: m.version.clone(),
                    file: m.up.file.clone(),
                    count: 1,
                    example: state.schema.clone(),
                });
        }
    }
    by_version.into_values().collect()
}

/// Refuses a plan that must not be applied: drift anywhere, or unsafe statements without
/// the caller's consent.
pub fn check_applicable(plan: &Plan, allow_unsafe: bool) -> Result<(), MigrationError> {
    if let Some(d) = plan.drift.first() {
        return Err(MigrationError::Drift {
            count: plan.drift.len(),
            schema: d.schema.clone(),
            island: d.island,
            why: d.drift.as_ref().map(|x| x.to_string()).unwrap_or_default(),
        });
    }
    if !allow_unsafe {
        if let Some(u) = plan.unsafe_pending.first() {
            return Err(MigrationError::Unsafe {
                file: u.file.clone(),
                statement: u.statement.clone(),
            });
        }
    }
    Ok(())
}

/// Refuses an undo that must not run: drift anywhere (as apply does: the schemas' state
/// is not what the files say), or destructive statements in the down file without the
/// caller's consent.
pub fn check_undo(
    set: &MigrationSet,
    states: &[SchemaState],
    m: &Migration,
    allow_unsafe: bool,
) -> Result<(), MigrationError> {
    check_applicable(&plan(set, states), true)?;
    match m.dn.unsafe_statements.first() {
        Some(st) if !allow_unsafe => Err(MigrationError::Unsafe {
            file: m.dn.file.clone(),
            statement: st.clone(),
        }),
        _ => Ok(()),
    }
}

/// One schema where `migrate undo` runs the down file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndoTarget {
    /// The schema name.
    pub schema: String,
    /// The island whose master holds it.
    pub island: IslandId,
}

/// The schemas where `version` is the latest applied version. Refuses when some schema has
/// it applied under a later version (undo those first) or the version has no files.
pub fn plan_undo<'a>(
    set: &'a MigrationSet,
    states: &[SchemaState],
    version: &str,
) -> Result<(&'a Migration, Vec<UndoTarget>), MigrationError> {
    let m = set
        .find(version)
        .ok_or_else(|| MigrationError::UnknownVersion(version.to_string()))?;
    let mut out = Vec::new();
    for s in states {
        if !s.applied.contains(&m.version)
            || target_of(set, &s.schema) != Some(Ok(m.target.as_str()))
        {
            continue;
        }
        let latest = s.applied.iter().max_by_key(|v| version_order(v));
        if latest != Some(&m.version) {
            return Err(MigrationError::NotLatest {
                version: m.version.clone(),
                schema: s.schema.clone(),
                latest: latest.cloned().unwrap_or_default(),
            });
        }
        out.push(UndoTarget {
            schema: s.schema.clone(),
            island: s.island,
        });
    }
    out.sort_by(|a, b| a.schema.cmp(&b.schema));
    Ok((m, out))
}

/// Schema names as short text: runs of consecutive shards become `sh0001-sh0064`, other
/// names are listed; after `max` items the rest is counted.
pub fn compact_schemas(names: &[&str], max: usize) -> String {
    let mut shards: Vec<u16> = names
        .iter()
        .filter_map(|n| ShardNo::from_schema(n).ok().map(|s| s.get()))
        .collect();
    shards.sort_unstable();
    shards.dedup();
    let mut items = Vec::new();
    let mut i = 0;
    while i < shards.len() {
        let mut j = i;
        while j + 1 < shards.len() && shards[j + 1] == shards[j] + 1 {
            j += 1;
        }
        items.push(if i == j {
            format!("sh{:04}", shards[i])
        } else {
            format!("sh{:04}-sh{:04}", shards[i], shards[j])
        });
        i = j + 1;
    }
    let mut others: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| ShardNo::from_schema(n).is_err())
        .collect();
    others.sort_unstable();
    items.extend(others.into_iter().map(str::to_string));
    if items.len() > max {
        let rest = items.len() - max;
        items.truncate(max);
        items.push(format!("and {rest} more"));
    }
    items.join(", ")
}
