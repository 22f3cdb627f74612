//! One connection per island master for the length of one operation, opened when first
//! needed: a move's pre-flight reads every master two or three times (unfinished moves,
//! leftovers, the destination's schemas) and must not reconnect for each read.

use crate::db::Db;
use crate::error::MoveError;
use atoll_core::{Config, IslandId, Snapshot};
use std::collections::BTreeMap;

pub(crate) struct Masters<'a> {
    pub config: &'a Config,
    pub snapshot: &'a Snapshot,
    /// Connections opened so far; a connection taken out by [`Masters::take`] is gone
    /// from here (its owner keeps it).
    open: BTreeMap<IslandId, Db>,
}

impl<'a> Masters<'a> {
    pub fn new(config: &'a Config, snapshot: &'a Snapshot) -> Masters<'a> {
        Masters {
            config,
            snapshot,
            open: BTreeMap::new(),
        }
    }

    /// The connection to `island`'s master, opened now if it is not yet.
    pub async fn get(&mut self, island: IslandId) -> Result<&Db, MoveError> {
        if !self.open.contains_key(&island) {
            let db = Db::connect(self.config, self.snapshot, island).await?;
            self.open.insert(island, db);
        }
        self.open
            .get(&island)
            .ok_or_else(|| MoveError::NotFound(format!("island {island} has no connection")))
    }

    /// The connection to `island`'s master, handed over to the caller.
    pub async fn take(&mut self, island: IslandId) -> Result<Db, MoveError> {
        match self.open.remove(&island) {
            Some(db) => Ok(db),
            None => Db::connect(self.config, self.snapshot, island).await,
        }
    }

    /// The islands of the snapshot, in order.
    pub fn islands(&self) -> Vec<IslandId> {
        self.snapshot.islands.iter().map(|i| i.id).collect()
    }
}
