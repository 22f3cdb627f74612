//! Progress of long commands, rendered one of four ways on stderr (stdout stays the
//! command's result, a single document with `--json`):
//! - a bar (indicatif) when stderr is a terminal;
//! - plain lines when it is not (logs, CI, pipes);
//! - nothing (`--progress quiet`, and by default with `--json`);
//! - one JSON object per line (`--progress json`), for programs driving the CLI.
//!
//! [`Progress`] is the output; the views ([`Spinner`], [`run::RunView`] for migration
//! runs, [`moves::MoveView`] for moves) turn a command's events into it.

mod moves;
mod run;

use crate::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// `--progress`: how long commands show what they are doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise, nothing with --json
    #[default]
    Auto,
    /// Plain lines on stderr
    Plain,
    /// Nothing
    Quiet,
    /// One JSON object per line on stderr ({"event": ...})
    Json,
}

/// The resolved mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Bar,
    Plain,
    Quiet,
    Json,
}

/// Where progress goes. Cheap to clone: the bars share one [`MultiProgress`].
#[derive(Clone)]
pub struct Progress {
    target: Target,
    multi: Option<MultiProgress>,
}

impl Progress {
    pub fn new(ctx: &Context) -> Progress {
        let target = match ctx.progress {
            ProgressMode::Auto if ctx.json => Target::Quiet,
            ProgressMode::Auto if std::io::stderr().is_terminal() => Target::Bar,
            ProgressMode::Auto | ProgressMode::Plain => Target::Plain,
            ProgressMode::Quiet => Target::Quiet,
            ProgressMode::Json => Target::Json,
        };
        Progress {
            target,
            multi: (target == Target::Bar).then(MultiProgress::new),
        }
    }

    /// A plain line (in plain mode only).
    fn line(&self, text: &str) {
        if self.target == Target::Plain {
            eprintln!("{text}");
        }
    }

    /// A line that matters in bar mode too (a failure): printed above the bars.
    fn note(&self, text: &str) {
        match &self.multi {
            // A terminal that went away is no reason to fail the command.
            Some(m) => drop(m.println(text)),
            None => self.line(text),
        }
    }

    /// An event for programs, in JSON mode only.
    fn event(&self, value: serde_json::Value) {
        if self.target == Target::Json {
            eprintln!("{value}");
        }
    }

    /// A new bar drawn in `style` (in bar mode only).
    fn bar(&self, style: ProgressStyle, len: u64) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        Some(multi.add(ProgressBar::new(len).with_style(style)))
    }

    /// A spinner for work of unknown length, showing `message`.
    pub fn spinner(&self, message: &str) -> Spinner {
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = self.bar(style, 0);
        if let Some(b) = &bar {
            b.enable_steady_tick(Duration::from_millis(100));
            b.set_message(message.to_string());
        }
        self.line(message);
        self.event(serde_json::json!({ "event": "begin", "message": message }));
        Spinner {
            out: self.clone(),
            bar,
        }
    }
}

/// A bar style from a constant `template` (the fallback only guards against a typo).
fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Work of unknown length; see [`Progress::spinner`].
pub struct Spinner {
    out: Progress,
    bar: Option<ProgressBar>,
}

impl Spinner {
    /// Ends the spinner, leaving `message` as the last line (not in quiet or JSON mode).
    pub fn finish(self, message: &str) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
            eprintln!("{message}");
        }
        self.out.line(message);
        self.out
            .event(serde_json::json!({ "event": "end", "message": message }));
    }
}
