//! The run's per-schema states ([`ShardState`]), kept in memory and written to
//! `atoll.migration_shards` in batches: the workers only mark changes; the run's progress
//! tick (and the end of each phase) writes what changed since, in one statement.

use crate::run_lock::RunLock;
use atoll_core::migration::{ShardRow, ShardState};
use atoll_core::IslandId;
use std::collections::BTreeMap;
use std::sync::Mutex;

type Key = (String, IslandId);

#[derive(Default)]
struct Inner {
    rows: BTreeMap<Key, ShardRow>,
    /// Keys changed since the last write, in the order they changed.
    dirty: Vec<Key>,
}

/// Every schema of the run and its state.
#[derive(Default)]
pub(crate) struct Book {
    inner: Mutex<Inner>,
}

impl Book {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sets a schema's state, keeping its attempts; a failure records its file and error.
    pub fn set(
        &self,
        schema: &str,
        island: IslandId,
        state: ShardState,
        failure: Option<(String, String)>,
    ) {
        self.with(|i| {
            let key = (schema.to_string(), island);
            let row = i.rows.entry(key.clone()).or_insert_with(|| ShardRow {
                schema: schema.to_string(),
                island,
                state,
                file: None,
                error: None,
                attempts: 0,
            });
            row.state = state;
            if state == ShardState::Running && row.attempts == 0 {
                row.attempts = 1;
            }
            if let Some((file, error)) = failure {
                row.file = (!file.is_empty()).then_some(file);
                row.error = Some(error);
            }
            i.dirty.push(key);
        });
    }

    /// Records the attempt a schema's current file is on (after a retryable error).
    pub fn attempt(&self, schema: &str, island: IslandId, attempts: u32) {
        self.with(|i| {
            let key = (schema.to_string(), island);
            if let Some(row) = i.rows.get_mut(&key) {
                row.attempts = attempts;
                i.dirty.push(key);
            }
        });
    }

    /// Moves every schema still in `from` to `to` (with `why` as its error, if any).
    pub fn move_all(&self, from: &[ShardState], to: ShardState, why: Option<&str>) {
        self.with(|i| {
            for (key, row) in i.rows.iter_mut() {
                if from.contains(&row.state) {
                    row.state = to;
                    if let Some(w) = why {
                        row.error = Some(w.to_string());
                    }
                    i.dirty.push(key.clone());
                }
            }
        });
    }

    /// How many schemas are in one of `states`.
    pub fn count(&self, states: &[ShardState]) -> usize {
        self.with(|i| {
            i.rows
                .values()
                .filter(|r| states.contains(&r.state))
                .count()
        })
    }

    /// Writes what changed since the last write. On an error the changes stay marked,
    /// so the next write carries them.
    pub async fn flush(&self, lock: &RunLock) -> Result<(), String> {
        let rows: Vec<ShardRow> = self.with(|i| {
            let mut seen = std::collections::BTreeSet::new();
            // The last change of each key counts; keep the order of those last changes.
            let keys: Vec<Key> = i
                .dirty
                .drain(..)
                .rev()
                .filter(|k| seen.insert(k.clone()))
                .collect();
            keys.into_iter()
                .rev()
                .filter_map(|k| i.rows.get(&k).cloned())
                .collect()
        });
        if let Err(e) = lock.record_shards(&rows).await {
            self.with(|i| {
                let mut back: Vec<Key> =
                    rows.iter().map(|r| (r.schema.clone(), r.island)).collect();
                back.append(&mut i.dirty);
                i.dirty = back;
            });
            return Err(e);
        }
        Ok(())
    }
}
