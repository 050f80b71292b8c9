//! Wake-ups for followers: in-process signals, PostgreSQL's LISTEN/NOTIFY,
//! and polling as the fallback.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::error::Result;

/// Something that can wait for new events.
pub trait WakeUp: Send {
    /// Waits up to `timeout`; true if new events may have been stored.
    fn wait(&mut self, timeout: Duration) -> Result<bool>;
}

/// A flag one waiter sleeps on and any number of notifiers raise.
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

impl WakeUp for Arc<Signal> {
    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        Ok(Signal::wait(self, timeout))
    }
}

/// Raised by an application after each save, for the signals subscribed
/// to it (in this process).
#[derive(Debug, Default)]
pub struct Notifier {
    subscribers: Mutex<Vec<Weak<Signal>>>,
}

impl Notifier {
    /// Raises `signal` after every save from now on (until the signal is
    /// dropped).
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

#[cfg(feature = "postgres")]
impl WakeUp for crate::persistence::postgres::Listener {
    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        crate::persistence::postgres::Listener::wait(self, timeout)
    }
}
