use super::*;

fn shard(n: i64) -> ShardNo {
    ShardNo::new(n).unwrap()
}

fn route(sql: &str) -> Result<(ShardNo, Why), RouteError> {
    SessionRoute::default().route(&read(sql)?)
}

#[test]
fn qualified_names_route_wherever_they_are_written() {
    assert_eq!(
        route("select * from sh0042.users").unwrap(),
        (shard(42), Why::Qualified)
    );
    assert_eq!(
        route("SELECT * FROM SH0042.Users").unwrap(),
        (shard(42), Why::Qualified)
    );
    assert_eq!(
        route("select * from \"sh0042\".users").unwrap(),
        (shard(42), Why::Qualified)
    );
    assert_eq!(
        route("insert into sh0007.t (a) select 1 where exists (select 1 from sh0007.u)").unwrap(),
        (shard(7), Why::Qualified)
    );
    // A quoted name keeps its case: "SH0042" is no shard schema.
    assert_eq!(
        route("select * from \"SH0042\".users").unwrap(),
        (ShardNo::GLOBAL, Why::Default)
    );
}

#[test]
fn names_in_strings_and_comments_do_not_count() {
    assert_eq!(route("select 'sh0042.users'").unwrap().1, Why::Default);
    assert_eq!(
        route("select 1 -- from sh0042.users").unwrap().1,
        Why::Default
    );
    assert_eq!(
        route("select $$sh0042.x$$, e'sh0001.y'").unwrap().1,
        Why::Default
    );
    assert_eq!(route("select sh00421.x from t").unwrap().1, Why::Default);
}

#[test]
fn two_shards_are_refused_with_both_named() {
    let e = route("select * from sh0001.a join sh0002.b using (id)").unwrap_err();
    assert_eq!(e, RouteError::CrossShard(shard(1), shard(2)));
    assert_eq!(e.sqlstate(), "0A000");
    assert!(e.to_string().contains("sh0001 and sh0002"), "{e}");
    let e = route("select 1 from sh0001.a; select 1 from sh0003.b").unwrap_err();
    assert_eq!(e, RouteError::CrossShard(shard(1), shard(3)));
    // The same shard named twice, once by a hint, is one shard.
    assert_eq!(
        route("/* atoll:shard=5 */ select * from sh0005.a")
            .unwrap()
            .0,
        shard(5)
    );
}

#[test]
fn hints_name_a_shard_or_an_id() {
    assert_eq!(
        route("/* atoll:shard=42 */ select * from users").unwrap(),
        (shard(42), Why::ShardHint)
    );
    assert_eq!(
        route("select * from users -- atoll:shard=9").unwrap(),
        (shard(9), Why::ShardHint)
    );
    let id = Id::new(1, shard(314), 77).unwrap().get();
    let sql = format!("select * from users where id = $1 /* atoll:id={id} */");
    assert_eq!(route(&sql).unwrap(), (shard(314), Why::IdHint));
    for bad in [
        "/* atoll:shard=x */ select 1",
        "/* atoll:shard=10000 */ select 1",
        "/* atoll:id=5 */ select 1",
        "/* atoll:nope=1 */ select 1",
        "/* atoll: */ select 1",
    ] {
        let e = route(bad).unwrap_err();
        assert_eq!(e.sqlstate(), "22023", "{bad}: {e}");
        assert!(e.to_string().contains("hint `atoll:"), "{bad}: {e}");
    }
}

#[test]
fn session_settings_route_unqualified_statements() {
    let mut s = SessionRoute::default();
    for (sql, change) in [
        (
            "SET atoll.shard = 42",
            SessionChange::Shard(Some(shard(42))),
        ),
        (
            "set atoll.shard to 'sh0043'",
            SessionChange::Shard(Some(shard(43))),
        ),
        (
            "set session atoll.shard = '44'",
            SessionChange::Shard(Some(shard(44))),
        ),
        ("reset atoll.shard", SessionChange::Shard(None)),
        ("set atoll.shard = default", SessionChange::Shard(None)),
        (
            "set search_path to sh0012, public",
            SessionChange::SearchPath(Some(shard(12))),
        ),
        (
            "set search_path = 'public, sh0013'",
            SessionChange::SearchPath(Some(shard(13))),
        ),
        ("set search_path = public", SessionChange::SearchPath(None)),
        (
            "set atoll.read = 'replica'",
            SessionChange::Read(ReadFrom::Replica),
        ),
        ("RESET ALL", SessionChange::ResetAll),
        ("discard all", SessionChange::ResetAll),
    ] {
        assert_eq!(read(sql).unwrap().change, Some(change), "{sql}");
    }
    s.apply(SessionChange::SearchPath(Some(shard(12))));
    let plain = read("select * from users").unwrap();
    assert_eq!(s.route(&plain).unwrap(), (shard(12), Why::SearchPath));
    s.apply(SessionChange::Shard(Some(shard(3))));
    assert_eq!(s.route(&plain).unwrap(), (shard(3), Why::SessionShard));
    // What the statement names wins over the session.
    assert_eq!(
        s.route(&read("select 1 from sh0009.t").unwrap()).unwrap().0,
        shard(9)
    );
    s.apply(SessionChange::ResetAll);
    assert_eq!(s, SessionRoute::default());
    assert_eq!(read("set work_mem = '64MB'").unwrap().change, None);
}

