//! One client's session: its start (`startup.rs`), then per transaction the route
//! (`atoll_core::statement_route`: the first statement naming a shard, else the session's
//! settings), a pooled connection to that shard's master, the client's messages forwarded
//! and the node's answers relayed until ReadyForQuery. The connection goes back to the
//! pool when the transaction ended (status `I`); inside a transaction it stays with the
//! client, and a statement naming another shard is refused (the session goes on).

use crate::frame::{read_frame, Frame, WireError, MAX_MESSAGE};
use crate::messages;
use crate::pool::Lease;
use crate::prepared::{self, ClientStatements, Expect, Step};
use crate::relay::{relay, RelayError};

use crate::node::Node;
use crate::shared::Shared;
use crate::stream::Stream;
use crate::ProxyPoolMode;
use atoll_core::statement_route::{
    self, ReadFrom, SessionChange, SessionRoute, SessionState, StatementInfo, TransactionControl,
};
use atoll_core::ShardNo;
use bytes::BytesMut;
use tokio::io::BufStream;
use tokio::net::TcpStream;

mod first;
mod settings;
use settings::setting_tag;
mod startup;

/// Messages of the extended protocol kept until their Sync (a bound on a client that never
/// sends one).
const MAX_BATCH: usize = 10_000;

/// A refusal: its SQLSTATE and message.
type Refusal = (&'static str, String);

struct Session<'a> {
    /// Buffered both ways: a message is read from the buffer, answers written at once.
    client: BufStream<Stream>,
    shared: &'a Shared,
    route: SessionRoute,
    /// The session's `SET` statements (`search_path` and any other parameter), by
    /// parameter name: made on each transaction's connection unless it has them already
    /// (`settings.rs`).
    settings: Vec<(String, String)>,
    /// A `SET` of the client's ran on the node inside the transaction under way: its
    /// connection's settings are unknown when it goes back.
    set_on_node: bool,
    /// The connection of the transaction under way, and its shard.
    pinned: Option<(ShardNo, Lease)>,
    /// The transaction status last reported to the client.
    status: u8,
    /// Extended-protocol messages waiting for their Sync.
    batch: Vec<Frame>,
    /// A `BEGIN` answered but not sent yet: it goes to the shard of the first statement
    /// that follows (the transaction's route comes from the first statement naming one).
    pending_begin: Option<String>,
    /// The client's transaction failed in its first exchange and the proxy rolled it back
    /// on the node (`first.rs`): until the client ends it, its statements are refused
    /// here as PostgreSQL would (25P02), and its COMMIT or ROLLBACK answered `ROLLBACK`.
    aborted: bool,
    /// The session's settings before the transaction under way changed them
    /// (`settings.rs`): put back unless it commits.
    undo: Option<settings::Undo>,
    /// The transaction under way failed, or its end is a `ROLLBACK`: what it changed is
    /// undone when it ends.
    rolling_back: bool,
    /// The client's named prepared statements (run on any connection, `prepared.rs`).
    statements: ClientStatements,
    /// Where its cancel requests go now.
    cancel: std::sync::Arc<crate::cancel::Slot>,
    /// The user it logged in as.
    user: String,
}

/// Serves one client until it leaves; errors end the session and are logged.
pub async fn serve(stream: TcpStream, shared: &Shared) {
    if let Err(e) = startup::session(stream, shared).await {
        tracing::debug!(error = %e, "client session ended");
    }
}

