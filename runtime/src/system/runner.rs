//! Runners: who calls the followers' policies, and when.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::System;
use crate::error::{Error, Result};
use crate::log::Stopper;
use crate::persistence::wake::Backoff;
use std::panic::AssertUnwindSafe;

/// How many notifications a follower reads per select.
const BATCH: usize = 100;

/// Runs the whole system in the caller's thread, deterministically:
/// [`run`](Self::run) processes until no follower has anything left. For
/// tests and for systems run on demand.
///
/// ```
/// # use std::sync::Arc;
/// # use annals::prelude::*;
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Order { pub item: String }
/// # #[aggregate]
/// # impl Order {
/// #     #[event("Placed")]
/// #     pub fn place(item: String) -> Self { Order { item } }
/// # }
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Parcel { pub item: String }
/// # #[aggregate]
/// # impl Parcel {
/// #     #[event("Packed")]
/// #     pub fn pack(item: String) -> Self { Parcel { item } }
/// # }
/// # let orders = Arc::new(Application::builder("Orders").build()?);
/// # let shipping = Arc::new(Application::builder("Shipping").build()?);
/// # let policy = annals::system::Policies::new().on::<Order>(|placed, processing| {
/// #     let OrderEvent::Placed { item } = &placed.event;
/// #     processing.save(&mut Parcel::pack(item.clone()))
/// # });
/// # let system = Arc::new(annals::system::System::builder()
/// #     .application(orders.clone())
/// #     .process(shipping.clone(), policy)
/// #     .pipe([&orders, &shipping])
/// #     .build()?);
/// use annals::system::SingleThreadedRunner;
///
/// orders.save(&mut Order::place("kettle".into()))?;
/// orders.save(&mut Order::place("teapot".into()))?;
/// let runner = SingleThreadedRunner::new(system);
/// assert_eq!(runner.run()?, 2);
/// assert_eq!(runner.run()?, 0); // nothing new
/// assert_eq!(shipping.last_notification_id()?, Some(2));
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SingleThreadedRunner {
    system: Arc<System>,
}

impl SingleThreadedRunner {
    /// A runner of `system`.
    pub fn new(system: Arc<System>) -> Self {
        Self { system }
    }

    /// Processes every follower's new notifications, again and again until
    /// a round processes none; returns how many were processed.
    ///
    /// # Errors
    ///
    /// The first error of a follower (see [`System::pull`]); what was
    /// processed before it stays processed.
    pub fn run(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let mut round = 0;
            for name in self.system.followers() {
                round += self.system.pull(name, BATCH)?;
            }
            if round == 0 {
                return Ok(total);
            }
            total += round;
        }
    }
}

impl System {
    /// Runs follower `name` in this thread until `stop` is called: first
    /// its backlog, then each new event as its leaders store them (woken
    /// by saves in this process, by LISTEN/NOTIFY on PostgreSQL, else by
    /// polling every `poll`). Start one process per follower, all on
    /// PostgreSQL, to spread a system over processes and machines; a
    /// process killed at any point loses and repeats nothing. See
    /// [`Stopper`] for an example.
    ///
    /// # Errors
    ///
    /// The follower's first error (the loop stops there; see
    /// [`pull`](Self::pull)); [`Error::Config`] when `name` is not a
    /// follower; a leader's store watcher cannot start.
    pub fn run_follower(&self, name: &str, stop: &Stopper, poll: Duration) -> Result<()> {
        // One signal, raised by `stop`, by the leaders' saves in this
        // process and by their stores' watchers (commits of any process).
        let signal = stop.signal();
        let mut watches = Vec::new();
        for leader in self.leaders(name) {
            let leader = self.app(leader)?;
            leader.notifier().subscribe(signal);
            watches.push(leader.recorder().watch(signal)?);
        }
        let mut backoff = Backoff::default();
        while !stop.is_stopped() {
            match self.pull(name, BATCH) {
                Ok(pulled) => {
                    backoff.reset();
                    if pulled == 0 && !stop.is_stopped() {
                        signal.wait(poll);
                    }
                }
                // The store failed (a server restarting, a connection
                // lost): nothing of the notification was stored, and its
                // tracking record says where to resume. Try again.
                Err(e) if e.is_persistence() => {
                    tracing::warn!(follower = %name, error = %e.report(), "pulling failed; retrying");
                    backoff.wait(signal);
                }
                Err(e) => return Err(e),
            }
        }
        drop(watches);
        Ok(())
    }
}

/// The error of a follower whose policy panicked with `panic`.
fn panicked(follower: &str, panic: &(dyn std::any::Any + Send)) -> Error {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned());
    Error::Follower {
        follower: follower.to_owned(),
        message: format!("its policy panicked: {what}"),
    }
}

