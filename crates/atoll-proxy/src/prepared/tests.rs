use super::*;
use postgres_protocol::message::frontend;

/// Splits encoded frontend messages into frames.
fn frames(mut b: &[u8]) -> Vec<Frame> {
    let mut all = Vec::new();
    while !b.is_empty() {
        let len = i32::from_be_bytes(b[1..5].try_into().unwrap()) as usize;
        all.push(Frame {
            tag: b[0],
            body: Bytes::copy_from_slice(&b[5..1 + len]),
        });
        b = &b[1 + len..];
    }
    all
}

fn parse(name: &str, sql: &str) -> Vec<Frame> {
    let mut b = BytesMut::new();
    frontend::parse(name, sql, [23u32], &mut b).unwrap();
    frames(&b)
}

fn bind_execute_sync(name: &str) -> Vec<Frame> {
    let mut b = BytesMut::new();
    frontend::bind(
        "",
        name,
        [0i16],
        [Some(7i32)],
        |v, buf| {
            buf.put_i32(v.unwrap());
            Ok(postgres_protocol::IsNull::No)
        },
        [0i16],
        &mut b,
    )
    .map_err(|_| ())
    .unwrap();
    frontend::execute("", 0, &mut b).unwrap();
    frontend::sync(&mut b);
    frames(&b)
}

fn close(name: &str) -> Vec<Frame> {
    let mut b = BytesMut::new();
    frontend::close(b'S', name, &mut b).unwrap();
    frontend::sync(&mut b);
    frames(&b)
}

/// The messages sent, as (tag, first name in the body).
fn sent(out: &BytesMut) -> Vec<(char, String)> {
    frames(out)
        .iter()
        .map(|f| {
            let body = match f.tag {
                b'D' | b'C' => &f.body[1..],
                b'B' => cstr(&f.body).unwrap().1,
                _ => &f.body[..],
            };
            let name = cstr(body).map(|(n, _)| String::from_utf8_lossy(n).into_owned());
            (f.tag as char, name.unwrap_or_default())
        })
        .collect()
}

fn s(v: &[(char, &str)]) -> Vec<(char, String)> {
    v.iter().map(|(t, n)| (*t, n.to_string())).collect()
}

#[test]
fn a_statement_prepared_once_runs_on_any_connection() {
    let registry = Registry::default();
    let mut client = ClientStatements::default();
    let (mut a, mut b) = (ServerStatements::default(), ServerStatements::default());

    // Prepared on connection a: the client's Parse, renamed; its answer relayed.
    let mut batch = parse("q1", "select $1");
    batch.extend(bind_execute_sync("q1"));
    let steps = translate(batch, &mut client, &registry).unwrap();
    assert_eq!(steps[0].text().as_deref(), Some("select $1"));
    let (out, mut expect) = materialize(&steps, &mut a);
    assert_eq!(
        sent(&out),
        s(&[('P', "atoll_s0"), ('B', "atoll_s0"), ('E', ""), ('S', "")])
    );
    assert!(expect.forward(b'1') && expect.forward(b'2'));
    assert!(expect.unanswered().is_empty());

    // Run again on connection b: prepared there first, that ParseComplete dropped.
    let steps = translate(bind_execute_sync("q1"), &mut client, &registry).unwrap();
    assert_eq!(steps[0].text().as_deref(), Some("select $1"));
    let (out, mut expect) = materialize(&steps, &mut b);
    assert_eq!(
        sent(&out),
        s(&[('P', "atoll_s0"), ('B', "atoll_s0"), ('E', ""), ('S', "")])
    );
    assert!(!expect.forward(b'1'));
    assert!(expect.forward(b'2'));
    // ... and on a again: nothing added.
    let (out, _) = materialize(&steps, &mut a);
    assert_eq!(sent(&out), s(&[('B', "atoll_s0"), ('E', ""), ('S', "")]));

    // Another session's same statement shares the server name.
    let mut other = ClientStatements::default();
    let steps = translate(parse("x", "select $1"), &mut other, &registry).unwrap();
    let (out, mut expect) = materialize(&steps, &mut a);
    // a has it: closed (answer dropped), prepared again (answer relayed).
    assert_eq!(sent(&out), s(&[('C', "atoll_s0"), ('P', "atoll_s0")]));
    assert!(!expect.forward(b'3') && expect.forward(b'1'));
    assert_eq!(registry.len(), 1);
}

