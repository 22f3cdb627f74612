//! Where a statement must run, read from its text alone: the decision a PostgreSQL-protocol
//! router (`atoll proxy`) makes per transaction, and `atoll route` explains.
//!
//! A statement names its microshard by a schema-qualified name (`sh0042.users`, quoted or
//! not, found by PostgreSQL's token rules, so not inside strings or comments), by a hint
//! comment (`/* atoll:shard=42 */`, or `/* atoll:id=2004200000000000007 */` whose shard the
//! ID carries), or not at all: then the session's `SET atoll.shard = 42`, else its
//! `SET search_path TO sh0042`, decides, else shard 0 (the cluster-wide tables).
//! [`read`] reads one query text once (its result can be cached per text);
//! [`SessionRoute`] keeps the session's settings and decides.

use crate::migration::sql::{statements, Statement, Token, Unterminated};
use crate::{Id, ShardNo};
use std::collections::BTreeMap;

/// Why a statement goes where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// A schema-qualified name (`sh0042.users`).
    Qualified,
    /// A hint comment `atoll:shard=N`.
    ShardHint,
    /// A hint comment `atoll:id=ID`: the ID's shard.
    IdHint,
    /// The session's `SET atoll.shard`.
    SessionShard,
    /// The session's `search_path`.
    SearchPath,
    /// Nothing named a shard: shard 0, where the cluster-wide tables are.
    Default,
}

/// Where reads may go (`SET atoll.read`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// The shard's master (the default).
    #[default]
    Master,
    /// A replica of the shard's island, outside transactions that wrote.
    Replica,
}

/// A session setting a router keeps itself (and answers `SET` for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "setting", content = "value")]
pub enum SessionChange {
    /// `SET atoll.shard = N`; `None`: `RESET atoll.shard` / `= DEFAULT`.
    Shard(Option<ShardNo>),
    /// `SET search_path TO ...`: its first shard schema, if any.
    SearchPath(Option<ShardNo>),
    /// `SET atoll.read = 'replica' | 'master'`.
    Read(ReadFrom),
    /// `RESET ALL` / `DISCARD ALL`: every setting back to its default.
    ResetAll,
}

/// State a statement leaves in the server session beyond its transaction: what a
/// transaction pooler must keep for its client (a setting) or refuse.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum SessionState {
    /// `SET [SESSION] name ...` or `RESET name` of a parameter other than atoll's own and
    /// `search_path` (the name lower-cased).
    Setting(String),
    /// `LISTEN`.
    Listen,
    /// SQL-level `PREPARE name AS ...`.
    Prepare,
    /// `DECLARE ... WITH HOLD`.
    HoldCursor,
    /// `SET ROLE`, `SET SESSION AUTHORIZATION`, and their `RESET`.
    Role,
}

/// Whether a text starts or ends a transaction (a router defers a `BEGIN` until the first
/// statement that names a shard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionControl {
    /// Anything else.
    #[default]
    None,
    /// `BEGIN` or `START TRANSACTION`, alone.
    Begin,
    /// `COMMIT` or `END`, alone (PostgreSQL answers it `ROLLBACK` in a failed transaction).
    Commit,
    /// `ROLLBACK` (not to a savepoint) or `ABORT`, alone.
    Rollback,
}

impl TransactionControl {
    /// Whether it ends a transaction (commits or rolls back).
    pub fn ends(self) -> bool {
        matches!(
            self,
            TransactionControl::Commit | TransactionControl::Rollback
        )
    }
}

/// What one query text says about its routing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatementInfo {
    /// The shards it names, each with how (the first way found).
    pub named: BTreeMap<ShardNo, Why>,
    /// A setting it changes, when the text is that one `SET`/`RESET`.
    pub change: Option<SessionChange>,
    /// Whether it is a lone `BEGIN` or `COMMIT`/`ROLLBACK`.
    pub control: TransactionControl,
    /// Whether every statement in it only reads, as far as its words tell (`SELECT`,
    /// `TABLE`, `VALUES`, `SHOW`, a `WITH` without a data-modifying part; no `FOR UPDATE`
    /// or `SELECT INTO`): one a replica may run. A function it calls may still write; a
    /// replica then refuses it (25006).
    pub read_only: bool,
    /// Session state one of its statements leaves behind (the first found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_state: Option<SessionState>,
    /// How many statements the text holds.
    pub statements: usize,
}