impl Session<'_> {
    async fn run(&mut self) -> Result<(), WireError> {
        loop {
            let f = read_frame(&mut self.client, MAX_MESSAGE).await?;
            match f.tag {
                b'X' => return Ok(()),
                b'Q' => self.query(f).await?,
                b'P' | b'B' | b'D' | b'E' | b'C' | b'H' if self.batch.len() < MAX_BATCH => {
                    self.batch.push(f)
                }
                b'S' => self.sync(f).await?,
                // Copy messages outside a COPY are ignored, as PostgreSQL does.
                b'd' | b'c' | b'f' => {}
                t => {
                    let m = format!("unexpected message type {:?}", t as char);
                    return startup::fatal(&mut self.client, "08P01", &m).await;
                }
            }
        }
    }

    /// A simple query.
    async fn query(&mut self, f: Frame) -> Result<(), WireError> {
        let text = f.query_text()?;
        // Simple queries carry their values in the text: each is read afresh (a cache would
        // only miss); the extended protocol's texts repeat and are read once.
        let info = match statement_route::read(text) {
            Ok(i) => i,
            Err(e) => return self.refuse((e.sqlstate(), e.to_string())).await,
        };
        self.rolling_back |= info.control == TransactionControl::Rollback;
        if self.aborted {
            return match self.end_aborted(&info) {
                Ok(tag) => self.answer(tag).await,
                Err(r) => self.refuse(r).await,
            };
        }
        if let Some(name) = prepared::deallocated(text) {
            // The client's names live here, not on any node.
            return match name {
                None => {
                    self.statements.clear();
                    self.answer("DEALLOCATE ALL").await
                }
                Some(n) if self.statements.remove(&n) => self.answer("DEALLOCATE").await,
                Some(n) => {
                    let m = format!("prepared statement \"{n}\" does not exist");
                    self.refuse(("26000", m)).await
                }
            };
        }
        if let Some(change) = info.change {
            if !self.setting(change, text) {
                return self.answer(setting_tag(text)).await;
            }
        }
        match self.session_state(&info, text) {
            Ok(Some(tag)) => return self.answer(tag).await,
            Ok(None) => {}
            Err(r) => return self.refuse(r).await,
        }
        if let Some(tag) = self.defer(&info, text) {
            return self.answer(tag).await;
        }
        self.run_on_shard(&info, vec![Step::Forward(f)]).await
    }

    /// Answers a statement the proxy handled itself.
    async fn answer(&mut self, tag: &str) -> Result<(), WireError> {
        let mut out = BytesMut::new();
        messages::complete(&mut out, tag);
        messages::ready(&mut out, self.status);
        Ok(crate::frame::send(&mut self.client, &out).await?)
    }

    /// Session state in transaction pooling: a setting is kept for the session (and
    /// answered here outside a transaction: `Ok(Some(tag))`; run on the node inside one:
    /// `Ok(None)`); anything else the pool would hand to other clients is refused.
    fn session_state(
        &mut self,
        info: &StatementInfo,
        text: &str,
    ) -> Result<Option<&'static str>, Refusal> {
        if self.shared.pool_mode == ProxyPoolMode::Session {
            return Ok(None);
        }
        let what = match &info.session_state {
            None => return Ok(None),
            Some(SessionState::Setting(name)) if info.statements == 1 => {
                self.before_change();
                self.keep_setting(name, text);
                let open = self.pinned.is_some() || self.pending_begin.is_some();
                self.set_on_node |= open;
                return Ok((!open).then(|| setting_tag(text)));
            }
            Some(SessionState::Setting(name)) => {
                format!("SET {name} with other statements in one query")
            }
            Some(SessionState::Listen) => "LISTEN".into(),
            Some(SessionState::Prepare) => "PREPARE (SQL)".into(),
            Some(SessionState::HoldCursor) => "DECLARE ... WITH HOLD".into(),
            Some(SessionState::Role) => "SET ROLE / SESSION AUTHORIZATION".into(),
        };
        Err(("0A000", format!(
            "{what} leaves state in the server session, which transaction pooling hands to other clients: send it alone (settings), or run atoll proxy with --pool-mode session"
        )))
    }

    /// Applies a session setting; whether the statement must also run on the node (a
    /// `search_path` inside a transaction).
    fn setting(&mut self, change: SessionChange, text: &str) -> bool {
        self.before_change();
        self.route.apply(change);
        match change {
            SessionChange::SearchPath(_) => {
                self.keep_setting("search_path", text);
                self.set_on_node |= self.pinned.is_some();
                self.pinned.is_some()
            }
            SessionChange::ResetAll => {
                self.settings.clear();
                if text
                    .trim_start()
                    .to_ascii_uppercase()
                    .starts_with("DISCARD")
                {
                    self.statements.clear();
                }
                false
            }
            _ => false,
        }
    }

    /// An extended-protocol batch, at its Sync.
    async fn sync(&mut self, f: Frame) -> Result<(), WireError> {
        self.batch.push(f);
        let frames = std::mem::take(&mut self.batch);
        let registry = &self.shared.registry;
        let steps = match prepared::translate(frames, &mut self.statements, registry) {
            Ok(s) => s,
            Err(r) => return self.refuse(r).await,
        };
        // Routed by the first statement the batch names (parsed here, or prepared before).
        let texts: Vec<_> = steps.iter().filter_map(Step::text).collect();
        let text = texts.first().map(|t| t.to_string());
        let routes = &self.shared.routes;
        let mut info = match text.as_deref().map(|t| routes.read(t)).transpose() {
            Ok(i) => i.unwrap_or_default(),
            Err(e) => return self.refuse((e.sqlstate(), e.to_string())).await,
        };
        if !steps.iter().any(|s| s.tag() == b'E') {
            // Prepared or described, not executed (pgbench -M prepared prepares its
            // BEGIN): no transaction starts or ends.
            info.control = TransactionControl::None;
            info.change = None;
            info.session_state = None;
        }
        // Read-only as its first statement says only when it is the batch's one statement.
        info.read_only &= texts.iter().all(|t| Some(t.as_ref()) == text.as_deref());
        self.rolling_back |= info.control == TransactionControl::Rollback;
        if self.aborted {
            return match self.end_aborted(&info) {
                Ok(tag) => self.answer_batch(&steps, tag).await,
                Err(r) => self.refuse(r).await,
            };
        }
        if let Some(change) = info.change {
            let text = text.as_deref().unwrap_or_default();
            if !self.setting(change, text) {
                // Kept here, answered message by message as the node would.
                return self.answer_batch(&steps, setting_tag(text)).await;
            }
        }
        match self.session_state(&info, text.as_deref().unwrap_or_default()) {
            Ok(Some(tag)) => return self.answer_batch(&steps, tag).await,
            Ok(None) => {}
            Err(r) => return self.refuse(r).await,
        }
        if let Some(tag) = self.defer(&info, text.as_deref().unwrap_or_default()) {
            return self.answer_batch(&steps, tag).await;
        }
        self.run_on_shard(&info, steps).await
    }

    /// A lone `BEGIN` outside a transaction is kept for the shard of the statement after
    /// it, and a `COMMIT`/`ROLLBACK` right after it ends it here: the tag to answer with.
    fn defer(&mut self, info: &StatementInfo, text: &str) -> Option<&'static str> {
        if self.pinned.is_some() || !info.named.is_empty() {
            return None;
        }
        match (info.control, self.pending_begin.is_some()) {
            (TransactionControl::Begin, false) => {
                self.pending_begin = Some(text.to_string());
                self.status = b'T';
                Some("BEGIN")
            }
            // Nothing ran: the transaction ends here.
            (control, true) if control.ends() => {
                self.pending_begin = None;
                self.status = b'I';
                self.transaction_over();
                let commit = control == TransactionControl::Commit;
                Some(if commit { "COMMIT" } else { "ROLLBACK" })
            }
            _ => None,
        }
    }

    /// In a transaction the proxy rolled back: its end is answered, anything else refused.
    fn end_aborted(&mut self, info: &StatementInfo) -> Result<&'static str, Refusal> {
        if !info.control.ends() {
            return Err((
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block"
                    .into(),
            ));
        }
        self.aborted = false;
        self.status = b'I';
        self.rolling_back = true;
        self.transaction_over();
        Ok("ROLLBACK")
    }

    /// Answers an extended-protocol batch the proxy handled itself, message by message
    /// as the node would: ParseComplete, BindComplete, NoData, CommandComplete, Ready.
    async fn answer_batch(&mut self, steps: &[Step], tag: &str) -> Result<(), WireError> {
        let mut out = BytesMut::new();
        for step in steps {
            match step.tag() {
                b'P' => messages::simple(&mut out, b'1'),
                b'B' => messages::simple(&mut out, b'2'),
                b'D' => messages::simple(&mut out, b'n'),
                b'C' => messages::simple(&mut out, b'3'),
                b'E' => messages::complete(&mut out, tag),
                b'S' => messages::ready(&mut out, self.status),
                _ => {}
            }
        }
        Ok(crate::frame::send(&mut self.client, &out).await?)
    }

    /// Routes, leases (or keeps) the connection, sends `steps` and relays the answers.
    async fn run_on_shard(
        &mut self,
        info: &StatementInfo,
        steps: Vec<Step>,
    ) -> Result<(), WireError> {
        let shard = match self.shard_of(info) {
            Ok(s) => s,
            Err(r) => return self.refuse(r).await,
        };
        if self.pinned.is_none() {
            // Replicas only for reads outside a transaction: none that wrote can see them.
            let replica = self.route.read == ReadFrom::Replica
                && self.pending_begin.is_none()
                && info.read_only;
            return self.first_exchange(shard, &steps, replica).await;
        }
        let Some((_, lease)) = self.pinned.as_mut() else {
            return Ok(());
        };
        let result = match send_steps(lease, &steps, None).await {
            Ok(mut expect) => {
                let stats = &self.shared.stats;
                let r = relay(&mut self.client, &mut lease.conn.stream, &mut expect, stats).await;
                lease.conn.statements.forget(&expect.unanswered());
                r
            }
            Err(e) => Err(RelayError::Server(e)),
        };
        self.relayed(shard, result).await
    }

    /// After an exchange was relayed (or failed).
    async fn relayed(
        &mut self,
        shard: ShardNo,
        result: Result<u8, RelayError>,
    ) -> Result<(), WireError> {
        match result {
            Ok(status) => self.ended(status).await,
            Err(RelayError::Client(e)) => Err(e),
            Err(RelayError::Server(e)) => {
                // The connection is closed, not pooled; the client may go on. The node's
                // other idle connections are as likely dead: dropped too, and the cluster
                // read again (a failover may have moved the master).
                if let Some((_, lease)) = self.unpin() {
                    self.shared.node_failed(&lease.conn.addr);
                }
                // The node's transaction is gone with its connection.
                self.status = b'I';
                self.rolling_back = true;
                self.transaction_over();
                self.refuse((
                    "08006",
                    format!("the connection to {} failed: {e}", shard.schema()),
                ))
                .await
            }
        }
    }

    /// After ReadyForQuery: the connection back to the pool when the transaction ended.
    async fn ended(&mut self, status: u8) -> Result<(), WireError> {
        self.status = status;
        match status {
            b'E' => self.rolling_back = true,
            b'I' => self.transaction_over(),
            _ => {}
        }
        // Session pooling: the connection stays with the client until it leaves.
        if status != b'I' || self.shared.pool_mode == ProxyPoolMode::Session {
            return Ok(());
        }
        if let Some((_, lease)) = self.unpin() {
            self.give_back(lease);
        }
        Ok(())
    }

    /// The transaction under way runs on `lease` (cancel requests go there).
    fn pin(&mut self, shard: ShardNo, lease: Lease) {
        self.cancel.set(lease.conn.cancel.clone());
        self.pinned = Some((shard, lease));
    }

    /// No transaction under way any more: its connection.
    fn unpin(&mut self) -> Option<(ShardNo, Lease)> {
        if self.pinned.is_some() {
            self.cancel.set(None);
        }
        self.pinned.take()
    }

    /// The shard `info` runs on: the transaction's, or the routed one.
    fn shard_of(&self, info: &StatementInfo) -> Result<ShardNo, Refusal> {
        if let Some((pinned, _)) = &self.pinned {
            if let Some(other) = info.named.keys().find(|s| *s != pinned) {
                let (what, fix) = match self.shared.pool_mode {
                    ProxyPoolMode::Session => ("session (session pooling)", "connect again"),
                    ProxyPoolMode::Transaction => ("transaction", "finish the transaction first"),
                };
                return Err((
                    "0A000",
                    format!(
                        "the {what} runs on {}; this statement names {}: {fix}",
                        pinned.schema(),
                        other.schema()
                    ),
                ));
            }
            return Ok(*pinned);
        }
        self.route
            .route(info)
            .map(|(s, _)| s)
            .map_err(|e| (e.sqlstate(), e.to_string()))
    }

    /// A connection to `node`, with the session's settings made on it (the deferred
    /// `BEGIN` goes with the first statement, `send_steps`).
    async fn lease(&mut self, node: &Node) -> Result<Lease, Refusal> {
        let user_limit = self.shared.user_limit(&self.user);
        let mut lease = self
            .shared
            .pools
            .get_for(node, user_limit)
            .await
            .map_err(|e| {
                self.shared.node_failed(&node.addr);
                ("08006", e.to_string())
            })?;
        self.make_settings(&mut lease).await?;
        Ok(lease)
    }

    /// An error for the statement; the session goes on.
    async fn refuse(&mut self, (code, message): Refusal) -> Result<(), WireError> {
        self.shared.stats.error(code);
        let mut out = BytesMut::new();
        messages::error(&mut out, false, code, &message);
        messages::ready(&mut out, self.status);
        Ok(crate::frame::send(&mut self.client, &out).await?)
    }
}

/// Sends `steps` on a leased connection (its prepared statements added where missing):
/// what to drop of the answers.
/// `begin`: the deferred `BEGIN`, sent first in the same write (no round trip of its
/// own); its answers are dropped.
async fn send_steps(
    lease: &mut Lease,
    steps: &[Step],
    begin: Option<&str>,
) -> Result<Expect, WireError> {
    let (out, mut expect) = prepared::materialize(steps, &mut lease.conn.statements);
    let out = match begin {
        Some(sql) => {
            let mut both = BytesMut::new();
            postgres_protocol::message::frontend::query(sql, &mut both)?;
            both.extend_from_slice(&out);
            expect.skip_exchange();
            both
        }
        None => out,
    };
    crate::frame::send(&mut lease.conn.stream, &out).await?;
    Ok(expect)
}
