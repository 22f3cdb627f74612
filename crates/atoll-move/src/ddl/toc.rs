//! The table of contents of a `pg_dump` archive (`pg_restore --list`) split into what the
//! destination runs before the initial copy and after it, and the restore scripts made
//! fit to run inside the move's transactions. Pure: unit-tested without a server.

use std::collections::HashSet;

/// One entry of `pg_restore --list`: `dump id; catalog oid object oid DESC schema tag owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TocEntry {
    /// The line as listed, given back to `pg_restore --use-list`.
    pub line: String,
    /// `(catalog oid, object oid)`: which catalog row the entry creates.
    pub id: (u32, u32),
    /// What follows the oids: `DESC schema tag owner`.
    pub rest: String,
}

/// The entries of a `pg_restore --list` output; comment lines (`;`) are skipped, and so
/// is anything else that is not an entry.
pub(crate) fn parse_list(text: &str) -> Vec<TocEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<TocEntry> {
    let (dump_id, tail) = line.split_once("; ")?;
    dump_id.parse::<u32>().ok()?;
    let mut parts = tail.splitn(3, ' ');
    let cat = parts.next()?.parse().ok()?;
    let obj = parts.next()?.parse().ok()?;
    Some(TocEntry {
        line: line.to_string(),
        id: (cat, obj),
        rest: parts.next()?.to_string(),
    })
}

/// Entries the move does not restore from the dump: the schema itself (created with the
/// reference row), and what [`crate::security`] replays after the copy in its own order
/// (policies and `ENABLE ROW LEVEL SECURITY`, comments on policies, the schema's default
/// privileges); replication objects are never dumped (`--no-publications`).
fn skipped(e: &TocEntry) -> bool {
    const SKIP: [&str; 4] = ["SCHEMA ", "POLICY ", "ROW SECURITY ", "DEFAULT ACL "];
    // `COMMENT <schema or -> POLICY <name> ON <table> <owner>`.
    let mut words = e.rest.split(' ');
    let comment_on_policy =
        words.next() == Some("COMMENT") && words.nth(1).is_some_and(|w| w == "POLICY");
    comment_on_policy || SKIP.iter().any(|p| e.rest.starts_with(p))
}

/// The `--use-list` texts of the two restores: the pre-data section plus the primary keys
/// and replica identity indexes (`identity`, so changes can be applied from the start),
/// then the post-data section without them (indexes built after the load are faster).
pub(crate) fn split(
    pre: &[TocEntry],
    post: &[TocEntry],
    identity: &HashSet<(u32, u32)>,
) -> (String, String) {
    let keep = |e: &&TocEntry| !skipped(e);
    let is_identity = |e: &&TocEntry| identity.contains(&e.id);
    let before: Vec<&str> = pre
        .iter()
        .filter(keep)
        .chain(post.iter().filter(keep).filter(is_identity))
        .map(|e| e.line.as_str())
        .collect();
    let after: Vec<&str> = post
        .iter()
        .filter(keep)
        .filter(|e| !is_identity(e))
        .map(|e| e.line.as_str())
        .collect();
    (lines(&before), lines(&after))
}

fn lines(v: &[&str]) -> String {
    let mut s = v.join("\n");
    s.push('\n');
    s
}

