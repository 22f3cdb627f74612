//! Where a request goes: rules in order (an ID's or key's shard → the island where it is
//! active in the snapshot → the cell serving that island), then learned routes, then the
//! default cell. Pure over its inputs; `explain` shows the same decision.

use crate::cache::RouteCache;
use crate::config::RouterConfig;
use crate::headers::CacheTarget;
use atoll_core::{IslandId, ShardNo, Snapshot};
use http::HeaderMap;
use serde::Serialize;
use std::time::Instant;

/// Why a request went to its cell (a label of the requests metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteSource {
    /// A rule placed it by shard.
    Rule,
    /// A learned prefix.
    Learned,
    /// Nothing knew: the default cell.
    Default,
    /// A cell redirected it and the router re-sent it.
    Redirect,
    /// A negative entry: no cell owns it (answered 404 by the router).
    Negative,
}

impl RouteSource {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteSource::Rule => "rule",
            RouteSource::Learned => "learned",
            RouteSource::Default => "default",
            RouteSource::Redirect => "redirect",
            RouteSource::Negative => "negative",
        }
    }
}

/// The router's decision for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The cell, or `None` when a negative entry answers 404.
    pub cell: Option<String>,
    /// Why.
    pub source: RouteSource,
    /// The rule that placed it.
    pub rule: Option<String>,
    /// What the rule captured.
    pub value: Option<String>,
    /// The shard it names.
    pub shard: Option<ShardNo>,
    /// The island where that shard is active.
    pub island: Option<IslandId>,
    /// The learned prefix used.
    pub prefix: Option<String>,
    /// Rules that matched but could not place the request, and why (then the next ones
    /// were tried).
    pub skipped: Vec<String>,
}

/// What a decision reads about a request.
pub struct RequestView<'a> {
    /// The path.
    pub path: &'a str,
    /// The query string.
    pub query: Option<&'a str>,
    /// The headers (inbound `X-Atoll-*` already removed).
    pub headers: &'a HeaderMap,
}

/// Decides where `req` goes. `snapshot` is the current discovery snapshot (`None`: no
/// cluster configured); `env_digit` the cluster's.
pub fn decide(
    config: &RouterConfig,
    snapshot: Option<&Snapshot>,
    env_digit: u8,
    cache: Option<&RouteCache>,
    req: &RequestView<'_>,
    now: Instant,
) -> Decision {
    let mut d = Decision {
        cell: None,
        source: RouteSource::Default,
        rule: None,
        value: None,
        shard: None,
        island: None,
        prefix: None,
        skipped: Vec::new(),
    };
    for rule in &config.rules {
        let Some(m) = rule.apply(req.path, req.query, req.headers, env_digit) else {
            continue;
        };
        let placed = m.shard.clone().and_then(|shard| {
            let snap = snapshot.ok_or("no discovery snapshot")?;
            let island = snap
                .active_island(shard)
                .map_err(|e| format!("{shard}: {e}"))?;
            let cell = config.cell_for_island(island).ok_or(format!(
                "{shard} is active on island {island}, which no cell serves"
            ))?;
            Ok((shard, island, cell.to_string()))
        });
        match placed {
            Ok((shard, island, cell)) => {
                d.cell = Some(cell);
                d.source = RouteSource::Rule;
                d.rule = Some(rule.name.clone());
                d.value = Some(m.value);
                d.shard = Some(shard);
                d.island = Some(island);
                return d;
            }
            Err(why) => d
                .skipped
                .push(format!("rule {:?} ({}): {why}", rule.name, m.value)),
        }
    }
    if let Some(learned) = cache.and_then(|c| c.lookup(req.path, now)) {
        match learned.target {
            CacheTarget::Cell(cell) if config.cells.contains_key(&cell) => {
                d.cell = Some(cell);
                d.source = RouteSource::Learned;
                d.prefix = Some(learned.prefix);
                return d;
            }
            CacheTarget::Nowhere => {
                d.source = RouteSource::Negative;
                d.prefix = Some(learned.prefix);
                return d;
            }
            // A cell removed by a config reload: the learned route is void.
            CacheTarget::Cell(_) => {}
        }
    }
    d.cell = Some(config.default_cell.clone());
    d
}
