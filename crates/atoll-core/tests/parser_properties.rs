//! Every parser of user input, fuzzed: whatever the text (any Unicode, multibyte
//! characters where a byte index would split them, NUL, control characters, very long
//! text, numbers far out of range), the answer is `Ok` or an error of one line, never a
//! panic. And for each parser, bad input names what is wrong.
//!
//! `PROPTEST_CASES` raises the number of cases per property (256 by default).

use atoll_core::migration::{sql::statements, Directives, MigrationSet};
use atoll_core::move_plan::{parse_age, parse_backup_schema, MoveStep, VerifyMode};
use atoll_core::replica_identity::IdentityRestore;
use atoll_core::{Config, ConfigSource, Id, Lsn, SecretRef, ShardNo, ShardRange};
use proptest::prelude::*;
use std::fmt::Display;

/// Pieces that parsers of this crate look for, and pieces that break naive ones.
const PIECES: &[&str] = &[
    "0",
    "1",
    "7",
    "42",
    "9999",
    "10000",
    "-",
    "+",
    ",",
    ".",
    ":",
    ";",
    "=",
    "@",
    "/",
    "$",
    " ",
    "\t",
    "\n",
    "\r",
    "\0",
    "µ",
    "€",
    "é",
    "\u{a0}",
    "日本",
    "🦀",
    "\u{301}",
    "s",
    "m",
    "h",
    "d",
    "e",
    "E",
    "sh",
    "sh0042",
    "env:",
    "file:",
    "_moved_",
    "'",
    "\"",
    "\\",
    "--",
    "/*",
    "*/",
    "$$",
    "up",
    "dn",
    "sql",
    "18446744073709551616",
    "99999999999999999999999999",
    "-9223372036854775809",
    "0x1f",
    "1e9",
    "NaN",
    "inf",
];

/// Text made of [`PIECES`], arbitrary characters, and now and then a very long run.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(PIECES).prop_map(str::to_string),
        2 => any::<char>().prop_map(String::from),
        1 => "[0-9]{1,30}",
        1 => (proptest::sample::select(PIECES), 500usize..5_000).prop_map(|(p, n)| p.repeat(n)),
    ];
    prop_oneof![
        8 => proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat()),
        1 => any::<String>(),
    ]
}

/// An error is one line (a terminal or log shows it whole) and says something.
fn one_line<E: Display>(e: &E) -> Result<(), TestCaseError> {
    let s = e.to_string();
    prop_assert!(!s.is_empty());
    prop_assert!(!s.contains('\n') && !s.contains('\r'), "{:?}", s);
    Ok(())
}

fn check<T, E: Display>(r: Result<T, E>) -> Result<(), TestCaseError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => one_line(&e),
    }
}

/// `s` as a TOML basic string. (Not `toml::Value::to_string`: toml_write 0.1 overflows a
/// counter on more than 255 quotes in a row, in its serializer, which atoll does not use.)
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML value of any type, as text: strings of [`text`], integers at and past every
/// bound, floats, booleans, arrays, tables.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        text().prop_map(|s| toml_string(&s)),
        any::<i64>().prop_map(|n| n.to_string()),
        proptest::sample::select(&[0i64, 1, -1, 8, 9, 9999, 10000, 65535, 65536, 3_600_001][..])
            .prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| if f.is_finite() {
            format!("{f:?}")
        } else {
            "nan".into()
        }),
        Just("true".to_string()),
        Just("[1, \"a\"]".to_string()),
        Just("{ x = 1 }".to_string()),
    ]
}

/// A configuration shaped like a real one, with any value in any field, fields left out,
/// and unknown ones: the validation past TOML's syntax is what this reaches.
fn config_text() -> impl Strategy<Value = String> {
    let field = |name: &'static str| {
        proptest::option::weighted(0.8, toml_value()).prop_map(move |v| match v {
            Some(v) => format!("{name} = {v}\n"),
            None => String::new(),
        })
    };
    let node = (
        field("host"),
        field("port"),
        field("user"),
        field("password"),
        field("database"),
    )
        .prop_map(|(a, b, c, d, e)| format!("[[island.nodes]]\n{a}{b}{c}{d}{e}"));
    let island = (field("id"), proptest::collection::vec(node, 0..3))
        .prop_map(|(id, nodes)| format!("[[island]]\n{id}{}", nodes.concat()));
    (
        field("name"),
        field("env_digit"),
        field("connect_timeout_ms"),
        field("user"),
        field("password"),
        proptest::collection::vec(island, 0..3),
        proptest::option::of(field("typo")),
    )
        .prop_map(|(name, env, timeout, user, password, islands, typo)| {
            format!(
                "[cluster]\n{name}{env}{timeout}{}\n[defaults]\n{user}{password}\n{}",
                typo.unwrap_or_default(),
                islands.concat()
            )
        })
}

