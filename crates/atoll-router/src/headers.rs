//! Parsers of what cells and clients send the router: `X-Atoll-Cell-Redirect`,
//! `X-Atoll-Cell-Cache`, cookies, query strings and request ids. Pure and total: any input
//! gives a value or an error, never a panic (property-tested in `tests/header_properties.rs`).

use std::time::Duration;

/// The header a cell answers with to name the cell that owns a request.
pub const CELL_REDIRECT: &str = "x-atoll-cell-redirect";
/// The header a cell answers with to teach the router a route prefix.
pub const CELL_CACHE: &str = "x-atoll-cell-cache";
/// Sent by the router on a re-sent request, so the cell knows it is the second hop.
pub const ROUTER_HOP: &str = "x-atoll-router-hop";
/// The request id the router propagates (and makes when a client sent none).
pub const REQUEST_ID: &str = "x-request-id";
/// Every header whose name starts so steers or describes routing: never taken from clients,
/// never passed back to them.
pub const ATOLL_PREFIX: &str = "x-atoll-";

/// Longest cell name, prefix and request id the parsers accept.
pub const MAX_CELL_NAME: usize = 63;
/// Longest learned prefix (bytes).
pub const MAX_PREFIX: usize = 512;
/// Longest request id kept from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// Why a header from a cell cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not a cell name (1..=63 of `a-z 0-9 - _`).
    #[error("{0:?} is not a cell name (1 to 63 of a-z, 0-9, -, _)")]
    BadCellName(String),
    /// The cache header does not have the form `<prefix>/* => <cell>[; ttl=<seconds>]`.
    #[error("cache header {0:?}: expected `<prefix>/* => <cell>[; ttl=<seconds>]`")]
    BadCacheForm(String),
    /// The prefix is not an absolute path of at most 512 bytes without `*`, `?`, `#`,
    /// spaces or control characters, naming at least one segment.
    #[error("cache header prefix {0:?}: expected an absolute path of 1 to 512 bytes naming at least one segment, without *, ?, # or spaces")]
    BadPrefix(String),
    /// The ttl is not a whole number of seconds.
    #[error("cache header ttl {0:?}: expected whole seconds")]
    BadTtl(String),
    /// The header's bytes are not visible ASCII.
    #[error("header value is not visible ASCII")]
    NotAscii,
}

/// Where a cached prefix sends requests: a cell, or nowhere (`none`: no cell owns it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTarget {
    /// This cell owns the prefix.
    Cell(String),
    /// No cell owns it (a negative entry).
    Nowhere,
}

/// A parsed `X-Atoll-Cell-Cache` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDirective {
    /// The prefix without its `/*` (`/my-company`).
    pub prefix: String,
    /// Where it goes.
    pub target: CacheTarget,
    /// How long the cell wants it kept (the router caps it).
    pub ttl: Option<Duration>,
}

/// A cell name: 1..=63 of `a-z 0-9 - _`.
pub fn parse_cell_name(s: &str) -> Result<String, HeaderError> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= MAX_CELL_NAME
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(HeaderError::BadCellName(s.chars().take(80).collect()))
    }
}

/// The header's value as text, if it is visible ASCII (and tabs/spaces).
pub fn ascii(value: &[u8]) -> Result<&str, HeaderError> {
    if value
        .iter()
        .all(|b| *b == b'\t' || (0x20..0x7f).contains(b))
    {
        std::str::from_utf8(value).map_err(|_| HeaderError::NotAscii)
    } else {
        Err(HeaderError::NotAscii)
    }
}

/// `X-Atoll-Cell-Redirect: <cell>`.
pub fn parse_redirect(value: &[u8]) -> Result<String, HeaderError> {
    parse_cell_name(ascii(value)?)
}

/// `X-Atoll-Cell-Cache: <prefix>/* => <cell>[; ttl=<seconds>]`, `<cell>` may be `none`.
pub fn parse_cache(value: &[u8]) -> Result<CacheDirective, HeaderError> {
    let text = ascii(value)?;
    let form = || HeaderError::BadCacheForm(text.chars().take(120).collect());
    let (left, right) = text.split_once("=>").ok_or_else(form)?;
    let left = left.trim();
    let prefix = left.strip_suffix("/*").ok_or_else(form)?;
    check_prefix(prefix)?;
    let mut parts = right.split(';');
    let cell = parts.next().ok_or_else(form)?.trim();
    let target = if cell == "none" {
        CacheTarget::Nowhere
    } else {
        CacheTarget::Cell(parse_cell_name(cell)?)
    };
    let mut ttl = None;
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let v = p.strip_prefix("ttl=").ok_or_else(form)?;
        if ttl.is_some() {
            return Err(form());
        }
        let secs: u64 = v.parse().map_err(|_| HeaderError::BadTtl(v.to_string()))?;
        ttl = Some(Duration::from_secs(secs.min(u32::MAX as u64)));
    }
    Ok(CacheDirective {
        prefix: prefix.to_string(),
        target,
        ttl,
    })
}

