//! A session's settings in transaction pooling: its `SET` statements are kept here and
//! made on each transaction's connection — in one round trip, `RESET ALL` first when the
//! connection has others — unless the connection has exactly them already, so sessions
//! that set the same things (an ORM's `SET`s at connect) share connections without a
//! round trip. A connection goes back to the pool with its settings; one where a client's
//! `SET` ran inside a transaction is marked unknown and reset before its next use.
//!
//! As in PostgreSQL, what a transaction changed (its `SET`s, `SET atoll.shard`,
//! `search_path`) is undone when it does not commit: a `ROLLBACK`, or a failure. A
//! `ROLLBACK TO SAVEPOINT` undoes nothing here (the session keeps what was set after the
//! savepoint).
//!
//! What a `SET` statement does not cover (`set_config()` in a query) is not tracked, as
//! PgBouncer does not in transaction pooling.

use super::{Refusal, Session};
use crate::pool::Lease;
use crate::relay::internal;
use atoll_core::statement_route::SessionRoute;

/// The session's settings and route as they were before a transaction changed them.
pub(super) type Undo = (Vec<(String, String)>, SessionRoute);

impl Session<'_> {
    /// Before a setting changes: inside a transaction, what to put back if it does not
    /// commit (kept once, at its first change).
    pub(super) fn before_change(&mut self) {
        let open = self.pinned.is_some() || self.pending_begin.is_some() || self.aborted;
        if open && self.undo.is_none() {
            self.undo = Some((self.settings.clone(), self.route.clone()));
        }
    }

    /// The transaction ended: what it changed is undone unless it committed.
    pub(super) fn transaction_over(&mut self) {
        let rolled_back = std::mem::take(&mut self.rolling_back);
        if let Some((settings, route)) = self.undo.take() {
            if rolled_back {
                self.settings = settings;
                self.route = route;
            }
        }
    }

    /// Records a session-level `SET` (or `RESET`) of `name`, replacing an earlier one.
    pub(super) fn keep_setting(&mut self, name: &str, text: &str) {
        self.settings.retain(|(n, _)| n != name);
        self.settings.push((name.to_string(), text.to_string()));
    }

    /// Makes the session's settings on `lease`'s connection, unless it has them.
    pub(super) async fn make_settings(&self, lease: &mut Lease) -> Result<(), Refusal> {
        let wanted = self.settings.iter().map(|(_, sql)| sql);
        let have = &lease.conn.settings;
        if have.as_ref().is_some_and(|h| h.iter().eq(wanted.clone())) {
            return Ok(());
        }
        let mut sql = String::new();
        if !have.as_ref().is_some_and(Vec::is_empty) {
            sql.push_str("reset all");
        }
        for s in wanted.clone() {
            if !sql.is_empty() {
                sql.push_str(";\n");
            }
            sql.push_str(s);
        }
        // Unknown until it went through: a failure leaves the connection in doubt.
        lease.conn.settings = None;
        match internal(&mut lease.conn.stream, &sql).await {
            Ok(None) => {}
            Ok(Some(m)) => {
                let n = self.settings.len();
                return Err(("22023", format!("the session's {n} setting(s): {m}")));
            }
            Err(e) => return Err(("08006", e.to_string())),
        }
        lease.conn.settings = Some(wanted.cloned().collect());
        Ok(())
    }

    /// A connection whose transaction ended back to the pool, with its settings (marked
    /// unknown when a client's `SET` ran on it in the transaction).
    pub(super) fn give_back(&mut self, mut lease: Lease) {
        if std::mem::take(&mut self.set_on_node) {
            lease.conn.settings = None;
        }
        lease.release();
    }
}

/// The command tag PostgreSQL answers a setting statement with.
pub(super) fn setting_tag(text: &str) -> &'static str {
    let upper = text.trim_start().to_ascii_uppercase();
    ["RESET", "DISCARD ALL"]
        .into_iter()
        .find(|t| upper.starts_with(t))
        .unwrap_or("SET")
}