#[test]
fn names_are_checked_as_postgresql_does() {
    let registry = Registry::default();
    let mut client = ClientStatements::default();
    translate(parse("q", "select 1"), &mut client, &registry).unwrap();
    let again = translate(parse("q", "select 2"), &mut client, &registry);
    assert_eq!(again.unwrap_err().0, "42P05");
    let unknown = translate(bind_execute_sync("nope"), &mut client, &registry);
    let e = unknown.unwrap_err();
    assert_eq!(e.0, "26000");
    assert!(e.1.contains("\"nope\""));

    // Close forgets the name; the server's statement stays (a Close of no statement is
    // sent, so the client's CloseComplete comes in order).
    let steps = translate(close("q"), &mut client, &registry).unwrap();
    let mut server = ServerStatements::default();
    let (out, mut expect) = materialize(&steps, &mut server);
    assert_eq!(sent(&out), s(&[('C', CLOSED), ('S', "")]));
    assert!(expect.forward(b'3'));
    assert_eq!(
        translate(bind_execute_sync("q"), &mut client, &registry)
            .unwrap_err()
            .0,
        "26000"
    );
    // Prepared again under the same name: fine.
    translate(parse("q", "select 2"), &mut client, &registry).unwrap();
    assert!(client.remove("q") && !client.remove("q"));
}

#[test]
fn a_failed_parse_is_not_kept_and_old_statements_are_closed_at_the_limit() {
    let registry = Registry::default();
    let mut client = ClientStatements::default();
    let mut server = ServerStatements::default();
    let steps = translate(parse("bad", "select nope"), &mut client, &registry).unwrap();
    let (_, expect) = materialize(&steps, &mut server);
    // An error came instead of ParseComplete.
    server.forget(&expect.unanswered());
    assert_eq!(server.len(), 0);

    for i in 0..SERVER_LIMIT + 3 {
        let steps = translate(
            parse(&format!("q{i}"), &format!("select {i}")),
            &mut client,
            &registry,
        )
        .unwrap();
        let (out, mut expect) = materialize(&steps, &mut server);
        let closes = sent(&out).iter().filter(|(t, _)| *t == 'C').count();
        assert_eq!(closes, usize::from(i >= SERVER_LIMIT), "statement {i}");
        if closes == 1 {
            assert!(!expect.forward(b'3'));
        }
        assert!(expect.forward(b'1'));
    }
    assert_eq!(server.len(), SERVER_LIMIT);
}

#[test]
fn deallocate_statements_are_read() {
    assert_eq!(deallocated("DEALLOCATE ALL;"), Some(None));
    assert_eq!(
        deallocated("deallocate prepare Q1"),
        Some(Some("q1".into()))
    );
    assert_eq!(
        deallocated(" DEALLOCATE \"Q\"\"1\" "),
        Some(Some("Q\"1".into()))
    );
    assert_eq!(deallocated("deallocate"), None);
    assert_eq!(deallocated("select 1"), None);
    assert_eq!(deallocated("deallocate a b"), None);
}

proptest::proptest! {
    /// Whatever a client sends in a batch, translating and materializing it never panics.
    #[test]
    fn no_batch_panics(
        msgs in proptest::collection::vec(
            (proptest::sample::select(vec![b'P', b'B', b'D', b'C', b'E', b'S', b'H']),
             proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)),
            0..8,
        )
    ) {
        let registry = Registry::default();
        let mut client = ClientStatements::default();
        let mut server = ServerStatements::default();
        let frames = msgs
            .into_iter()
            .map(|(tag, body)| Frame { tag, body: Bytes::from(body) })
            .collect();
        if let Ok(steps) = translate(frames, &mut client, &registry) {
            let _ = steps.iter().map(Step::text).count();
            let (_, mut expect) = materialize(&steps, &mut server);
            for t in [b'1', b'3', b'2', b'1'] {
                let _ = expect.forward(t);
            }
            server.forget(&expect.unanswered());
        }
        let _ = deallocated(&String::from_utf8_lossy(&[0xff, b'x']));
    }
}

#[test]
fn a_query_sent_ahead_has_its_answers_dropped() {
    let mut expect = Expect::default();
    expect.skip_exchange();
    // BEGIN's CommandComplete and ReadyForQuery, then the client's own answers.
    assert!(!expect.forward(b'C') && !expect.forward(b'Z'));
    assert!(expect.forward(b'1') && expect.forward(b'C') && expect.forward(b'Z'));
}
