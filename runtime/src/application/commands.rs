//! Commands under load: in one process, the commands on one aggregate run
//! one after another ([`CommandLocks`]), so they never conflict with each
//! other; a conflict can then only come from another process, and is
//! retried after a jittered, growing pause ([`RetryPolicy`]).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
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
/// id, each with its queue: a command waits while another holds any of
/// its aggregates, and the waiters of one aggregate take their turns in
/// the order they came (a ticket each), so that under load no command
/// waits forever and a release wakes only the next in line.
#[derive(Debug, Default)]
pub(crate) struct CommandLocks {
    queues: Mutex<HashMap<String, Queue>>,
}

/// One aggregate's turns: tickets are handed out in order, and the holder
/// of ticket `serving` runs.
#[derive(Debug, Default)]
struct Queue {
    next: u64,
    serving: u64,
    /// Tickets whose waiters gave up (a cancelled future): skipped.
    abandoned: Vec<u64>,
    waiting: Vec<(u64, Waker)>,
}

impl Queue {
    /// Passes the turn on, past abandoned tickets, and wakes the next in
    /// line; true when no one holds or awaits it any more.
    fn pass(&mut self) -> bool {
        self.serving += 1;
        while let Some(at) = self.abandoned.iter().position(|t| *t == self.serving) {
            self.abandoned.swap_remove(at);
            self.serving += 1;
        }
        if let Some(at) = self.waiting.iter().position(|(t, _)| *t == self.serving) {
            self.waiting.swap_remove(at).1.wake();
        }
        self.serving == self.next
    }
}

/// Holds aggregates' command locks until dropped.
#[derive(Debug)]
pub struct CommandGuard<'a> {
    locks: &'a CommandLocks,
    keys: Vec<String>,
}

impl CommandLocks {
    fn queues(&self) -> MutexGuard<'_, HashMap<String, Queue>> {
        // Each change is whole under the lock: a poisoned map is whole.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (blocking the thread) until none of `keys` is held by
    /// another command, then holds them all.
    pub(crate) fn lock(&self, keys: Vec<String>) -> CommandGuard<'_> {
        pollster::block_on(self.acquire(keys))
    }

    /// Waits (without blocking a thread) until none of `keys` is held by
    /// another command, then holds them all. Dropping the future before
    /// it completes gives up its place and what it held.
    pub(crate) fn acquire(&self, mut keys: Vec<String>) -> Acquire<'_> {
        // One order for every command, so that two taking overlapping
        // aggregates one at a time never wait for each other in a circle.
        keys.sort_unstable();
        keys.dedup();
        Acquire {
            locks: self,
            keys,
            held: 0,
            ticket: None,
        }
    }

    fn release(&self, keys: &[String]) {
        let mut queues = self.queues();
        for key in keys {
            if let Some(queue) = queues.get_mut(key) {
                if queue.pass() {
                    queues.remove(key);
                }
            }
        }
    }
}

/// The future of [`CommandLocks::acquire`]: takes its keys in order, a
/// ticket in each one's queue.
#[derive(Debug)]
pub(crate) struct Acquire<'a> {
    locks: &'a CommandLocks,
    keys: Vec<String>,
    /// Keys `..held` are held.
    held: usize,
    /// The ticket in the queue of `keys[held]`, once taken.
    ticket: Option<u64>,
}

impl<'a> Future for Acquire<'a> {
    type Output = CommandGuard<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CommandGuard<'a>> {
        let this = &mut *self;
        let mut queues = this.locks.queues();
        while let Some(key) = this.keys.get(this.held) {
            let queue = queues.entry(key.clone()).or_default();
            let ticket = *this.ticket.get_or_insert_with(|| {
                queue.next += 1;
                queue.next - 1
            });
            if queue.serving != ticket {
                match queue.waiting.iter_mut().find(|(t, _)| *t == ticket) {
                    Some((_, waker)) => waker.clone_from(cx.waker()),
                    None => queue.waiting.push((ticket, cx.waker().clone())),
                }
                return Poll::Pending;
            }
            this.held += 1;
            this.ticket = None;
        }
        drop(queues);
        let keys = std::mem::take(&mut this.keys);
        this.held = 0;
        Poll::Ready(CommandGuard {
            locks: this.locks,
            keys,
        })
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return; // completed: the guard holds them
        }
        // Given up: what it held goes back, and its place in the next
        // queue (or its turn, if the turn came) goes to the next in line.
        self.locks.release(&self.keys[..self.held]);
        let (Some(ticket), Some(key)) = (self.ticket, self.keys.get(self.held)) else {
            return;
        };
        let mut queues = self.locks.queues();
        if let Some(queue) = queues.get_mut(key) {
            queue.waiting.retain(|(t, _)| *t != ticket);
            if queue.serving == ticket {
                if queue.pass() {
                    queues.remove(key);
                }
            } else {
                queue.abandoned.push(ticket);
            }
        }
    }
}

impl Drop for CommandGuard<'_> {
    fn drop(&mut self) {
        self.locks.release(&self.keys);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

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
        assert!(locks.queues().is_empty());
    }

    #[test]
    fn waiters_take_their_turns_in_the_order_they_came() {
        let locks = CommandLocks::default();
        let order = Mutex::new(Vec::new());
        let first = locks.lock(vec!["a".into()]);
        std::thread::scope(|s| {
            for i in 0..4 {
                let (locks, order) = (&locks, &order);
                s.spawn(move || {
                    let _held = locks.lock(vec!["a".into()]);
                    order.lock().expect("not poisoned").push(i);
                });
                // Each takes its ticket before the next comes.
                while locks.queues()["a"].next < i + 2 {
                    std::thread::yield_now();
                }
            }
            drop(first);
        });
        assert_eq!(*order.lock().expect("not poisoned"), [0, 1, 2, 3]);
        assert!(locks.queues().is_empty());
    }

    #[test]
    fn a_waiter_that_gives_up_passes_its_turn_and_what_it_held_on() {
        let locks = CommandLocks::default();
        let b = locks.lock(vec!["b".into()]);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        // Holds a, waits for b: then gives up.
        let mut gives_up = Box::pin(locks.acquire(vec!["a".into(), "b".into()]));
        assert!(gives_up.as_mut().poll(&mut cx).is_pending());
        let mut next = Box::pin(locks.acquire(vec!["b".into()]));
        assert!(next.as_mut().poll(&mut cx).is_pending());
        drop(gives_up);
        assert!(
            locks.lock(vec!["a".into()]).keys == ["a"],
            "a was given back"
        );
        drop(b);
        // The abandoned ticket is skipped: the next in line has b.
        let Poll::Ready(guard) = next.as_mut().poll(&mut cx) else {
            panic!("b passed to the next in line");
        };
        drop(guard);
        drop(next);
        assert!(locks.queues().is_empty());
    }
}
