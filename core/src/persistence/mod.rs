//! Recorders: where stored events live.
//!
//! A recorder knows nothing of aggregates: it stores and selects
//! [`StoredEvent`] rows. The traits follow the Python eventsourcing
//! library's split:
//!
//! - [`AggregateRecorder`]: insert events atomically, select one stream;
//! - [`ApplicationRecorder`]: plus notifications, every event of the
//!   application in one total order;
//! - [`ProcessRecorder`]: plus tracking records, stored in the same
//!   transaction as the events they caused, and idempotency keys with
//!   the outcome of the request that stored the events
//!   ([`KeyedOutcome`]).
//!
//! Every recorder passes the same contract suite
//! (`testing::contract`, feature `testing`).
//!
//! A store is a crate of its own that implements these traits and
//! [`Store`] (which opens an application's [`Recorders`]): the memory
//! store is [`memory`]; annals-sqlite, annals-postgres and
//! annals-object-store are the others. The SQL stores share one
//! group-commit engine ([`group_commit`]).

pub mod dcb;
pub mod django;
pub mod group_commit;
pub mod keys;
pub mod memory;
mod modules;
mod store;
pub mod trace;
mod tracking;
mod tx;
pub mod wake;

use std::sync::Arc;

use crate::error::Error;
use crate::error::Result;
pub use crate::rows::{KeyedOutcome, Notification, StoredEvent, Tracking};
pub use modules::{Modules, OpenStore};
pub use store::{MemoryStore, Recorders, Store};
pub use tracking::{TrackingLayout, MIGRATION_ROW};
pub use tx::{
    no_idempotency_keys, no_read_connection, no_transaction, transaction_lost, StoreTx, UserWrites,
};
use wake::{Signal, Watch};

/// `value` as a database's signed 64-bit integer (SQLite's INTEGER,
/// PostgreSQL's bigint): versions and ids above `i64::MAX` cannot be stored.
pub fn to_i64(what: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::persistence(
            format!("storing {what} {value}"),
            "a database integer holds at most 9223372036854775807",
        )
    })
}

/// Which events of one stream to select.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only versions greater than this.
    pub gt: Option<u64>,
    /// Only versions less than or equal to this.
    pub lte: Option<u64>,
    /// Newest first.
    pub desc: bool,
    /// At most this many.
    pub limit: Option<usize>,
}

impl EventQuery {
    /// Every event, oldest first.
    pub fn all() -> Self {
        Self::default()
    }
    /// Only versions greater than `version`.
    pub fn after(mut self, version: u64) -> Self {
        self.gt = Some(version);
        self
    }
    /// Only versions up to and including `version`.
    pub fn up_to(mut self, version: u64) -> Self {
        self.lte = Some(version);
        self
    }
    /// Newest first.
    pub fn descending(mut self) -> Self {
        self.desc = true;
        self
    }
    /// At most `limit` events.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Whether `version` is within the bounds (limit and order aside).
    pub fn contains(&self, version: u64) -> bool {
        self.gt.is_none_or(|gt| version > gt) && self.lte.is_none_or(|lte| version <= lte)
    }
}

/// Which notifications to select.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationQuery {
    /// The first notification id wanted (inclusive).
    pub start: u64,
    /// At most this many.
    pub limit: usize,
    /// The last notification id wanted (inclusive), if any.
    pub stop: Option<u64>,
    /// Only these topics (all topics when empty).
    pub topics: Vec<String>,
}

impl NotificationQuery {
    /// Up to `limit` notifications from id `start` on.
    pub fn new(start: u64, limit: usize) -> Self {
        Self {
            start,
            limit,
            stop: None,
            topics: Vec::new(),
        }
    }
    /// Only up to id `stop` (inclusive).
    pub fn stop(mut self, stop: u64) -> Self {
        self.stop = Some(stop);
        self
    }
    /// Only these topics.
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }
    /// Whether a notification with this id and topic is selected (limit aside).
    pub fn matches(&self, id: u64, topic: &str) -> bool {
        id >= self.start
            && self.stop.is_none_or(|stop| id <= stop)
            && (self.topics.is_empty() || self.topics.iter().any(|t| t == topic))
    }
}

