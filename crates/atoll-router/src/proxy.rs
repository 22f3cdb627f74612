//! One request through the router: clean the headers, decide the cell, hold or stream the
//! body, send, follow a cell's redirect once (the loop guard), learn the routes cells
//! teach, clean the answer, delay a 404 (jitter), log and count.

use crate::answer::{self, local};
use crate::body::{self, Prepared, RouterBody, StreamReason};
use crate::forward::{self, Failure, Outgoing};
use crate::headers::{self, CacheTarget, CELL_CACHE, CELL_REDIRECT, REQUEST_ID};
use crate::metrics::Event;
use crate::route::{decide, Decision, RequestView, RouteSource};
use crate::state::{Live, Shared, Upstream};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;

/// What a request's handling ended with, for the log and the counters.
struct Outcome {
    cell: String,
    source: RouteSource,
    response: Response<RouterBody>,
}

/// Where a worker sends: the router's shared state and the worker's own pool.
#[derive(Clone, Copy)]
struct Via<'a> {
    shared: &'a Shared,
    upstream: &'a Upstream,
}

/// Handles one request, sending to cells over `upstream` (the worker's pool).
pub async fn handle(
    shared: Arc<Shared>,
    upstream: &Upstream,
    req: Request<Incoming>,
) -> Response<RouterBody> {
    let started = Instant::now();
    let live = shared.live.load_full();
    let (mut parts, body) = req.into_parts();
    let request_id = parts
        .headers
        .get(REQUEST_ID)
        .and_then(|v| headers::request_id(v.as_bytes()))
        .map(str::to_string)
        .unwrap_or_else(answer::new_request_id);
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let outcome = if answer::header_bytes(&parts.headers) > live.config.max_header_bytes {
        shared.metrics.add(Event::HeadersTooLarge, 1);
        let reason = format!(
            "request headers exceed {} bytes",
            live.config.max_header_bytes
        );
        Outcome {
            cell: String::new(),
            source: RouteSource::Default,
            response: local(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &reason,
                &request_id,
            ),
        }
    } else {
        let stripped = answer::strip_atoll(&mut parts.headers);
        shared.metrics.add(Event::StrippedHeader, stripped as u64);
        answer::strip_hop_by_hop(&mut parts.headers);
        answer::set_request_id(&mut parts.headers, &request_id);
        route(&shared, upstream, &live, &parts, body, &request_id).await
    };
    let mut response = outcome.response;
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        let delay = answer::jitter(live.config.jitter_404);
        if !delay.is_zero() {
            shared.metrics.add(Event::Jittered, 1);
            shared.metrics.jitter_us.fetch_add(
                delay.as_micros() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            tokio::time::sleep(delay).await;
        }
    }
    answer::set_request_id(response.headers_mut(), &request_id);
    shared
        .metrics
        .request(&outcome.cell, outcome.source, status.as_u16());
    tracing::info!(
        target: "atoll_router::access",
        %method, %path, status = status.as_u16(), cell = %outcome.cell,
        source = outcome.source.as_str(), ms = started.elapsed().as_secs_f64() * 1e3,
        request_id = %request_id,
    );
    response
}

async fn route(
    shared: &Shared,
    upstream: &Upstream,
    live: &Live,
    parts: &http::request::Parts,
    body: Incoming,
    request_id: &str,
) -> Outcome {
    let snapshot = shared
        .discovery
        .as_ref()
        .map(|d| d.snapshot(&shared.cache, &shared.metrics));
    let env = shared
        .discovery
        .as_ref()
        .map(|d| d.env_digit())
        .unwrap_or(0);
    let view = RequestView {
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let decision = decide(
        &live.config,
        snapshot.as_deref(),
        env,
        Some(&shared.cache),
        &view,
        Instant::now(),
    );
    let Some(cell) = decision.cell.clone() else {
        let reason = format!(
            "no cell owns {} (learned: {})",
            parts.uri.path(),
            decision.prefix.as_deref().unwrap_or("")
        );
        return Outcome {
            cell: String::new(),
            source: RouteSource::Negative,
            response: local(StatusCode::NOT_FOUND, &reason, request_id),
        };
    };
    let (mut prepared, streamed) =
        match body::prepare(body, live.config.body_buffer_bytes, &shared.budget).await {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("reading the request body: {e}");
                return Outcome {
                    cell,
                    source: decision.source,
                    response: local(StatusCode::BAD_REQUEST, &reason, request_id),
                };
            }
        };
    match streamed {
        None => shared.metrics.add(Event::BodyHeld, 1),
        Some(r) => {
            shared.metrics.add(Event::BodyStreamed, 1);
            if r == StreamReason::BudgetFull {
                shared.metrics.add(Event::BudgetFull, 1);
            }
        }
    }
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let out = Outgoing {
        method: &parts.method,
        path_and_query: pq,
        headers: &parts.headers,
        hop: 0,
    };
    exchange(
        Via { shared, upstream },
        live,
        &decision,
        cell,
        &out,
        &mut prepared,
        request_id,
    )
    .await
}

