//! Rules: where a request carries an atoll ID or a key (path, header, cookie or query
//! parameter, a regex with a named capture) and how it becomes a shard. Pure.

use crate::headers::{cookie, query_param};
use atoll_core::keys::KeyRouter;
use atoll_core::{Id, ShardNo, ShardRange};
use http::HeaderMap;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Where a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The request path.
    Path,
    /// A request header (`field`).
    Header,
    /// A cookie (`field`).
    Cookie,
    /// A query parameter (`field`), percent-decoded.
    Query,
}

/// What the captured text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A shard-encoded atoll ID: its shard is read from its digits.
    Id,
    /// A key, placed by atoll's key router over the rule's declared shards.
    Key,
}

/// A rule as written in `router.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Named in explain output, metrics and errors.
    pub name: String,
    /// Where to look.
    pub source: Source,
    /// The header, cookie or parameter name (not for `path`).
    pub field: Option<String>,
    /// A regex with a named capture.
    pub pattern: String,
    /// The capture's name (default: the rule's kind, `id` or `key`).
    pub capture: Option<String>,
    /// `id` or `key`.
    pub kind: Kind,
    /// For `key` rules: the declared shards, in order (`1-64`).
    pub shards: Option<String>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name.
    pub name: String,
    /// Where it looks.
    pub source: Source,
    /// Header name (lowercase), cookie or parameter name.
    pub field: Option<String>,
    /// The pattern.
    pub regex: Regex,
    /// The capture's name.
    pub capture: String,
    /// What the capture is.
    pub kind: Kind,
    /// Key rules: the key router over the declared shards.
    pub keys: Option<KeyRouter>,
}

/// What a rule found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The captured text.
    pub value: String,
    /// The shard it names, or why it names none.
    pub shard: Result<ShardNo, String>,
}

/// The most text a rule's regex is run over (a longer header or path is not matched).
const MAX_INPUT: usize = 8 * 1024;

impl Rule {
    /// Compiles and checks a rule; the error is one line.
    pub fn compile(spec: &RuleSpec) -> Result<Rule, String> {
        let field = match (spec.source, &spec.field) {
            (Source::Path, None) => None,
            (Source::Path, Some(_)) => return Err("a path rule takes no field".into()),
            (_, Some(f)) if !f.is_empty() => Some(match spec.source {
                Source::Header => {
                    http::HeaderName::from_bytes(f.as_bytes())
                        .map_err(|_| format!("{f:?} is not a header name"))?;
                    f.to_ascii_lowercase()
                }
                _ => f.clone(),
            }),
            _ => return Err("header, cookie and query rules need a field".into()),
        };
        let regex = regex::RegexBuilder::new(&spec.pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                format!(
                    "pattern: {}",
                    e.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            })?;
        let capture = spec.capture.clone().unwrap_or_else(|| match spec.kind {
            Kind::Id => "id".into(),
            Kind::Key => "key".into(),
        });
        if !regex.capture_names().any(|n| n == Some(capture.as_str())) {
            return Err(format!("pattern has no named capture (?P<{capture}>...)"));
        }
        let keys = match (spec.kind, &spec.shards) {
            (Kind::Key, Some(s)) => {
                let range: ShardRange = s.parse().map_err(|e| format!("shards: {e}"))?;
                Some(KeyRouter::new(range.shards().to_vec()).map_err(|e| format!("shards: {e}"))?)
            }
            (Kind::Key, None) => return Err("a key rule needs shards = \"1-64\"".into()),
            (Kind::Id, Some(_)) => return Err("an id rule takes no shards".into()),
            (Kind::Id, None) => None,
        };
        Ok(Rule {
            name: spec.name.clone(),
            source: spec.source,
            field,
            regex,
            capture,
            kind: spec.kind,
            keys,
        })
    }

    /// What this rule finds in a request, if it matches. `env_digit` is the cluster's
    /// (an ID from another environment names no shard here).
    pub fn apply(
        &self,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        env_digit: u8,
    ) -> Option<Match> {
        let input = self.input(path, query, headers)?;
        if input.len() > MAX_INPUT {
            return None;
        }
        let caps = self.regex.captures(&input)?;
        let value = caps.name(&self.capture)?.as_str().to_string();
        let shard = match (&self.kind, &self.keys) {
            (Kind::Key, Some(router)) => Ok(router.shard_for(value.as_str())),
            (Kind::Key, None) => Err("the rule has no key router".to_string()),
            (Kind::Id, _) => shard_of_id(&value, env_digit),
        };
        Some(Match { value, shard })
    }

