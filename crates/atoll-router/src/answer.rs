//! What the router itself answers and how it cleans headers going either way.

use crate::body::{full, RouterBody};
use crate::headers::{ATOLL_PREFIX, REQUEST_ID};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use rand::Rng;
use std::time::Duration;

/// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded either way.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Removes every `X-Atoll-*` header; how many there were.
pub fn strip_atoll(headers: &mut HeaderMap) -> usize {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(ATOLL_PREFIX))
        .cloned()
        .collect();
    let mut n = 0;
    for k in names {
        n += headers.get_all(&k).iter().count();
        headers.remove(&k);
    }
    n
}

/// Removes hop-by-hop headers, those named by `Connection` included, and
/// `Transfer-Encoding` (each hop frames the body itself).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for k in named {
        headers.remove(k);
    }
    for k in HOP_BY_HOP {
        headers.remove(k);
    }
    headers.remove(http::header::TRANSFER_ENCODING);
}

/// Total bytes of header names and values.
pub fn header_bytes(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
        .sum()
}

/// An answer of the router's own: `status` with a one-line reason (text/plain), naming the
/// request id.
pub fn local(status: StatusCode, reason: &str, request_id: &str) -> Response<RouterBody> {
    let mut r = Response::new(full(format!("atoll-router: {reason}\n").into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    set_request_id(h, request_id);
    r
}

/// Sets `X-Request-Id`.
pub fn set_request_id(h: &mut HeaderMap, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert(REQUEST_ID, v);
    }
}

/// A new request id: 32 hex digits.
pub fn new_request_id() -> String {
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

/// A random delay in `0..=max` (none when `max` is zero).
pub fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let us = rand::thread_rng().gen_range(0..=max.as_micros().min(u64::MAX as u128) as u64);
    Duration::from_micros(us)
}

/// Whether a method is idempotent (RFC 9110 §9.2.2): may be sent again after a failure
/// that may have reached the cell.
pub fn idempotent(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::TRACE
            | http::Method::PUT
            | http::Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_routing_and_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-atoll-cell-redirect", "eu1".parse().unwrap());
        h.append("x-atoll-anything", "1".parse().unwrap());
        h.append("x-atoll-anything", "2".parse().unwrap());
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "s".parse().unwrap());
        h.insert("x-kept", "k".parse().unwrap());
        assert_eq!(strip_atoll(&mut h), 3);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        assert!(jitter(Duration::ZERO).is_zero());
        assert!(jitter(Duration::from_millis(5)) <= Duration::from_millis(5));
        assert_eq!(new_request_id().len(), 32);
    }
}
