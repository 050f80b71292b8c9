//! Projections: read models that are not event-sourced, kept by the user's
//! code in the user's own database. Each notification is applied in one
//! transaction of that database together with its tracking record, so it
//! is applied exactly once, across crashes and restarts.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::process::Upstream;
use super::runner::StopHandle;
use crate::application::Application;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::error::Error;
use crate::error::Result;
use crate::persistence::NotificationQuery;

/// A database a projection writes its read model to, with a tracking
/// table of its own (`projection_tracking`). Implemented for
/// `rusqlite::Connection` (feature `sqlite`) and `postgres::Client`
/// (feature `postgres`); see [`Projection`] for an example. Implement it
/// for another database: [`apply`](Self::apply) must record the tracking
/// row and the projection's writes in one transaction, and report a
/// tracking row that exists as [`Error::Conflict`](crate::Error::Conflict).
pub trait ReadModel: Send + 'static {
    /// A transaction of the database, which the projection's code writes
    /// through.
    type Tx<'t>
    where
        Self: 't;

    /// Creates the tracking table if it is missing.
    ///
    /// # Errors
    ///
    /// The database's errors ([`Error::Persistence`](crate::Error::Persistence)).
    fn create_tracking_table(&mut self) -> Result<()>;

    /// The highest notification id of `leader` that projection `name` has
    /// applied (0 when none).
    ///
    /// # Errors
    ///
    /// The database's errors ([`Error::Persistence`](crate::Error::Persistence)).
    fn max_tracking_id(&mut self, name: &str, leader: &str) -> Result<u64>;

    /// Runs `apply` in a transaction and records, in the same transaction,
    /// that projection `name` applied notification `id` of `leader`. When
    /// that record exists already (another instance of the projection
    /// applied it), nothing is done and the answer is
    /// [`Applied::Already`]; an error of `apply` (of any kind, a conflict
    /// too) is returned as it is, and nothing of the transaction stays.
    fn apply(
        &mut self,
        name: &str,
        leader: &str,
        id: u64,
        apply: &mut dyn FnMut(&mut Self::Tx<'_>) -> Result<()>,
    ) -> Result<Applied>;
}

/// What [`ReadModel::apply`] did with a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied now, with its tracking record.
    Now,
    /// Applied before (its tracking record exists): nothing was done.
    Already,
}

#[cfg(feature = "sqlite")]
fn db_error(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::persistence(context.to_owned(), e)
}

/// A PostgreSQL error, with what the server said in its own message.
#[cfg(feature = "postgres")]
fn pg_error(context: &str, e: postgres::Error) -> Error {
    let said = crate::persistence::postgres::describe(&e);
    Error::persistence(format!("{context}: {said}"), e)
}

#[cfg(feature = "sqlite")]
impl ReadModel for rusqlite::Connection {
    type Tx<'t>
        = rusqlite::Transaction<'t>
    where
        Self: 't;

    fn create_tracking_table(&mut self) -> Result<()> {
        self.execute_batch(
            "CREATE TABLE IF NOT EXISTS projection_tracking (projection TEXT, application_name TEXT, \
             notification_id INTEGER, PRIMARY KEY (projection, application_name, notification_id)) WITHOUT ROWID",
        )
        .map_err(|e| db_error("creating projection_tracking", e))
    }

    fn max_tracking_id(&mut self, name: &str, leader: &str) -> Result<u64> {
        self.query_row(
            "SELECT MAX(notification_id) FROM projection_tracking WHERE projection = ?1 AND application_name = ?2",
            [name, leader],
            |row| row.get::<_, Option<i64>>(0),
        )
        .map(|max| max.map_or(0, i64::unsigned_abs))
        .map_err(|e| db_error("reading projection_tracking", e))
    }

    fn apply(
        &mut self,
        name: &str,
        leader: &str,
        id: u64,
        apply: &mut dyn FnMut(&mut Self::Tx<'_>) -> Result<()>,
    ) -> Result<Applied> {
        let mut tx = self
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_error("beginning a projection transaction", e))?;
        let tracked = tx.execute(
            "INSERT INTO projection_tracking VALUES (?1, ?2, ?3)",
            rusqlite::params![
                name,
                leader,
                crate::persistence::to_i64("notification id", id)?
            ],
        );
        match tracked {
            Ok(_) => {}
            // Dropping `tx` rolls it back.
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                return Ok(Applied::Already)
            }
            Err(e) => return Err(db_error("recording projection tracking", e)),
        }
        apply(&mut tx)?;
        tx.commit()
            .map_err(|e| db_error("committing a projection transaction", e))?;
        Ok(Applied::Now)
    }
}

#[cfg(feature = "postgres")]
impl ReadModel for postgres::Client {
    type Tx<'t>
        = postgres::Transaction<'t>
    where
        Self: 't;

    fn create_tracking_table(&mut self) -> Result<()> {
        self.batch_execute(
            "CREATE TABLE IF NOT EXISTS projection_tracking (projection text, application_name text, \
             notification_id bigint, PRIMARY KEY (projection, application_name, notification_id))",
        )
        .map_err(|e| pg_error("creating projection_tracking", e))
    }

    fn max_tracking_id(&mut self, name: &str, leader: &str) -> Result<u64> {
        self.query_one(
            "SELECT MAX(notification_id) FROM projection_tracking WHERE projection = $1 AND application_name = $2",
            &[&name, &leader],
        )
        .and_then(|row| row.try_get::<_, Option<i64>>(0))
        .map(|max| max.map_or(0, i64::unsigned_abs))
        .map_err(|e| pg_error("reading projection_tracking", e))
    }

    fn apply(
        &mut self,
        name: &str,
        leader: &str,
        id: u64,
        apply: &mut dyn FnMut(&mut Self::Tx<'_>) -> Result<()>,
    ) -> Result<Applied> {
        let mut tx = self
            .transaction()
            .map_err(|e| pg_error("beginning a projection transaction", e))?;
        let tracked = tx.execute(
            "INSERT INTO projection_tracking VALUES ($1, $2, $3)",
            &[
                &name,
                &leader,
                &crate::persistence::to_i64("notification id", id)?,
            ],
        );
        match tracked {
            Ok(_) => {}
            // Dropping `tx` rolls it back.
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                return Ok(Applied::Already)
            }
            Err(e) => return Err(pg_error("recording projection tracking", e)),
        }
        apply(&mut tx)?;
        tx.commit()
            .map_err(|e| pg_error("committing a projection transaction", e))?;
        Ok(Applied::Now)
    }
}

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
                let outcome = db.apply(&self.name, leader, notification.id, &mut |tx| {
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
    pub fn run(&self, stop: &StopHandle, poll: Duration) -> Result<()> {
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