/// Why a text cannot be routed; the session stays usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// It names two microshards: one statement runs on one.
    #[error("the statement names {0} and {1}: a statement runs on one microshard (split it, or read each shard in its own statement)")]
    CrossShard(ShardNo, ShardNo),
    /// A hint comment or setting that cannot be read.
    #[error("{0}")]
    Bad(String),
    /// A string, quoted identifier or comment never closed.
    #[error("{0}")]
    Unterminated(#[from] Unterminated),
}

impl RouteError {
    /// The SQLSTATE a router answers with.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            RouteError::CrossShard(..) => "0A000",
            RouteError::Bad(_) => "22023",
            RouteError::Unterminated(_) => "42601",
        }
    }
}

/// Reads a query text (one or more statements, as a simple query sends them).
pub fn read(sql: &str) -> Result<StatementInfo, RouteError> {
    let list = statements(sql)?;
    let mut info = StatementInfo::default();
    for st in &list {
        for (shard, why) in named_in(st)? {
            info.named.entry(shard).or_insert(why);
        }
        if let Some(change) = change_of(st)? {
            if list.len() > 1 {
                return Err(RouteError::Bad(format!(
                    "`{}` must be sent on its own, not with other statements",
                    st.text
                )));
            }
            info.change = Some(change);
        }
    }
    if let [only] = list.as_slice() {
        info.control = control_of(only);
    }
    info.read_only = !list.is_empty() && list.iter().all(reads_only);
    info.session_state = list.iter().find_map(session_state_of);
    info.statements = list.len();
    Ok(info)
}

/// The session state a statement leaves behind, if any (see [`SessionState`]).
fn session_state_of(st: &Statement) -> Option<SessionState> {
    let w = |i| word(st, i);
    match (w(0)?, w(1)) {
        ("LISTEN", _) => Some(SessionState::Listen),
        ("PREPARE", Some(next)) if next != "TRANSACTION" => Some(SessionState::Prepare),
        ("PREPARE", None) => Some(SessionState::Prepare),
        ("DECLARE", _) => {
            let hold = st
                .tokens
                .windows(2)
                .any(|p| p[0] == Token::Word("WITH".into()) && p[1] == Token::Word("HOLD".into()));
            hold.then_some(SessionState::HoldCursor)
        }
        ("SET" | "RESET", Some("ROLE")) => Some(SessionState::Role),
        ("SET", Some("SESSION")) if matches!(w(2), Some("AUTHORIZATION" | "ROLE")) => {
            Some(SessionState::Role)
        }
        ("RESET", Some("SESSION")) => Some(SessionState::Role),
        ("SET", Some("LOCAL" | "TRANSACTION" | "CONSTRAINTS")) => None,
        ("SET", Some("SESSION")) => setting_name(st, 2),
        ("SET" | "RESET", Some(_)) => setting_name(st, 1),
        _ => None,
    }
}

/// The (lower-cased, possibly dotted) parameter name at token `i`, unless it is one a
/// router keeps itself (atoll's, `search_path`, `ALL`).
fn setting_name(st: &Statement, i: usize) -> Option<SessionState> {
    let mut name = match st.tokens.get(i)? {
        Token::Word(w) => w.to_ascii_lowercase(),
        Token::Quoted(q) => q.to_string(),
        _ => return None,
    };
    if st.tokens.get(i + 1) == Some(&Token::Punct('.')) {
        if let Some(Token::Word(w)) = st.tokens.get(i + 2) {
            name = format!("{name}.{}", w.to_ascii_lowercase());
        }
    }
    let kept = name == "search_path" || name == "all" || name.starts_with("atoll.");
    (!kept).then_some(SessionState::Setting(name))
}

