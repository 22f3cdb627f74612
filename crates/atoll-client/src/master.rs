//! [`MasterConnection`]: a pooled master connection handed to the caller for a
//! multi-statement transaction.
//!
//! The pools recycle with `RecyclingMethod::Fast` (no round trip per checkout), which does
//! not notice a connection returned inside an open transaction: a caller that ran `begin`
//! and returned early (an error, a `?`) would leave it open, and later autocommit writes on
//! that pooled connection would silently join it and be lost. Rather than make every
//! checkout pay a round trip (`Clean`/`Verified`), this guard pays only on this path: when
//! dropped it sends `ROLLBACK` in a spawned task and returns the connection to the pool
//! only after that succeeded (outside a transaction `ROLLBACK` is a harmless no-op
//! with a warning notice). If it fails, or there is no runtime to run it on, the connection
//! is taken out of the pool and closed instead.

use atoll_core::IslandId;
use deadpool_postgres::Object;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

/// A pooled connection to a shard's island master (derefs to the pool's client, so
/// `transaction()`, `query`, `prepare_cached`… are available). Dropping it rolls back any
/// transaction left open before the connection goes back to the pool.
pub struct MasterConnection {
    client: ManuallyDrop<Object>,
    island: IslandId,
}

impl MasterConnection {
    pub(crate) fn new(client: Object, island: IslandId) -> MasterConnection {
        MasterConnection {
            client: ManuallyDrop::new(client),
            island,
        }
    }

    /// The island whose master this is connected to.
    pub fn island(&self) -> IslandId {
        self.island
    }
}

impl Deref for MasterConnection {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.client
    }
}

impl DerefMut for MasterConnection {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.client
    }
}

impl Drop for MasterConnection {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and `self.client` is not touched after this take.
        let client = unsafe { ManuallyDrop::take(&mut self.client) };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = client.batch_execute("rollback").await {
                        tracing::debug!(error = %e, "atoll-client: rollback of a returned master connection failed; closing it");
                        drop(Object::take(client));
                    }
                });
            }
            // No runtime to run the rollback: close rather than pool a connection that may
            // be inside a transaction.
            Err(_) => drop(Object::take(client)),
        }
    }
}