/// Stores and selects the events of aggregates.
pub trait AggregateRecorder: Send + Sync {
    /// Inserts `events` atomically: all or none. A second event at an
    /// existing (originator_id, originator_version) is a
    /// [`Conflict`](crate::Error::Conflict) and stores nothing. Returns the
    /// notification ids given to the events (empty where the recorder keeps
    /// no log, as a snapshot store).
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>>;

    /// The events of one stream, as `query` says.
    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>>;

    /// Calls `visit` with the events of one stream, as `query` says, in
    /// its order, and returns how many it visited; the first error of
    /// `visit` stops it and is returned. The events of
    /// [`select_events`](Self::select_events), without a row of their own
    /// each: the memory store lends the rows it holds, SQLite and
    /// PostgreSQL fill one row's buffers again for each. This default
    /// collects them with `select_events`, so a recorder that wraps
    /// another keeps its say.
    ///
    /// ```
    /// use annals_core::persistence::memory::MemoryRecorder;
    /// use annals_core::persistence::{AggregateRecorder, EventQuery, StoredEvent};
    ///
    /// let recorder = MemoryRecorder::new();
    /// let rows: Vec<StoredEvent> = (1..=3)
    ///     .map(|version| StoredEvent {
    ///         originator_id: "dog-1".into(),
    ///         originator_version: version,
    ///         topic: "Dog.TrickAdded".into(),
    ///         state: b"{}".to_vec(),
    ///     })
    ///     .collect();
    /// recorder.insert_events(&rows)?;
    /// let mut versions = Vec::new();
    /// let visited = recorder.visit_events("dog-1", &EventQuery::all().after(1), &mut |row| {
    ///     versions.push(row.originator_version);
    ///     Ok(())
    /// })?;
    /// assert_eq!((visited, versions), (2, vec![2, 3]));
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As `select_events`, and the first error that `visit` returns.
    fn visit_events(
        &self,
        originator_id: &str,
        query: &EventQuery,
        visit: &mut dyn FnMut(&StoredEvent) -> Result<()>,
    ) -> Result<usize> {
        let rows = self.select_events(originator_id, query)?;
        rows.iter().try_for_each(&mut *visit)?;
        Ok(rows.len())
    }

    /// Ends stream `originator_id` for good, in one transaction: stores
    /// `tombstone` (a [`Tombstone`](crate::ending::Tombstone)'s stored
    /// event, at the version after the stream's last) and removes every
    /// other event of the stream; returns the removed events, oldest
    /// first. The tombstone takes the next notification id, and the
    /// removed events' ids become gaps in the log: every other event
    /// keeps its id. A save at the tombstone's version is then a
    /// [`Conflict`](crate::Error::Conflict), so the stream cannot go on.
    ///
    /// A stream with no events: nothing is stored, and the result is
    /// empty. With `tombstone` `None` (a store of snapshots) the events
    /// are removed and nothing is stored in their place.
    ///
    /// The SQLite, PostgreSQL, MySQL and memory stores implement it. The
    /// default, for a store whose events are immutable (the object store,
    /// a user's own store), changes nothing and is an [`Error::Config`]
    /// naming `PERSISTENCE_MODULE`; a store that wraps another should
    /// pass the call on.
    ///
    /// ```
    /// use annals_core::ending::Tombstone;
    /// use annals_core::persistence::memory::MemoryRecorder;
    /// use annals_core::persistence::{
    ///     AggregateRecorder, ApplicationRecorder, EventQuery, NotificationQuery, StoredEvent,
    /// };
    ///
    /// let recorder = MemoryRecorder::new();
    /// let row = |id: &str, version| StoredEvent {
    ///     originator_id: id.into(),
    ///     originator_version: version,
    ///     topic: "Dog.Registered".into(),
    ///     state: b"{}".to_vec(),
    /// };
    /// recorder.insert_events(&[row("dog-1", 1), row("dog-2", 1), row("dog-1", 2)])?;
    /// let tombstone = Tombstone::deleted("2026-03-01T09:00:00Z").to_stored("dog-1", 3);
    /// let removed = recorder.end_stream("dog-1", Some(&tombstone))?;
    /// assert_eq!(removed.len(), 2);
    /// assert_eq!(recorder.select_events("dog-1", &EventQuery::all())?, [tombstone]);
    /// // dog-2 keeps notification id 2; ids 1 and 3 are gaps.
    /// let log = recorder.select_notifications(&NotificationQuery::new(1, 10))?;
    /// assert_eq!(log.iter().map(|n| n.id).collect::<Vec<_>>(), [2, 4]);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::StreamEnded`] when the stream
    /// is ended already; a [`Conflict`](crate::Error::Conflict) when the
    /// tombstone's version is not the one after the stream's last;
    /// [`Error::Config`] for a tombstone of another stream or topic; the
    /// store's errors. On error nothing changed.
    fn end_stream(
        &self,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        let _ = (originator_id, tombstone);
        Err(crate::ending::no_end_stream(std::any::type_name::<Self>()))
    }
}