/// A `pg_restore` script made to run inside a transaction of the move's session: its
/// session settings become transaction-local (`SET LOCAL`, `set_config(..., true)`), so
/// they end with the transaction, and psql's `\restrict` / `\unrestrict` lines (meta-commands,
/// not SQL) are dropped. Settings are only rewritten where pg_restore writes them: the
/// header before the first entry, and the per-entry tablespace and access method lines.
pub(crate) fn transactional(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + 64);
    let mut header = true;
    for line in script.lines() {
        if line.starts_with("-- Name: ") || line.starts_with("-- Data for Name: ") {
            header = false;
        }
        if line.starts_with("\\restrict ") || line.starts_with("\\unrestrict ") {
            continue;
        }
        let local = header
            || line.starts_with("SET default_tablespace = ")
            || line.starts_with("SET default_table_access_method = ");
        match (local, line.strip_prefix("SET ")) {
            (true, Some(rest)) => {
                out.push_str("SET LOCAL ");
                out.push_str(rest);
            }
            _ if header && line.contains("set_config('search_path', '', false)") => {
                out.push_str(&line.replace("'', false)", "'', true)"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    // The statements after the script (the reference row, the security replay) run with
    // the session's search path again.
    out.push_str("SET LOCAL search_path TO DEFAULT;\n");
    out
}

/// The major version in `pg_dump --version` output (`pg_dump (PostgreSQL) 15.18 (Debian
/// 15.18-0+deb12u1)` is 15; `9.6.24` would be 9).
pub(crate) fn tool_major(version_output: &str) -> Option<u32> {
    let after = version_output.split(')').nth(1)?.trim_start();
    let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRE: &str = ";
; Archive created at 2026-12-02 03:50:00 UTC
;
3364; 2615 16385 SCHEMA - sh0001 postgres
216; 1259 16386 TABLE sh0001 t postgres
3365; 0 0 COMMENT - SCHEMA sh0001 postgres
217; 1247 16400 DOMAIN sh0001 posint postgres
3400; 0 0 DEFAULT ACL - DEFAULT PRIVILEGES FOR TABLES sh0001 postgres
";
    const POST: &str = "3205; 2606 16390 CONSTRAINT sh0001 t t_pkey postgres
3206; 1259 16391 INDEX sh0001 t_note_idx postgres
3207; 2620 16392 TRIGGER sh0001 t touch postgres
3208; 3256 16393 POLICY sh0001 t readers postgres
3209; 0 0 ROW SECURITY sh0001 t postgres
3210; 0 0 COMMENT sh0001 POLICY readers ON t postgres
3212; 0 0 COMMENT sh0001 TRIGGER touch ON t postgres
3211; 1259 16395 INDEX sh0001 t_ident postgres
";

    #[test]
    fn lists_parse_and_skip_comments() {
        let pre = parse_list(PRE);
        assert_eq!(pre.len(), 5);
        assert_eq!(pre[1].id, (1259, 16386));
        assert_eq!(pre[1].rest, "TABLE sh0001 t postgres");
        assert!(parse_list("junk\n12; x y\n;\n").is_empty());
    }

    #[test]
    fn identity_goes_first_and_security_is_left_to_the_replay() {
        let identity = HashSet::from([(2606, 16390), (1259, 16395)]);
        let (before, after) = split(&parse_list(PRE), &parse_list(POST), &identity);
        assert_eq!(
            before,
            "216; 1259 16386 TABLE sh0001 t postgres
3365; 0 0 COMMENT - SCHEMA sh0001 postgres
217; 1247 16400 DOMAIN sh0001 posint postgres
3205; 2606 16390 CONSTRAINT sh0001 t t_pkey postgres
3211; 1259 16395 INDEX sh0001 t_ident postgres
"
        );
        assert_eq!(
            after,
            "3206; 1259 16391 INDEX sh0001 t_note_idx postgres
3207; 2620 16392 TRIGGER sh0001 t touch postgres
3212; 0 0 COMMENT sh0001 TRIGGER touch ON t postgres
"
        );
    }

    #[test]
    fn scripts_keep_their_settings_to_the_transaction() {
        let script = "\\restrict abc123
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;

--
-- Name: f(); Type: FUNCTION; Schema: sh0001; Owner: postgres
--

CREATE FUNCTION sh0001.f() RETURNS void
    LANGUAGE plpgsql
    AS $$ begin
SET search_path = x;
end $$;
SET default_tablespace = '';
\\unrestrict abc123
";
        assert_eq!(
            transactional(script),
            "SET LOCAL statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', true);
SET LOCAL check_function_bodies = false;

--
-- Name: f(); Type: FUNCTION; Schema: sh0001; Owner: postgres
--

CREATE FUNCTION sh0001.f() RETURNS void
    LANGUAGE plpgsql
    AS $$ begin
SET search_path = x;
end $$;
SET LOCAL default_tablespace = '';
SET LOCAL search_path TO DEFAULT;
"
        );
    }

    #[test]
    fn tool_versions_parse() {
        assert_eq!(
            tool_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(tool_major("pg_dump (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(tool_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(tool_major("nonsense"), None);
        assert_eq!(tool_major("x) µ"), None);
    }
}