/// Sends to the decided cell and handles a redirect (one hop at most).
async fn exchange(
    via: Via<'_>,
    live: &Live,
    decision: &Decision,
    cell: String,
    out: &Outgoing<'_>,
    body: &mut Prepared,
    request_id: &str,
) -> Outcome {
    let Via { shared, upstream } = via;
    let path = out.path_and_query.split('?').next().unwrap_or("/");
    let first = match forward::send(shared, upstream, live, &cell, out, body).await {
        Ok(r) => r,
        Err(f) => return failed(cell, decision.source, f, request_id),
    };
    learn(shared, live, &cell, path, first.headers());
    let Some(target) = redirect_of(&first) else {
        return Outcome {
            cell,
            source: decision.source,
            response: clean(first),
        };
    };
    let target = match check_target(live, &cell, target) {
        Ok(t) => t,
        Err(f) => {
            let e = if f.reason.starts_with("loop guard") {
                Event::LoopGuard
            } else {
                Event::BadCellHeader
            };
            shared.metrics.add(e, 1);
            return failed(cell, decision.source, f, request_id);
        }
    };
    if !body.replayable() {
        // The body streamed to the first cell is gone: the client re-sends it, and the
        // route is remembered so the re-send goes straight to the owner.
        shared.cache.insert(
            path,
            CacheTarget::Cell(target.clone()),
            None,
            Instant::now(),
        );
        shared.metrics.add(Event::RedirectPassed, 1);
        let mut r = local(
            StatusCode::TEMPORARY_REDIRECT,
            &format!("re-send to cell {target:?}"),
            request_id,
        );
        if let Ok(v) = http::HeaderValue::from_str(out.path_and_query) {
            r.headers_mut().insert(http::header::LOCATION, v);
        }
        return Outcome {
            cell,
            source: RouteSource::Redirect,
            response: r,
        };
    }
    drop(first);
    shared.metrics.add(Event::RedirectFollowed, 1);
    let again = Outgoing { hop: 1, ..*out };
    let second = match forward::send(shared, upstream, live, &target, &again, body).await {
        Ok(r) => r,
        Err(f) => return failed(target, RouteSource::Redirect, f, request_id),
    };
    learn(shared, live, &target, path, second.headers());
    if let Some(next) = redirect_of(&second) {
        shared.metrics.add(Event::LoopGuard, 1);
        let next = String::from_utf8_lossy(next.as_bytes())
            .chars()
            .take(64)
            .collect::<String>();
        let reason = format!(
            "loop guard: cell {target:?} redirected the re-sent request again (to {next:?}); the router makes one hop only"
        );
        return Outcome {
            cell: target,
            source: RouteSource::Redirect,
            response: local(StatusCode::BAD_GATEWAY, &reason, request_id),
        };
    }
    Outcome {
        cell: target,
        source: RouteSource::Redirect,
        response: clean(second),
    }
}

/// The redirect header of a 302/307 answer.
fn redirect_of(r: &Response<Incoming>) -> Option<http::HeaderValue> {
    let redirect = matches!(
        r.status(),
        StatusCode::FOUND | StatusCode::TEMPORARY_REDIRECT
    );
    redirect
        .then(|| r.headers().get(CELL_REDIRECT).cloned())
        .flatten()
}

/// The redirect's target, if the router may follow it.
fn check_target(live: &Live, from: &str, v: http::HeaderValue) -> Result<String, Failure> {
    let bad = |reason: String| Failure {
        status: StatusCode::BAD_GATEWAY,
        reason,
    };
    let target = headers::parse_redirect(v.as_bytes())
        .map_err(|e| bad(format!("cell {from:?} sent a bad {CELL_REDIRECT}: {e}")))?;
    if !live.config.cells.contains_key(&target) {
        return Err(bad(format!(
            "cell {from:?} redirected to unknown cell {target:?}"
        )));
    }
    if target == from {
        return Err(bad(format!(
            "loop guard: cell {from:?} redirected to itself"
        )));
    }
    Ok(target)
}

/// Learns the route a cell's cache header teaches: only a prefix of the request it
/// answered, to a configured cell or to none.
fn learn(shared: &Shared, live: &Live, cell: &str, path: &str, h: &HeaderMap) {
    let Some(v) = h.get(CELL_CACHE) else {
        return;
    };
    let usable = headers::parse_cache(v.as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|d| {
            if !headers::prefix_covers(&d.prefix, path) {
                return Err(format!("prefix {:?} does not cover {path:?}", d.prefix));
            }
            match &d.target {
                CacheTarget::Cell(c) if !live.config.cells.contains_key(c) => {
                    Err(format!("unknown cell {c:?}"))
                }
                _ => Ok(d),
            }
        });
    match usable {
        Ok(d) => {
            shared
                .cache
                .insert(&d.prefix, d.target, d.ttl, Instant::now());
            shared.metrics.add(Event::Learned, 1);
        }
        Err(why) => {
            shared.metrics.add(Event::BadCellHeader, 1);
            tracing::warn!(%cell, %why, "atoll-router: cache header ignored");
        }
    }
}

fn failed(cell: String, source: RouteSource, f: Failure, request_id: &str) -> Outcome {
    tracing::warn!(reason = %f.reason, "atoll-router: answered {}", f.status.as_u16());
    Outcome {
        cell,
        source,
        response: local(f.status, &f.reason, request_id),
    }
}

/// A cell's answer as the client gets it: no hop-by-hop or `X-Atoll-*` headers.
fn clean(r: Response<Incoming>) -> Response<RouterBody> {
    use http_body_util::BodyExt;
    let (mut parts, b) = r.into_parts();
    answer::strip_hop_by_hop(&mut parts.headers);
    answer::strip_atoll(&mut parts.headers);
    Response::from_parts(
        parts,
        b.map_err(|e| Box::new(e) as body::BoxError).boxed_unsync(),
    )
}
