//! Commands under load: in one process, the commands on one aggregate run
//! one after another ([`CommandLocks`]), so they never conflict with each
//! other; a conflict can then only come from another process, and is
//! retried after a jittered, growing pause ([`RetryPolicy`]).

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How [`Application::execute`](crate::Application::execute) retries a
/// command whose save conflicted (another process stored first): at most
/// `tries` times in all, pausing before each retry for a random time
/// between half and all of `backoff` doubled per retry, capped at
/// `max_backoff`, so that racing processes do not retry in step.
///
/// ```
/// use std::time::Duration;
/// use annals::application::RetryPolicy;
/// use annals::prelude::*;
///
/// let policy = RetryPolicy { tries: 5, backoff: Duration::from_millis(2), max_backoff: Duration::from_millis(20) };
/// let pause = policy.pause(2); // after two tries: 2 ms doubled once, jittered in its upper half
/// assert!(pause >= Duration::from_millis(2) && pause <= Duration::from_millis(4));
/// let app = Application::builder("Bank").retry_policy(policy).build()?;
/// assert_eq!(app.retry_policy().tries, 5);
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (at least one).
    pub tries: u32,
    /// The pause before the second try (before jitter).
    pub backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Ten tries, pausing 1 ms, then 2, 4, ... up to 50 ms (jittered).
    fn default() -> Self {
        Self {
            tries: 10,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(50),
        }
    }
}

impl RetryPolicy {
    /// The pause before try `tried + 1` (after `tried` tries): a random
    /// time in the upper half of `backoff * 2^(tried - 1)`, at most
    /// `max_backoff`.
    pub fn pause(&self, tried: u32) -> Duration {
        let doublings = tried.saturating_sub(1).min(20);
        let cap = self
            .backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let half = cap / 2;
        // A random fraction of the other half: RandomState's keys are
        // random per process and move on per instance.
        let nanos = u64::try_from((cap - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = match nanos {
            0 => 0,
            n => RandomState::new().hash_one(tried) % (n + 1),
        };
        half + Duration::from_nanos(jitter)
    }
}

/// The aggregates whose commands run now in this application, by stored
/// id: a command waits while another holds any of its aggregates.
#[derive(Debug, Default)]
pub(crate) struct CommandLocks {
    held: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// Holds aggregates' command locks until dropped.
#[derive(Debug)]
pub struct CommandGuard<'a> {
    locks: &'a CommandLocks,
    keys: Vec<String>,
}

impl CommandLocks {
    fn held(&self) -> MutexGuard<'_, HashSet<String>> {
        // The set is changed whole under the lock: a poisoned one is whole.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until none of `keys` is held, then holds them all (at once,
    /// so two commands on overlapping aggregates cannot deadlock).
    pub(crate) fn lock(&self, mut keys: Vec<String>) -> CommandGuard<'_> {
        keys.sort_unstable();
        keys.dedup();
        let mut held = self.held();
        while keys.iter().any(|key| held.contains(key)) {
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.extend(keys.iter().cloned());
        CommandGuard { locks: self, keys }
    }
}

impl Drop for CommandGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held();
        for key in &self.keys {
            held.remove(key);
        }
        drop(held);
        self.locks.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_and_are_jittered_within_their_upper_half() {
        let policy = RetryPolicy {
            tries: 10,
            backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(16),
        };
        for (tried, cap) in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 16), (30, 16)] {
            let cap = Duration::from_millis(cap);
            let pauses: HashSet<Duration> = (0..50).map(|_| policy.pause(tried)).collect();
            assert!(
                pauses.iter().all(|p| *p >= cap / 2 && *p <= cap),
                "{tried}: {pauses:?}"
            );
            assert!(pauses.len() > 1, "{tried}: not jittered: {pauses:?}");
        }
    }

    #[test]
    fn overlapping_locks_wait_and_disjoint_ones_do_not() {
        let locks = CommandLocks::default();
        let a = locks.lock(vec!["a".into(), "b".into()]);
        let c = locks.lock(vec!["c".into()]); // disjoint: at once
        std::thread::scope(|s| {
            let waiter = s.spawn(|| drop(locks.lock(vec!["b".into(), "c".into()])));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiter.is_finished(), "b and c are held");
            drop(a);
            std::thread::sleep(Duration::from_millis(20));
            assert!(!waiter.is_finished(), "c is still held");
            drop(c);
            waiter.join().expect("no panic");
        });
        assert!(locks.held().is_empty());
    }
}
