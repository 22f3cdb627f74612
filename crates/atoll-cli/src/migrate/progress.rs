//! Progress of a run: an indicatif bar when stderr is a terminal, plain lines otherwise
//! (at most one a second, and one per failure), nothing with --json.

use crate::exit::Failure;
use atoll_migrate::{Event, MigrateError, RunReport};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Renders [`Event`]s: a bar when stderr is a terminal, plain lines otherwise, nothing
/// with --json.
pub struct Renderer {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    total: AtomicUsize,
    done: AtomicUsize,
    failed: AtomicUsize,
    last_line: Mutex<Instant>,
}

impl Renderer {
    pub fn new(json: bool) -> Renderer {
        let tty = std::io::stderr().is_terminal();
        Renderer {
            bar: (tty && !json).then(|| {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg:>10} [{bar:40}] {pos}/{len} schemas {elapsed}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            }),
            plain: !tty && !json,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn close(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn line(&self, force: bool) {
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        if force || last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            eprintln!(
                "migrate: {}/{} schemas, {} failed",
                self.done.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
                self.failed.load(Ordering::Relaxed)
            );
        }
    }
}

impl Renderer {
    pub fn on(&self, e: Event) {
        match e {
            Event::Start { schemas, canary } => {
                self.total.store(schemas, Ordering::Relaxed);
                if let Some(b) = &self.bar {
                    b.set_length(schemas as u64);
                }
                if self.plain {
                    eprintln!("migrate: {schemas} schemas to migrate, canary {canary}");
                }
            }
            Event::Phase(p) => {
                if let Some(b) = &self.bar {
                    b.set_message(p);
                }
                if self.plain {
                    eprintln!("migrate: {p}");
                }
            }
            Event::Done { schema, error } => {
                self.done.fetch_add(1, Ordering::Relaxed);
                if let Some(err) = &error {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    let msg = format!("migrate: {schema} failed: {err}");
                    match &self.bar {
                        Some(b) => b.println(msg),
                        None if self.plain => eprintln!("{msg}"),
                        None => {}
                    }
                }
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
                if self.plain {
                    let all =
                        self.done.load(Ordering::Relaxed) == self.total.load(Ordering::Relaxed);
                    self.line(all);
                }
            }
        }
    }
}

/// Runs an apply or undo with progress rendering.
pub async fn run_with_progress<'a, Fut>(r: &'a Renderer, fut: Fut) -> Result<RunReport, Failure>
where
    Fut: std::future::Future<Output = Result<RunReport, MigrateError>> + 'a,
{
    let out = fut.await;
    r.close();
    out.map_err(super::failure)
}
