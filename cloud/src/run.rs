//! What every bake and roll run shares besides its [`crate::Cloud`]:
//! cancellation (SIGINT/SIGTERM) that steps check between actions and
//! waits race against, and progress on stderr (a spinner on a terminal,
//! plain `tool: …` lines otherwise; stdout carries only results).
//!
//! bake's run context adds its run id, state directory and cleanup list;
//! roll's executor its service, goal and record. Both stop the same way:
//! at the next check or wait after the signal, with their own
//! "interrupted" error (exit 130), so a rerun converges.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

/// The run was cancelled (each tool turns this into its own
/// "interrupted" error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Cancelled;

/// A cancellation flag that async steps can check and wait on. Clones
/// share the flag.
#[derive(Debug, Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Cancel {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }

    /// `Err(Cancelled)` once cancelled: call between steps.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Resolves when cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// `fut`, unless the run is cancelled first.
    pub async fn or_cancelled<T, E: From<Cancelled>>(
        &self,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        tokio::select! {
            r = fut => r,
            _ = self.cancelled() => Err(Cancelled.into()),
        }
    }

    /// Sleeps `d`, or less: `Err(Cancelled)` as soon as the run is
    /// cancelled (also when it already was).
    pub async fn pause(&self, d: Duration) -> Result<(), Cancelled> {
        self.check()?;
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.cancelled() => Err(Cancelled),
        }
    }

    /// Triggers on SIGINT or SIGTERM (from a background task; needs a
    /// tokio runtime).
    pub fn on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            me.trigger();
        });
        Ok(())
    }
}

/// Progress on stderr for one run of `tool`.
pub struct Progress {
    tool: &'static str,
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Progress {
    /// A spinner when stderr is a terminal, plain lines otherwise.
    pub fn new(tool: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
                b.set_style(style);
            }
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Progress {
            tool,
            bar,
            start: Instant::now(),
        }
    }

    /// The step now running (the spinner's message; a line without one).
    pub fn step(&self, msg: impl AsRef<str>) {
        match &self.bar {
            Some(b) => b.set_message(msg.as_ref().to_owned()),
            None => eprintln!("{}: {}", self.tool, msg.as_ref()),
        }
    }

    /// A line worth keeping on screen.
    pub fn note(&self, msg: impl AsRef<str>) {
        match &self.bar {
            Some(b) => b.println(format!("{}: {}", self.tool, msg.as_ref())),
            None => eprintln!("{}: {}", self.tool, msg.as_ref()),
        }
    }

    /// A step worth keeping: a line, and the spinner's message until the
    /// next one.
    pub fn mark(&self, msg: impl AsRef<str>) {
        self.note(&msg);
        if let Some(b) = &self.bar {
            b.set_message(msg.as_ref().to_owned());
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

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pause ends early when the run is cancelled, and at once when it
    /// already was; `or_cancelled` gives up on a step that would not end.
    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_pauses_and_steps() {
        let cancel = Cancel::default();
        assert_eq!(cancel.pause(Duration::from_secs(1)).await, Ok(()));
        let waiter = cancel.clone();
        let started = tokio::time::Instant::now();
        let pause = tokio::spawn(async move { waiter.pause(Duration::from_secs(3600)).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        cancel.trigger();
        assert_eq!(pause.await.unwrap(), Err(Cancelled));
        assert!(started.elapsed() < Duration::from_secs(6));
        assert_eq!(cancel.check(), Err(Cancelled));
        assert_eq!(cancel.pause(Duration::from_secs(1)).await, Err(Cancelled));
        let stuck = cancel
            .or_cancelled(std::future::pending::<Result<(), Cancelled>>())
            .await;
        assert_eq!(stuck, Err(Cancelled));
    }
}
