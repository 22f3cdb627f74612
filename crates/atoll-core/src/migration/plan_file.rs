//! A reviewed plan (`migrate plan --out plan.json`, `migrate apply --plan plan.json`):
//! per group of schemas in one state, the versions applied there, the versions to apply
//! with their files' checksums and the unsafe notes, for one cluster id. Applying it runs
//! exactly those versions on exactly those schemas, and refuses (naming the file or the
//! shard) when anything differs from what the plan was computed from: fail closed.
//!
//! The file carries a digest of its content, so an edited or damaged file is refused too.
//! The digest is not a signature: it catches edits, not an attacker who recomputes it.

use super::files::MigrationSet;
use super::plan::{Plan, SchemaState, UnsafeNote, UnsafeShard};
use super::scope::Scope;
use super::MigrationError;
use crate::island::IslandId;
use crate::shard::{ShardNo, ShardRange};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The plan file format this build writes and reads.
pub const PLAN_FORMAT: u32 = 1;

/// A version the plan applies, with the checksum of its up file when planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedVersion {
    /// `<version>.<name>.<target>`.
    pub version: String,
    /// Its up file.
    pub file: String,
    /// The up file's checksum when the plan was made.
    pub checksum: String,
}

/// Schemas in one state: the same versions applied, the same versions to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanGroup {
    /// The shard numbers, as ranges (`1-64,70`); empty when the group has none.
    pub shards: String,
    /// Non-shard schemas of the group (`public`), run by the finalizer.
    pub schemas: Vec<String>,
    /// How many schemas the group holds.
    pub count: usize,
    /// The state the plan was computed from: the versions applied there, in order.
    pub applied: Vec<String>,
    /// The versions to apply, in order.
    pub pending: Vec<PlannedVersion>,
    /// Destructive statements among them.
    #[serde(default)]
    pub unsafe_notes: Vec<UnsafeNote>,
    /// On the group's shards, the data held by the tables those statements touch.
    #[serde(default)]
    pub unsafe_shards: Vec<UnsafeShard>,
}

/// The whole reviewed plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// [`PLAN_FORMAT`].
    pub format: u32,
    /// The cluster id (`atoll.meta`) the plan was computed on.
    pub cluster_id: String,
    /// What the plan was scoped to, as one line (`shards 1-100`, `every shard`).
    pub scope: String,
    /// The groups, largest first.
    pub groups: Vec<PlanGroup>,
    /// The digest of everything above (see [`PlanFile::digest_of`]).
    pub digest: String,
}

/// One schema's part of an accepted plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedJob {
    /// The schema.
    pub schema: String,
    /// The island whose master holds it now.
    pub island: IslandId,
    /// The versions to run there, in order.
    pub versions: Vec<String>,
}

fn applied_sorted(s: &SchemaState) -> Vec<String> {
    let mut v = s.applied.clone();
    v.sort_by_key(|v| super::plan::version_order(v));
    v
}

