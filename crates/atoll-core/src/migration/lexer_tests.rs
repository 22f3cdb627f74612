//! The lexer against PostgreSQL's rules: where statements end, which words they hold.

use super::sql::{statements, Opened, Token, Unterminated};
use super::{MigrationError, MigrationSet};

/// The statements' texts.
fn texts(sql: &str) -> Vec<String> {
    statements(sql)
        .unwrap_or_else(|e| panic!("{sql:?}: {e}"))
        .into_iter()
        .map(|s| s.text)
        .collect()
}

/// The transaction-control words found, one per statement that has one.
fn tx(sql: &str) -> Vec<String> {
    statements(sql)
        .unwrap_or_else(|e| panic!("{sql:?}: {e}"))
        .iter()
        .filter_map(|s| s.transaction_control().map(str::to_string))
        .collect()
}

fn refused(up: &str) -> MigrationError {
    MigrationSet::parse(vec![
        ("1.a.sh.up.sql".into(), up.into()),
        ("1.a.sh.dn.sql".into(), "select 1;".into()),
    ])
    .unwrap_err()
}

#[test]
fn a_word_ending_in_e_is_no_string_prefix() {
    // `name'a\'` is the type name `name` and the standard string `a\`.
    let sql = r"select name'a\'; commit; --'";
    assert_eq!(texts(sql), [r"select name'a\'", "commit"]);
    assert_eq!(tx(sql), ["COMMIT"]);
    let e = refused(sql).to_string();
    assert!(e.contains("COMMIT ends the migration's transaction"), "{e}");
    let drop = r"select date'a\'; drop table users; --'";
    let s = statements(drop).unwrap();
    assert_eq!(s[1].unsafe_reason().as_deref(), Some("DROP TABLE"));
}

#[test]
fn string_prefixes_as_postgres_reads_them() {
    // E'' and e'': a backslash escapes the quote.
    for sql in [r"select E'a\'; commit; --'", r"select e'a\'; commit; --'"] {
        assert_eq!(texts(sql).len(), 1, "{sql}");
    }
    // U&'', B'', X'', N'' and plain strings: a backslash is an ordinary character.
    for p in ["U&", "u&", "B", "b", "X", "x", "N", "n", ""] {
        let sql = format!(r"select {p}'a\'; commit; --'");
        assert_eq!(tx(&sql), ["COMMIT"], "{sql}");
    }
    // A one-letter word is a prefix only right before the quote.
    assert_eq!(tx(r"select e '\'; commit; --'"), ["COMMIT"]);
    assert_eq!(tx(r"select ee'\'; commit; --'"), ["COMMIT"]);
    // A no-break space is an identifier character in PostgreSQL, not whitespace.
    assert_eq!(tx("select e\u{a0}'\\'; commit; --'"), ["COMMIT"]);
    // Doubled quotes stay inside.
    assert_eq!(texts("select 'it''s; fine'; select 2").len(), 2);
}

#[test]
fn continued_strings_keep_the_first_ones_mode() {
    // Strings separated by a newline are one string; after E'' the next part is E'' too.
    assert_eq!(texts("select E'x'\n  '\\'; commit; --'").len(), 1);
    assert_eq!(texts("select E'x' -- c\n'\\'; commit; --'").len(), 1);
    // Without a newline it is no continuation (PostgreSQL refuses it, nothing hides).
    assert_eq!(tx("select E'x' '\\'; commit; --'"), ["COMMIT"]);
    // A plain string's continuation is a plain string.
    assert_eq!(tx("select 'x'\n'\\'; commit; --'"), ["COMMIT"]);
}

#[test]
fn dollar_quotes_and_identifiers() {
    assert_eq!(
        texts("select $$a;'$$; select $t$ $$; $t$; select 3").len(),
        3
    );
    // `$a$b$`: the tag is `$a$`, closed by the next `$a$`.
    assert_eq!(texts("select $a$b$ ; $a$; select 2").len(), 2);
    // `$` inside a word is part of it; `$1` is a parameter, not a tag.
    assert_eq!(tx("select a$b$ from t; commit; select $1$"), ["COMMIT"]);
    assert_eq!(tx("select $1; commit"), ["COMMIT"]);
    // Tags start with a letter or _ (any non-ASCII letter too), not a digit.
    assert_eq!(texts("select $é$;$é$; select 2").len(), 2);
    let s = statements("select \"a\"\"b;\" , U&\"c;\" from t").unwrap();
    assert_eq!(s.len(), 1);
    assert!(s[0].tokens.contains(&Token::Quoted("a\"b;".into())));
    assert!(s[0].tokens.contains(&Token::Quoted("c;".into())));
}

