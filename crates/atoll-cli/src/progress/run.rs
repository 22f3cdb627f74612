//! A migration run's events: one bar of schemas; plain lines at most once a second (and
//! one per failure, and one when the last schema is done); JSON events.

use super::{bar_style, Progress};
use atoll_migrate::Event;
use indicatif::ProgressBar;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Renders the [`Event`]s of one `apply`/`undo` run.
pub struct RunView {
    out: Progress,
    bar: Option<ProgressBar>,
    total: AtomicUsize,
    done: AtomicUsize,
    failed: AtomicUsize,
    last_line: Mutex<Instant>,
}

impl Progress {
    /// A view for a migration run.
    pub fn run(&self) -> RunView {
        let style = bar_style("{msg:>10} [{bar:40}] {pos}/{len} schemas {elapsed}");
        RunView {
            bar: self.bar(style, 0),
            out: self.clone(),
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            last_line: Mutex::new(Instant::now()),
        }
    }
}

impl RunView {
    pub fn on(&self, e: Event) {
        match e {
            Event::Start { schemas, canary } => {
                self.total.store(schemas, Ordering::Relaxed);
                if let Some(b) = &self.bar {
                    b.set_length(schemas as u64);
                }
                self.out.line(&format!(
                    "migrate: {schemas} schemas to migrate, canary {canary}"
                ));
                self.out
                    .event(json!({ "event": "run_start", "schemas": schemas, "canary": canary }));
            }
            Event::Phase(p) => {
                if let Some(b) = &self.bar {
                    b.set_message(p.as_str());
                }
                self.out.line(&format!("migrate: {p}"));
                self.out.event(json!({ "event": "phase", "phase": p }));
            }
            Event::Done { schema, error } => self.done(&schema, error.as_deref()),
        }
    }

    fn done(&self, schema: &str, error: Option<&str>) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(err) = error {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.out.note(&format!("migrate: {schema} failed: {err}"));
        }
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        self.out
            .event(json!({ "event": "schema_done", "schema": schema, "error": error }));
        self.counts(done == self.total.load(Ordering::Relaxed));
    }

    /// The running counts as a plain line, throttled unless `force`.
    fn counts(&self, force: bool) {
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        if force || last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            self.out.line(&format!(
                "migrate: {}/{} schemas, {} failed",
                self.done.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
                self.failed.load(Ordering::Relaxed)
            ));
        }
    }

    /// Clears the bar once the run has ended (the report follows on stdout).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