impl PlanFile {
    /// The plan file for `plan` (the whole cluster's) within `scope`. Non-shard schemas
    /// are included only when the scope leaves no shard behind. Refuses a plan with drift.
    pub fn build(
        cluster_id: &str,
        scope: &Scope,
        set: &MigrationSet,
        plan: &Plan,
        states: &[SchemaState],
    ) -> Result<PlanFile, MigrationError> {
        super::plan::check_applicable(plan, true)?;
        let finalizer = scope.finalizer_allowed(plan);
        let applied: BTreeMap<(&str, IslandId), Vec<String>> = states
            .iter()
            .map(|s| ((s.schema.as_str(), s.island), applied_sorted(s)))
            .collect();
        type Key = (Vec<String>, Vec<String>);
        let mut by_state: BTreeMap<Key, (Vec<ShardNo>, Vec<String>)> = BTreeMap::new();
        for s in plan.pending_schemas() {
            let included = if s.is_shard() {
                scope.contains(&s.schema, s.island)
            } else {
                finalizer
            };
            if !included {
                continue;
            }
            let done = applied
                .get(&(s.schema.as_str(), s.island))
                .cloned()
                .unwrap_or_default();
            let entry = by_state.entry((done, s.pending.clone())).or_default();
            match ShardNo::from_schema(&s.schema) {
                Ok(n) => entry.0.push(n),
                Err(_) => entry.1.push(s.schema.clone()),
            }
        }
        let mut groups: Vec<PlanGroup> = by_state
            .into_iter()
            .map(|((applied, pending), (shards, schemas))| {
                let pending: Vec<PlannedVersion> = pending
                    .iter()
                    .filter_map(|v| set.migrations.iter().find(|m| &m.version == v))
                    .map(|m| PlannedVersion {
                        version: m.version.clone(),
                        file: m.up.file.clone(),
                        checksum: m.up.checksum.clone(),
                    })
                    .collect();
                let unsafe_notes = plan
                    .unsafe_pending
                    .iter()
                    .filter(|u| pending.iter().any(|p| p.version == u.version))
                    .cloned()
                    .collect();
                let members: BTreeSet<String> = shards.iter().map(|s| s.schema()).collect();
                let unsafe_shards = plan
                    .unsafe_shards
                    .iter()
                    .filter(|u| members.contains(&u.schema))
                    .cloned()
                    .collect();
                PlanGroup {
                    unsafe_shards,
                    count: shards.len() + schemas.len(),
                    shards: ShardRange::from_shards(shards).to_string(),
                    schemas,
                    applied,
                    pending,
                    unsafe_notes,
                }
            })
            .collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.shards.cmp(&b.shards)));
        let mut file = PlanFile {
            format: PLAN_FORMAT,
            cluster_id: cluster_id.to_string(),
            scope: scope.describe(),
            groups,
            digest: String::new(),
        };
        file.digest = file.digest_of();
        Ok(file)
    }

    /// The digest of the plan's content: xxh3-128 of its canonical JSON without the digest.
    pub fn digest_of(&self) -> String {
        let mut body = self.clone();
        body.digest = String::new();
        let text = serde_json::to_string(&body).unwrap_or_default();
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }

    /// Reads a plan file's text; `path` names it in errors. Refuses what is not a plan of
    /// this format, or whose digest does not match its content.
    pub fn parse(path: &str, text: &str) -> Result<PlanFile, MigrationError> {
        let bad = |why: String| MigrationError::Plan {
            path: path.to_string(),
            why,
        };
        let file: PlanFile = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not a plan file written by `migrate plan --out`: {e}"
            ))
        })?;
        if file.format != PLAN_FORMAT {
            return Err(bad(format!(
                "format {} is not supported (this build reads format {PLAN_FORMAT})",
                file.format
            )));
        }
        if file.digest != file.digest_of() {
            return Err(bad(
                "its content does not match its digest (edited or damaged); write a new one with `migrate plan --out`".into(),
            ));
        }
        for g in &file.groups {
            if !g.shards.is_empty() {
                g.shards
                    .parse::<ShardRange>()
                    .map_err(|e| bad(format!("group shards: {e}")))?;
            }
        }
        Ok(file)
    }

    /// The jobs the plan runs, after checking that the cluster, the files and every
    /// schema's state are what the plan was computed from. `done_by_plan` are schemas an
    /// earlier run of this same plan (same digest) finished: they are skipped, once.
    pub fn check(
        &self,
        path: &str,
        cluster_id: &str,
        set: &MigrationSet,
        states: &[SchemaState],
        done_by_plan: &BTreeSet<String>,
    ) -> Result<Vec<PlannedJob>, MigrationError> {
        let bad = |why: String| MigrationError::Plan {
            path: path.to_string(),
            why,
        };
        if self.cluster_id != cluster_id {
            return Err(bad(format!(
                "it was made for cluster {}, this is cluster {cluster_id}",
                self.cluster_id
            )));
        }
        self.check_files(set).map_err(bad)?;
        let mut by_schema: BTreeMap<&str, Vec<&SchemaState>> = BTreeMap::new();
        for s in states {
            by_schema.entry(&s.schema).or_default().push(s);
        }
        let mut jobs = Vec::new();
        let mut changed: Vec<String> = Vec::new();
        for g in &self.groups {
            let pending: Vec<String> = g.pending.iter().map(|p| p.version.clone()).collect();
            let mut finished = g.applied.clone();
            finished.extend(pending.iter().cloned());
            let shards = if g.shards.is_empty() {
                Vec::new()
            } else {
                g.shards
                    .parse::<ShardRange>()
                    .map_err(|e| bad(format!("group shards: {e}")))?
                    .shards()
                    .iter()
                    .map(|s| s.schema())
                    .collect()
            };
            for schema in shards.iter().chain(&g.schemas) {
                let Some(found) = by_schema.get(schema.as_str()) else {
                    changed.push(format!("{schema} is not in the cluster any more"));
                    continue;
                };
                for s in found {
                    let now = applied_sorted(s);
                    if now == g.applied {
                        jobs.push(PlannedJob {
                            schema: s.schema.clone(),
                            island: s.island,
                            versions: pending.clone(),
                        });
                    } else if !(now == finished && done_by_plan.contains(schema)) {
                        changed.push(format!(
                            "{schema} (island {}) has applied {} since, the plan expected {}",
                            s.island,
                            last_or_none(&now),
                            last_or_none(&g.applied)
                        ));
                    }
                }
            }
        }
        if let Some(first) = changed.first() {
            let more = match changed.len() {
                1 => String::new(),
                n => format!(" (and {} more schemas)", n - 1),
            };
            return Err(bad(format!(
                "schema {first}{more}; nothing applied, write a new plan"
            )));
        }
        Ok(jobs)
    }

    /// Every planned file is on disk with the checksum it had, and no new file on disk
    /// comes before a planned one of its target (it would be skipped: drift).
    fn check_files(&self, set: &MigrationSet) -> Result<(), String> {
        let mut planned: BTreeSet<&str> = BTreeSet::new();
        for g in &self.groups {
            for p in &g.pending {
                let Some(m) = set.migrations.iter().find(|m| m.version == p.version) else {
                    return Err(format!("migration file {} is gone", p.file));
                };
                if m.up.checksum != p.checksum {
                    return Err(format!(
                        "migration file {} changed since the plan; nothing applied, write a new plan",
                        p.file
                    ));
                }
                planned.insert(&m.version);
            }
        }
        for g in &self.groups {
            let Some(last) = g.pending.last() else {
                continue;
            };
            let Some(lm) = set.migrations.iter().find(|m| m.version == last.version) else {
                continue;
            };
            let skipped = set.for_target(&lm.target).find(|m| {
                !planned.contains(m.version.as_str())
                    && !g.applied.contains(&m.version)
                    && super::plan::version_order(&m.version)
                        < super::plan::version_order(&lm.version)
            });
            if let Some(m) = skipped {
                return Err(format!(
                    "migration file {} is new and comes before the planned {}; write a new plan",
                    m.up.file, lm.up.file
                ));
            }
        }
        Ok(())
    }

    /// Every schema the plan names, shards as numbers.
    pub fn schemas(&self) -> usize {
        self.groups.iter().map(|g| g.count).sum()
    }
}

fn last_or_none(v: &[String]) -> String {
    match v.last() {
        Some(l) => format!("up to {l}"),
        None => "nothing".into(),
    }
}