fn check_prefix(prefix: &str) -> Result<(), HeaderError> {
    let ok = prefix.starts_with('/')
        && prefix.len() > 1
        && prefix.len() <= MAX_PREFIX
        && !prefix.ends_with('/')
        && !prefix.contains("//")
        && !prefix
            .bytes()
            .any(|b| matches!(b, b'*' | b'?' | b'#') || b <= b' ' || b == 0x7f);
    if ok {
        Ok(())
    } else {
        Err(HeaderError::BadPrefix(prefix.chars().take(80).collect()))
    }
}

/// Whether `prefix` (no trailing slash) covers `path`: equal, or followed by `/`.
pub fn prefix_covers(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The prefixes of `path` at segment boundaries, longest first (`/a/b/c`, `/a/b`, `/a`);
/// at most `max` of them, each at most [`MAX_PREFIX`] bytes.
pub fn path_prefixes(path: &str, max: usize) -> impl Iterator<Item = &str> {
    let path = path.trim_end_matches('/');
    let mut end = Some(path.len());
    std::iter::from_fn(move || loop {
        let e = end?;
        if e == 0 {
            end = None;
            return None;
        }
        let candidate = &path[..e];
        end = candidate.rfind('/');
        if candidate.len() <= MAX_PREFIX {
            return Some(candidate);
        }
    })
    .take(max)
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The value of parameter `name` in a query string (`a=1&b=2`), percent-decoded; `None`
/// when absent or not valid UTF-8 once decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k)? == name {
            percent_decode(v)
        } else {
            None
        }
    })
}

/// `%XX` and `+` decoded; `None` when a `%` is not followed by two hex digits or the
/// result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A client's request id kept as is when it is 1..=128 of `A-Z a-z 0-9 - _ . :`;
/// otherwise `None` (the router makes one).
pub fn request_id(value: &[u8]) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_headers() {
        let d = parse_cache(b"/my-company/* => eu0; ttl=60").unwrap();
        assert_eq!(d.prefix, "/my-company");
        assert_eq!(d.target, CacheTarget::Cell("eu0".into()));
        assert_eq!(d.ttl, Some(Duration::from_secs(60)));
        let d = parse_cache(b"/a/b/* => none").unwrap();
        assert_eq!(d.target, CacheTarget::Nowhere);
        assert_eq!(d.ttl, None);
        for bad in [
            &b"/* => eu0"[..],
            b"/a => eu0",
            b"/a/* eu0",
            b"a/* => eu0",
            b"/a/* => EU0",
            b"/a/* => eu0; ttl=x",
            b"/a/* => eu0; ttl=1; ttl=2",
            b"/a/* => eu0; color=red",
            b"/a*/* => eu0",
            b"/a\x01/* => eu0",
            b"/a//b/* => eu0",
        ] {
            assert!(
                parse_cache(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn prefixes_and_params() {
        let p: Vec<_> = path_prefixes("/a/b/c/", 10).collect();
        assert_eq!(p, ["/a/b/c", "/a/b", "/a"]);
        assert_eq!(path_prefixes("/", 10).count(), 0);
        assert!(prefix_covers("/a", "/a/b"));
        assert!(prefix_covers("/a", "/a"));
        assert!(!prefix_covers("/a", "/ab"));
        assert_eq!(cookie("a=1; tenant=\"x y\"", "tenant"), Some("x y"));
        assert_eq!(cookie("a=1", "b"), None);
        assert_eq!(query_param("a=1&id=4%32&x", "id").as_deref(), Some("42"));
        assert_eq!(query_param("x", "x").as_deref(), Some(""));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(request_id(b"abc-1"), Some("abc-1"));
        assert_eq!(request_id(b"a b"), None);
        assert_eq!(parse_redirect(b" eu0 ").unwrap(), "eu0");
        assert!(parse_redirect(b"\xff").is_err());
    }
}
