//! The parsers of what cells and clients send never panic, and what they accept is well
//! formed: cache headers, redirects, cookies, query strings, request ids, path prefixes,
//! and rule extraction over arbitrary headers.

use atoll_router::headers::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn cache_header_total(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(d) = parse_cache(&bytes) {
            prop_assert!(d.prefix.starts_with('/') && d.prefix.len() <= MAX_PREFIX);
            prop_assert!(!d.prefix.contains('*'));
        }
        let _ = parse_redirect(&bytes);
        let _ = request_id(&bytes);
    }

    #[test]
    fn cache_header_round_trip(segs in proptest::collection::vec("[a-z0-9._-]{1,12}", 1..6), cell in "[a-z0-9_-]{1,20}", ttl in proptest::option::of(0u64..100_000)) {
        let prefix = format!("/{}", segs.join("/"));
        let mut text = format!("{prefix}/* => {cell}");
        if let Some(t) = ttl { text.push_str(&format!("; ttl={t}")); }
        let d = parse_cache(text.as_bytes()).unwrap();
        prop_assert_eq!(&d.prefix, &prefix);
        let below = format!("{}/x", prefix);
        prop_assert!(prefix_covers(&d.prefix, &below));
        let expected = if cell == "none" { CacheTarget::Nowhere } else { CacheTarget::Cell(cell.clone()) };
        prop_assert_eq!(d.target, expected);
        prop_assert_eq!(d.ttl.map(|t| t.as_secs()), ttl);
    }

    #[test]
    fn text_parsers_total(s in "\\PC{0,200}", name in "\\PC{0,10}") {
        let _ = cookie(&s, &name);
        let _ = query_param(&s, &name);
        let _ = percent_decode(&s);
        for p in path_prefixes(&s, 16) {
            prop_assert!(s.starts_with(p) && p.len() <= MAX_PREFIX);
        }
    }
}
