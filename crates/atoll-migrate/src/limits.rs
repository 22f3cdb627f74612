//! pg-mig's per-file directives, honoured during a run: `$parallelism_per_host` (here: per
//! island), `$parallelism_global`, `$delay` and `$run_alone`. A step takes its permits
//! before it runs and keeps them through its delay.
//!
//! Order matters: the parallelism permits are taken first, the run-alone lock last, so a
//! step waiting for a permit holds no share of the lock and a run-alone file waits only
//! for steps that are running (which finish). No cycle, no deadlock.

use atoll_core::migration::Directives;
use atoll_core::IslandId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, RwLock, RwLockReadGuard, RwLockWriteGuard, Semaphore};

/// A version's slot key: cluster-wide (`None`) or on one island.
type SlotKey = (Option<IslandId>, String);

/// The limits of one run, shared by all its workers on all islands.
#[derive(Default)]
pub(crate) struct Limits {
    alone: RwLock<()>,
    /// Per version (`None`: cluster-wide) or per (island, version).
    slots: Mutex<HashMap<SlotKey, Arc<Semaphore>>>,
}

/// What a running step holds; dropping it lets the next one in.
pub(crate) struct Permits<'a> {
    _global: Option<OwnedSemaphorePermit>,
    _island: Option<OwnedSemaphorePermit>,
    _shared: Option<RwLockReadGuard<'a, ()>>,
    _alone: Option<RwLockWriteGuard<'a, ()>>,
    delay: Duration,
}

impl Permits<'_> {
    /// Keeps the permits `$delay` longer, then lets them go.
    pub async fn release(self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

impl Limits {
    /// Waits until `m`'s file (`d` its directives) may run on a schema of `island`.
    pub async fn enter(&self, island: IslandId, version: &str, d: &Directives) -> Permits<'_> {
        let global = match d.parallelism_global {
            Some(n) => self.slot(None, version, n).await,
            None => None,
        };
        let per_island = match d.parallelism_per_host {
            Some(n) => self.slot(Some(island), version, n).await,
            None => None,
        };
        let (shared, alone) = if d.run_alone {
            (None, Some(self.alone.write().await))
        } else {
            (Some(self.alone.read().await), None)
        };
        Permits {
            _global: global,
            _island: per_island,
            _shared: shared,
            _alone: alone,
            delay: Duration::from_millis(d.delay_ms),
        }
    }

    async fn slot(
        &self,
        island: Option<IslandId>,
        version: &str,
        n: usize,
    ) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry((island, version.to_string()))
                .or_insert_with(|| Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))))
                .clone()
        };
        // Never closed, so this only fails if it were; then run without the limit.
        sem.acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::migration::{Migration, MigrationSet};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn migration(up: &str) -> Migration {
        versioned("1", up)
    }

    /// A migration of version `v`: the caps are per version.
    fn versioned(v: &str, up: &str) -> Migration {
        let files = vec![
            (format!("{v}.a.sh.up.sql"), up.to_string()),
            (format!("{v}.a.sh.dn.sql"), "select 1;".to_string()),
        ];
        let set = MigrationSet::parse(files).map_err(|e| e.to_string());
        set.map(|s| s.migrations[0].clone())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The most steps inside at once, over `steps` steps cycling through `ms` on
    /// `islands` islands; also checks that a run-alone step is always alone inside.
    async fn most_at_once(ms: &[&Migration], islands: u16, steps: usize) -> usize {
        let limits = Limits::default();
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let alone_inside = AtomicUsize::new(0);
        let tasks = (0..steps).map(|i| {
            let (limits, inside, most, alone_inside) = (&limits, &inside, &most, &alone_inside);
            async move {
                let m = ms[i % ms.len()];
                let alone = m.up.directives.run_alone;
                let island = IslandId(i as u16 % islands);
                let p = limits.enter(island, &m.version, &m.up.directives).await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                if alone {
                    alone_inside.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(now, 1, "a run-alone step ran beside another");
                } else {
                    assert_eq!(
                        alone_inside.load(Ordering::SeqCst),
                        0,
                        "ran beside a run-alone step"
                    );
                }
                most.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                if alone {
                    alone_inside.fetch_sub(1, Ordering::SeqCst);
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                p.release().await;
            }
        });
        futures::future::join_all(tasks).await;
        most.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn caps_hold() {
        let free = migration("select 1;");
        assert_eq!(most_at_once(&[&free], 2, 8).await, 8);
        let global = migration("-- $parallelism_global=1\nselect 1;");
        assert_eq!(most_at_once(&[&global], 2, 8).await, 1);
        // Per island: one on each of the two islands.
        let per_island = migration("-- $parallelism_per_host=1\nselect 1;");
        assert_eq!(most_at_once(&[&per_island], 2, 8).await, 2);
        let alone = migration("-- $run_alone=1\nselect 1;");
        assert_eq!(most_at_once(&[&alone], 2, 8).await, 1);
        // Mixed: the free steps still run side by side, never beside a run-alone one.
        assert!(most_at_once(&[&free, &alone, &free, &free], 2, 16).await > 1);
    }

    /// Run-alone files among capped ones (per island and global, with a delay) on two
    /// islands: every step gets in, one at a time where a run-alone one is. A deadlock
    /// fails the test by the timeout instead of hanging it.
    #[tokio::test]
    async fn run_alone_among_capped_files_does_not_deadlock() {
        let alone = versioned("1", "-- $run_alone=1\nselect 1;");
        let per_island = versioned("2", "-- $parallelism_per_host=1\nselect 1;");
        let global = versioned("3", "-- $parallelism_global=2\n-- $delay=1\nselect 1;");
        let free = versioned("4", "select 1;");
        let mix = [&per_island, &alone, &global, &free, &alone, &per_island];
        let most = tokio::time::timeout(Duration::from_secs(30), most_at_once(&mix, 2, 48))
            .await
            .unwrap_or_else(|_| panic!("steps deadlocked"));
        // Every step got in (join_all ended), none beside a run-alone one (checked inside),
        // and the others still ran side by side.
        assert!(most > 1, "capped and free steps never ran side by side");
    }
}