    fn input(&self, path: &str, query: Option<&str>, headers: &HeaderMap) -> Option<String> {
        let field = self.field.as_deref().unwrap_or("");
        match self.source {
            Source::Path => Some(path.to_string()),
            Source::Header => headers
                .get(field)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            Source::Cookie => headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|c| cookie(c, field).map(str::to_string)),
            Source::Query => query.and_then(|q| query_param(q, field)),
        }
    }
}

/// The shard of an ID written in decimal.
pub fn shard_of_id(text: &str, env_digit: u8) -> Result<ShardNo, String> {
    let raw: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a decimal ID"))?;
    let id = Id::parse(raw).map_err(|e| e.to_string())?;
    if id.env() != env_digit {
        return Err(format!(
            "ID {raw} is from environment {} (this cluster's is {env_digit})",
            id.env()
        ));
    }
    Ok(id.shard())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: Source, field: Option<&str>, pattern: &str, kind: Kind) -> RuleSpec {
        RuleSpec {
            name: "r".into(),
            source,
            field: field.map(str::to_string),
            pattern: pattern.into(),
            capture: None,
            kind,
            shards: (kind == Kind::Key).then(|| "1-8".to_string()),
        }
    }

    #[test]
    fn compile_refusals() {
        let bad = |s: RuleSpec| Rule::compile(&s).unwrap_err();
        assert!(bad(spec(Source::Path, None, "(", Kind::Id)).starts_with("pattern:"));
        assert!(bad(spec(Source::Path, None, "^/x/(\\d+)", Kind::Id)).contains("named capture"));
        assert!(bad(spec(Source::Header, None, "(?P<id>.*)", Kind::Id)).contains("field"));
        assert!(
            bad(spec(Source::Header, Some("a b"), "(?P<id>.*)", Kind::Id)).contains("header name")
        );
        let mut s = spec(Source::Path, None, "(?P<key>.*)", Kind::Key);
        s.shards = Some("9-1".into());
        assert!(bad(s).starts_with("shards:"));
    }

    #[test]
    fn extracts_from_each_source() {
        let id = Id::new(1, ShardNo::new(7).unwrap(), 5).unwrap().get();
        let mut h = HeaderMap::new();
        h.insert("x-tenant", "acme".parse().unwrap());
        h.insert("cookie", format!("a=b; obj={id}").parse().unwrap());
        let path = Rule::compile(&spec(Source::Path, None, r"^/o/(?P<id>\d+)", Kind::Id)).unwrap();
        let m = path.apply(&format!("/o/{id}/x"), None, &h, 1).unwrap();
        assert_eq!(m.shard, Ok(ShardNo::new(7).unwrap()));
        assert!(path
            .apply(&format!("/o/{id}"), None, &h, 2)
            .unwrap()
            .shard
            .is_err());
        assert!(path.apply("/o/12", None, &h, 1).unwrap().shard.is_err());
        assert!(path.apply("/p/1", None, &h, 1).is_none());
        let cookie =
            Rule::compile(&spec(Source::Cookie, Some("obj"), r"(?P<id>\d+)", Kind::Id)).unwrap();
        assert_eq!(
            cookie.apply("/", None, &h, 1).unwrap().value,
            id.to_string()
        );
        let header = Rule::compile(&spec(
            Source::Header,
            Some("X-Tenant"),
            r"(?P<key>\w+)",
            Kind::Key,
        ))
        .unwrap();
        let m = header.apply("/", None, &h, 1).unwrap();
        let router = KeyRouter::new(
            ShardRange::from_shards((1..=8).map(|n| ShardNo::new(n).unwrap()).collect())
                .shards()
                .to_vec(),
        )
        .unwrap();
        assert_eq!(m.shard, Ok(router.shard_for("acme")));
        let query =
            Rule::compile(&spec(Source::Query, Some("t"), r"^(?P<key>.+)$", Kind::Key)).unwrap();
        assert_eq!(
            query.apply("/", Some("t=acme"), &h, 1).unwrap().shard,
            Ok(router.shard_for("acme"))
        );
        assert!(query.apply("/", None, &h, 1).is_none());
    }
}
