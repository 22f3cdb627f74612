//! `schema diff`: every microshard should carry the same tables, columns, indexes and
//! constraints. Each shard's live schema is reduced to a set of facts (`column users.nick
//! text`), shards are grouped by identical sets, and every group other than the largest is
//! explained against it ("column users.nick text missing").

use super::plan::compact_schemas;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One group of shards with the same signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureGroup {
    /// How many schemas are in the group.
    pub count: usize,
    /// Compact list of the schemas (`sh0001-sh0040, sh0042`).
    pub schemas: String,
    /// Every schema of the group.
    pub members: Vec<String>,
    /// True for the largest group, the one the others are compared with.
    pub reference: bool,
    /// Facts of the reference this group lacks.
    pub missing: Vec<String>,
    /// Facts this group has and the reference does not.
    pub extra: Vec<String>,
}

impl SignatureGroup {
    /// "sh0042 differs: column users.nick text missing; index x extra".
    pub fn explain(&self) -> String {
        let mut parts: Vec<String> = self
            .missing
            .iter()
            .map(|f| format!("{f} missing"))
            .collect();
        parts.extend(self.extra.iter().map(|f| format!("{f} extra")));
        format!("{} differs: {}", self.schemas, parts.join("; "))
    }
}

/// Groups schemas by their fact sets, largest group first (ties: the group holding the
/// lowest schema name first, so the result is stable).
pub fn group_signatures(schemas: &BTreeMap<String, BTreeSet<String>>) -> Vec<SignatureGroup> {
    let mut by_sig: BTreeMap<&BTreeSet<String>, Vec<&str>> = BTreeMap::new();
    for (schema, facts) in schemas {
        by_sig.entry(facts).or_default().push(schema);
    }
    let mut groups: Vec<(&BTreeSet<String>, Vec<&str>)> = by_sig.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.1[0].cmp(b.1[0])));
    let Some(reference) = groups.first().map(|g| g.0) else {
        return Vec::new();
    };
    groups
        .iter()
        .enumerate()
        .map(|(i, (facts, members))| SignatureGroup {
            count: members.len(),
            schemas: compact_schemas(members, 12),
            members: members.iter().map(|s| s.to_string()).collect(),
            reference: i == 0,
            missing: reference.difference(facts).cloned().collect(),
            extra: facts.difference(reference).cloned().collect(),
        })
        .collect()
}