/// Whether a statement only reads, by its words (see [`StatementInfo::read_only`]).
fn reads_only(st: &Statement) -> bool {
    let words = || {
        st.tokens.iter().filter_map(|t| match t {
            Token::Word(w) => Some(w.as_str()),
            _ => None,
        })
    };
    let first = match word(st, 0) {
        Some(w @ ("SELECT" | "TABLE" | "VALUES" | "SHOW" | "WITH")) => w,
        _ => return false,
    };
    let writes = |w: &str| matches!(w, "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "INTO");
    if first == "WITH" && words().any(writes) {
        return false;
    }
    // FOR UPDATE / SHARE / NO KEY UPDATE / KEY SHARE lock rows: the master's work.
    let mut prev = "";
    for w in words() {
        if prev == "FOR" && matches!(w, "UPDATE" | "SHARE" | "NO" | "KEY") {
            return false;
        }
        if w == "INTO" {
            return false;
        }
        prev = w;
    }
    true
}

fn control_of(st: &Statement) -> TransactionControl {
    match (word(st, 0), word(st, 1)) {
        (Some("BEGIN"), _) | (Some("START"), Some("TRANSACTION")) => TransactionControl::Begin,
        (Some("ROLLBACK"), _) if st.tokens.iter().any(|t| t == &Token::Word("TO".into())) => {
            TransactionControl::None
        }
        (Some("COMMIT" | "END"), w) if w != Some("PREPARED") => TransactionControl::Commit,
        (Some("ROLLBACK" | "ABORT"), w) if w != Some("PREPARED") => TransactionControl::Rollback,
        _ => TransactionControl::None,
    }
}

/// The shard a schema name is (`sh0042`), as PostgreSQL folds an unquoted name.
fn shard_schema(name: &str) -> Option<ShardNo> {
    let ok =
        name.len() == 6 && name.starts_with("sh") && name[2..].bytes().all(|b| b.is_ascii_digit());
    ok.then(|| ShardNo::from_schema(name).ok()).flatten()
}

fn shard_of_token(t: &Token) -> Option<ShardNo> {
    match t {
        Token::Word(w) => shard_schema(&w.to_ascii_lowercase()),
        Token::Quoted(q) => shard_schema(q),
        _ => None,
    }
}

/// The shards one statement names: qualified names, then hint comments.
fn named_in(st: &Statement) -> Result<Vec<(ShardNo, Why)>, RouteError> {
    let mut out = Vec::new();
    for (i, t) in st.tokens.iter().enumerate() {
        if st.tokens.get(i + 1) == Some(&Token::Punct('.')) {
            if let Some(s) = shard_of_token(t) {
                out.push((s, Why::Qualified));
            }
        }
    }
    for c in &st.comments {
        out.extend(hints(c)?);
    }
    Ok(out)
}

/// `atoll:shard=N` and `atoll:id=ID` in a comment.
fn hints(comment: &str) -> Result<Vec<(ShardNo, Why)>, RouteError> {
    let mut out = Vec::new();
    let mut rest = comment;
    while let Some(i) = rest.find("atoll:") {
        rest = &rest[i + "atoll:".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '=' || c == '_'))
            .unwrap_or(rest.len());
        let hint = &rest[..end];
        let bad = || {
            RouteError::Bad(format!(
                "hint `atoll:{hint}`: expected atoll:shard=N or atoll:id=ID"
            ))
        };
        let (key, value) = hint.split_once('=').ok_or_else(bad)?;
        let n: i64 = value.parse().map_err(|_| bad())?;
        match key {
            "shard" => {
                let s = ShardNo::new(n)
                    .map_err(|e| RouteError::Bad(format!("hint `atoll:{hint}`: {e}")))?;
                out.push((s, Why::ShardHint));
            }
            "id" => {
                let id = Id::parse(n)
                    .map_err(|e| RouteError::Bad(format!("hint `atoll:{hint}`: {e}")))?;
                out.push((id.shard(), Why::IdHint));
            }
            _ => return Err(bad()),
        }
        rest = &rest[end..];
    }
    Ok(out)
}

fn word(st: &Statement, i: usize) -> Option<&str> {
    match st.tokens.get(i) {
        Some(Token::Word(w)) => Some(w),
        _ => None,
    }
}

/// The setting a `SET`, `RESET` or `DISCARD ALL` changes, if it is one a router keeps.
fn change_of(st: &Statement) -> Result<Option<SessionChange>, RouteError> {
    let (first, mut i) = match word(st, 0) {
        Some(w @ ("SET" | "RESET")) => (w, 1),
        Some("DISCARD") if word(st, 1) == Some("ALL") => return Ok(Some(SessionChange::ResetAll)),
        _ => return Ok(None),
    };
    if first == "SET" && matches!(word(st, 1), Some("SESSION" | "LOCAL")) {
        i += 1;
    }
    let atoll = word(st, i) == Some("ATOLL") && st.tokens.get(i + 1) == Some(&Token::Punct('.'));
    let name = if atoll {
        i += 2;
        match word(st, i) {
            Some("SHARD") => "atoll.shard",
            Some("READ") => "atoll.read",
            _ => {
                return Err(RouteError::Bad(format!(
                    "`{}`: atoll's settings are atoll.shard and atoll.read",
                    st.text
                )))
            }
        }
    } else {
        match word(st, i) {
            Some("SEARCH_PATH") => "search_path",
            Some("ALL") if first == "RESET" => return Ok(Some(SessionChange::ResetAll)),
            _ => return Ok(None),
        }
    };
    if first == "RESET" {
        return Ok(Some(reset(name)));
    }
    i += 1;
    if matches!(st.tokens.get(i), Some(Token::Punct('='))) || word(st, i) == Some("TO") {
        i += 1;
    }
    let values = values(&st.tokens[i.min(st.tokens.len())..]);
    if values.len() == 1 && values[0].eq_ignore_ascii_case("default") {
        return Ok(Some(reset(name)));
    }
    setting(name, &values, &st.text).map(Some)
}