/// A valid island followed by an `[ha]` section with any value in any field.
fn ha_text() -> impl Strategy<Value = String> {
    let field = |name: &'static str| {
        proptest::option::weighted(0.8, toml_value()).prop_map(move |v| match v {
            Some(v) => format!("{name} = {v}\n"),
            None => String::new(),
        })
    };
    let endpoints = prop_oneof![
        field("endpoints"),
        text().prop_map(|t| format!("endpoints = [{}]\n", toml_string(&t))),
        Just("endpoints = [\"http://127.0.0.1:2379\"]\n".to_string()),
    ];
    (
        endpoints,
        field("prefix"),
        field("ttl_s"),
        field("loop_ms"),
        field("max_lag_bytes"),
        field("max_lag_ms"),
        field("synchronous"),
    )
        .prop_map(|(e, p, t, l, b, m, s)| {
            format!("[[island]]\nid = 0\nnodes = [{{ host = \"h\", port = 1 }}]\n\n[ha]\n{e}{p}{t}{l}{b}{m}{s}")
        })
}

proptest! {
    #[test]
    fn config_text_never_panics(t in text()) {
        check(Config::parse(&t, ConfigSource::Inline))?;
    }

    #[test]
    fn config_fields_never_panic(t in config_text()) {
        check(Config::parse(&t, ConfigSource::Inline))?;
    }

    #[test]
    fn ha_sections_never_panic(t in ha_text()) {
        check(atoll_core::Config::parse(&t, atoll_core::ConfigSource::Inline))?;
    }

    #[test]
    fn islands_env_never_panics(t in text()) {
        check(Config::from_islands_env(&t))?;
    }

    #[test]
    fn shard_numbers_names_and_ranges_never_panic(t in text()) {
        check(t.parse::<ShardNo>())?;
        check(ShardNo::from_schema(&t))?;
        check(t.parse::<ShardRange>())?;
    }

    #[test]
    fn ages_never_panic(t in text()) {
        check(parse_age(&t))?;
    }

    #[test]
    fn ids_and_lsns_never_panic(t in text(), raw in any::<i64>()) {
        check(t.parse::<Id>())?;
        check(Id::parse(raw))?;
        let _ = Lsn::parse(&t);
    }

    #[test]
    fn secret_references_never_panic(t in text()) {
        match t.parse::<SecretRef>() {
            // Resolving reads the variable or file named: it must not panic either.
            Ok(r) => check(r.resolve())?,
            Err(e) => one_line(&e)?,
        }
    }

    #[test]
    fn move_steps_verify_modes_and_backup_names_never_panic(t in text()) {
        check(t.parse::<MoveStep>())?;
        check(t.parse::<VerifyMode>())?;
        let _ = parse_backup_schema(&t);
        // Read back from atoll.moves.identity_restore; round-trips when it parses.
        match IdentityRestore::parse(&t) {
            Ok(r) => prop_assert_eq!(IdentityRestore::parse(&r.encode()), Ok(r)),
            Err(e) => one_line(&e)?,
        }
    }

    #[test]
    fn migration_file_names_never_panic(name in text(), body in text()) {
        let files = vec![(name.clone(), body.clone()), (format!("{name}.sql"), body)];
        check(MigrationSet::parse(files))?;
    }

    #[test]
    fn migration_files_and_directives_never_panic(body in text(), d in text()) {
        let body = format!("-- $parallelism_global={d}\n-- $atoll_shards={d}\n{body}\n-- ${d}\n");
        check(Directives::parse("1.a.sh.up.sql", &body))?;
        check(statements(&body))?;
        let files = vec![
            ("1.a.sh.up.sql".to_string(), body),
            ("1.a.sh.dn.sql".to_string(), "select 1;".to_string()),
        ];
        check(MigrationSet::parse(files))?;
    }

    /// Splitting the statements again, joined by `;`, gives the same statements.
    #[test]
    fn splitting_is_stable(body in text()) {
        if let Ok(first) = statements(&body) {
            // A newline first: a statement's text may end in a `--` comment.
            let joined: Vec<String> = first.iter().map(|s| format!("{}\n;", s.text)).collect();
            let again = statements(&joined.concat()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(first, again);
        }
    }
}

proptest! {
    /// A range is the union of its parts, whatever their order and overlaps.
    #[test]
    fn a_range_is_the_union_of_its_parts(parts in proptest::collection::vec((0u16..=9999, 0u16..300), 1..20)) {
        let text: Vec<String> = parts.iter().map(|(lo, n)| format!("{lo}-{}", (lo + n).min(9999))).collect();
        let r: ShardRange = text.join(",").parse().unwrap();
        let want: std::collections::BTreeSet<u16> = parts.iter().flat_map(|(lo, n)| *lo..=(lo + n).min(9999)).collect();
        let got: Vec<u16> = r.shards().iter().map(|s| s.get()).collect();
        prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    }
}

/// Bad input gets one line naming the field or part that is wrong.
#[test]
fn bad_input_is_named() {
    let err = |r: Result<(), String>| r.unwrap_err();
    let named = |e: String, parts: &[&str]| {
        assert!(!e.contains('\n'), "{e}");
        for p in parts {
            assert!(e.contains(p), "{e:?} does not name {p:?}");
        }
    };
    let cfg = |t: &str| {
        Config::parse(t, ConfigSource::Inline)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let node = "[[island]]\nid = 0\nnodes = [{ host = \"h\", port = 5432 }]\n";
    named(
        err(cfg(&format!("[cluster]\nconnect_timeout_ms = 0\n{node}"))),
        &["<inline>:2", "connect_timeout_ms", "0"],
    );
    named(
        err(cfg(&format!("[cluster]\nconnect_timeout_ms = -5\n{node}"))),
        &["<inline>:2", "connect_timeout_ms"],
    );
    named(
        err(cfg(&format!("[cluster]\nenv_digit = 99999999999\n{node}"))),
        &["env_digit", "99999999999"],
    );
    named(
        err(cfg(
            "[[island]]\nid = 0\nnodes = [{ host = \"h\u{301}\", port = 1 }]\n",
        )),
        &["<inline>:3", "host"],
    );
    named(
        err(cfg(
            "[[island]]\nid = 0\nnodes = [{ host = \"h\", port = 1, password = \"env:A=B\" }]\n",
        )),
        &["password", "env:A=B", "="],
    );
    named(err(cfg("[[island]]\nid = 0\nnodes = [{ host = \"h\", port = 1, password = \"env:A\\u0000\" }]\n")), &["password", "NUL"]);
    named(
        Config::from_islands_env("0=h\u{301}st:5432")
            .unwrap_err()
            .to_string(),
        &["ATOLL_ISLANDS", "entry 1", "host"],
    );
    named(
        Config::from_islands_env("0=h:99999")
            .unwrap_err()
            .to_string(),
        &["entry 1", "port"],
    );
    named(
        "sh00µ2".parse::<ShardNo>().unwrap_err().to_string(),
        &["sh00µ2", "shard schema name"],
    );
    named(
        "1-µ".parse::<ShardRange>().unwrap_err().to_string(),
        &["1-µ", "shard range"],
    );
    named(
        "1-99999999999999999999"
            .parse::<ShardRange>()
            .unwrap_err()
            .to_string(),
        &["99999999999999999999"],
    );
    named(
        parse_age("7µ").unwrap_err().to_string(),
        &["\"7µ\"", "unit"],
    );
    named(parse_age("µ").unwrap_err().to_string(), &["\"µ\""]);
    named(
        parse_age("99999999999999999999d").unwrap_err().to_string(),
        &["99999999999999999999d", "too large"],
    );
    named(
        parse_age("213503982334602d").unwrap_err().to_string(),
        &["too large"],
    );
    named(parse_age("+5d").unwrap_err().to_string(), &["\"+5d\""]);
    named("12µ".parse::<Id>().unwrap_err().to_string(), &["12µ"]);
    named(
        "env:".parse::<SecretRef>().unwrap_err().to_string(),
        &["env:VAR"],
    );
    named(
        "file:a\0b".parse::<SecretRef>().unwrap_err().to_string(),
        &["NUL"],
    );
    named(
        "pausedµ".parse::<MoveStep>().unwrap_err().to_string(),
        &["move step", "pausedµ"],
    );
    named(
        "fµll".parse::<VerifyMode>().unwrap_err().to_string(),
        &["verify mode", "fµll", "counts or full"],
    );
    let mig = |name: &str, body: &str| {
        MigrationSet::parse(vec![(name.to_string(), body.to_string())])
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    named(err(mig("1.µ.sh.up.sql", "")), &["1.µ.sh.up.sql", "name"]);
    named(
        err(mig("1µ.a.sh.up.sql", "")),
        &["1µ.a.sh.up.sql", "version"],
    );
    named(err(mig("1.a.shµ.up.sql", "")), &["target"]);
    named(
        err(mig("1.a.sh.up.sql", "-- $delay=99999999999999999999999\n")),
        &["line 1", "$delay", "too large"],
    );
    named(
        err(mig("1.a.sh.up.sql", "-- $delay=7µ\n")),
        &["line 1", "$delay=7µ"],
    );
    named(
        err(mig("1.a.sh.up.sql", "select 'µ")),
        &["1.a.sh.up.sql", "quoted string", "line 1"],
    );
}

/// `cleanup --older-than 7µ` panicked (a byte index inside `µ`).
#[test]
fn an_age_with_a_multibyte_unit_is_an_error() {
    assert!(parse_age("7µ").is_err());
    assert!(parse_age("µ").is_err());
    assert_eq!(parse_age("7d"), Ok(7 * 86_400));
    assert_eq!(parse_age(" 0 "), Ok(0));
    assert_eq!(parse_age("45s"), Ok(45));
}

/// A range repeated many times must not build a list of every repetition.
#[test]
fn a_huge_repeated_range_stays_small() {
    let t = vec!["0-9999"; 200_000].join(",");
    let r: ShardRange = t.parse().unwrap();
    assert_eq!(r.shards().len(), 10_000);
}
