//! pg-mig's per-file variables, so a pg-mig directory keeps its throttles: a line
//! `-- $name=value` (at the start of a line, anywhere in the file) with one of
//!
//! - `$parallelism_per_host=N`: at most N schemas of one island run this file at once;
//! - `$parallelism_global=N`: at most N schemas of the whole cluster run it at once;
//! - `$delay=MS`: after each schema's successful run of the file, its slot stays taken
//!   MS more milliseconds (with a parallelism limit, this spaces the schemas out);
//! - `$run_alone=1`: nothing else (no other file, on no island) runs while it runs;
//!
//! and one of atoll's own, which pg-mig does not know:
//!
//! - `$atoll_shards=3,17,100-200` (in the `.up.sql`): the migration applies to these
//!   shards only; the other schemas of its target neither run nor record it
//!   (`schema plan --write-migration` targets the drifted shards with it).
//!
//! Values are non-negative integers; as in pg-mig, 0 means "no limit" / "off". A name
//! that starts like one of these but is none of them (`$parallelism=2`) is refused, so a
//! typo does not silently drop a throttle; a line with any other name (`-- $1=user id`)
//! is an ordinary comment. Like pg-mig, every line of the file is read, dollar-quoted
//! bodies included.

use super::MigrationError;
use crate::shard::{ShardNo, ShardRange};
use serde::{Serialize, Serializer};

/// The limits one file asks for. The default asks for none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// At most this many schemas per island at once (`None`: no limit of its own).
    pub parallelism_per_host: Option<usize>,
    /// At most this many schemas in the cluster at once.
    pub parallelism_global: Option<usize>,
    /// Milliseconds a schema's slot stays taken after the file ran there.
    pub delay_ms: u64,
    /// Nothing else runs while this file runs.
    pub run_alone: bool,
    /// The migration applies to these shards only (`$atoll_shards`).
    #[serde(serialize_with = "as_text", skip_serializing_if = "Option::is_none")]
    pub only_shards: Option<ShardRange>,
}

fn as_text<S: Serializer>(r: &Option<ShardRange>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(&r.to_string()),
        None => s.serialize_none(),
    }
}

impl Directives {
    /// Whether the file asks for anything at all (most files do not).
    pub fn is_empty(&self) -> bool {
        *self == Directives::default()
    }

    /// Whether the migration applies to `schema` (every schema of its target does unless
    /// `$atoll_shards` names the shards; a schema that is no shard is then left out too).
    pub fn runs_on(&self, schema: &str) -> bool {
        match &self.only_shards {
            None => true,
            Some(r) => ShardNo::from_schema(schema).is_ok_and(|n| r.shards().contains(&n)),
        }
    }

    /// Reads the `-- $name=value` lines of `file`'s `text`.
    pub fn parse(file: &str, text: &str) -> Result<Directives, MigrationError> {
        let mut d = Directives::default();
        let mut seen: Vec<&str> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let Some((name, value)) = directive(line) else {
                continue;
            };
            // Only the names of pg-mig's variables (and typos of them) are directives:
            // `-- $1=user id` or `-- $owner=ops` is an ordinary comment, which must not
            // refuse the directory, least of all in a file applied long ago.
            if !PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let bad = |why: String| MigrationError::BadDirective {
                file: file.to_string(),
                line: n + 1,
                why,
            };
            if seen.contains(&name) {
                return Err(bad(format!("{name} is set twice")));
            }
            seen.push(name);
            let value = value.trim();
            let shown = super::shown(value);
            if name == "$atoll_shards" {
                let r: ShardRange = value
                    .parse()
                    .map_err(|e| bad(format!("$atoll_shards={shown}: {e}")))?;
                d.only_shards = Some(r);
                continue;
            }
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!(
                    "{name}={shown}: the value must be a non-negative integer"
                )));
            }
            // Only digits: parsing fails only by overflow.
            let number: u64 = value
                .parse()
                .map_err(|_| bad(format!("{name}={shown}: the value is too large")))?;
            let limit = (number > 0).then(|| usize::try_from(number).unwrap_or(usize::MAX));
            match name {
                "$parallelism_per_host" => d.parallelism_per_host = limit,
                "$parallelism_global" => d.parallelism_global = limit,
                "$delay" => d.delay_ms = number,
                "$run_alone" => d.run_alone = number > 0,
                _ => {
                    return Err(bad(format!(
                        "unknown variable {name}; known: $parallelism_per_host, $parallelism_global, $delay, $run_alone, $atoll_shards"
                    )))
                }
            }
        }
        Ok(d)
    }
}

/// As written in a file: `$parallelism_global=1 $delay=100`.
impl std::fmt::Display for Directives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.parallelism_per_host {
            parts.push(format!("$parallelism_per_host={n}"));
        }
        if let Some(n) = self.parallelism_global {
            parts.push(format!("$parallelism_global={n}"));
        }
        if self.delay_ms > 0 {
            parts.push(format!("$delay={}", self.delay_ms));
        }
        if self.run_alone {
            parts.push("$run_alone=1".to_string());
        }
        if let Some(r) = &self.only_shards {
            parts.push(format!("$atoll_shards={r}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// What a directive's name starts with: pg-mig's variables are `$parallelism_per_host`,
/// `$parallelism_global`, `$delay` and `$run_alone`, atoll's `$atoll_shards`; another name
/// with one of these beginnings (`$parallelism=2`, `$delay_ms=5`, `$atoll_shard=1`) is a
/// typo, refused rather than ignored.
const PREFIXES: [&str; 4] = ["$parallelism", "$delay", "$run_alone", "$atoll"];

/// `-- $name = value` → (`$name`, `value`), as pg-mig's `^--\s*(\$\w+)\s*=(.+)$` reads
/// it, except that the spaces must stay on the line.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("--")?.trim_start_matches([' ', '\t']);
    let body = rest.strip_prefix('$')?;
    let end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    if end == 0 {
        return None;
    }
    let name = &rest[..end + 1];
    let value = body[end..]
        .trim_start_matches([' ', '\t'])
        .strip_prefix('=')?;
    Some((name, value.trim_end_matches('\r')))
}