fn reset(name: &str) -> SessionChange {
    match name {
        "atoll.shard" => SessionChange::Shard(None),
        "atoll.read" => SessionChange::Read(ReadFrom::Master),
        _ => SessionChange::SearchPath(None),
    }
}

/// The comma-separated values of a `SET`, unquoted; a quoted list (`'a, b'`) is split too.
fn values(tokens: &[Token]) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Word(w) => out.push(w.to_ascii_lowercase()),
            Token::Quoted(q) => out.push(q.to_string()),
            Token::Literal(l) => {
                let inner = l
                    .strip_prefix('\'')
                    .and_then(|x| x.strip_suffix('\''))
                    .unwrap_or(l);
                out.extend(
                    inner
                        .split(',')
                        .map(|v| v.trim().trim_matches('"').to_string()),
                );
            }
            Token::Punct(_) => {}
        }
    }
    out
}

fn setting(name: &str, values: &[String], text: &str) -> Result<SessionChange, RouteError> {
    let bad = |what: &str| RouteError::Bad(format!("`{text}`: {what}"));
    match name {
        "atoll.shard" => {
            let [v] = values else {
                return Err(bad("atoll.shard takes one shard: a number or shNNNN"));
            };
            let shard = match v.parse::<i64>() {
                Ok(n) => ShardNo::new(n).map_err(|e| bad(&e.to_string()))?,
                Err(_) => {
                    shard_schema(v).ok_or_else(|| bad("atoll.shard takes a number or shNNNN"))?
                }
            };
            Ok(SessionChange::Shard(Some(shard)))
        }
        "atoll.read" => match values {
            [v] if v.eq_ignore_ascii_case("replica") => Ok(SessionChange::Read(ReadFrom::Replica)),
            [v] if v.eq_ignore_ascii_case("master") => Ok(SessionChange::Read(ReadFrom::Master)),
            _ => Err(bad("atoll.read is 'master' or 'replica'")),
        },
        _ => Ok(SessionChange::SearchPath(
            values.iter().find_map(|v| shard_schema(v)),
        )),
    }
}

/// A session's routing settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionRoute {
    /// `SET atoll.shard`.
    pub shard: Option<ShardNo>,
    /// The first shard schema of `search_path`.
    pub search_path: Option<ShardNo>,
    /// `SET atoll.read`.
    pub read: ReadFrom,
}

impl SessionRoute {
    /// Applies a setting.
    pub fn apply(&mut self, change: SessionChange) {
        match change {
            SessionChange::Shard(s) => self.shard = s,
            SessionChange::SearchPath(s) => self.search_path = s,
            SessionChange::Read(r) => self.read = r,
            SessionChange::ResetAll => *self = SessionRoute::default(),
        }
    }

    /// Where `info` runs in this session: the one shard it names, else the session's
    /// `atoll.shard`, else its `search_path`'s shard, else shard 0.
    pub fn route(&self, info: &StatementInfo) -> Result<(ShardNo, Why), RouteError> {
        let mut named = info.named.iter();
        if let Some((first, why)) = named.next() {
            if let Some((second, _)) = named.next() {
                return Err(RouteError::CrossShard(*first, *second));
            }
            return Ok((*first, *why));
        }
        Ok(match (self.shard, self.search_path) {
            (Some(s), _) => (s, Why::SessionShard),
            (None, Some(s)) => (s, Why::SearchPath),
            (None, None) => (ShardNo::GLOBAL, Why::Default),
        })
    }
}

#[cfg(test)]
#[path = "statement_route_tests.rs"]
mod tests;
