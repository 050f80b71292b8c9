//! Projections: read models that are not event-sourced, kept by the user's
//! code in the user's own database. Each notification is applied in one
//! transaction of that database together with its tracking record, so it
//! is applied exactly once, across crashes and restarts.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::process::Upstream;
use super::read_model::{Applied, ReadModel};
use crate::application::Application;
use crate::error::Result;
use crate::log::Stopper;
use crate::persistence::NotificationQuery;

/// The code of a projection: applies one upstream event to the read model
/// through the transaction.
pub type ProjectFn<D> =
    dyn for<'t> Fn(&Upstream<'_>, &mut <D as ReadModel>::Tx<'t>) -> Result<()> + Send + Sync;

/// Keeps a read model up to date with an application's events: a table
/// (or several) in the user's own SQLite or PostgreSQL database, written
/// by the user's code, one transaction per notification together with its
/// tracking record, so each event is applied exactly once, across crashes
/// and restarts. A read model is not event-sourced: drop its tables and
/// its `projection_tracking` rows to rebuild it from the start.
///
/// ```
/// use std::sync::Arc;
/// use annals::prelude::*;
/// use annals::rusqlite::{self, Transaction};
/// use annals::system::{Projection, Upstream};
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Order { pub item: String }
/// #[aggregate]
/// impl Order {
///     #[event("Placed")]
///     pub fn place(item: String) -> Self { Order { item } }
/// }
///
/// let orders = Arc::new(Application::builder("Orders").build()?);
/// let db = rusqlite::Connection::open_in_memory().map_err(annals::Error::user)?;
/// db.execute_batch("CREATE TABLE items (item TEXT)").map_err(annals::Error::user)?;
///
/// let items = Projection::new("items", orders.clone(), db, |upstream: &Upstream<'_>, tx: &mut Transaction<'_>| {
///     if let Some(placed) = upstream.decode::<Order>()? {
///         let OrderEvent::Placed { item } = placed.event;
///         tx.execute("INSERT INTO items VALUES (?1)", [item]).map_err(annals::Error::user)?;
///     }
///     Ok(())
/// })?;
///
/// orders.save(&mut Order::place("kettle".into()))?;
/// assert_eq!(items.pull()?, 1); // or items.run(&stop, poll) in a thread
/// assert_eq!(items.pull()?, 0); // each notification is applied once
/// let count: i64 = items.with_db(|db| db.query_row("SELECT COUNT(*) FROM items", [], |r| r.get(0)))
///     .map_err(annals::Error::user)?;
/// assert_eq!(count, 1);
/// # Ok::<(), annals::Error>(())
/// ```
pub struct Projection<D: ReadModel> {
    name: String,
    leader: Arc<Application>,
    db: Mutex<D>,
    project: Box<ProjectFn<D>>,
    progress: (Mutex<u64>, Condvar),
}

impl<D: ReadModel> std::fmt::Debug for Projection<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection")
            .field("name", &self.name)
            .field("leader", &self.leader.name())
            .finish_non_exhaustive()
    }
}

