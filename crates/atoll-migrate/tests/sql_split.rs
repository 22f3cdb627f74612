//! atoll's statement splitter against PostgreSQL's own parser, on generated scripts full
//! of what lexers get wrong: string prefixes (`E''`, `U&''`, `B''`, `X''`, `N''`, a word
//! ending in `e` before a quote), continued strings, dollar quotes, quoted identifiers,
//! nested and `--` comments (ended by `\r`), comments inside operators, numbers,
//! `BEGIN ATOMIC` bodies and `begin atomic` as a column and alias, and transaction control.
//!
//! The server runs each script as one simple query (as a migration file runs) and reports
//! one result per statement; atoll's split must give as many statements, each one
//! statement on its own with the same result, and spot transaction control exactly where
//! the server ran it. `PROPTEST_CASES` sets the number of scripts (default 200).

use atoll_core::migration::sql::statements;
use atoll_core::IslandId;
use atoll_testkit::TestCluster;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio_postgres::{Client, SimpleQueryMessage};

/// One statement's result: the first column of each row it returned.
type Result1 = Vec<Option<String>>;

/// Runs `sql` as one simple query: one result per statement, or the server's error.
async fn run(c: &Client, sql: &str) -> Result<Vec<Result1>, tokio_postgres::Error> {
    let mut out = Vec::new();
    let mut rows = Vec::new();
    for m in c.simple_query(sql).await? {
        match m {
            SimpleQueryMessage::Row(r) => rows.push(r.get(0).map(str::to_string)),
            SimpleQueryMessage::CommandComplete(_) => out.push(std::mem::take(&mut rows)),
            _ => {}
        }
    }
    Ok(out)
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(options).prop_map(str::to_string)
}

/// Text inside a plain, `N''`, `B''`-free string: quotes doubled, backslashes literal.
fn plain_content() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        pick(&[
            "a", ";", "\\", "''", "\"", "$", "$$", "--", "/*", "*/", "\n", "\r", " ", "e",
            "commit;", "é", "\u{a0}",
        ]),
        0..6,
    )
    .prop_map(|v| v.concat())
}

/// Text inside an `E''` string: valid escapes, `\'` among them.
fn escape_content() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        pick(&[
            "a", ";", "\\'", "\\\\", "''", "\\n", "\\;", "\\\"", "--", "commit;", "\n", "é",
        ]),
        0..6,
    )
    .prop_map(|v| v.concat())
}

/// Text inside a dollar quote with tag `t`: anything but the tag itself.
fn dollar(tag: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        pick(&[
            "a", ";", "'", "\\", "$$", "$x$", "--", "/*", "\n", "commit;", "$",
        ]),
        0..6,
    )
    .prop_map(move |v| {
        let body = v.concat();
        // The body's last `$` and the closing tag must not make the tag early (`$x$$$`).
        if format!("{body}$").contains(&format!("${tag}$")) {
            format!("${tag}$${tag}$")
        } else {
            format!("${tag}${body}${tag}$")
        }
    })
}

/// An expression that yields one text value.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        plain_content().prop_map(|s| format!("'{s}'")),
        escape_content().prop_map(|s| format!("E'{s}'")),
        escape_content().prop_map(|s| format!("e'{s}'")),
        plain_content().prop_map(|s| format!("N'{s}'::text")),
        plain_content().prop_map(|s| format!("name'{s}'::text")),
        plain_content().prop_map(|s| format!("U&'{}'", s.replace('\\', "\\\\"))),
        pick(&["B'0101'::text", "x'1F'::text", "b''::text"]),
        (plain_content(), plain_content()).prop_map(|(a, b)| format!("'{a}'\n'{b}'")),
        (escape_content(), escape_content()).prop_map(|(a, b)| format!("E'{a}' -- c\n '{b}'")),
        dollar(""),
        dollar("t"),
        dollar("é"),
        pick(&[
            "(1 +-- c;\n 2)::text",
            "(2 */* c; */ 3)::text",
            "1.5e3::text",
            ".5::text",
            "1e-3::text",
            "(select x.begin atomic from (select 1 as begin) x)::text",
        ]),
    ]
}

/// Whitespace and comments between tokens.
fn gap() -> impl Strategy<Value = String> {
    pick(&[
        " ",
        "\n",
        "\t",
        "\r\n",
        "\x0c",
        " /* a /* b; */ c' */ ",
        " -- x; '\n",
        " -- x; '\r",
    ])
}

/// One statement: a select of a value (one row), transaction control, or a routine with a
/// SQL-standard body (no rows).
fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (gap(), value(), gap(), plain_content()).prop_map(|(g, v, h, a)| {
            format!("select{g}{v}{h}as \"{}\"", a.replace('"', "\"\"") + "x")
        }),
        1 => pick(&["commit", "begin", "end", "abort", "start transaction", "rollback",
                    "COMMIT /* x */", "/* x */ Begin"]),
        1 => pick(&[
            "create or replace function pg_temp.f() returns int language sql \
             begin atomic select 1; select case when true then 2 end; end",
            "create or replace procedure pg_temp.p() language sql begin atomic select 1; end",
        ]),
    ]
}

fn script() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec((statement(), gap(), any::<bool>()), 1..7),
        any::<bool>(),
    )
        .prop_map(|(parts, last_semicolon)| {
            let mut s = String::new();
            for (stmt, g, extra) in parts {
                s.push_str(&stmt);
                s.push_str(if extra { ";;" } else { ";" });
                s.push_str(&g);
            }
            if !last_semicolon {
                s.push_str("select 'end'");
            }
            s
        })
}

/// One script: the server's results against atoll's split. `Ok(false)`: the server refused
/// the script, so there is nothing to compare.
async fn check(c: &Client, sql: &str) -> Result<bool, TestCaseError> {
    let whole = run(c, sql).await;
    let _ = c.simple_query("rollback").await;
    let Ok(whole) = whole else {
        return Ok(false);
    };
    let ours = statements(sql).map_err(|e| TestCaseError::fail(format!("{sql:?}: {e}")))?;
    prop_assert_eq!(ours.len(), whole.len(), "{:?}: {:#?}", sql, ours);
    for (s, expected) in ours.iter().zip(&whole) {
        let alone = run(c, &s.text)
            .await
            .map_err(|e| TestCaseError::fail(format!("{:?} alone: {e}", s.text)))?;
        prop_assert_eq!(&alone, &vec![expected.clone()], "{:?} in {:?}", s.text, sql);
        let is_routine = s.text.contains("begin atomic");
        let tx = s.transaction_control().is_some();
        prop_assert_eq!(tx, expected.is_empty() && !is_routine, "{:?}", s.text);
    }
    let _ = c.simple_query("rollback").await;
    Ok(true)
}

#[test]
fn the_split_matches_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = rt
        .block_on(TestCluster::setup(1, 0).without_catalog().start())
        .expect("sandbox");
    let client = rt.block_on(cluster.master(IslandId(0))).expect("connect");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut runner = TestRunner::new(Config::with_cases(cases));
    let accepted = std::cell::Cell::new(0u32);
    let started = std::time::Instant::now();
    let result = runner.run(&script(), |sql| {
        if rt.block_on(check(&client, &sql))? {
            accepted.set(accepted.get() + 1);
        }
        Ok(())
    });
    eprintln!(
        "{cases} scripts, {} accepted by the server, in {:?}",
        accepted.get(),
        started.elapsed()
    );
    result.unwrap();
    // The generator must mostly make scripts PostgreSQL accepts, or nothing is compared.
    assert!(
        accepted.get() * 10 >= cases * 9,
        "{} of {cases}",
        accepted.get()
    );
}
