//! The schedule request parser takes network input: it never panics, and every refusal
//! is a 400 naming a field.

use atoll_agent::http::{parse_schedule, ApiErrorCode};
use proptest::prelude::*;

fn check(body: &[u8]) {
    if let Err(e) = parse_schedule(body) {
        assert_eq!(e.status(), 400);
        assert!(e.field_name().is_some_and(|f| !f.is_empty()), "{e:?}");
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&body);
    }

    #[test]
    fn json_shaped(id in ".{0,20}", kind in "(shard\\.activate|node\\.restart|cluster\\.add|node\\.switchover|cluster\\.remove|x)",
                   key in "[a-z_]{1,12}", value in prop_oneof![Just("1".to_string()), Just("\"127.0.0.1:5\"".to_string()), Just("null".to_string()), Just("-99999999999".to_string()), Just("{}".to_string())]) {
        let body = format!(r#"{{"id": {}, "kind": "{kind}", "args": {{"{key}": {value}}}}}"#, serde_json::to_string(&id).unwrap());
        check(body.as_bytes());
    }
}

#[test]
fn a_good_request_passes() {
    let (id, kind, args) =
        parse_schedule(br#"{"id": "a-1", "kind": "shard.activate", "args": {"shard": 42}}"#)
            .unwrap();
    assert_eq!(
        (id.as_str(), kind.as_str(), args["shard"].as_i64()),
        ("a-1", "shard.activate", Some(42))
    );
    let e = parse_schedule(
        br#"{"id": "a", "kind": "cluster.add", "args": {"node": "127.0.0.1:1", "auth": "rot13"}}"#,
    )
    .unwrap_err();
    assert_eq!(
        (e.code(), e.field_name()),
        (ApiErrorCode::BadArgs, Some("args.auth"))
    );
}
