//! `atoll router check`: what a validated config compiles to, for people and `--json`.

use crate::config::{CacheConfig, CellConfig, HealthConfig, RouterConfig};
use crate::rules::{Kind, Source};
use serde::Serialize;

/// One compiled rule as shown.
#[derive(Debug, Clone, Serialize)]
pub struct RuleSummary {
    /// Its name.
    pub name: String,
    /// Where it looks.
    pub source: Source,
    /// The header, cookie or parameter.
    pub field: Option<String>,
    /// The regex.
    pub pattern: String,
    /// The named capture.
    pub capture: String,
    /// `id` or `key`.
    pub kind: Kind,
    /// Key rules: how many shards the key router spreads over.
    pub key_shards: Option<usize>,
}

/// A whole config as `check` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    /// Proxy listener.
    pub listen: String,
    /// Admin listener.
    pub admin_listen: Option<String>,
    /// The cluster config for discovery.
    pub atoll_config: Option<String>,
    /// The default cell.
    pub default_cell: String,
    /// Cells.
    pub cells: Vec<CellConfig>,
    /// Rules in order.
    pub rules: Vec<RuleSummary>,
    /// Per-request body cap.
    pub body_buffer_bytes: u64,
    /// Global body budget.
    pub body_budget_bytes: u64,
    /// 404 jitter bound in ms.
    pub jitter_404_ms: u128,
    /// Retries.
    pub retries: u32,
    /// Cache bounds.
    pub cache: CacheConfig,
    /// Health checks.
    pub health: HealthConfig,
}

/// The summary of `c`.
pub fn summary(c: &RouterConfig) -> ConfigSummary {
    ConfigSummary {
        listen: c.listen.to_string(),
        admin_listen: c.admin_listen.map(|a| a.to_string()),
        atoll_config: c.atoll_config.as_ref().map(|p| p.display().to_string()),
        default_cell: c.default_cell.clone(),
        cells: c.cells.values().cloned().collect(),
        rules: c
            .rules
            .iter()
            .map(|r| RuleSummary {
                name: r.name.clone(),
                source: r.source,
                field: r.field.clone(),
                pattern: r.regex.as_str().to_string(),
                capture: r.capture.clone(),
                kind: r.kind,
                key_shards: r.keys.as_ref().map(|k| k.shards().len()),
            })
            .collect(),
        body_buffer_bytes: c.body_buffer_bytes,
        body_budget_bytes: c.body_budget_bytes,
        jitter_404_ms: c.jitter_404.as_millis(),
        retries: c.retries,
        cache: c.cache.clone(),
        health: c.health.clone(),
    }
}
