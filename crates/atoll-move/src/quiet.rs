//! A destination session that keeps the source's password out of the server's logs and
//! statistics: `CREATE SUBSCRIPTION` must carry the password in its text, and PostgreSQL
//! writes a statement's text to its log (`log_statement`, `log_min_duration_statement`,
//! sampling, the `STATEMENT:` line of any error or LOG message), to `pg_stat_activity` and to
//! `pg_stat_statements`. The statement runs alone on a connection of its own whose settings
//! were changed first (each SET its own message: a batch is logged whole before its first
//! SET applies), and the connection is closed after it.
//!
//! Not listed because they never show a utility statement's text: `log_duration` (the
//! duration alone), `log_*_stats` and `log_lock_waits` (no statement text but the
//! `STATEMENT:` line, which `log_min_error_statement` suppresses), `debug_print_plan` and
//! `auto_explain` (the planner and the executor never see a utility statement).

use crate::db::{literal, Db};
use crate::error::MoveError;
use atoll_core::{Config, ShardNo};
use tokio_postgres::error::SqlState;

/// A setting, the value that keeps the statement's text out, and where the text goes
/// otherwise.
struct Quiet {
    name: &'static str,
    value: &'static str,
    leaks_to: &'static str,
}

const fn q(name: &'static str, value: &'static str, leaks_to: &'static str) -> Quiet {
    Quiet {
        name,
        value,
        leaks_to,
    }
}

const SETTINGS: &[Quiet] = &[
    q("log_statement", "none", "server log"),
    q("log_min_duration_statement", "-1", "server log"),
    q("log_min_duration_sample", "-1", "server log"),
    q("log_transaction_sample_rate", "0", "server log"),
    // Also covers LOG messages during the statement (lock waits, temporary files, stats).
    q("log_min_error_statement", "panic", "server log"),
    // PostgreSQL 16+ prints a utility statement's parse tree, strings included.
    q("debug_print_parse", "off", "server log"),
    q("debug_print_rewritten", "off", "server log"),
    q("track_activities", "off", "pg_stat_activity"),
    // Where the extension is not loaded, a placeholder: accepted, and changes nothing.
    // `track = none` also stops utility tracking (`track_utility` needs no change).
    q("pg_stat_statements.track", "none", "pg_stat_statements"),
    q("pgaudit.log", "none", "pgaudit audit log"),
];

/// A new connection to `db`'s node on which no statement's text reaches a log or a
/// statistics view, for one statement carrying a secret; close it (drop it) right after.
/// Refuses (`password_logging`) when the role may not change one of the settings, naming it.
pub(crate) async fn session(config: &Config, db: &Db, shard: ShardNo) -> Result<Db, MoveError> {
    let quiet = db.reconnect(config).await?;
    for s in SETTINGS {
        // The names are constants of this file; only the value needs quoting.
        match quiet
            .exec(&format!("set {} = {}", s.name, literal(s.value)))
            .await
        {
            Ok(()) => {}
            // Absent from this PostgreSQL version (and not a placeholder name): it cannot
            // log anything.
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {}
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                return Err(refusal(db, shard, s))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(quiet)
}

fn refusal(db: &Db, shard: ShardNo, s: &Quiet) -> MoveError {
    let user = &db.node.user;
    MoveError::Unsafe {
        shard,
        check: "password_logging",
        detail: format!(
            "CREATE SUBSCRIPTION carries the source's password, and role {user} may not SET {} on island {}, so the password could reach that server's {}; move as a superuser, or GRANT SET ON PARAMETER {} TO {user} there",
            s.name, db.island, s.leaks_to, s.name,
        ),
    }
}

/// The up-front form of [`session`], for a new move's safety checks: refuses before
/// anything is created when `dst` could not keep `src`'s password out of its logs.
pub(crate) async fn check(
    config: &Config,
    src: &Db,
    dst: &Db,
    shard: ShardNo,
) -> Result<(), MoveError> {
    if src.node.password.is_none() {
        return Ok(());
    }
    session(config, dst, shard).await.map(drop)
}