/// Runs each follower in a thread of its own, woken by its leaders' saves.
/// Errors stop the follower that had them and are returned by
/// [`check`](Self::check) and [`stop`](Self::stop); stopping finishes the
/// notification each worker is on, so nothing is lost or repeated.
///
/// ```
/// # use std::sync::Arc;
/// # use annals::prelude::*;
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Order { pub item: String }
/// # #[aggregate]
/// # impl Order {
/// #     #[event("Placed")]
/// #     pub fn place(item: String) -> Self { Order { item } }
/// # }
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Parcel { pub item: String }
/// # #[aggregate]
/// # impl Parcel {
/// #     #[event("Packed")]
/// #     pub fn pack(item: String) -> Self { Parcel { item } }
/// # }
/// # let orders = Arc::new(Application::builder("Orders").build()?);
/// # let shipping = Arc::new(Application::builder("Shipping").build()?);
/// # let policy = annals::system::Policies::new().on::<Order>(|placed, processing| {
/// #     let OrderEvent::Placed { item } = &placed.event;
/// #     processing.save(&mut Parcel::pack(item.clone()))
/// # });
/// # let system = Arc::new(annals::system::System::builder()
/// #     .application(orders.clone())
/// #     .process(shipping.clone(), policy)
/// #     .pipe([&orders, &shipping])
/// #     .build()?);
/// use std::time::Duration;
/// use annals::system::MultiThreadedRunner;
///
/// let runner = MultiThreadedRunner::start(system)?;
/// orders.save(&mut Order::place("kettle".into()))?;
/// assert!(runner.wait_until_caught_up(Duration::from_secs(10))?);
/// assert_eq!(shipping.last_notification_id()?, Some(1));
/// runner.stop()?;
/// # Ok::<(), annals::Error>(())
/// ```
pub struct MultiThreadedRunner {
    system: Arc<System>,
    workers: Vec<(Stopper, JoinHandle<()>)>,
    errors: Arc<Mutex<Vec<Error>>>,
}

impl std::fmt::Debug for MultiThreadedRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiThreadedRunner")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl MultiThreadedRunner {
    /// Starts a worker per follower, looking for new events at least every
    /// 200 ms.
    ///
    /// # Errors
    ///
    /// A thread cannot be spawned.
    pub fn start(system: Arc<System>) -> Result<Self> {
        Self::start_with_poll(system, Duration::from_millis(200))
    }

    /// Starts a worker per follower, each looking for new events at least
    /// every `poll` (for writers in other processes).
    ///
    /// # Errors
    ///
    /// A thread cannot be spawned.
    pub fn start_with_poll(system: Arc<System>, poll: Duration) -> Result<Self> {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for name in system.followers().to_vec() {
            let stop = Stopper::new();
            let handle = {
                let (system, stop, errors) = (system.clone(), stop.clone(), errors.clone());
                std::thread::Builder::new()
                    .name(format!("annals-{name}"))
                    .spawn({
                        let name = name.clone();
                        move || {
                            let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                system.run_follower(&name, &stop, poll)
                            }));
                            let error = match run {
                                Ok(Ok(())) => return,
                                Ok(Err(e)) => e,
                                Err(panic) => panicked(&name, panic.as_ref()),
                            };
                            tracing::error!(follower = %name, error = %error.report(), "follower stopped");
                            errors.lock().unwrap_or_else(|e| e.into_inner()).push(error);
                        }
                    })
                    .map_err(|e| Error::Follower {
                        follower: name.clone(),
                        message: format!("its thread could not start: {e}"),
                    })?
            };
            workers.push((stop, handle));
        }
        Ok(Self {
            system,
            workers,
            errors,
        })
    }

    /// The first error a worker stopped with, if any (taken: the next call
    /// returns the next one).
    ///
    /// # Errors
    ///
    /// That error.
    pub fn check(&self) -> Result<()> {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.remove(0))
        }
    }

    /// Waits until every follower has processed everything its leaders
    /// stored (true), or `timeout` passes (false); a worker's error is
    /// returned as soon as it happens. "Everything" holds at one moment:
    /// no application stored anything while the followers were checked
    /// (in a cycle, a follower checked early can fall behind again).
    ///
    /// # Errors
    ///
    /// A worker's error (as [`check`](Self::check)); store errors.
    pub fn wait_until_caught_up(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check()?;
            let before = self.system.stored()?;
            let mut caught_up = true;
            for name in self.system.followers() {
                caught_up &= self.system.is_caught_up(name)?;
            }
            if caught_up && self.system.stored()? == before {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops every worker (each finishes the notification it is on) and
    /// returns the first error any had.
    ///
    /// # Errors
    ///
    /// The first error a worker stopped with; [`Error::Persistence`] when
    /// a policy panicked.
    pub fn stop(self) -> Result<()> {
        for (stop, _) in &self.workers {
            stop.stop();
        }
        // Every worker is joined, whatever the others did. Panics are
        // caught in the worker and reported as its error.
        for (_, handle) in self.workers {
            let _ = handle.join();
        }
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.remove(0))
        }
    }
}
