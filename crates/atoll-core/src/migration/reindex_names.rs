//! The names PostgreSQL gives the copies a `REINDEX ... CONCURRENTLY` makes of an
//! index, so that the leftovers of an interrupted one can be told apart from every other
//! invalid index: exactly as its `ChooseRelationName` / `makeObjectName` build them, with
//! its 63-byte identifier limit cut at a UTF-8 character boundary.

/// What a `REINDEX ... CONCURRENTLY` rebuilds, and so whose `_ccnew` / `_ccold` indexes an
/// interrupted run of it may have left invalid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum ReindexTarget {
    /// One index (its name as written, folded to lower case unless quoted; PostgreSQL
    /// keeps the first 63 bytes).
    Index(String),
    /// Every index of one table.
    Table(String),
    /// `REINDEX SCHEMA` / `DATABASE`: every index of one schema (the named one, or for
    /// `DATABASE` the shard's own).
    Schema,
}

impl ReindexTarget {
    /// Whether the invalid index `index` on `table` is a `REINDEX CONCURRENTLY` copy of
    /// what this target rebuilds: for one index, exactly the name PostgreSQL gives its
    /// copies ([`reindex_copy_name`]); for a table, any copy on it (the table's name
    /// compared as the catalog stores it, truncated to 63 bytes).
    pub fn is_leftover(&self, index: &str, table: &str) -> bool {
        let Some(label) = reindex_copy_label(index) else {
            return false;
        };
        match self {
            ReindexTarget::Index(name) => reindex_copy_name(name, label) == index,
            ReindexTarget::Table(name) => table == truncate_identifier(name),
            ReindexTarget::Schema => true,
        }
    }
}

/// PostgreSQL's NAMEDATALEN - 1: the most bytes a name keeps.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The longest prefix of `name` of at most `bytes` bytes that ends on a character
/// boundary (PostgreSQL's `pg_mbcliplen`, for a UTF-8 database).
fn clip(name: &str, bytes: usize) -> &str {
    let mut at = bytes.min(name.len());
    while !name.is_char_boundary(at) {
        at -= 1;
    }
    &name[..at]
}

/// `name` as the catalog stores it: PostgreSQL truncates a longer identifier to 63
/// bytes, at a character boundary.
pub(crate) fn truncate_identifier(name: &str) -> &str {
    clip(name, MAX_IDENTIFIER_BYTES)
}

/// The name PostgreSQL gives the copy of index `index` labelled `label` (`ccnew`,
/// `ccold`, or either followed by a number when the plain name was taken), as its
/// `ChooseRelationName(index, NULL, label)` / `makeObjectName` build it: the base
/// truncated so that base + `_` + label fits 63 bytes, cut at a character boundary.
pub(crate) fn reindex_copy_name(index: &str, label: &str) -> String {
    let base = truncate_identifier(index);
    let room = MAX_IDENTIFIER_BYTES.saturating_sub(label.len() + 1);
    format!("{}_{label}", clip(base, room))
}

/// The label of `index` when it is named as PostgreSQL names a `REINDEX CONCURRENTLY`
/// copy: `ccnew` / `ccold`, possibly followed by the number `ChooseRelationName`
/// appends (1, 2, ...; no leading zero) after an underscore-separated base.
pub(crate) fn reindex_copy_label(index: &str) -> Option<&str> {
    ["_ccnew", "_ccold"].iter().find_map(|suffix| {
        let at = index.rfind(suffix)?;
        let rest = &index[at + suffix.len()..];
        let number =
            rest.is_empty() || (rest.bytes().all(|b| b.is_ascii_digit()) && !rest.starts_with('0'));
        number.then_some(&index[at + 1..])
    })
}