#[test]
fn bad_settings_are_refused_by_name() {
    for (sql, says) in [
        (
            "set atoll.shard = 'abc'",
            "atoll.shard takes a number or shNNNN",
        ),
        ("set atoll.shard = 1, 2", "atoll.shard takes one shard"),
        (
            "set atoll.read = 'sometimes'",
            "atoll.read is 'master' or 'replica'",
        ),
        (
            "set atoll.nope = 1",
            "atoll's settings are atoll.shard and atoll.read",
        ),
        ("set atoll.shard = 3; select 1", "must be sent on its own"),
    ] {
        let e = read(sql).unwrap_err();
        assert!(e.to_string().contains(says), "{sql}: {e}");
        assert_eq!(e.sqlstate(), "22023");
    }
    let e = read("select 'open").unwrap_err();
    assert_eq!(e.sqlstate(), "42601");
}

proptest::proptest! {
    /// Any text is read without a panic, and a shard named by a qualified name inside any
    /// surrounding text (that closes what it opens) is found.
    #[test]
    fn any_text_is_read_without_panicking(text in ".{0,200}") {
        let _ = read(&text);
    }

    #[test]
    fn a_qualified_name_is_found_among_other_words(n in 0i64..10_000, before in "[a-z ,()=]{0,30}", after in "[a-z ,()=]{0,30}") {
        let sql = format!("select {before} from sh{n:04}.t {after}");
        let info = read(&sql).unwrap();
        proptest::prop_assert_eq!(info.named.get(&shard(n)), Some(&Why::Qualified));
    }
}

#[test]
fn transaction_control_is_told_apart() {
    use TransactionControl::*;
    for (sql, want) in [
        ("begin", Begin),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", Begin),
        ("start transaction read only", Begin),
        ("commit", Commit),
        ("/* a */ end", Commit),
        ("rollback", Rollback),
        ("abort", Rollback),
        ("rollback prepared 'x'", None),
        ("rollback to savepoint a", None),
        ("commit prepared 'x'", None),
        ("begin; select 1", None),
        ("select 1", None),
    ] {
        assert_eq!(read(sql).unwrap().control, want, "{sql}");
    }
}

#[test]
fn reads_are_told_from_writes() {
    let ro = |sql: &str| read(sql).unwrap().read_only;
    for sql in [
        "select * from sh0001.users where id = 1",
        "SELECT 1; select 2",
        "with a as (select 1) select * from a",
        "table sh0001.users",
        "values (1)",
        "show search_path",
        "select 'insert into x' as text, \"update\" from t",
        "select 1 -- for update",
    ] {
        assert!(ro(sql), "{sql}");
    }
    for sql in [
        "insert into sh0001.users values (1)",
        "update t set a = 1",
        "delete from t",
        "with d as (delete from t returning *) select * from d",
        "select * from t for update",
        "select * from t for no key update",
        "select * from t for share skip locked",
        "select * into t2 from t",
        "select 1; insert into t values (1)",
        "begin",
        "",
        "set atoll.read = 'replica'",
    ] {
        assert!(!ro(sql), "{sql}");
    }
}

#[test]
fn session_state_is_found() {
    let state = |sql: &str| read(sql).unwrap().session_state;
    let setting = |n: &str| Some(SessionState::Setting(n.into()));
    assert_eq!(
        state("SET statement_timeout = '5s'"),
        setting("statement_timeout")
    );
    assert_eq!(state("set session DateStyle to ISO"), setting("datestyle"));
    assert_eq!(state("reset work_mem"), setting("work_mem"));
    assert_eq!(state("set myapp.tenant = 7"), setting("myapp.tenant"));
    assert_eq!(state("listen jobs"), Some(SessionState::Listen));
    assert_eq!(state("prepare q as select 1"), Some(SessionState::Prepare));
    assert_eq!(
        state("declare c cursor with hold for select 1"),
        Some(SessionState::HoldCursor)
    );
    assert_eq!(state("set role admin"), Some(SessionState::Role));
    assert_eq!(
        state("set session authorization bob"),
        Some(SessionState::Role)
    );
    assert_eq!(state("reset role"), Some(SessionState::Role));
    for none in [
        "set local work_mem = '1MB'",
        "set transaction isolation level serializable",
        "set constraints all deferred",
        "set search_path to sh0001",
        "set atoll.shard = 1",
        "reset all",
        "prepare transaction 'x'",
        "declare c cursor for select 1",
        "select 1",
    ] {
        assert_eq!(state(none), None, "{none}");
    }
    assert_eq!(
        read("set work_mem = '1MB'; select 1").unwrap().statements,
        2
    );
}
