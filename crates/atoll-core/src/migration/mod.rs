//! Migrations, decided without a database: the migration directory's grammar
//! ([`MigrationSet::parse`], pg-mig compatible), statement classification (unsafe,
//! CONCURRENTLY), the per-schema [`plan`] with groups and drift, undo targets, and the
//! grouping of live schema signatures for `schema diff`. `atoll-migrate` does the I/O.

pub(crate) mod converge;
mod directives;
mod files;
mod lexer;
#[cfg(test)]
mod lexer_tests;
mod plan;
mod plan_file;
#[cfg(test)]
mod plan_file_tests;
mod reindex_names;
mod scope;
mod shard_state;
mod signature;
pub mod sql;
#[cfg(test)]
mod tests;
mod touched;

pub use converge::{converge, ConvergeGroup};
pub use directives::Directives;
pub use files::{schema_matches_prefix, Migration, MigrationSet, RunMode, SqlFile};
pub use plan::{
    check_applicable, check_undo, compact_schemas, is_shard_target, plan, plan_undo, ChangedNote,
    Drift, Group, IgnoredSchema, Plan, SchemaPlan, SchemaState, ThrottleNote, UndoTarget,
    UnsafeNote, UnsafeShard,
};
pub use plan_file::{PlanFile, PlanGroup, PlannedJob, PlannedVersion, PLAN_FORMAT};
pub use scope::Scope;
pub use shard_state::{summarize, RunSummary, ShardRow, ShardState, StateGroup, SHOWN_ORDER};
pub use signature::{group_signatures, SignatureGroup};

use crate::island::IslandId;
use std::borrow::Cow;

/// `text` as an error shows it: as is, or escaped when it holds a control character (a
/// file name with a newline, a line with a carriage return), so the error stays one line.
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.escape_debug().to_string())
    } else {
        Cow::Borrowed(text)
    }
}

/// Why a migration directory or plan is refused. Each message names the file or schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    /// A file name does not follow `<version>.<name>.<target>.up.sql` / `.dn.sql`.
    #[error("migration file {}: {why}", shown(file))]
    BadFileName {
        /// The file name.
        file: String,
        /// Which part of the name is wrong.
        why: String,
    },
    /// A file's content is refused (transaction control, unsupported CONCURRENTLY, mixing).
    #[error("migration file {file}: {why}")]
    BadFile {
        /// The file name.
        file: String,
        /// What is wrong, quoting the statement.
        why: String,
    },
    /// A `-- $name=value` line is unknown, repeated or has a bad value.
    #[error("migration file {file} line {line}: {why}")]
    BadDirective {
        /// The file name.
        file: String,
        /// 1-based line of the directive.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A version has an up file without a down file, or the reverse.
    #[error("migration {version}: the .up.sql or the .dn.sql file is missing")]
    MissingPair {
        /// The version, `<version>.<name>.<target>`.
        version: String,
    },
    /// Two migrations share one version number.
    #[error("migrations {a} and {b} have the same version number {number}")]
    DuplicateVersion {
        /// The shared number.
        number: String,
        /// One of the two versions.
        a: String,
        /// The other version.
        b: String,
    },
    /// Some schema's applied list is not a prefix of the files; names the first such schema.
    #[error("schema {schema} on island {island}: {why} ({count} schemas drifted; resolve before applying)")]
    Drift {
        /// How many schemas drifted.
        count: usize,
        /// The first drifted schema.
        schema: String,
        /// The island whose master holds it.
        island: IslandId,
        /// How it drifted.
        why: String,
    },
    /// A statement is destructive and the caller did not pass `--allow-unsafe`.
    #[error("{file}: unsafe statement {statement}; re-run with --allow-unsafe to apply it")]
    Unsafe {
        /// The file holding it.
        file: String,
        /// The statement, as reported by the unsafe check.
        statement: String,
    },
    /// `--shards` / `--island` name shards or an island the cluster does not have.
    #[error("{0}")]
    BadScope(String),
    /// A plan file (`apply --plan`) is malformed, for another cluster, or no longer
    /// matches the files or a schema's state; `why` names the file or the schema.
    #[error("plan file {path}: {why}")]
    Plan {
        /// The plan file's path as given.
        path: String,
        /// What is wrong, naming the migration file or the schema.
        why: String,
    },
    /// `migrate undo` named a version that is not in the directory.
    #[error("no migration {0} in the migration directory")]
    UnknownVersion(String),
    /// `migrate undo` of a version that some schema has applied under a later one.
    #[error("cannot undo {version} on {schema}: its latest version is {latest}; undo that first")]
    NotLatest {
        /// The version to undo.
        version: String,
        /// A schema where it is not the latest.
        schema: String,
        /// That schema's latest applied version.
        latest: String,
    },
}
