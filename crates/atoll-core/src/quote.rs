//! Quoting names and text for SQL that atoll builds itself: the one place that does it, so
//! every crate quotes the same safe way. Values that can be bound as parameters should be;
//! these are for DDL and for batches that cannot take parameters.

/// `name` as an SQL identifier, always quoted (`"a""b"` for `a"b`).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal that means the same whatever the server's
/// `standard_conforming_strings`: with a backslash it becomes `E'...'` with backslashes
/// doubled (in a plain `'...'` a server with the setting off would read `\'` as an escaped
/// quote, and the rest of the text could end the literal and run as SQL).
pub fn literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quoting() {
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(literal("it's"), "'it''s'");
        // A backslash before a quote cannot escape it, whatever the server's setting.
        assert_eq!(
            literal(r"x\'; drop table t; --"),
            r"E'x\\''; drop table t; --'"
        );
        assert_eq!(literal(r"a\b"), r"E'a\\b'");
        assert_eq!(literal(""), "''");
    }

    /// Reads a literal back the way PostgreSQL does (plain, or `E'...'` with only `\\`
    /// and `''` escapes, which is all [`literal`] produces): `None` if it is not one
    /// well-formed literal, i.e. if something could follow its end.
    fn unquote(s: &str) -> Option<String> {
        let (escaped, body) = match s.strip_prefix("E'") {
            Some(b) => (true, b),
            None => (false, s.strip_prefix('\'')?),
        };
        let mut out = String::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if escaped => out.push(chars.next()?),
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    out.push('\'');
                }
                '\'' => return chars.next().is_none().then_some(out),
                c => out.push(c),
            }
        }
        None
    }

    proptest! {
        #[test]
        fn a_literal_reads_back_as_its_text_and_nothing_else(text in ".*") {
            prop_assert_eq!(unquote(&literal(&text)), Some(text));
        }

        #[test]
        fn an_identifier_is_one_quoted_name(name in ".*") {
            let q = ident(&name);
            let inner = &q[1..q.len() - 1];
            prop_assert!(q.starts_with('"') && q.ends_with('"'));
            prop_assert_eq!(inner.replace("\"\"", "\""), name);
            prop_assert!(!inner.replace("\"\"", "").contains('"'));
        }
    }
}
