//! Migrations, decided without a database: the migration directory's grammar
//! ([`MigrationSet::parse`], pg-mig compatible), statement classification (unsafe,
//! CONCURRENTLY), the per-schema [`plan`] with groups and drift, undo targets, and the
//! grouping of live schema signatures for `schema diff`. `atoll-migrate` does the I/O.

mod directives;
mod files;
mod plan;
mod reindex_names;
mod signature;
pub mod sql;
#[cfg(test)]
mod tests;

pub use directives::Directives;
pub use files::{schema_matches_prefix, Migration, MigrationSet, RunMode, SqlFile};
pub use plan::{
    check_applicable, check_undo, compact_schemas, is_shard_target, plan, plan_undo, ChangedNote,
    Drift, Group, IgnoredSchema, Plan, SchemaPlan, SchemaState, ThrottleNote, UndoTarget,
    UnsafeNote,
};
pub use signature::{group_signatures, SignatureGroup};

use crate::island::IslandId;

/// Why a migration directory or plan is refused. Each message names the file or schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error("migration file {file}: {why}")]
    BadFileName { file: String, why: String },
    #[error("migration file {file}: {why}")]
    BadFile { file: String, why: String },
    #[error("migration file {file} line {line}: {why}")]
    BadDirective {
        file: String,
        line: usize,
        why: String,
    },
    #[error("migration {version}: the .up.sql or the .dn.sql file is missing")]
    MissingPair { version: String },
    #[error("migrations {a} and {b} have the same version number {number}")]
    DuplicateVersion {
        number: String,
        a: String,
        b: String,
    },
    #[error("schema {schema} on island {island}: {why} ({count} schemas drifted; resolve before applying)")]
    Drift {
        count: usize,
        schema: String,
        island: IslandId,
        why: String,
    },
    #[error("{file}: unsafe statement {statement}; re-run with --allow-unsafe to apply it")]
    Unsafe { file: String, statement: String },
    #[error("no migration {0} in the migration directory")]
    UnknownVersion(String),
    #[error("cannot undo {version} on {schema}: its latest version is {latest}; undo that first")]
    NotLatest {
        version: String,
        schema: String,
        latest: String,
    },
}