impl<D: ReadModel> Projection<D> {
    /// Projection `name` of `leader`'s events into `db` (whose tracking
    /// table is created if missing), applying each with `project`. It
    /// resumes after the last notification `name` applied to `db`. See
    /// [`Projection`] for an example.
    ///
    /// # Errors
    ///
    /// The tracking table cannot be created or read.
    pub fn new(
        name: &str,
        leader: Arc<Application>,
        mut db: D,
        project: impl for<'t> Fn(&Upstream<'_>, &mut D::Tx<'t>) -> Result<()> + Send + Sync + 'static,
    ) -> Result<Self> {
        db.create_tracking_table()?;
        let applied = db.max_tracking_id(name, leader.name())?;
        Ok(Self {
            name: name.to_owned(),
            leader,
            db: Mutex::new(db),
            project: Box::new(project),
            progress: (Mutex::new(applied), Condvar::new()),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, D> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` with the read model's database (to query it).
    pub fn with_db<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut self.db())
    }

    /// Applies every notification stored after the last one applied;
    /// returns how many.
    ///
    /// # Errors
    ///
    /// `project`'s error (that notification is not applied; the ones
    /// before it are), the leader's store errors, the read model's
    /// database errors.
    pub fn pull(&self) -> Result<usize> {
        let mut db = self.db();
        let leader = self.leader.name();
        let span = tracing::debug_span!(
            "pull",
            projection = self.name.as_str(),
            leader,
            from = tracing::field::Empty,
            processed = tracing::field::Empty,
            first_notification_id = tracing::field::Empty,
            last_notification_id = tracing::field::Empty,
        );
        let _entered = span.enter();
        let mut applied = 0;
        loop {
            let start = db.max_tracking_id(&self.name, leader)? + 1;
            if applied == 0 {
                span.record("from", start);
            }
            let page = self
                .leader
                .recorder()
                .select_notifications(&NotificationQuery::new(start, 100))?;
            if page.is_empty() {
                // Read up to the leader's newest: no lag.
                crate::metrics::follower_at(&self.name, leader, start - 1, start - 1);
                span.record("processed", applied);
                return Ok(applied);
            }
            for notification in &page {
                let upstream = Upstream::new(&self.leader, notification);
                let apply = tracing::debug_span!(
                    "apply",
                    projection = self.name.as_str(),
                    leader,
                    notification_id = notification.id,
                    topic = notification.event.topic.as_str(),
                    originator_id = notification.event.originator_id.as_str(),
                    originator_version = notification.event.originator_version,
                    applied = tracing::field::Empty,
                );
                let applying = apply.enter();
                // A tombstone (a stream ended for good) is tracked, never
                // projected.
                let tombstone = annals_core::ending::is_tombstone(&notification.event.topic);
                let outcome = db.apply(&self.name, leader, notification.id, &mut |tx| {
                    if tombstone {
                        return Ok(());
                    }
                    (self.project)(&upstream, tx)
                })?;
                apply.record("applied", matches!(outcome, Applied::Now));
                drop(applying);
                match outcome {
                    Applied::Now => {
                        if applied == 0 {
                            span.record("first_notification_id", notification.id);
                        }
                        span.record("last_notification_id", notification.id);
                        applied += 1;
                    }
                    // Another instance of this projection applied it.
                    Applied::Already => {}
                }
                let mut progress = self.progress.0.lock().unwrap_or_else(|e| e.into_inner());
                *progress = notification.id;
                self.progress.1.notify_all();
            }
        }
    }

    /// Applies new notifications as the leader stores them, until `stop`:
    /// woken by the leader's saves in this process and by its store's
    /// watcher (commits of other processes), else every `poll`.
    ///
    /// # Errors
    ///
    /// As [`pull`](Self::pull) (the loop stops at the first); the leader's
    /// store watcher cannot start.
    pub fn run(&self, stop: &Stopper, poll: Duration) -> Result<()> {
        // Woken by the leader's saves, its store and `stop` alike.
        let signal = stop.signal();
        self.leader.notifier().subscribe(signal);
        let _watch = self.leader.recorder().watch(signal)?;
        let mut backoff = crate::persistence::wake::Backoff::default();
        while !stop.is_stopped() {
            match self.pull() {
                Ok(pulled) => {
                    backoff.reset();
                    if pulled == 0 && !stop.is_stopped() {
                        signal.wait(poll);
                    }
                }
                // A store failed (the leader's or the read model's): the
                // notification's tracking row was not written; try again.
                Err(e) if e.is_persistence() => {
                    tracing::warn!(projection = %self.name, error = %e.report(), "applying failed; retrying");
                    backoff.wait(signal);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until notification `id` of the leader has been applied (true)
    /// or `timeout` passes (false): read your own writes.
    pub fn wait(&self, id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut progress = self.progress.0.lock().unwrap_or_else(|e| e.into_inner());
        while *progress < id {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            progress = self
                .progress
                .1
                .wait_timeout(progress, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// What [`System`](super::System) needs of a projection, whatever its read
/// model: projections are followers of a system like process applications.
pub(crate) trait Projects: Send + Sync {
    /// The projection's name (its tracking rows', and the system's).
    fn name(&self) -> &str;
    /// The application it follows.
    fn leader(&self) -> &Arc<Application>;
    /// Applies what is new ([`Projection::pull`]).
    fn pull(&self) -> Result<usize>;
    /// The last notification of the leader it applied.
    fn applied(&self) -> Result<u64>;
    /// How many notifications of the leader it has still to apply.
    fn pending(&self) -> Result<u64> {
        let stored = self.leader().recorder().max_notification_id()?;
        Ok(stored.saturating_sub(self.applied()?))
    }
}

impl<D: ReadModel> Projects for Projection<D> {
    fn name(&self) -> &str {
        &self.name
    }
    fn leader(&self) -> &Arc<Application> {
        &self.leader
    }
    fn pull(&self) -> Result<usize> {
        Projection::pull(self)
    }
    fn applied(&self) -> Result<u64> {
        let leader = self.leader.name();
        self.db().max_tracking_id(&self.name, leader)
    }
}