/// An aggregate recorder that also keeps the application's log.
pub trait ApplicationRecorder: AggregateRecorder {
    /// Notifications in id order, as `query` says. Ids increase in commit
    /// order but may have gaps (see [`Notification::id`]).
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>>;

    /// The highest notification id (0 when the log is empty).
    fn max_notification_id(&self) -> Result<u64>;

    /// Raises `signal` whenever events are committed to this store, by any
    /// process, until the returned watcher is dropped: PostgreSQL listens
    /// for its NOTIFY, SQLite watches the file's `data_version`. The
    /// default, for stores without such a signal, watches nothing
    /// ([`Watch::none`]): followers then rely on in-process notifiers and
    /// polling.
    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        let _ = signal;
        Ok(Watch::none())
    }
}

/// An application recorder that also keeps tracking records.
pub trait ProcessRecorder: ApplicationRecorder {
    /// Inserts `events` and, in the same transaction, `tracking`. A second
    /// tracking record for the same (application, notification id) is a
    /// [`Conflict`](crate::Error::Conflict) and stores nothing; so is, on a
    /// store with a single-row tracking table ([`TrackingLayout::SingleRow`]),
    /// a record at or below the application's highest tracked id.
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> Result<Vec<u64>>;

    /// Inserts `events` and `tracking` (if any) as
    /// [`insert_events_tracked`](Self::insert_events_tracked) does, and runs
    /// `writes` in the same transaction, right after those inserts, with
    /// the transaction lent as a [`StoreTx`]: the user's own rows are
    /// stored with the events or not at all. When the inserts fail (a
    /// [`Conflict`](crate::Error::Conflict)) `writes` is not run; when
    /// `writes` fails, nothing of the save is stored and its error is
    /// returned as it is. `writes` may be run again when the store retries
    /// a save whose connection broke before it could commit.
    ///
    /// The SQLite and PostgreSQL stores implement it. The default, for
    /// stores with no database transaction to lend (memory, objects, a
    /// user's own store), stores nothing and is an
    /// [`Error::Config`] naming `PERSISTENCE_MODULE`;
    /// a store that wraps another should pass the call on.
    ///
    /// # Errors
    ///
    /// As [`insert_events_tracked`](Self::insert_events_tracked); the
    /// error of `writes`; [`Error::Persistence`]
    /// when `writes` ended the transaction or (PostgreSQL) left it failed.
    fn insert_events_with(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        writes: &mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        let _ = (events, tracking, writes);
        Err(tx::no_transaction(std::any::type_name::<Self>()))
    }

