//! "New events were committed": the one wake-up that followers wait on.
//!
//! A follower owns one [`Signal`] and waits on it. Anything that knows of a
//! commit raises it: the [`Notifier`] of an application in this process
//! (after each save), a store's own watcher ([`Watch`], started by
//! [`ApplicationRecorder::watch`](super::ApplicationRecorder::watch):
//! LISTEN/NOTIFY on PostgreSQL, `PRAGMA data_version` on SQLite), a stop
//! handle. Whichever raises it, the waiter wakes at once: there is no
//! turn-taking between sources.
//!
//! ```
//! use std::time::Duration;
//! use annals_core::persistence::wake::{Notifier, Signal};
//!
//! let signal = Signal::new();
//! let notifier = Notifier::default();
//! notifier.subscribe(&signal);
//! notifier.notify();
//! assert!(signal.wait(Duration::from_millis(10))); // raised, now lowered
//! assert!(!signal.wait(Duration::from_millis(1)));
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::error::Result;

/// A flag one waiter sleeps on and any number of sources raise.
#[derive(Debug, Default)]
pub struct Signal {
    raised: Mutex<bool>,
    condvar: Condvar,
}

impl Signal {
    /// A new, lowered signal.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Raises the signal and wakes its waiter.
    pub fn raise(&self) {
        *self.raised.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.condvar.notify_all();
    }

    /// Waits until the signal is raised (then lowers it) or `timeout`
    /// passes; true if it was raised.
    pub fn wait(&self, timeout: Duration) -> bool {
        let raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        let (mut raised, _) = self
            .condvar
            .wait_timeout_while(raised, timeout, |raised| !*raised)
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *raised)
    }
}

/// Raises the signals subscribed to it: an application raises its notifier
/// after each save, for the followers in this process.
#[derive(Debug, Default)]
pub struct Notifier {
    subscribers: Mutex<Vec<Weak<Signal>>>,
}

impl Notifier {
    /// Raises `signal` at every [`notify`](Self::notify) from now on (until
    /// the signal is dropped).
    pub fn subscribe(&self, signal: &Arc<Signal>) {
        self.lock().push(Arc::downgrade(signal));
    }

    /// Raises every subscribed signal.
    pub fn notify(&self) {
        self.lock().retain(|weak| match weak.upgrade() {
            Some(signal) => {
                signal.raise();
                true
            }
            None => false,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Signal>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A growing pause between tries after a store failure: 50 ms, doubling,
/// at most 5 s; waited on a signal, so a stop (or a commit) cuts it short.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(50),
        }
    }
}

impl Backoff {
    /// Waits the next pause on `signal` (or until it is raised), and makes
    /// the one after longer.
    pub fn wait(&mut self, signal: &Signal) {
        signal.wait(self.pause());
    }

    /// The next pause; the one after is longer.
    pub fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        pause
    }

    /// A try succeeded: the next pause is the shortest again.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// A store's watcher of commits, raising a signal from a thread of its own
/// until dropped. [`Watch::none`] is the watcher of a store that has none
/// (followers then rely on in-process notifiers and polling).
#[derive(Debug, Default)]
#[must_use = "the watcher stops when dropped"]
pub struct Watch {
    stop: Option<Arc<AtomicBool>>,
}

/// How long a watcher's wait lasts before it looks whether it was dropped.
const WATCH_SLICE: Duration = Duration::from_millis(100);

/// The longest pause of a watcher whose source keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Watch {
    /// No watcher.
    pub fn none() -> Self {
        Self { stop: None }
    }

    /// Whether a watcher thread runs.
    pub fn is_watching(&self) -> bool {
        self.stop.is_some()
    }

    /// Starts a thread that calls `wait(timeout)` again and again and raises
    /// `signal` whenever it returns true. `wait` returns within about
    /// `timeout`; an error is logged, the signal raised (what was missed is
    /// found by looking), and `wait` called again after a growing pause
    /// (its source is expected to reconnect). The thread ends when the
    /// watch or the signal is dropped.
    pub fn spawn<F>(name: &str, signal: &Arc<Signal>, mut wait: F) -> Result<Self>
    where
        F: FnMut(Duration) -> Result<bool> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let signal = Arc::downgrade(signal);
        let what = name.to_owned();
        std::thread::Builder::new()
            .name(format!("annals-watch-{name}"))
            .spawn(move || {
                let mut backoff = Backoff::default();
                while !stopped.load(Ordering::SeqCst) {
                    let outcome = wait(WATCH_SLICE);
                    let Some(signal) = signal.upgrade() else {
                        return;
                    };
                    match outcome {
                        Ok(true) => signal.raise(),
                        Ok(false) => backoff.reset(),
                        Err(e) => {
                            tracing::warn!(watch = %what, error = %e.report(), "watching for commits failed; retrying");
                            signal.raise();
                            drop(signal);
                            // Not on the signal: waiting on it would lower
                            // it under the follower. In slices, to stop soon.
                            let pause = backoff.pause();
                            let mut slept = Duration::ZERO;
                            while slept < pause && !stopped.load(Ordering::SeqCst) {
                                std::thread::sleep(WATCH_SLICE.min(pause));
                                slept += WATCH_SLICE.min(pause);
                            }
                        }
                    }
                }
            })
            .map_err(|e| crate::Error::persistence(format!("starting the watcher {name}"), e))?;
        Ok(Self { stop: Some(stop) })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_watch_raises_its_signal_and_stops_when_dropped() {
        let signal = Signal::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let watch = Watch::spawn("test", &signal, move |timeout| {
            std::thread::sleep(timeout / 10);
            Ok(counted.fetch_add(1, Ordering::SeqCst) == 2)
        })
        .expect("spawn");
        assert!(
            signal.wait(Duration::from_secs(5)),
            "the third call raises it"
        );
        drop(watch);
        std::thread::sleep(WATCH_SLICE * 3);
        let after_stop = calls.load(Ordering::SeqCst);
        std::thread::sleep(WATCH_SLICE * 3);
        assert_eq!(calls.load(Ordering::SeqCst), after_stop, "the thread ended");
    }

    #[test]
    fn a_failing_source_raises_the_signal_and_is_called_again() {
        let signal = Signal::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let _watch = Watch::spawn("test", &signal, move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(crate::Error::persistence("test", "down"))
        })
        .expect("spawn");
        assert!(signal.wait(Duration::from_secs(5)));
        assert!(
            signal.wait(Duration::from_secs(5)),
            "called again after the pause"
        );
        assert!(calls.load(Ordering::SeqCst) >= 2);
    }
}
