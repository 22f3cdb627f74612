//! The migration directory, as pg-mig defines it: `<version>.<name>.<target>.up.sql` and
//! `.dn.sql` pairs, optional `before.sql` / `after.sql`. `<version>` is digits (a UTC
//! timestamp from `migrate new`), `<target>` a schema prefix: `sh` for every microshard,
//! `sh0000` for one, or a non-shard schema such as `public`. The version recorded in a
//! schema is the file name without `.up.sql`, as pg-mig records it.
//!
//! Parsing is pure: the caller reads the directory and hands over (file name, text) pairs.
//! Every rule is checked before anything runs, so a bad directory applies nothing.

use super::sql::{checksum, statements, ConcurrentIndex, ConcurrentOp};
use super::{Directives, MigrationError};
use serde::Serialize;
use std::collections::BTreeMap;

/// How a file is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum RunMode {
    /// In one transaction with the version row.
    Transaction,
    /// Statement by statement outside a transaction (`CREATE/DROP INDEX CONCURRENTLY`,
    /// `REINDEX ... CONCURRENTLY`).
    Concurrently {
        /// The file's statements, each run on its own in file order.
        statements: Vec<ConcurrentIndex>,
    },
}

/// One `.up.sql` or `.dn.sql` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SqlFile {
    /// The file name, `<version>.<name>.<target>.up.sql` or `.dn.sql`.
    pub file: String,
    /// The file's whole text, as run.
    #[serde(skip)]
    pub sql: String,
    /// Whether it runs in one transaction or statement by statement.
    pub mode: RunMode,
    /// Destructive statements found (`DROP TABLE`, `DROP COLUMN`, ...).
    pub unsafe_statements: Vec<String>,
    /// For each of [`SqlFile::unsafe_statements`], the tables it touches (empty when it
    /// names none, like `DROP SCHEMA` or a `DO` block).
    #[serde(skip)]
    pub unsafe_tables: Vec<Vec<String>>,
    /// The [`checksum`](super::sql::checksum) of the text, recorded with the applied version.
    pub checksum: String,
    /// pg-mig's `-- $parallelism_per_host=N` and friends.
    pub directives: Directives,
}

/// One migration: an up/down pair for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migration {
    /// `<version>.<name>.<target>`: what is recorded in each schema.
    pub version: String,
    /// The `<version>` part: digits, usually a UTC timestamp; orders the migrations.
    pub number: String,
    /// The `<name>` part: letters, digits, `_` and `-`.
    pub name: String,
    /// The `<target>` part: the schema prefix it applies to (`sh`, `sh0000`, `public`).
    pub target: String,
    /// The `.up.sql` file: applies the migration.
    pub up: SqlFile,
    /// The `.dn.sql` file: undoes it (`migrate undo`).
    pub dn: SqlFile,
}

/// Everything in a migration directory, validated and in version order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrationSet {
    /// Every migration, in version order.
    pub migrations: Vec<Migration>,
    /// The text of `before.sql`, if the directory has one.
    #[serde(skip)]
    pub before: Option<String>,
    /// The text of `after.sql`, if the directory has one.
    #[serde(skip)]
    pub after: Option<String>,
}

/// Splits `<version>.<name>.<target>.<up|dn>.sql`.
fn split_name(file: &str) -> Result<(String, String, String, bool), MigrationError> {
    let bad = |why: &str| MigrationError::BadFileName {
        file: file.to_string(),
        why: why.to_string(),
    };
    let parts: Vec<&str> = file.split('.').collect();
    let [number, name, target, dir, "sql"] = parts.as_slice() else {
        return Err(bad("expected <version>.<name>.<target>.up.sql or .dn.sql"));
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the version must be digits"));
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad("the name may hold only letters, digits, _ and -"));
    }
    let t0 = target.chars().next();
    if !t0.is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        || !target
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(bad(
            "the target must be a lower-case schema prefix such as sh or public",
        ));
    }
    let up = match *dir {
        "up" => true,
        "dn" => false,
        _ => return Err(bad("expected .up.sql or .dn.sql")),
    };
    Ok((number.to_string(), name.to_string(), target.to_string(), up))
}

