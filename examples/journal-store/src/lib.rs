//! A store written outside annals, as a third party would write one: it
//! depends on `annals-core` alone and uses only its public API, yet does
//! everything a built-in store does. Its tests (`tests/journal.rs`) show
//! it: the recorder contract suite (idempotency keys included, kept in
//! the [`LogIndex`] as the memory store keeps them), selection by `PERSISTENCE_MODULE`
//! once named in the builder's `Modules`, and its transaction lent to the user's writes in
//! `Application::save_and_write` and `Processing::write`.
//!
//! Events live in memory (annals-core's [`LogIndex`], the memory store's
//! own index). Beside them the store keeps a [`Journal`], lines of the
//! user's own: what a SQL store's user tables are to SQLite or PostgreSQL.
//! A save that lends its transaction runs the user's writes on the
//! journal; if they fail, or the events conflict, the journal is as it was
//! and no event is stored.
//!
//! ```
//! use annals_core::persistence::{ProcessRecorder, StoreTx, StoredEvent};
//! use annals_journal_store::{Journal, JournalRecorder};
//!
//! let recorder = JournalRecorder::new();
//! let row = StoredEvent {
//!     originator_id: "dog-1".into(),
//!     originator_version: 1,
//!     topic: "Dog.Registered".into(),
//!     state: b"{}".to_vec(),
//! };
//! recorder.insert_events_with(&[row], None, &mut |tx: &mut StoreTx<'_>| {
//!     tx.get_mut::<Journal>()?.write("registered dog-1");
//!     Ok(())
//! })?;
//! assert_eq!(recorder.journal(), ["registered dog-1"]);
//! # Ok::<(), annals_core::Error>(())
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use annals_core::env::Env;
use annals_core::error::Result;
use annals_core::persistence::memory::LogIndex;
use annals_core::persistence::wake::{Notifier, Signal, Watch};
use annals_core::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, KeyedOutcome, Notification,
    NotificationQuery, ProcessRecorder, Recorders, Store, StoreTx, StoredEvent, Tracking,
    UserWrites,
};

/// The user's writes, as `ProcessRecorder::insert_events_with` hands them.
type Writes<'w> = dyn FnMut(&mut StoreTx<'_>) -> Result<()> + 'w;

/// The name the store lends its transaction under, and its
/// `PERSISTENCE_MODULE` name in the tests.
pub const NAME: &str = "journal";

/// The journal store's settings: a [`Store`] for
/// `ApplicationBuilder::store`, or for a persistence module's `from_env`.
///
/// Every application opened on one `JournalStore` shares its recorder, as
/// applications on one database share its tables.
#[derive(Debug, Clone, Default)]
pub struct JournalStore {
    recorder: Arc<JournalRecorder>,
}

impl JournalStore {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store from an application's settings. It has none of its own;
    /// a real store reads its connection settings here and names the
    /// variable of a bad one in its error.
    ///
    /// # Errors
    ///
    /// None here; the signature is what a persistence module's `OpenStore`
    /// calls (`Modules::with`).
    pub fn from_env(_env: &Env) -> Result<Self> {
        Ok(Self::new())
    }

    /// The recorder every application of this store writes to.
    pub fn recorder(&self) -> &Arc<JournalRecorder> {
        &self.recorder
    }
}

impl Store for JournalStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn open(&self, _app_name: &str) -> Result<Recorders> {
        Ok(Recorders::new(
            self.recorder.clone(),
            Arc::new(JournalRecorder::new()),
        ))
    }
}

/// The user's own lines: the "connection" the store lends to a save's
/// writes (`tx.get_mut::<Journal>()`).
#[derive(Debug, Default)]
pub struct Journal {
    lines: Vec<String>,
}

impl Journal {
    /// Writes `line`, in the save's transaction.
    pub fn write(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    /// The lines written so far (this save's included).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// What one lock guards: the events and the journal, so that a save
/// changes both or neither.
#[derive(Debug, Default)]
struct Inner {
    index: LogIndex,
    journal: Journal,
}

/// The journal store's recorder: events, notifications, tracking records
/// and the journal.
#[derive(Debug, Default)]
pub struct JournalRecorder {
    inner: Mutex<Inner>,
    /// Raised after every insert, for the watchers of this recorder.
    committed: Notifier,
}

impl JournalRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The journal's committed lines.
    pub fn journal(&self) -> Vec<String> {
        self.lock().journal.lines.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every write checks before it changes anything, so a poisoned
        // lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `events` (with `tracking` and an idempotency key's
    /// `outcome`), running `writes` on the journal in between: all or
    /// nothing.
    fn insert(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: Option<&KeyedOutcome>,
        writes: Option<&mut Writes<'_>>,
    ) -> Result<Vec<u64>> {
        let mut inner = self.lock();
        // A conflict comes first: the writes do not run.
        if let Some(outcome) = outcome {
            inner.index.check_key(outcome)?;
        }
        if let Some(tracking) = tracking {
            inner.index.check_tracking(tracking)?;
        }
        inner.index.check(events)?;
        if let Some(writes) = writes {
            let before = inner.journal.lines.len();
            let mut user = UserWrites::new(writes);
            if !user.run(StoreTx::exclusive(NAME, &mut inner.journal)) {
                // The rollback: the journal as it was.
                inner.journal.lines.truncate(before);
                drop(inner);
                // A panic in the writes resumes here, after the rollback.
                return Err(user.take_error().unwrap_or_else(|| {
                    annals_core::Error::persistence("the journal's writes", "failed")
                }));
            }
        }
        let ids = inner.index.insert(events);
        if let Some(tracking) = tracking {
            inner.index.track(tracking);
        }
        if let Some(outcome) = outcome {
            inner.index.record_key(outcome);
        }
        drop(inner);
        self.committed.notify();
        Ok(ids)
    }
}

impl AggregateRecorder for JournalRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        self.insert(events, None, None, None)
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        Ok(self.lock().index.select_events(originator_id, query))
    }
}

impl ApplicationRecorder for JournalRecorder {
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        Ok(self.lock().index.select_notifications(query))
    }

    fn max_notification_id(&self) -> Result<u64> {
        Ok(self.lock().index.log.len() as u64)
    }

    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        // Inserts raise it directly: no thread needed.
        self.committed.subscribe(signal);
        Ok(Watch::none())
    }
}

impl ProcessRecorder for JournalRecorder {
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> Result<Vec<u64>> {
        self.insert(events, Some(tracking), None, None)
    }

    fn insert_events_with(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        writes: &mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        self.insert(events, tracking, None, Some(writes))
    }

    fn insert_events_keyed(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: &KeyedOutcome,
    ) -> Result<Vec<u64>> {
        self.insert(events, tracking, Some(outcome), None)
    }

    fn select_outcome(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().index.outcome(key).map(<[u8]>::to_vec))
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        Ok(self.lock().index.max_tracking_id(application_name))
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        Ok(self
            .lock()
            .index
            .has_tracking_id(application_name, notification_id))
    }
}
