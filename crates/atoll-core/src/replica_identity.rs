//! `--replica-identity-full`: tables without a primary key or replica identity get
//! `REPLICA IDENTITY FULL` for a move, and their own identity back after the switch or
//! the abort. What each table had is persisted with the move (one text entry per table,
//! [`IdentityRestore::encode`]) so a resume or an abort after a kill restores it too.

use crate::quote::ident;
use std::fmt;

/// The replica identity a table had before the move set `FULL`: only tables whose
/// identity cannot replicate updates and deletes are changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalIdentity {
    /// `DEFAULT` on a table without a primary key.
    Default,
    /// `NOTHING`.
    Nothing,
}

impl OriginalIdentity {
    /// From `pg_class.relreplident`; `None` for identities the move does not change.
    pub fn from_relreplident(c: char) -> Option<OriginalIdentity> {
        match c {
            'd' => Some(OriginalIdentity::Default),
            'n' => Some(OriginalIdentity::Nothing),
            _ => None,
        }
    }

    fn code(self) -> char {
        match self {
            OriginalIdentity::Default => 'd',
            OriginalIdentity::Nothing => 'n',
        }
    }

    fn keyword(self) -> &'static str {
        match self {
            OriginalIdentity::Default => "default",
            OriginalIdentity::Nothing => "nothing",
        }
    }
}

/// One table whose identity a move set to `FULL`, and what it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRestore {
    /// The table's name in the shard schema.
    pub table: String,
    /// What it had before the move.
    pub original: OriginalIdentity,
}

/// A persisted entry that is not `d:name` or `n:name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replica identity entry {0:?} is not `d:table` or `n:table`")]
pub struct BadIdentityEntry(pub String);

impl IdentityRestore {
    /// The persisted form: the identity's code, a colon, the table name.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.original.code(), self.table)
    }

    /// The inverse of [`IdentityRestore::encode`].
    pub fn parse(entry: &str) -> Result<IdentityRestore, BadIdentityEntry> {
        let bad = || BadIdentityEntry(entry.to_string());
        let (code, table) = entry.split_once(':').ok_or_else(bad)?;
        let original = match code {
            "d" => OriginalIdentity::Default,
            "n" => OriginalIdentity::Nothing,
            _ => return Err(bad()),
        };
        if table.is_empty() {
            return Err(bad());
        }
        Ok(IdentityRestore {
            table: table.to_string(),
            original,
        })
    }

    /// `ALTER TABLE` setting `FULL` on the table in `schema`.
    pub fn set_full_sql(&self, schema: &str) -> String {
        format!(
            "alter table {}.{} replica identity full",
            ident(schema),
            ident(&self.table)
        )
    }

    /// `ALTER TABLE` giving the table in `schema` its identity back.
    pub fn restore_sql(&self, schema: &str) -> String {
        format!(
            "alter table {}.{} replica identity {}",
            ident(schema),
            ident(&self.table),
            self.original.keyword()
        )
    }
}

impl fmt::Display for IdentityRestore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (was {})", self.table, self.original.keyword())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_ones_are_refused() {
        let r = IdentityRestore {
            table: "log:2024".into(),
            original: OriginalIdentity::Nothing,
        };
        assert_eq!(r.encode(), "n:log:2024");
        assert_eq!(IdentityRestore::parse(&r.encode()), Ok(r.clone()));
        for bad in ["", "d", "x:t", "d:", ":t", "µ:t"] {
            assert!(IdentityRestore::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            r.restore_sql("sh0001"),
            r#"alter table "sh0001"."log:2024" replica identity nothing"#
        );
        assert_eq!(
            r.set_full_sql("sh0001"),
            r#"alter table "sh0001"."log:2024" replica identity full"#
        );
        assert_eq!(OriginalIdentity::from_relreplident('f'), None);
        assert_eq!(
            OriginalIdentity::from_relreplident('d'),
            Some(OriginalIdentity::Default)
        );
    }
}
