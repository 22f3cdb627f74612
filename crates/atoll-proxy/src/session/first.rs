//! A transaction's first exchange: where a moving shard's transaction is held instead of
//! failed (see `hold.rs` for why this is enough). The exchange runs on the shard's master;
//! when that node says the shard is not there and its registry agrees, the proxy rolls the
//! node's transaction back, waits until the shard is placed elsewhere (bounded) and runs
//! the exchange again there, the deferred `BEGIN` included.

use super::{send_steps, Refusal, Session};
use crate::frame::WireError;
use crate::hold::{expired, registry_sql, Hold};
use crate::prepared::Step;
use crate::relay::{internal, probe, relay_first, release_kept, First, RelayError};
use crate::shared::Placement;
use atoll_core::{IslandId, ShardNo};
use std::sync::atomic::Ordering;

impl<'a> Session<'a> {
    /// Runs the first exchange of a transaction on `shard`, holding it through a move.
    /// `replica`: it only reads, outside a transaction, and the session asked for
    /// replicas (`SET atoll.read = 'replica'`): a replica of the shard's island runs it
    /// (its master when it has none).
    pub(super) async fn first_exchange(
        &mut self,
        shard: ShardNo,
        steps: &[Step],
        mut replica: bool,
    ) -> Result<(), WireError> {
        let shared = self.shared;
        let began = self.pending_begin.is_some();
        let mut hold: Option<Hold<'a>> = None;
        loop {
            let (island, on_replica) = match self.lease_placed(shard, replica, &mut hold).await {
                Ok(placed) => placed,
                Err(r) => return self.refuse_first(r, hold, began).await,
            };
            let Some((_, lease)) = self.pinned.as_mut() else {
                return Ok(());
            };
            // The transaction opens on this connection with this exchange.
            let begin_now = self.pending_begin.take();
            let result = match send_steps(lease, steps, begin_now.as_deref()).await {
                Ok(mut expect) => {
                    let (client, stats) = (&mut self.client, &shared.stats);
                    let r = relay_first(client, &mut lease.conn.stream, &mut expect, stats).await;
                    lease.conn.statements.forget(&expect.unanswered());
                    r
                }
                Err(e) => Err(RelayError::Server(e)),
            };
            let (status, code, mut kept) = match result {
                Ok(First::Missing { status, code, kept }) => (status, code, kept),
                Ok(First::Done(status)) => {
                    shared.stats.transaction(shard);
                    if let Some(h) = hold.take() {
                        h.end(true);
                    }
                    return self.relayed(shard, Ok(status)).await;
                }
                Err(e) => return self.relayed(shard, Err(e)).await,
            };
            let there = self.still_there(shard, status).await;
            if on_replica {
                // A replica may not have replayed the table (or the shard's registry row)
                // yet: the master decides.
                replica = false;
                self.pending_begin = begin_now;
                continue;
            }
            if there != Some(false) {
                // The application's own error (or the node cannot tell): as it came.
                if let Some(h) = hold.take() {
                    h.end(true);
                }
                shared.stats.transaction(shard);
                shared.stats.error(&code);
                self.status = status;
                self.aborted = status == b'E';
                return release_kept(&mut self.client, &mut kept)
                    .await
                    .map_err(|e| match e {
                        RelayError::Client(e) | RelayError::Server(e) => e,
                    });
            }
            shared.holds.rerun.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(shard = %shard, %island, "shard not on its island any more: holding");
            self.pending_begin = begin_now;
            let h = hold.get_or_insert_with(|| Hold::start(&shared.holds, shared.hold_timeout));
            let left = h.left();
            if !shared
                .cluster
                .await_placement(shard, Some(island), left)
                .await
            {
                let r = expired(shard, shared.hold_timeout);
                return self.refuse_first(r, hold, began).await;
            }
        }
    }

    /// Leases a connection to `shard`'s master (or a replica), holding while the shard is active on no
    /// island (a move between switch and activation); the island leased on, and whether
    /// the connection is to a replica.
    async fn lease_placed(
        &mut self,
        shard: ShardNo,
        replica: bool,
        hold: &mut Option<Hold<'a>>,
    ) -> Result<(IslandId, bool), Refusal> {
        let shared = self.shared;
        loop {
            match shared.master_of(shard) {
                Ok((island, master)) => {
                    let on_replica = replica.then(|| shared.replica_of(island)).flatten();
                    let used_replica = on_replica.is_some();
                    let lease = self.lease(&on_replica.unwrap_or(master)).await?;
                    self.pin(shard, lease);
                    return Ok((island, used_replica));
                }
                Err(Placement::Refused(r)) => return Err(r),
                Err(Placement::Nowhere) => {
                    let h =
                        hold.get_or_insert_with(|| Hold::start(&shared.holds, shared.hold_timeout));
                    let left = h.left();
                    if !shared.cluster.await_placement(shard, None, left).await {
                        return Err(expired(shard, shared.hold_timeout));
                    }
                }
            }
        }
    }

    /// Refuses a transaction's first exchange; a transaction the client began is failed
    /// (the proxy answers its end).
    async fn refuse_first(
        &mut self,
        r: Refusal,
        hold: Option<Hold<'a>>,
        began: bool,
    ) -> Result<(), WireError> {
        if let Some(h) = hold {
            h.end(false);
        }
        if began {
            // PostgreSQL fails the transaction the statement was in.
            self.pending_begin = None;
            self.aborted = true;
            self.status = b'E';
        }
        self.refuse(r).await
    }

    /// After the first exchange failed as a moved shard would make it: the node's
    /// transaction rolled back and its registry asked whether `shard` is still active
    /// there. `None` when the node could not tell (its connection is closed then); the
    /// connection goes back to the pool otherwise.
    async fn still_there(&mut self, shard: ShardNo, status: u8) -> Option<bool> {
        let (_, mut lease) = self.unpin()?;
        if status != b'I' && !matches!(internal(&mut lease.conn.stream, "rollback").await, Ok(None))
        {
            return None;
        }
        let active = match probe(&mut lease.conn.stream, &registry_sql(shard)).await {
            Ok(Ok(row)) => row.is_some(),
            _ => return None,
        };
        self.give_back(lease);
        Some(active)
    }
}