    /// Inserts `events` and `tracking` (if any) as
    /// [`insert_events_tracked`](Self::insert_events_tracked) does and, in
    /// the same transaction, `outcome`: an idempotency key and what the
    /// request that made these events answered. A second insert of a key
    /// that is stored is a [`Conflict`](crate::Error::Conflict) and stores
    /// nothing (neither its events nor its tracking record); so is a
    /// conflict of the events, which stores no key. A retried request
    /// finds its first outcome with [`select_outcome`](Self::select_outcome)
    /// (`Application::execute_once` does both).
    ///
    /// The keys of one application are one namespace, kept as long as its
    /// events (SQLite: the table `stored_outcomes`, or
    /// `{prefix}_outcomes`; PostgreSQL: `{name}_outcomes`; the object
    /// store: in the save objects).
    ///
    /// The built-in stores and the memory store implement it. The default,
    /// for a store that does not (a user's own store written before it),
    /// stores nothing and is an [`Error::Config`] naming
    /// `PERSISTENCE_MODULE`; a store that wraps another should pass the
    /// call on.
    ///
    /// See [`KeyedOutcome`] for an example.
    ///
    /// # Errors
    ///
    /// As [`insert_events_tracked`](Self::insert_events_tracked), and a
    /// conflict when the key is stored.
    fn insert_events_keyed(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: &KeyedOutcome,
    ) -> Result<Vec<u64>> {
        let _ = (events, tracking, outcome);
        Err(tx::no_idempotency_keys(std::any::type_name::<Self>()))
    }

    /// The outcome stored with idempotency key `key`
    /// ([`insert_events_keyed`](Self::insert_events_keyed)); `None` when
    /// the key is not stored.
    ///
    /// The default, for a store that keeps no keys, is an
    /// [`Error::Config`] naming `PERSISTENCE_MODULE`.
    ///
    /// ```
    /// use annals_core::persistence::memory::MemoryRecorder;
    /// use annals_core::persistence::{KeyedOutcome, ProcessRecorder};
    ///
    /// let recorder = MemoryRecorder::new();
    /// assert_eq!(recorder.select_outcome("request-1")?, None);
    /// let outcome = KeyedOutcome { key: "request-1".into(), outcome: b"42".to_vec() };
    /// recorder.insert_events_keyed(&[], None, &outcome)?;
    /// assert_eq!(recorder.select_outcome("request-1")?, Some(b"42".to_vec()));
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The store's errors; the default's.
    fn select_outcome(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let _ = key;
        Err(tx::no_idempotency_keys(std::any::type_name::<Self>()))
    }

    /// Lends a connection of the store to `reads`, in a read-only
    /// transaction (one snapshot of the database for all its statements),
    /// for the application's own tables (`Application::read`). Never the
    /// connection that writes, except where it is the only one (SQLite in
    /// memory). `reads` takes it as a save's writes do ([`StoreTx`]).
    ///
    /// SQLite and PostgreSQL implement it. The default, for a store with
    /// no connection to lend (memory, the object store), is an
    /// [`Error::Config`] naming `PERSISTENCE_MODULE`;
    /// a store that wraps another should pass the call on.
    ///
    /// # Errors
    ///
    /// The error of `reads`; the store's, when no connection or
    /// transaction could be had.
    fn read_with(&self, reads: &mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>) -> Result<()> {
        let _ = reads;
        Err(tx::no_read_connection(std::any::type_name::<Self>()))
    }

    /// The highest notification id of `application_name` that is tracked
    /// (0 when none is).
    fn max_tracking_id(&self, application_name: &str) -> Result<u64>;

    /// Whether notification `notification_id` of `application_name` is
    /// tracked. On a store with a single-row tracking table
    /// ([`TrackingLayout::SingleRow`]), which keeps only the highest id, every
    /// id up to that one counts as tracked (as in the Python library;
    /// followers process notifications in order, so the two agree for
    /// them).
    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool>;

