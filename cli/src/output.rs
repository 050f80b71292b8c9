//! Text or JSON on stdout; progress bars on stderr.

use std::io::Write;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Where results go, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
    quiet: bool,
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool) -> Self {
        Self { json, quiet }
    }

    /// Whether results are JSON lines.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// One result: `value` as a JSON line, or `text()` as a line.
    pub(crate) fn value(&self, value: &impl Serialize, text: impl FnOnce() -> String) {
        let line = if self.json {
            serde_json::to_string(value).unwrap_or_else(|e| {
                serde_json::json!({ "error": format!("cannot show the result as JSON: {e}") })
                    .to_string()
            })
        } else {
            text()
        };
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`annals log | head`) ends the output, quietly.
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            std::process::exit(0);
        }
    }

    /// A progress bar of `len` steps on stderr, drawn only on a terminal
    /// and without `--quiet`.
    pub(crate) fn progress(&self, len: u64, what: &'static str) -> ProgressBar {
        let target = if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            // Hidden by indicatif itself when stderr is not a terminal.
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({per_sec}, {eta} left)")
        {
            bar.set_style(style);
        }
        bar.set_message(what);
        bar
    }
}

/// `n` and the noun, singular for one: "1 event", "2 events".
pub(crate) fn count(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}
