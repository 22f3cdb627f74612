//! Progress for long work: a spinner or bar on a terminal, plain lines otherwise (logs, CI,
//! pipes), and nothing at all with `--json` (stdout stays a single document).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Progress {
    /// A spinner for work of unknown length.
    pub fn spinner(json: bool, message: &str) -> Progress {
        let p = Progress::new(json);
        if let Some(bar) = &p.bar {
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar.set_message(message.to_string());
        } else if p.plain {
            eprintln!("{message}");
        }
        p
    }

    fn new(json: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        Progress {
            bar: (terminal && !json).then(ProgressBar::new_spinner),
            plain: !terminal && !json,
        }
    }

    /// Ends the progress display, leaving `message` as the last line.
    pub fn finish(self, message: &str) {
        match self.bar {
            Some(bar) => bar.finish_and_clear(),
            None if !self.plain => return,
            None => {}
        }
        eprintln!("{message}");
    }
}
