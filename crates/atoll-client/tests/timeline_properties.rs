//! Timeline strings come from the client (a cookie, a header): whatever the text, parsing
//! gives a timeline or a one-line error naming the entry, never a panic, and no parsed
//! entry outlives the TTL. `PROPTEST_CASES` raises the number of cases (256 by default).

use atoll_client::{Lsn, ShardNo, Timeline};
use atoll_core::IslandId;
use proptest::prelude::*;
use std::time::Duration;

const NOW_MS: u64 = 1_763_700_000_000;
const TTL: Duration = Duration::from_secs(60);

const PIECES: &[&str] = &[
    "0",
    "1",
    "42",
    "9999",
    "10000",
    ":",
    ",",
    " ",
    "-",
    "+",
    "µ",
    "€",
    "\0",
    "\n",
    "\r",
    "ff",
    "FFFFFFFFFFFFFFFF",
    "10000000000000000",
    "18446744073709551616",
    "1763700060",
    "99999999999999999999",
    "🦀",
    "\u{a0}",
];

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(PIECES).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
        1 => (proptest::sample::select(PIECES), 500usize..5_000).prop_map(|(p, n)| p.repeat(n)),
    ];
    prop_oneof![
        6 => proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat()),
        1 => any::<String>(),
    ]
}

/// Entries shaped right, with any number in any field.
fn entries() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        proptest::sample::select(PIECES).prop_map(str::to_string),
    ];
    proptest::collection::vec(proptest::collection::vec(field, 4), 1..8)
        .prop_map(|es| es.iter().map(|e| e.join(":")).collect::<Vec<_>>().join(","))
}

fn check(t: &str, ttl: Duration) -> Result<(), TestCaseError> {
    match Timeline::parse_at(t, NOW_MS, ttl) {
        Ok(tl) => {
            // Nothing parsed outlives now + TTL.
            let after = NOW_MS.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            prop_assert_eq!(tl.serialize(after), "");
        }
        Err(e) => {
            let m = e.to_string();
            prop_assert!(m.starts_with("timeline ") && m.contains("entry "), "{}", m);
            prop_assert!(!m.contains('\n') && !m.contains('\r'), "{:?}", m);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_text_parses_or_is_refused(t in text()) {
        check(&t, TTL)?;
    }

    #[test]
    fn any_entries_parse_or_are_refused(t in entries(), huge_ttl in any::<bool>()) {
        check(&t, if huge_ttl { Duration::MAX } else { TTL })?;
    }
}

#[test]
fn bad_entries_are_named() {
    for (t, entry, what) in [
        ("1:0:ff:1", 0, "expected shard:island:lsn:expiry"),
        ("1:0:ff:1,10000:0:ff:1", 1, "bad shard number"),
        ("1:µ:ff:1", 0, "bad island number"),
        ("1:0:fµ:1", 0, "bad LSN"),
        ("1:0:ff:99999999999999999999", 0, "bad expiry"),
    ] {
        let t = if entry == 0 && what.starts_with("expected") {
            "1:0:ff"
        } else {
            t
        };
        let e = Timeline::parse_at(t, NOW_MS, TTL).unwrap_err().to_string();
        assert!(e.contains(&format!("entry {entry}: {what}")), "{t}: {e}");
    }
    // A well-formed one round-trips.
    let tl = Timeline::parse_at("42:1:3000060:1763700030", NOW_MS, TTL).unwrap();
    assert_eq!(
        tl.required(ShardNo::new(42).unwrap(), NOW_MS),
        Some((IslandId(1), Lsn(0x3000060)))
    );
}
