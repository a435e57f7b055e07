//! Progress on stderr: a spinner with the current step on a terminal,
//! plain `bake: …` lines otherwise (CI logs, tests). Stdout is never
//! touched here: it carries only the result.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Progress {
    pub fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
                b.set_style(style);
            }
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Progress {
            bar,
            start: Instant::now(),
        }
    }

    /// The step now running.
    pub fn step(&self, msg: impl AsRef<str>) {
        match &self.bar {
            Some(b) => b.set_message(msg.as_ref().to_owned()),
            None => eprintln!("bake: {}", msg.as_ref()),
        }
    }

    /// A line worth keeping on screen.
    pub fn note(&self, msg: impl AsRef<str>) {
        match &self.bar {
            Some(b) => b.println(format!("bake: {}", msg.as_ref())),
            None => eprintln!("bake: {}", msg.as_ref()),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}
