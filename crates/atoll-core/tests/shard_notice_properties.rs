//! Property tests for the shard notice payload: it round-trips, and no input, however
//! broken, makes the parser panic; what it accepts prints back to an equal notice.

use atoll_core::shard_notice::MAX_PAYLOAD;
use atoll_core::{IslandId, ShardNo, ShardNotice};
use proptest::prelude::*;

fn notice() -> impl Strategy<Value = ShardNotice> {
    (
        0i64..=9999,
        any::<u16>(),
        any::<bool>(),
        0u64..=i64::MAX as u64,
    )
        .prop_map(|(s, i, active, gen)| ShardNotice {
            shard: ShardNo::new(s).unwrap(),
            island: IslandId(i),
            active,
            gen,
        })
}

/// Payload-like text: the right words, numbers, separators and junk, in any order.
fn payload_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("v1".to_string()),
        Just("v2".to_string()),
        Just("shard=".to_string()),
        Just("island=".to_string()),
        Just("active=".to_string()),
        Just("gen=".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just(" ".to_string()),
        Just("=".to_string()),
        Just("-".to_string()),
        Just("+".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z_]{1,8}",
        "\\PC{0,4}",
    ];
    proptest::collection::vec(token, 0..16).prop_map(|t| t.concat())
}

proptest! {
    #[test]
    fn notices_round_trip(n in notice()) {
        let text = n.to_string();
        prop_assert!(text.len() <= MAX_PAYLOAD);
        prop_assert_eq!(ShardNotice::parse(&text), Ok(n));
    }

    #[test]
    fn any_text_parses_or_is_refused_without_panic(s in "\\PC{0,200}") {
        let _ = ShardNotice::parse(&s);
    }

    #[test]
    fn accepted_soup_prints_back_to_the_same_notice(s in payload_soup()) {
        if let Ok(n) = ShardNotice::parse(&s) {
            prop_assert!(s.starts_with("v1 "));
            prop_assert_eq!(ShardNotice::parse(&n.to_string()), Ok(n));
        }
    }

    #[test]
    fn a_valid_payload_with_a_byte_changed_never_panics(
        n in notice(), at in 0usize..80, byte in any::<u8>(),
    ) {
        let mut bytes = n.to_string().into_bytes();
        let i = at % bytes.len();
        bytes[i] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            if let Ok(m) = ShardNotice::parse(&text) {
                prop_assert_eq!(ShardNotice::parse(&m.to_string()), Ok(m));
            }
        }
    }
}
