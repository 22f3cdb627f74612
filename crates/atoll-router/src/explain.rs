//! `atoll router explain`: which rule, shard, island and cell a request would take, decided
//! by the same function the proxy uses (`route::decide`), without learned routes (those
//! live in a running router).

use crate::answer::strip_atoll;
use crate::config::RouterConfig;
use crate::error::RouterError;
use crate::route::{decide, Decision, RequestView};
use atoll_core::Snapshot;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use std::time::Instant;

/// The explanation of one request.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The method, as given.
    pub method: String,
    /// The path as given (with its query).
    pub path: String,
    /// Inbound `X-Atoll-*` headers that would be removed before routing.
    pub stripped_headers: usize,
    /// The decision.
    pub decision: Decision,
    /// The addresses of the decided cell.
    pub addrs: Vec<String>,
}

/// Parses `Name: value` header arguments.
pub fn parse_headers(args: &[String]) -> Result<HeaderMap, RouterError> {
    let mut h = HeaderMap::new();
    for a in args {
        let bad = |why: &str| RouterError::config(format!("header {a:?}"), why.to_string());
        let (k, v) = a
            .split_once(':')
            .ok_or_else(|| bad("expected Name: value"))?;
        let k =
            HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| bad("not a header name"))?;
        let v = HeaderValue::from_str(v.trim()).map_err(|_| bad("not a header value"))?;
        h.append(k, v);
    }
    Ok(h)
}

/// Explains `method path` with `headers` under `config` and `snapshot`.
pub fn explain(
    config: &RouterConfig,
    snapshot: Option<&Snapshot>,
    env_digit: u8,
    method: &str,
    path: &str,
    mut headers: HeaderMap,
) -> Result<Explanation, RouterError> {
    http::Method::from_bytes(method.as_bytes())
        .map_err(|_| RouterError::config(format!("method {method:?}"), "not an HTTP method"))?;
    let uri: http::Uri = path
        .parse()
        .map_err(|_| RouterError::config(format!("path {path:?}"), "not a request path"))?;
    if !path.starts_with('/') {
        return Err(RouterError::config(
            format!("path {path:?}"),
            "must start with /",
        ));
    }
    let stripped_headers = strip_atoll(&mut headers);
    let view = RequestView {
        path: uri.path(),
        query: uri.query(),
        headers: &headers,
    };
    let decision = decide(config, snapshot, env_digit, None, &view, Instant::now());
    let addrs = decision
        .cell
        .as_ref()
        .and_then(|c| config.cells.get(c))
        .map(|c| c.addrs.clone())
        .unwrap_or_default();
    Ok(Explanation {
        method: method.to_string(),
        path: path.to_string(),
        stripped_headers,
        decision,
        addrs,
    })
}
