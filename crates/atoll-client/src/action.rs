//! The table from a failure to what the client does about it. Pure, so the whole policy is
//! unit-tested without a database.
//!
//! | failure                                       | action               | did the statement take effect? |
//! |-----------------------------------------------|----------------------|--------------------------------|
//! | `3F000` invalid_schema_name, `42P01` undefined_table | retry at once if a shard notice already placed the shard elsewhere; else rediscover cluster; retry if the shard moved or went inactive (then: wait for it), or on another node if a replica answered (it may lag behind the DDL); else fail at once (a genuine typo) | no (rejected) |
//! | `25006` read_only_sql_transaction             | rediscover island (master changed) | no               |
//! | `57P01`/`57P02`/`57P03` shutdown / starting   | try another node     | no (rejected)                  |
//! | `08xxx` connection exception, `53300` too many connections | try another node | no                  |
//! | any other SQLSTATE                            | fail                 | no (autocommit rolled back)    |
//! | could not get a connection (refused, timeout) | try another node     | no: nothing was sent           |
//! | connection lost while the statement ran       | try another node     | **unknown**                    |
//! | every pooled connection busy for the wait timeout | fail             | no: nothing was sent           |
//! | client-side error (conversion)                | fail                 | unknown                        |
//! | shard not active in the snapshot              | rediscover cluster, wait (until a notice or a round places it) | no: nothing was sent |
//! | island without a reachable master             | rediscover island, wait  | no: nothing was sent       |
//!
//! A server error in autocommit mode rolls the statement back, so "the server answered with
//! an error" always means it did not take effect. Retries happen only then, or when the
//! caller marked the statement idempotent; every retry is bounded by the shard-absent window
//! and by an attempt count, with exponential backoff.

use std::time::Duration;

/// Something that went wrong on the way to, or at, a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault<'a> {
    /// The server answered with this SQLSTATE.
    Sql(&'a str),
    /// No connection could be had: nothing was sent.
    ConnectFailed,
    /// The connection broke while the statement was in flight.
    ConnectionLost,
    /// The snapshot has the shard active nowhere.
    ShardNotActive,
    /// The snapshot has no reachable master for the shard's island.
    NoMaster,
    /// A client-side failure (a parameter that does not convert, a bad row type): nothing
    /// a retry could fix.
    Other,
}

/// What the client does about a [`Fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Give the error to the caller.
    Fail,
    /// Where shards live changed: rediscover and route again.
    RediscoverCluster,
    /// `3F000`/`42P01`: rediscover; retry only if the shard is no longer where the statement
    /// went (or a replica answered).
    RediscoverIfMoved,
    /// Which node is the master changed: rediscover and route again.
    RediscoverIsland,
    /// The node is unusable: use another one (and rediscover in the background).
    TryAnotherNode,
}

/// Whether the failed statement may have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The statement provably did not take effect: a retry is safe.
    None,
    /// The statement may or may not have taken effect: retried only if idempotent.
    Unknown,
}

/// The action and effect for `fault` (the table in the module docs).
pub fn decide(fault: Fault<'_>) -> (Action, Effect) {
    match fault {
        // The shard's schema vanished (a move) or the statement names something that does
        // not exist: rediscovery tells which.
        Fault::Sql("3F000" | "42P01") => (Action::RediscoverIfMoved, Effect::None),
        Fault::Sql("25006") => (Action::RediscoverIsland, Effect::None),
        Fault::Sql("57P01" | "57P02" | "57P03" | "53300") => (Action::TryAnotherNode, Effect::None),
        Fault::Sql(code) if code.starts_with("08") => (Action::TryAnotherNode, Effect::None),
        Fault::Sql(_) => (Action::Fail, Effect::None),
        Fault::ConnectFailed => (Action::TryAnotherNode, Effect::None),
        Fault::ConnectionLost => (Action::TryAnotherNode, Effect::Unknown),
        Fault::ShardNotActive => (Action::RediscoverCluster, Effect::None),
        Fault::NoMaster => (Action::RediscoverIsland, Effect::None),
        Fault::Other => (Action::Fail, Effect::Unknown),
    }
}

/// Whether a retry is allowed at all (the window and attempt bounds come on top).
pub fn may_retry(action: Action, effect: Effect, idempotent: bool) -> bool {
    action != Action::Fail && (effect == Effect::None || idempotent)
}

/// Exponential backoff: `initial · 2^(attempt-1)`, capped.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(decide(Fault::Sql("3F000")).0, Action::RediscoverIfMoved);
        assert_eq!(decide(Fault::Sql("42P01")).0, Action::RediscoverIfMoved);
        assert_eq!(decide(Fault::Sql("25006")).0, Action::RediscoverIsland);
        assert_eq!(decide(Fault::Sql("57P01")).0, Action::TryAnotherNode);
        assert_eq!(decide(Fault::Sql("08006")).0, Action::TryAnotherNode);
        assert_eq!(decide(Fault::Sql("23505")), (Action::Fail, Effect::None));
        assert_eq!(
            decide(Fault::ConnectFailed),
            (Action::TryAnotherNode, Effect::None)
        );
        assert_eq!(
            decide(Fault::ConnectionLost),
            (Action::TryAnotherNode, Effect::Unknown)
        );
        assert_eq!(decide(Fault::ShardNotActive).0, Action::RediscoverCluster);
        assert_eq!(decide(Fault::NoMaster).0, Action::RediscoverIsland);
    }

    #[test]
    fn retries_only_what_provably_did_not_run_or_is_idempotent() {
        let (a, e) = decide(Fault::ConnectionLost);
        assert!(!may_retry(a, e, false));
        assert!(may_retry(a, e, true));
        let (a, e) = decide(Fault::Sql("25006"));
        assert!(may_retry(a, e, false));
        let (a, e) = decide(Fault::Sql("23505"));
        assert!(!may_retry(a, e, true));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(1, ms(20), ms(500)), ms(20));
        assert_eq!(backoff(2, ms(20), ms(500)), ms(40));
        assert_eq!(backoff(5, ms(20), ms(500)), ms(320));
        assert_eq!(backoff(6, ms(20), ms(500)), ms(500));
        assert_eq!(backoff(100, ms(20), ms(500)), ms(500));
    }
}
