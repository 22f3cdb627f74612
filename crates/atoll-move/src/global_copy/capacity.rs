//! What the copies cost shard 0's master, checked before anything is created: one
//! replication slot and one WAL sender per copy for as long as it exists, and while a copy
//! is being made, up to two more of each for its table-sync workers
//! (`max_sync_workers_per_subscription`, 2 by default).

use super::{subscription, GlobalCopyError};
use crate::db::Db;
use atoll_core::{Config, IslandId, Snapshot};

/// Slots and senders on shard 0's master, as counted before the copies were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capacity {
    /// Shard 0's island.
    pub island: IslandId,
    /// `max_replication_slots`.
    pub max_slots: i64,
    /// Slots in use (any kind).
    pub used_slots: i64,
    /// `max_wal_senders`.
    pub max_senders: i64,
    /// WAL senders running.
    pub used_senders: i64,
    /// Copies that still need their slot and sender.
    pub needed: usize,
    /// The extra slots and senders a copy's table sync takes while it runs.
    pub sync_extra: usize,
}

/// Whether `c` leaves room for the copies; the free slots and senders when it does not.
pub fn capacity(c: &Capacity) -> Result<(), (i64, i64)> {
    let free_slots = c.max_slots - c.used_slots;
    let free_senders = c.max_senders - c.used_senders;
    // Nothing to create: existing copies hold what they need already.
    let want = if c.needed == 0 {
        0
    } else {
        (c.needed + c.sync_extra) as i64
    };
    if free_slots >= want && free_senders >= want {
        Ok(())
    } else {
        Err((free_slots, free_senders))
    }
}

/// Counts on `src` what the copies to `targets` need, refusing when it is not there.
pub(crate) async fn check(
    _config: &Config,
    _snapshot: &Snapshot,
    src: &Db,
    targets: &[IslandId],
) -> Result<Capacity, GlobalCopyError> {
    let r = src
        .one(
            "select current_setting('max_replication_slots')::int8,
                    (select count(*) from pg_replication_slots),
                    current_setting('max_wal_senders')::int8,
                    (select count(*) from pg_stat_replication),
                    coalesce(current_setting('max_sync_workers_per_subscription', true), '2')::int8",
            &[],
        )
        .await?;
    let mut needed = 0;
    for island in targets {
        let slot = subscription(*island);
        let has: bool = src
            .one(
                "select exists (select 1 from pg_replication_slots where slot_name = $1)",
                &[&slot],
            )
            .await?
            .get(0);
        needed += usize::from(!has);
    }
    let sync: i64 = r.get(4);
    let c = Capacity {
        island: src.island,
        max_slots: r.get(0),
        used_slots: r.get(1),
        max_senders: r.get(2),
        used_senders: r.get(3),
        needed,
        sync_extra: usize::try_from(sync.clamp(0, 2)).unwrap_or(2),
    };
    capacity(&c).map_err(|(free_slots, free_senders)| GlobalCopyError::Capacity {
        island: c.island,
        needed: c.needed + c.sync_extra,
        free_slots,
        free_senders,
    })?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(max: i64, used: i64, needed: usize) -> Capacity {
        Capacity {
            island: IslandId(0),
            max_slots: max,
            used_slots: used,
            max_senders: max,
            used_senders: used,
            needed,
            sync_extra: 2,
        }
    }

    #[test]
    fn copies_need_a_slot_each_plus_room_for_the_table_sync() {
        assert_eq!(capacity(&c(10, 2, 2)), Ok(()));
        assert_eq!(capacity(&c(10, 6, 2)), Ok(()), "4 free: 2 copies + 2 sync");
        assert_eq!(capacity(&c(10, 7, 2)), Err((3, 3)));
        assert_eq!(capacity(&c(10, 10, 0)), Ok(()), "nothing left to create");
        let mut senders_short = c(10, 2, 2);
        senders_short.max_senders = 4;
        assert_eq!(capacity(&senders_short), Err((8, 2)));
    }
}
