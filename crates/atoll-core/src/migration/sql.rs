//! Just enough SQL lexing to split a migration file into statements and to recognise the
//! statements that matter to a migration run: destructive ones (flagged as unsafe) and
//! `CREATE/DROP INDEX CONCURRENTLY` (which cannot run inside a transaction).
//!
//! Comments, string literals, quoted identifiers and dollar-quoted bodies are skipped, so a
//! `DROP TABLE` inside a function body or a comment is not mistaken for a statement, and
//! what PostgreSQL reads as a statement is one here (`name'a\'; commit; --'` holds a
//! `COMMIT`).

use super::lexer::Lexer;
pub use super::lexer::{Opened, Unterminated};
use smol_str::SmolStr;

/// One lexical token of a statement. Its text is a `SmolStr`: kept inline up to 23 bytes
/// (nearly every keyword, name and number), so lexing a short statement, as a router does
/// per query, allocates little.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A keyword or unquoted identifier, upper-cased.
    Word(SmolStr),
    /// A double-quoted identifier, as written between the quotes.
    Quoted(SmolStr),
    /// A literal (string, number, dollar-quoted body), as written (quotes, prefix and
    /// all).
    Literal(SmolStr),
    /// Any other character: punctuation and operators.
    Punct(char),
}

/// One statement: its text (trimmed, without the `;`) and its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text, trimmed, without the closing `;`.
    pub text: String,
    /// Its tokens, comments and whitespace left out.
    pub tokens: Vec<Token>,
    /// Its comments (and those before it since the previous statement), as written.
    pub comments: Vec<String>,
}

/// Splits SQL into statements at top-level semicolons, lexed as PostgreSQL lexes them
/// (`lexer.rs`); empty statements are dropped. The semicolons inside a SQL-standard
/// function body (`CREATE FUNCTION ... BEGIN ATOMIC ... END`) are not top-level. A string,
/// quoted identifier, dollar quote or comment left open is refused, as PostgreSQL refuses it.
pub fn statements(sql: &str) -> Result<Vec<Statement>, Unterminated> {
    Lexer::new(sql).statements()
}