#[test]
fn comments_nest_and_end_where_postgres_ends_them() {
    assert_eq!(
        texts("/* a /* b */ commit; */ select 1"),
        ["/* a /* b */ commit; */ select 1"]
    );
    // A `--` comment ends at a carriage return as well as at a newline.
    assert_eq!(tx("select 1 -- x\r; commit; --"), ["COMMIT"]);
    // `--` and `/*` inside an operator start a comment.
    assert_eq!(texts("select 1 +-- c;\n 2; select 2 */* c; */ 3").len(), 2);
}

#[test]
fn numbers_end_before_letters() {
    // PostgreSQL 14 reads `1e'..'` as 1 and an E'' string (15 and later refuse it).
    assert_eq!(texts(r"select 1e'\'; commit; --'").len(), 1);
    assert_eq!(tx("select 1.5e3; commit"), ["COMMIT"]);
    assert_eq!(tx("select .5e-3; commit"), ["COMMIT"]);
    assert_eq!(tx("select 1..2; commit"), ["COMMIT"]);
}

#[test]
fn begin_atomic_only_in_a_routine_body() {
    // `begin atomic` as a column and its alias hides nothing.
    let sql = "select begin atomic from t; commit; select 1 end";
    assert_eq!(tx(sql), ["COMMIT"]);
    let body = "create or replace procedure p() language sql begin atomic \
                insert into t values (case when true then 1 end); end; commit;";
    assert_eq!(texts(body).len(), 2);
    assert_eq!(tx(body), ["COMMIT"]);
}

#[test]
fn keywords_fold_ascii_only() {
    // A dotless ı upper-cases to I in Unicode, not in PostgreSQL.
    assert!(tx("commıt").is_empty());
    assert_eq!(tx("CoMmIt"), ["COMMIT"]);
}

#[test]
fn anything_left_open_is_refused_naming_the_line() {
    for (sql, what, line) in [
        ("select 1;\nselect 'abc", Opened::String, 2),
        ("select E'abc\\'", Opened::String, 1),
        ("select \"abc", Opened::QuotedIdentifier, 1),
        ("\n\nselect $x$ abc $y$", Opened::DollarQuote, 3),
        ("select 1 /* a /* b */", Opened::Comment, 1),
    ] {
        assert_eq!(statements(sql), Err(Unterminated { what, line }), "{sql}");
    }
    let e = refused("select 1;\n/* forgot to close").to_string();
    assert_eq!(
        e,
        "migration file 1.a.sh.up.sql: a /* comment opened at line 2 is never closed"
    );
}

#[test]
fn non_ascii_text_is_kept_whole_in_every_kind_of_token() {
    // The lexer walks bytes: each kind of token must come out as the characters written.
    let sql = "select \"ü\"\"ß\", émile, E'\\é', 'ö''x', $é$ ä;$é$ -- ø\n; /* ñ */ select 日本";
    let s = statements(sql).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(
        s[0].tokens,
        [
            Token::Word("SELECT".into()),
            Token::Quoted("ü\"ß".into()),
            Token::Punct(','),
            Token::Word("éMILE".into()),
            Token::Punct(','),
            Token::Literal("E'\\é'".into()),
            Token::Punct(','),
            Token::Literal("'ö''x'".into()),
            Token::Punct(','),
            Token::Literal("$é$ ä;$é$".into()),
        ]
    );
    assert_eq!(s[0].comments, ["-- ø"]);
    assert_eq!(s[1].text, "/* ñ */ select 日本");
    assert_eq!(s[1].comments, ["/* ñ */"]);
    assert_eq!(s[1].tokens[1], Token::Word("日本".into()));
}

proptest::proptest! {
    /// Any text, ASCII or not, is split without a panic, and each statement's text is a
    /// piece of it (never empty: a statement has tokens).
    #[test]
    fn any_text_splits_into_pieces_of_itself(text in "(.|[;'\"$ \n]){0,120}") {
        if let Ok(list) = statements(&text) {
            for st in list {
                proptest::prop_assert!(!st.text.is_empty() && text.contains(&st.text));
            }
        }
    }
}