    /// Inserts a batch of `events` moved in from elsewhere (an import) and,
    /// in the same transaction, `tracking` (if any: where the import got
    /// to), all or nothing, as
    /// [`insert_events_tracked`](Self::insert_events_tracked) does; returns
    /// how many events it stored. Notification ids are given in the
    /// events' order, as a save's are, and followers are woken as by a
    /// save. An event at a (stream, version) that is stored already is a
    /// [`Conflict`](crate::Error::Conflict) that stores nothing of the
    /// batch.
    ///
    /// A store implements it at its database's bulk speed where it has
    /// one (PostgreSQL: `COPY ... FROM STDIN` under the events table's
    /// lock; SQLite: one transaction with a prepared statement kept). The
    /// default, for every other store, is that same save:
    /// [`insert_events_tracked`](Self::insert_events_tracked) (or
    /// [`insert_events`](AggregateRecorder::insert_events) without
    /// `tracking`). A store that wraps another should pass the call on.
    ///
    /// ```
    /// use annals_core::persistence::memory::MemoryRecorder;
    /// use annals_core::persistence::{ApplicationRecorder, ProcessRecorder, StoredEvent, Tracking};
    ///
    /// let recorder = MemoryRecorder::new();
    /// let rows: Vec<StoredEvent> = (1..=3)
    ///     .map(|version| StoredEvent {
    ///         originator_id: "dog-1".into(),
    ///         originator_version: version,
    ///         topic: "Dog.TrickAdded".into(),
    ///         state: b"{}".to_vec(),
    ///     })
    ///     .collect();
    /// let position = Tracking { application_name: "an import".into(), notification_id: 3 };
    /// assert_eq!(recorder.import_events(&rows, Some(&position))?, 3);
    /// assert_eq!(recorder.max_notification_id()?, 3);
    /// assert_eq!(recorder.max_tracking_id("an import")?, 3);
    /// // Again: a conflict, and nothing more is stored.
    /// assert!(recorder.import_events(&rows, None).unwrap_err().is_conflict());
    /// assert_eq!(recorder.max_notification_id()?, 3);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`insert_events_tracked`](Self::insert_events_tracked).
    fn import_events(&self, events: &[StoredEvent], tracking: Option<&Tracking>) -> Result<usize> {
        match tracking {
            Some(tracking) => self.insert_events_tracked(events, tracking)?,
            None if events.is_empty() => return Ok(0),
            None => self.insert_events(events)?,
        };
        Ok(events.len())
    }

    /// The upstream applications this store tracks (the names its
    /// tracking records are kept under), sorted, without the single-row
    /// layout's marker row ([`MIGRATION_ROW`]). Each one's position is
    /// [`max_tracking_id`](Self::max_tracking_id).
    ///
    /// The memory, SQLite, PostgreSQL and MariaDB/MySQL stores implement
    /// it. The default, for a store that cannot list them, is an
    /// [`Error::Config`] naming `PERSISTENCE_MODULE`; a store that wraps
    /// another should pass the call on.
    ///
    /// ```
    /// use annals_core::persistence::memory::MemoryRecorder;
    /// use annals_core::persistence::{ProcessRecorder, Tracking};
    ///
    /// let recorder = MemoryRecorder::new();
    /// for (upstream, id) in [("orders", 7), ("billing", 2)] {
    ///     let tracking = Tracking { application_name: upstream.into(), notification_id: id };
    ///     recorder.insert_events_tracked(&[], &tracking)?;
    /// }
    /// assert_eq!(recorder.tracked_applications()?, ["billing", "orders"]);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The store's errors; the default's.
    fn tracked_applications(&self) -> Result<Vec<String>> {
        Err(Error::config(
            crate::settings::PERSISTENCE_MODULE.name,
            format!(
                "{} cannot list the upstream applications it tracks: use a store that can \
                 (memory, SQLite, PostgreSQL, MariaDB/MySQL)",
                std::any::type_name::<Self>()
            ),
        ))
    }
}