impl Statement {
    fn word(&self, i: usize) -> Option<&str> {
        match self.tokens.get(i) {
            Some(Token::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn words_at(&self, i: usize, ws: &[&str]) -> bool {
        ws.iter()
            .enumerate()
            .all(|(k, w)| self.word(i + k) == Some(w))
    }

    /// Why this statement can destroy data, if it can: any `DROP` but `DROP INDEX`,
    /// `TRUNCATE`, `DELETE` without `WHERE`, `ALTER TABLE ... DROP [COLUMN]`, column type
    /// changes, renames of columns and tables (the application still uses the old name),
    /// and `DO` blocks (their body is opaque here, so it may hold any of these).
    pub fn unsafe_reason(&self) -> Option<String> {
        match self.word(0) {
            Some("DROP") => {
                return match self.word(1) {
                    Some("INDEX") => None,
                    Some("MATERIALIZED") => Some("DROP MATERIALIZED VIEW".into()),
                    Some(kind) => Some(format!("DROP {kind}")),
                    None => Some("DROP".into()),
                };
            }
            Some("TRUNCATE") => return Some("TRUNCATE".into()),
            Some("DO") => return Some("DO block".into()),
            Some("DELETE") => {
                return (!self.has_top_level_word("WHERE"))
                    .then(|| "DELETE without WHERE".to_string());
            }
            _ => {}
        }
        if !self.words_at(0, &["ALTER", "TABLE"]) {
            return None;
        }
        // Actions of ALTER TABLE are separated by top-level commas.
        let mut depth = 0i32;
        let mut action_start = 2;
        for (i, t) in self.tokens.iter().enumerate().skip(2) {
            match t {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth -= 1,
                Token::Word(w) if depth == 0 && w == "DROP" => {
                    // `DROP CONSTRAINT` loses no data; `ALTER COLUMN c DROP DEFAULT` and
                    // friends are inside an ALTER action, not a DROP action.
                    let in_alter = self.tokens[action_start..i]
                        .iter()
                        .any(|t| *t == Token::Word("ALTER".into()));
                    if !in_alter && self.word(i + 1) != Some("CONSTRAINT") {
                        return Some("DROP COLUMN".into());
                    }
                }
                Token::Word(w) if depth == 0 && w == "ALTER" && self.changes_type(i) => {
                    return Some("ALTER COLUMN ... TYPE".into());
                }
                Token::Word(w) if depth == 0 && w == "RENAME" => {
                    return match self.word(i + 1) {
                        Some("CONSTRAINT") => None,
                        Some("TO") => Some("RENAME TO (table)".into()),
                        _ => Some("RENAME COLUMN".into()),
                    };
                }
                Token::Punct(',') if depth == 0 => action_start = i + 1,
                _ => {}
            }
        }
        None
    }

    /// `ALTER [COLUMN] name [SET DATA] TYPE` starting at the `ALTER` at `i`. Only that
    /// position counts, so a column named `type` (`ALTER COLUMN type SET DEFAULT 1`) is
    /// not a type change.
    fn changes_type(&self, i: usize) -> bool {
        let mut j = i + 1;
        if self.word(j) == Some("COLUMN") {
            j += 1;
        }
        if !matches!(self.tokens.get(j), Some(Token::Word(_) | Token::Quoted(_))) {
            return false;
        }
        j += 1;
        self.word(j) == Some("TYPE") || self.words_at(j, &["SET", "DATA", "TYPE"])
    }

    /// Whether `word` appears outside parentheses.
    fn has_top_level_word(&self, word: &str) -> bool {
        let mut depth = 0i32;
        self.tokens.iter().any(|t| match t {
            Token::Punct('(') => {
                depth += 1;
                false
            }
            Token::Punct(')') => {
                depth -= 1;
                false
            }
            Token::Word(w) => depth == 0 && w == word,
            _ => false,
        })
    }

    /// A statement that ends or opens a transaction (`COMMIT`, `BEGIN`, ...): inside a
    /// migration file it would commit the change apart from its version row. Savepoints
    /// (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`) stay inside the transaction and are fine.
    pub fn transaction_control(&self) -> Option<&str> {
        let w = self.word(0)?;
        match w {
            "BEGIN" | "COMMIT" | "END" | "ABORT" => Some(w),
            "START" if self.word(1) == Some("TRANSACTION") => Some(w),
            "ROLLBACK" => {
                let to = match self.word(1) {
                    Some("WORK" | "TRANSACTION") => self.word(2),
                    other => other,
                };
                (to != Some("TO")).then_some(w)
            }
            "PREPARE" if self.word(1) == Some("TRANSACTION") => Some(w),
            _ => None,
        }
    }

    /// A statement that must run outside a transaction: `CREATE [UNIQUE] INDEX
    /// CONCURRENTLY`, `DROP INDEX CONCURRENTLY` or `REINDEX ... CONCURRENTLY`.
    pub fn concurrent_index(&self) -> Option<ConcurrentIndex> {
        if self.word(0) == Some("REINDEX") && self.mentions_concurrently() {
            // Running it again rebuilds again: harmless, so it needs no name to resume;
            // its target tells which leftovers of an interrupted run to drop first.
            let (reindex_schema, reindex) = match self.reindex_target() {
                Some((schema, target)) => (schema, Some(target)),
                None => (None, None),
            };
            return Some(ConcurrentIndex {
                op: ConcurrentOp::Reindex,
                create: false,
                name: None,
                reindex,
                reindex_schema,
                sql: self.text.clone(),
            });
        }
        let (create, mut i) = if self.words_at(0, &["CREATE", "INDEX", "CONCURRENTLY"]) {
            (true, 3)
        } else if self.words_at(0, &["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY"]) {
            (true, 4)
        } else if self.words_at(0, &["DROP", "INDEX", "CONCURRENTLY"]) {
            (false, 3)
        } else {
            return None;
        };
        if create && self.words_at(i, &["IF", "NOT", "EXISTS"]) {
            i += 3;
        }
        if !create && self.words_at(i, &["IF", "EXISTS"]) {
            i += 2;
        }
        // A schema-qualified name: the index lives in the shard's schema anyway.
        if self.tokens.get(i + 1) == Some(&Token::Punct('.')) {
            i += 2;
        }
        let name = match self.tokens.get(i) {
            Some(Token::Word(w)) if !(create && w == "ON") => Some(w.to_ascii_lowercase()),
            Some(Token::Quoted(q)) => Some(q.to_string()),
            _ => None,
        };
        Some(ConcurrentIndex {
            op: if create {
                ConcurrentOp::CreateIndex
            } else {
                ConcurrentOp::DropIndex
            },
            create,
            name,
            reindex: None,
            reindex_schema: None,
            sql: self.text.clone(),
        })
    }

    /// What `REINDEX [(options)] {INDEX | TABLE | SCHEMA | DATABASE} [CONCURRENTLY] name`
    /// rebuilds, and in which schema when the statement names one: the qualifier of an
    /// index or table, the name of `REINDEX SCHEMA`. `None` (an unqualified name, or
    /// `DATABASE`): the schema the file runs in.
    fn reindex_target(&self) -> Option<(Option<String>, ReindexTarget)> {
        let mut i = 1;
        if self.tokens.get(i) == Some(&Token::Punct('(')) {
            let close = self.tokens[i..]
                .iter()
                .position(|t| *t == Token::Punct(')'))?;
            i += close + 1;
        }
        let kind = self.word(i)?.to_string();
        i += 1;
        if self.word(i) == Some("CONCURRENTLY") {
            i += 1;
        }
        let ident = |t: Option<&Token>| match t {
            Some(Token::Word(w)) => Some(w.to_ascii_lowercase()),
            Some(Token::Quoted(q)) => Some(q.to_string()),
            _ => None,
        };
        let mut qualifier = None;
        if self.tokens.get(i + 1) == Some(&Token::Punct('.')) {
            qualifier = Some(ident(self.tokens.get(i))?);
            i += 2;
        }
        let name = ident(self.tokens.get(i))?;
        match kind.as_str() {
            "INDEX" => Some((qualifier, ReindexTarget::Index(name))),
            "TABLE" => Some((qualifier, ReindexTarget::Table(name))),
            "SCHEMA" => Some((Some(name), ReindexTarget::Schema)),
            "DATABASE" => Some((None, ReindexTarget::Schema)),
            _ => None,
        }
    }

    /// Whether this statement mentions CONCURRENTLY in a form that cannot run inside a
    /// transaction (to refuse mixing). `REFRESH MATERIALIZED VIEW CONCURRENTLY` can.
    pub fn mentions_concurrently(&self) -> bool {
        !self.words_at(0, &["REFRESH", "MATERIALIZED", "VIEW"])
            && self
                .tokens
                .iter()
                .any(|t| *t == Token::Word("CONCURRENTLY".into()))
    }

    /// `ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY`: outside a transaction, and
    /// an interrupted one needs `FINALIZE`, so a resumable run cannot simply redo it.
    pub fn is_detach_concurrently(&self) -> bool {
        self.word(0) == Some("ALTER")
            && self.has_top_level_word("DETACH")
            && self.mentions_concurrently()
    }
}

/// What a statement run outside a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrentOp {
    /// `CREATE [UNIQUE] INDEX CONCURRENTLY`.
    CreateIndex,
    /// `DROP INDEX CONCURRENTLY`.
    DropIndex,
    /// `REINDEX ... CONCURRENTLY`.
    Reindex,
}

/// A statement run outside a transaction, with the index name known for CREATE/DROP so
/// that an invalid index left by a failed build can be dropped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConcurrentIndex {
    /// What the statement does.
    pub op: ConcurrentOp,
    /// True for `CREATE INDEX CONCURRENTLY` (kept for the JSON plan's readers).
    pub create: bool,
    /// The index name as stored in the catalog (unquoted names are folded to lower case).
    pub name: Option<String>,
    /// For `REINDEX ... CONCURRENTLY`: what it rebuilds.
    pub reindex: Option<ReindexTarget>,
    /// For `REINDEX ... CONCURRENTLY`: the schema the statement names (the qualifier of
    /// its index or table, or `REINDEX SCHEMA`'s name), where its leftovers are looked
    /// for; `None`: the schema the file runs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reindex_schema: Option<String>,
    /// The statement's text, run as is.
    pub sql: String,
}

pub use super::reindex_names::ReindexTarget;
#[cfg(test)]
pub(crate) use super::reindex_names::{reindex_copy_name, truncate_identifier};

/// A short stable checksum of a file's text (FNV-1a, 64 bits, hex), stored with every
/// applied version so a file edited after it ran can be recognised.
pub fn checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
