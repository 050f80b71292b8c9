//! The clock that stamps new domain events.
//!
//! Events are stamped with [`now`], which reads the system clock in UTC
//! unless a clock was set for the current thread, so a test can fix time
//! without touching other threads:
//!
//! ```
//! use annals::clock::{self, FixedClock};
//! let t = "2026-01-02T03:04:05Z".parse().unwrap();
//! let _guard = clock::set_thread_clock(FixedClock(t));
//! assert_eq!(clock::now(), t);
//! ```

use std::cell::RefCell;
use std::rc::Rc;

/// A UTC timestamp, as carried by every domain event.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// A source of timestamps.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// A clock that always says the same time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

impl<F: Fn() -> Timestamp> Clock for F {
    fn now(&self) -> Timestamp {
        self()
    }
}

thread_local! {
    static THREAD_CLOCK: RefCell<Option<Rc<dyn Clock>>> = const { RefCell::new(None) };
}

/// The current time: the thread's clock if one is set, else the system clock.
pub fn now() -> Timestamp {
    THREAD_CLOCK
        .with(|c| c.borrow().as_ref().map(|c| c.now()))
        .unwrap_or_else(chrono::Utc::now)
}

/// Sets the clock of the current thread until the returned guard is dropped
/// (then the previous clock is back).
pub fn set_thread_clock(clock: impl Clock + 'static) -> ClockGuard {
    let previous = THREAD_CLOCK.with(|c| c.borrow_mut().replace(Rc::new(clock)));
    ClockGuard { previous }
}

/// Restores the previous clock of the thread when dropped.
#[must_use = "the clock is reset when the guard is dropped"]
pub struct ClockGuard {
    previous: Option<Rc<dyn Clock>>,
}

impl Drop for ClockGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        THREAD_CLOCK.with(|c| *c.borrow_mut() = previous);
    }
}
