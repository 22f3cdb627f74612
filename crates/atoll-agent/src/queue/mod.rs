//! The durable action queue: accepted actions are written to SQLite before the caller is
//! answered, run one at a time in acceptance order, and the worker is woken by a
//! [`Notify`] the moment one is accepted (no polling interval).
//!
//! After a crash ([`Queue::recover`]): an action found RUNNING continues if its kind is
//! safe to re-run ([`ActionKind::rerunnable`]), otherwise it is FAILED with `interrupted`.

mod record;
mod store;

pub use record::{ActionRecord, ActionState};
pub use store::{Outcome, STATE_FILE};

use crate::actions::ActionKind;
use crate::error::AgentError;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use store::Store;
use tokio::sync::Notify;

/// Why an action was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The id is taken; the existing record is returned (409).
    #[error("an action with this id exists")]
    Duplicate(Box<ActionRecord>),
    /// `limit` actions are waiting already (429).
    #[error("the queue is full: {limit} actions are waiting")]
    Full {
        /// The configured limit.
        limit: usize,
    },
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] AgentError),
}

/// The queue, shared by the HTTP handlers and the worker.
#[derive(Clone)]
pub struct Queue {
    store: Arc<Mutex<Store>>,
    wake: Arc<Notify>,
    limit: usize,
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Queue {
    /// Opens the queue in `state_dir`, accepting at most `limit` waiting actions.
    pub fn open(state_dir: &Path, limit: usize) -> Result<Queue, AgentError> {
        Ok(Queue {
            store: Arc::new(Mutex::new(Store::open(state_dir)?)),
            wake: Arc::new(Notify::new()),
            limit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // The store holds no in-memory invariant a panic could break.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store off the async threads (SQLite blocks on fsync).
    async fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Store) -> T + Send + 'static) -> T {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || f(&mut this.lock())).await {
            Ok(v) => v,
            // A panic in `f` is a bug; surface it where it happened.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Settles what a crash left RUNNING; returns the ids marked FAILED `interrupted`.
    pub async fn recover(&self) -> Result<Vec<String>, AgentError> {
        self.with(|s| {
            let mut failed = Vec::new();
            for r in s.list(Some(ActionState::Running), usize::MAX >> 1, false)? {
                if !r.kind.rerunnable() {
                    let error = serde_json::json!({
                        "code": "interrupted",
                        "message": format!(
                            "interrupted: the agent stopped while this {} was running, and it is not safe to re-run",
                            r.kind.as_str()
                        ),
                    });
                    s.finish(&r.id, &Outcome::Failed { error, output: r.output.clone() }, now_ms())?;
                    failed.push(r.id);
                }
            }
            Ok(failed)
        })
        .await
    }

    /// Accepts a validated action (durably) and wakes the worker.
    pub async fn schedule(
        &self,
        id: String,
        kind: ActionKind,
        args: serde_json::Value,
    ) -> Result<ActionRecord, ScheduleError> {
        let limit = self.limit;
        let result = self
            .with(move |s| {
                if let Some(existing) = s.get(&id)? {
                    return Err(ScheduleError::Duplicate(Box::new(existing)));
                }
                // Counted under the same lock as the insert: concurrent callers cannot
                // all slip past the limit.
                if s.count(ActionState::New)? >= limit {
                    return Err(ScheduleError::Full { limit });
                }
                match s.insert(&id, kind, &args, now_ms())? {
                    Some(r) => Ok(r),
                    None => Err(AgentError::Unexpected(format!("action {id} vanished")).into()),
                }
            })
            .await?;
        self.wake.notify_one();
        Ok(result)
    }

    /// The record with `id`.
    pub async fn get(&self, id: String) -> Result<Option<ActionRecord>, AgentError> {
        self.with(move |s| s.get(&id)).await
    }

    /// History, newest first, optionally of one state.
    pub async fn list(
        &self,
        state: Option<ActionState>,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, AgentError> {
        self.with(move |s| s.list(state, limit, true)).await
    }

    /// Number of NEW actions.
    pub async fn waiting(&self) -> Result<usize, AgentError> {
        self.with(|s| s.count(ActionState::New)).await
    }

    /// The next action to run (see [`Store::next`]), or `None`.
    pub async fn next(&self) -> Result<Option<ActionRecord>, AgentError> {
        self.with(|s| s.next()).await
    }

    /// Waits until an action may have been accepted since the last wake-up.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Marks `id` RUNNING.
    pub async fn start(&self, id: String) -> Result<(), AgentError> {
        self.with(move |s| s.start(&id, now_ms())).await
    }

    /// Sets the progress message.
    pub async fn progress(&self, id: String, message: String) -> Result<(), AgentError> {
        self.with(move |s| s.progress(&id, &message)).await
    }

    /// Ends `id`.
    pub async fn finish(&self, id: String, outcome: Outcome) -> Result<(), AgentError> {
        self.with(move |s| s.finish(&id, &outcome, now_ms())).await
    }

    /// A remembered value.
    pub async fn meta(&self, key: &'static str) -> Result<Option<String>, AgentError> {
        self.with(move |s| s.meta(key)).await
    }

    /// Remembers a value.
    pub async fn set_meta(&self, key: &'static str, value: String) -> Result<(), AgentError> {
        self.with(move |s| s.set_meta(key, &value)).await
    }
}