fn sql_file(file: &str, sql: String) -> Result<SqlFile, MigrationError> {
    let bad = |why: String| MigrationError::BadFile {
        file: file.to_string(),
        why,
    };
    let directives = Directives::parse(file, &sql)?;
    // PostgreSQL refuses the whole file then; saying where beats its message at run time.
    let stmts = statements(&sql).map_err(|e| bad(e.to_string()))?;
    // The file runs in one transaction with its version row: a COMMIT inside would record
    // the version apart from (part of) the change.
    if let Some(s) = stmts.iter().find(|s| s.transaction_control().is_some()) {
        return Err(bad(format!(
            "{} ends the migration's transaction (statement `{}`); remove it: every file runs in one transaction with its version row (SAVEPOINT is allowed)",
            s.transaction_control().unwrap_or_default(),
            short(&s.text)
        )));
    }
    if let Some(s) = stmts.iter().find(|s| s.is_detach_concurrently()) {
        return Err(bad(format!(
            "`{}`: DETACH PARTITION ... CONCURRENTLY is not supported (an interrupted one needs FINALIZE, so a run cannot redo it); use DETACH PARTITION without CONCURRENTLY",
            short(&s.text)
        )));
    }
    let (unsafe_statements, unsafe_tables) = stmts
        .iter()
        .filter_map(|s| s.unsafe_reason().map(|r| (r, s.touched_tables())))
        .unzip();
    let concurrent: Vec<_> = stmts.iter().filter_map(|s| s.concurrent_index()).collect();
    let mode = if concurrent.is_empty() {
        if let Some(s) = stmts.iter().find(|s| s.mentions_concurrently()) {
            return Err(bad(format!(
                "`{}`: CONCURRENTLY is supported only in CREATE [UNIQUE] INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY, REINDEX ... CONCURRENTLY and REFRESH MATERIALIZED VIEW CONCURRENTLY",
                short(&s.text)
            )));
        }
        RunMode::Transaction
    } else {
        if concurrent.len() != stmts.len() {
            return Err(bad("a file with CREATE/DROP INDEX CONCURRENTLY or REINDEX CONCURRENTLY must hold nothing else (it runs outside a transaction); move the other statements to their own file".into()));
        }
        if concurrent
            .iter()
            .any(|c| c.op != ConcurrentOp::Reindex && c.name.is_none())
        {
            return Err(bad("CREATE INDEX CONCURRENTLY needs an index name, so that an invalid index left by a failed build can be dropped before the retry".into()));
        }
        RunMode::Concurrently {
            statements: concurrent,
        }
    };
    Ok(SqlFile {
        file: file.to_string(),
        checksum: checksum(&sql),
        sql,
        mode,
        unsafe_statements,
        unsafe_tables,
        directives,
    })
}

/// A statement as quoted in an error: its first line, at most 60 characters.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", super::shown(&line[..i])),
        None => super::shown(line).into_owned(),
    }
}

/// The up and the down file of one version, as found so far.
type Halves = (Option<SqlFile>, Option<SqlFile>);

/// Orders version numbers as numbers (without parsing: they may be long).
fn number_key(n: &str) -> (usize, &str) {
    let t = n.trim_start_matches('0');
    (t.len(), t)
}

impl MigrationSet {
    /// Validates a directory's files. Names not ending in `.sql` are ignored (README,
    /// editor files); every `.sql` file must follow the grammar.
    pub fn parse(files: Vec<(String, String)>) -> Result<MigrationSet, MigrationError> {
        let mut set = MigrationSet::default();
        let mut pairs: BTreeMap<(String, String, String), Halves> = BTreeMap::new();
        for (file, text) in files {
            if !file.ends_with(".sql") || file.starts_with('.') {
                continue;
            }
            match file.as_str() {
                "before.sql" => set.before = Some(text),
                "after.sql" => set.after = Some(text),
                _ => {
                    let (number, name, target, up) = split_name(&file)?;
                    let parsed = sql_file(&file, text)?;
                    let slot = pairs.entry((number, name, target)).or_default();
                    if up {
                        slot.0 = Some(parsed);
                    } else {
                        slot.1 = Some(parsed);
                    }
                }
            }
        }
        let mut by_number: BTreeMap<String, String> = BTreeMap::new();
        for ((number, name, target), (up, dn)) in pairs {
            let version = format!("{number}.{name}.{target}");
            let (Some(up), Some(dn)) = (up, dn) else {
                return Err(MigrationError::MissingPair { version });
            };
            if let Some(other) = by_number.insert(number.clone(), version.clone()) {
                return Err(MigrationError::DuplicateVersion {
                    number,
                    a: other,
                    b: version,
                });
            }
            set.migrations.push(Migration {
                version,
                number,
                name,
                target,
                up,
                dn,
            });
        }
        set.migrations
            .sort_by(|a, b| number_key(&a.number).cmp(&number_key(&b.number)));
        Ok(set)
    }

    /// The target prefixes, longest first.
    pub fn targets(&self) -> Vec<&str> {
        let mut t: Vec<&str> = self.migrations.iter().map(|m| m.target.as_str()).collect();
        t.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        t.dedup();
        t
    }

    /// The target whose migrations `schema` gets: the longest matching prefix.
    pub fn target_for(&self, schema: &str) -> Option<&str> {
        self.targets()
            .into_iter()
            .find(|t| schema_matches_prefix(schema, t))
    }

    /// The migrations of one target, in version order.
    pub fn for_target<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a Migration> {
        self.migrations.iter().filter(move |m| m.target == target)
    }

    /// A migration by its full version or by its number alone.
    pub fn find(&self, version: &str) -> Option<&Migration> {
        self.migrations
            .iter()
            .find(|m| m.version == version || m.number == version)
    }
}

/// pg-mig's prefix rule: `sh` matches `sh0042` (a digit follows) but not `shadow`;
/// a prefix holding a digit (`sh00`) or equal to the schema (`public`) matches as is.
pub fn schema_matches_prefix(schema: &str, prefix: &str) -> bool {
    let Some(rest) = schema.strip_prefix(prefix) else {
        return false;
    };
    rest.is_empty()
        || rest.starts_with(|c: char| c.is_ascii_digit())
        || prefix.chars().any(|c| c.is_ascii_digit())
}
