//! Sending a request to a cell: an address chosen by health, a bounded wait for the
//! answer's head, and retries at another address only when safe: a request the cell
//! never received (connection refused), or an idempotent one, and only with a held body.

use crate::answer::idempotent;
use crate::body::Prepared;
use crate::headers::ROUTER_HOP;
use crate::metrics::Event;
use crate::state::{Live, Shared, Upstream};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

/// One request as sent to cells.
pub struct Outgoing<'a> {
    /// The method.
    pub method: &'a Method,
    /// Path and query.
    pub path_and_query: &'a str,
    /// Headers, cleaned.
    pub headers: &'a HeaderMap,
    /// 0 for the first cell, 1 for a re-send after a redirect.
    pub hop: u8,
}

/// Why no answer came: the status the client gets and a one-line reason.
#[derive(Debug)]
pub struct Failure {
    /// 502 or 504.
    pub status: StatusCode,
    /// Why.
    pub reason: String,
}

/// Sends `out` to `cell` over `upstream`, retrying where safe.
pub async fn send(
    shared: &Shared,
    upstream: &Upstream,
    live: &Live,
    cell: &str,
    out: &Outgoing<'_>,
    body: &mut Prepared,
) -> Result<Response<Incoming>, Failure> {
    let mut tried = Vec::new();
    let attempts = 1 + live.config.retries as usize;
    let mut last = Failure {
        status: StatusCode::BAD_GATEWAY,
        reason: format!("cell {cell:?} has no address"),
    };
    while tried.len() < attempts {
        let Some((i, addr)) = live.health.pick(cell, &tried) else {
            break;
        };
        tried.push(i);
        let Some(b) = body.attempt() else {
            break;
        };
        if tried.len() > 1 {
            shared.metrics.add(Event::Retry, 1);
        }
        let req = match build(out, &addr.addr, b) {
            Ok(r) => r,
            Err(e) => {
                return Err(Failure {
                    status: StatusCode::BAD_REQUEST,
                    reason: format!("cannot forward the request: {e}"),
                })
            }
        };
        let sent = tokio::time::timeout(live.config.upstream_timeout, upstream.request(req)).await;
        let (failure, never_sent) = match sent {
            Ok(Ok(resp)) => {
                live.health.succeeded(&addr);
                return Ok(resp);
            }
            Ok(Err(e)) => (
                Failure {
                    status: StatusCode::BAD_GATEWAY,
                    reason: format!("cell {cell:?} at {}: {}", addr.addr, error_chain(&e)),
                },
                e.is_connect(),
            ),
            Err(_) => (
                Failure {
                    status: StatusCode::GATEWAY_TIMEOUT,
                    reason: format!(
                        "cell {cell:?} at {} did not answer within {} ms",
                        addr.addr,
                        live.config.upstream_timeout.as_millis()
                    ),
                },
                false,
            ),
        };
        shared.metrics.add(Event::UpstreamError, 1);
        live.health.failed(&addr);
        tracing::debug!(reason = %failure.reason, "atoll-router: upstream failure");
        last = failure;
        if !(body.replayable() && (never_sent || idempotent(out.method))) {
            break;
        }
    }
    Err(last)
}

fn build(
    out: &Outgoing<'_>,
    addr: &str,
    body: crate::body::RouterBody,
) -> Result<Request<crate::body::RouterBody>, http::Error> {
    let mut req = Request::builder()
        .method(out.method.clone())
        .uri(format!("http://{addr}{}", out.path_and_query))
        .body(body)?;
    *req.headers_mut() = out.headers.clone();
    if out.hop > 0 {
        req.headers_mut()
            .insert(ROUTER_HOP, HeaderValue::from(u16::from(out.hop)));
    }
    Ok(req)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
