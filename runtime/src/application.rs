//! Applications: the entry point that saves aggregates and gets them back.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use crate::cipher::{self, Cipher};
use crate::clock::Timestamp;
use crate::domain::{Aggregate, AggregateId, Metadata};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::log::{NotificationLogReader, Subscription};
use crate::mapper::{Codec, Compressor, Mapper};
use crate::persistence::memory::MemoryRecorder;
#[cfg(feature = "postgres")]
use crate::persistence::postgres::PostgresConfig;
#[cfg(feature = "sqlite")]
use crate::persistence::sqlite::SqliteConfig;
use crate::persistence::wake::Notifier;
pub use crate::persistence::Persistence;
use crate::persistence::{
    AggregateRecorder, EventQuery, Notification, NotificationQuery, ProcessRecorder, Recorders,
    Store, StoreTx, StoredEvent,
};
use crate::repository::{Cache, Repository, Snapshots};
use crate::settings;

/// Turns snapshots on (`yes`/`no`).
pub const IS_SNAPSHOTTING_ENABLED: &str = settings::IS_SNAPSHOTTING_ENABLED.name;
/// The size of the aggregate cache (no cache when unset or 0).
pub const AGGREGATE_CACHE_MAXSIZE: &str = settings::AGGREGATE_CACHE_MAXSIZE.name;
/// Chains each stream's events by hash (`yes`/`no`).
pub const IS_HASH_CHAINING_ENABLED: &str = settings::IS_HASH_CHAINING_ENABLED.name;
/// The Python library's cipher setting; when set it must name AES.
pub const CIPHER_TOPIC: &str = settings::CIPHER_TOPIC.name;

/// An event-sourced application: a named store of aggregates.
///
/// `Send + Sync` and every method takes `&self`, so one application can be
/// shared by many threads (behind an `Arc`, or by reference in scoped
/// threads).
///
/// ```
/// use annals::prelude::*;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Counter { pub count: u32 }
///
/// #[aggregate]
/// impl Counter {
///     #[event("Started")]
///     pub fn start() -> Self { Counter { count: 0 } }
///     #[event("Incremented")]
///     pub fn increment(&mut self, by: u32) { self.count += by; }
/// }
///
/// let app = Application::builder("Counters").build()?;
/// let mut counter = Counter::start();
/// counter.increment(2);
/// app.save(&mut counter)?;
/// let copy: Counter = app.repository().get(counter.id())?;
/// assert_eq!((copy.count, copy.version()), (2, 2));
/// # Ok::<(), annals::Error>(())
/// ```
pub struct Application {
    name: String,
    recorder: Arc<dyn ProcessRecorder>,
    repository: Repository,
    intervals: HashMap<TypeId, u64>,
    notifier: Notifier,
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("name", &self.name)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// An application configured from environment variables (in memory when
    /// none is set). See [`ApplicationBuilder::from_env`].
    ///
    /// # Errors
    ///
    /// A missing or bad setting ([`Error::Config`], naming the variable),
    /// or a store that cannot be opened: see [`ApplicationBuilder::build`].
    pub fn new(name: &str) -> Result<Self> {
        Self::builder(name).from_env()?.build()
    }

    /// A builder, to configure the application in code (see
    /// [`ApplicationBuilder`]).
    pub fn builder(name: &str) -> ApplicationBuilder {
        ApplicationBuilder {
            name: name.to_owned(),
            persistence: Persistence::Memory,
            compressor: None,
            cipher_key: None,
            cipher_bound: true,
            snapshotting: false,
            intervals: HashMap::new(),
            cache_size: 0,
            hash_chain: false,
            codec: Codec::Annals,
            errors: Vec::new(),
        }
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stores the pending events of one aggregate (`&mut dog`) or of several
    /// (`(&mut dog, &mut cat)`, `&mut [dog1, dog2][..]`, `vec![&mut a, &mut
    /// b]`), atomically: all of them or none. On success the aggregates'
    /// pending events are cleared, the cache (if any) is updated, and a
    /// snapshot is taken of each aggregate whose snapshot interval was
    /// reached; on error nothing was stored and the pending events are
    /// kept. Returns the notification ids given to the stored events.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when another writer stored an event of one of
    /// the aggregates at a version this save wanted (reload and retry, as
    /// [`execute`](Self::execute) does); [`Error::Encode`] when an event
    /// does not serialize; store errors ([`Error::Persistence`]). Nothing
    /// is stored then.
    pub fn save<S: Save>(&self, aggregates: S) -> Result<Vec<u64>> {
        self.save_with(aggregates, Metadata::default())
    }

    /// Like [`save`](Self::save), giving `metadata`'s correlation and
    /// causation ids to the pending events that have none (a command sets
    /// the correlation id; processing an event sets
    /// [`Metadata::caused_by`] it).
    ///
    /// # Errors
    ///
    /// As [`save`](Self::save).
    pub fn save_with<S: Save>(&self, aggregates: S, metadata: Metadata) -> Result<Vec<u64>> {
        self.store_pending(aggregates, metadata, None)
    }

    /// Like [`save`](Self::save), and runs `writes` in the same database
    /// transaction, right after the events are inserted: the
    /// application's own tables (a read model, an outbox, a search index)
    /// are written through the [`StoreTx`] it is lent, and are stored with
    /// the events or not at all. `writes` runs even when no event is
    /// pending.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug)]
    /// # pub struct Dog { pub name: String }
    /// # #[aggregate]
    /// # impl Dog {
    /// #     #[event("Registered")]
    /// #     pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// use annals::persistence::StoreTx;
    ///
    /// # let dir = std::env::temp_dir().join(format!("annals-doc-{}", Uuid::new_v4()));
    /// # std::fs::create_dir_all(&dir).map_err(annals::Error::user)?;
    /// # let db = dir.join("kennel.db").to_string_lossy().into_owned();
    /// let app = Application::builder("Kennel").sqlite(db).build()?;
    /// let register = |name: &str| {
    ///     let mut dog = Dog::register(name.into());
    ///     let id = dog.id().to_string();
    ///     let name = name.to_owned();
    ///     app.save_and_write(&mut dog, |tx: &mut StoreTx<'_>| {
    ///         let conn = tx.sqlite()?;
    ///         conn.execute_batch("CREATE TABLE IF NOT EXISTS names (name TEXT UNIQUE, id TEXT)")
    ///             .map_err(annals::Error::user)?;
    ///         conn.execute("INSERT INTO names VALUES (?1, ?2)", [&name, &id])
    ///             .map_err(annals::Error::user)?;
    ///         Ok(())
    ///     })
    ///     .map(|_| dog)
    /// };
    /// let fido = register("Fido")?;
    /// // The name is taken: the second dog's events are not stored either.
    /// let error = register("Fido").unwrap_err();
    /// assert!(matches!(error, annals::Error::User(_)), "{error}");
    /// assert_eq!(app.last_notification_id()?, Some(1));
    /// # let _ = fido;
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`save`](Self::save) (a conflict is returned before `writes`
    /// runs); the error of `writes`, as it is (nothing of the save is
    /// stored then); [`Error::Config`] naming `PERSISTENCE_MODULE` when the
    /// store has no transaction to lend (memory, objects: see
    /// [`ProcessRecorder::insert_events_with`]).
    pub fn save_and_write<S: Save>(
        &self,
        aggregates: S,
        mut writes: impl FnMut(&mut StoreTx<'_>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        self.store_pending(aggregates, Metadata::default(), Some(&mut writes))
    }

    /// Encodes and stores the pending events of `aggregates` (with
    /// `writes` in the same transaction, if given), then does what follows
    /// a save: clears them, updates the cache, takes due snapshots, wakes
    /// in-process followers.
    fn store_pending<S: Save>(
        &self,
        mut aggregates: S,
        metadata: Metadata,
        writes: Option<&mut UserWrites<'_>>,
    ) -> Result<Vec<u64>> {
        let span = tracing::debug_span!(
            "save",
            application = self.name.as_str(),
            aggregate = tracing::field::Empty,
            id = tracing::field::Empty,
            first_version = tracing::field::Empty,
            last_version = tracing::field::Empty,
            events = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
            first_notification_id = tracing::field::Empty,
            last_notification_id = tracing::field::Empty,
        );
        let _entered = span.enter();
        let mut stored = Encoded::default();
        aggregates.encode_pending(self.mapper(), &metadata, &mut stored)?;
        if !span.is_disabled() {
            stored.record(&span, metadata.correlation_id);
        }
        let inserted = match writes {
            None if stored.events.is_empty() => return Ok(Vec::new()),
            None => self.recorder.insert_events(&stored.events),
            Some(writes) => self
                .recorder
                .insert_events_with(&stored.events, None, writes),
        };
        let ids = inserted.map_err(|e| stored.explain(e))?;
        if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
            span.record("first_notification_id", first);
            span.record("last_notification_id", last);
        }
        aggregates.saved(self);
        self.notifier.notify();
        Ok(ids)
    }

    /// Raised after every save (and every processed notification of a
    /// process application) in this process: what in-process followers
    /// wait on.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The repository, to get aggregates back.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The snapshot store, when snapshotting is enabled (see
    /// [`Snapshots`]).
    pub fn snapshots(&self) -> Option<&Snapshots> {
        self.repository.snapshots.as_ref()
    }

    /// The current state of aggregate `id` (from the cache, the newest
    /// snapshot and the events after it): `app.get::<Dog>(id)`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it has no events or was discarded; store
    /// and decoding errors.
    pub fn get<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<A> {
        self.repository.get(id)
    }

    /// The state of aggregate `id` as it was at `version`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it did not exist yet, or was discarded by
    /// then; store and decoding errors.
    pub fn get_at<A: Aggregate>(&self, id: impl Into<A::Id>, version: u64) -> Result<A> {
        self.repository.get_at(id, version)
    }

    /// The state of aggregate `id` as it was at `timestamp`: its events in
    /// version order up to the first one stamped later than `timestamp`,
    /// replayed from the first (no cache, no snapshot); see
    /// [`Repository::get_as_of`].
    ///
    /// ```
    /// use annals::clock::{set_thread_clock, FixedClock};
    /// use annals::prelude::*;
    /// use annals::Timestamp;
    ///
    /// #[aggregate]
    /// #[derive(Debug)]
    /// pub struct Account { pub balance: i64 }
    ///
    /// #[aggregate]
    /// impl Account {
    ///     #[event("Opened")]
    ///     pub fn open() -> Self { Account { balance: 0 } }
    ///     #[event("Deposited")]
    ///     pub fn deposit(&mut self, amount: i64) { self.balance += amount; }
    /// }
    ///
    /// let at = |t: &str| -> Timestamp { t.parse().unwrap() };
    /// let app = Application::builder("Bank").build()?;
    /// let mut account = {
    ///     let _clock = set_thread_clock(FixedClock(at("2026-05-01T08:00:00Z")));
    ///     Account::open()
    /// };
    /// for (day, amount) in [("2026-05-02", 10), ("2026-05-03", 5)] {
    ///     let _clock = set_thread_clock(FixedClock(at(&format!("{day}T08:00:00Z"))));
    ///     account.deposit(amount);
    /// }
    /// app.save(&mut account)?;
    ///
    /// let then: Account = app.get_as_of(account.id(), at("2026-05-02T23:59:59Z"))?;
    /// assert_eq!((then.balance, then.version()), (10, 2));
    /// let opened = app.get_as_of::<Account>(account.id(), at("2026-05-01T08:00:00Z"))?;
    /// assert_eq!(opened.balance, 0);
    /// let early = app.get_as_of::<Account>(account.id(), at("2026-04-30T08:00:00Z"));
    /// assert!(early.unwrap_err().is_not_found());
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it did not exist yet (`timestamp` is before
    /// its creation event's) or was discarded by then; store and decoding
    /// errors ([`Error::Integrity`] for a broken hash chain).
    pub fn get_as_of<A: Aggregate>(&self, id: impl Into<A::Id>, timestamp: Timestamp) -> Result<A> {
        self.repository.get_as_of(id, timestamp)
    }

    /// Whether aggregate `id` exists (stored and not discarded), answered
    /// from the stream's last event alone.
    ///
    /// # Errors
    ///
    /// Store and decoding errors; a stream of another aggregate type.
    pub fn contains<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<bool> {
        self.repository.contains::<A>(id)
    }

    /// Loads aggregate `id`, runs `command` on it and saves what it
    /// recorded; on a conflict (another writer saved the aggregate
    /// meanwhile) loads it again and reruns the command, up to 3 times in
    /// all. The command's own error is returned as
    /// [`CommandError::Rejected`], typed; nothing is saved then.
    ///
    /// ```
    /// use annals::prelude::*;
    /// use annals::CommandError;
    ///
    /// #[aggregate]
    /// #[derive(Debug)]
    /// pub struct Account { pub balance: i64 }
    ///
    /// #[aggregate]
    /// impl Account {
    ///     #[event("Opened")]
    ///     pub fn open() -> Self { Account { balance: 0 } }
    ///     #[event("Deposited")]
    ///     fn deposited(&mut self, amount: i64) { self.balance += amount; }
    ///     pub fn deposit(&mut self, amount: i64) -> Result<(), String> {
    ///         if amount <= 0 {
    ///             return Err(format!("cannot deposit {amount}"));
    ///         }
    ///         self.deposited(amount);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let app = Application::builder("Bank").build()?;
    /// let mut account = Account::open();
    /// app.save(&mut account)?;
    /// app.execute(account.id(), |a: &mut Account| a.deposit(10))?;
    /// let refused = app.execute(account.id(), |a: &mut Account| a.deposit(-5));
    /// assert!(matches!(refused, Err(CommandError::Rejected(why)) if why == "cannot deposit -5"));
    /// assert_eq!(app.get::<Account>(account.id())?.balance, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`CommandError::Rejected`] with the command's error;
    /// [`CommandError::Failed`] when loading or saving failed (a conflict
    /// on every try included).
    pub fn execute<A, T, E, F>(
        &self,
        id: impl Into<A::Id>,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E>,
    {
        self.execute_with_retries(id, COMMAND_TRIES, command)
    }

    /// Like [`execute`](Self::execute), trying at most `tries` times (at
    /// least once).
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn execute_with_retries<A, T, E, F>(
        &self,
        id: impl Into<A::Id>,
        tries: u32,
        mut command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E>,
    {
        let id = id.into();
        let span = tracing::debug_span!(
            "execute",
            application = self.name.as_str(),
            aggregate = A::NAME,
            id = %id,
            attempt = tracing::field::Empty,
        );
        let _entered = span.enter();
        let mut tried = 0;
        loop {
            tried += 1;
            span.record("attempt", tried);
            let mut aggregate: A = self.repository.get(id.clone())?;
            let value = command(&mut aggregate).map_err(CommandError::Rejected)?;
            match self.save(&mut aggregate) {
                Ok(_) => return Ok(value),
                Err(e) if e.is_conflict() && tried < tries.max(1) => {
                    tracing::info!(aggregate = A::NAME, id = %id, tried, "conflict; retrying the command");
                }
                Err(e) => return Err(CommandError::Failed(e)),
            }
        }
    }

    /// Stores a snapshot of aggregate `id` at its current version. Needs
    /// snapshotting enabled and an aggregate struct that derives
    /// `Serialize` and `Deserialize`.
    ///
    /// # Errors
    ///
    /// Snapshotting is off ([`Error::Config`]), the aggregate is not found,
    /// or the store failed.
    pub fn take_snapshot<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<()> {
        let snapshots = self.snapshots_enabled()?;
        snapshots.store(&self.repository.get::<A>(id)?)
    }

    /// Stores a snapshot of aggregate `id` as it was at `version`.
    ///
    /// # Errors
    ///
    /// As [`take_snapshot`](Self::take_snapshot).
    pub fn take_snapshot_at<A: Aggregate>(&self, id: impl Into<A::Id>, version: u64) -> Result<()> {
        let snapshots = self.snapshots_enabled()?;
        snapshots.store(&self.repository.get_at::<A>(id, version)?)
    }

    fn snapshots_enabled(&self) -> Result<&Snapshots> {
        self.snapshots().ok_or_else(|| {
            Error::config(
                IS_SNAPSHOTTING_ENABLED,
                "snapshotting is not enabled for this application",
            )
        })
    }

    /// The application's recorder.
    pub fn recorder(&self) -> &Arc<dyn ProcessRecorder> {
        &self.recorder
    }

    /// The mapper that encodes and decodes this application's events.
    pub fn mapper(&self) -> &Mapper {
        &self.repository.mapper
    }

    /// Up to `limit` notifications of this application's log, from id
    /// `start` on.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn notifications(&self, start: u64, limit: usize) -> Result<Vec<Notification>> {
        self.recorder
            .select_notifications(&NotificationQuery::new(start, limit))
    }

    /// The notifications `query` selects (start, limit, stop, topics), in
    /// id order.
    ///
    /// ```
    /// use annals::persistence::NotificationQuery;
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug)]
    /// # pub struct Note { pub text: String }
    /// # #[aggregate]
    /// # impl Note {
    /// #     #[event("Written")]
    /// #     pub fn write(text: String) -> Self { Note { text } }
    /// #     #[event("Edited")]
    /// #     pub fn edit(&mut self, text: String) { self.text = text; }
    /// # }
    /// let app = Application::builder("Notes").build()?;
    /// assert_eq!(app.last_notification_id()?, None);
    /// let mut note = Note::write("hello".into());
    /// note.edit("hello, world".into());
    /// app.save(&mut note)?;
    /// let edits = app.select_notifications(&NotificationQuery::new(1, 10).topics(["Note.Edited"]))?;
    /// assert_eq!(edits.iter().map(|n| n.id).collect::<Vec<_>>(), [2]);
    /// assert_eq!(app.last_notification_id()?, Some(2));
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        self.recorder.select_notifications(query)
    }

    /// The id of the newest notification; `None` while the log is empty.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn last_notification_id(&self) -> Result<Option<u64>> {
        Ok(Some(self.recorder.max_notification_id()?).filter(|&id| id > 0))
    }

    /// A reader that pages through the whole log (see
    /// [`NotificationLogReader`]).
    pub fn log_reader(&self) -> NotificationLogReader {
        NotificationLogReader::new(self)
    }

    /// A catch-up subscription to the log from id `start` on (only
    /// `topics`, unless empty): an iterator that yields what is stored,
    /// then waits for new events (woken by saves in this process and by
    /// the store's watcher), until its [`Stopper`](crate::log::Stopper)
    /// stops it.
    ///
    /// # Errors
    ///
    /// The store's watcher cannot start (PostgreSQL: no `LISTEN`
    /// connection).
    pub fn subscribe(&self, start: u64, topics: &[&str]) -> Result<Subscription> {
        Subscription::new(self, start, topics)
    }

    /// The events of aggregate `id`, its history and then each new one as
    /// it is stored, by any process: an iterator until stopped (see
    /// [`Changes`](crate::log::Changes) for an example). For every saved
    /// event of every aggregate, see [`subscribe`](Self::subscribe).
    ///
    /// # Errors
    ///
    /// As [`Changes::new`](crate::log::Changes::new).
    pub fn changes<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<crate::log::Changes<A>> {
        crate::log::Changes::new(self, &id.into())
    }

    /// Checks the hash chain of aggregate `id`'s stream, event by event:
    /// versions without gaps, every state readable, every recorded hash
    /// the hash of its event and of the one before. Needs hash chaining on.
    /// A broken chain is not an error: it is [`Verification::Broken`].
    ///
    /// See [`Verification`] for an example.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (naming `IS_HASH_CHAINING_ENABLED`) when hash
    /// chaining is off; store errors.
    pub fn verify<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<Verification> {
        if !self.mapper().hash_chain() {
            return Err(Error::config(
                IS_HASH_CHAINING_ENABLED,
                "hash chaining is not enabled for this application",
            ));
        }
        let id = id.into();
        let events = self
            .recorder
            .select_events(&id.to_stored(), &EventQuery::all())?;
        let mut prev = None;
        for (expected, stored) in (A::INITIAL_VERSION..).zip(&events) {
            if stored.originator_version != expected {
                return Ok(Verification::Broken {
                    version: expected,
                    reason: format!(
                        "version {expected} is missing (the next stored version is {})",
                        stored.originator_version
                    ),
                });
            }
            if let Err(e) = self.mapper().decode_link::<A>(stored, &mut prev) {
                let reason = match e {
                    Error::Integrity { message, .. } => message,
                    other => other.to_string(),
                };
                return Ok(Verification::Broken {
                    version: stored.originator_version,
                    reason,
                });
            }
        }
        Ok(Verification::Intact {
            events: events.len() as u64,
        })
    }

    /// After a save: cache and snapshot `aggregate` as configured.
    fn saved_aggregate<A: Aggregate>(&self, aggregate: &mut A) {
        let pending = forget_pending(aggregate);
        let Some(first) = pending.first() else {
            return;
        };
        if let Some(cache) = &self.repository.cache {
            cache.put(&*aggregate);
        }
        let (Some(snapshots), Some(interval)) =
            (self.snapshots(), self.intervals.get(&TypeId::of::<A>()))
        else {
            return;
        };
        // Count events from the first: with an interval of 5, snapshots
        // are due at the 5th, 10th, ... event.
        let before = first.originator_version - A::INITIAL_VERSION;
        let after = aggregate.version() - A::INITIAL_VERSION + 1;
        if after / interval > before / interval && !aggregate.is_discarded() {
            if let Err(e) = snapshots.store(&*aggregate) {
                // The events are stored; only the shortcut is missing.
                tracing::warn!(aggregate = A::NAME, id = %aggregate.id(), error = %e.report(), "snapshot not stored");
            }
        }
    }
}

/// The user's writes to their own tables, run in a save's transaction.
type UserWrites<'w> = dyn FnMut(&mut StoreTx<'_>) -> Result<()> + 'w;

/// How many times [`Application::execute`] tries a command.
pub(crate) const COMMAND_TRIES: u32 = 3;

/// Why [`Application::execute`] did not carry out a command: the command
/// refused (its own error, typed), or annals failed.
///
/// ```
/// use annals::prelude::*;
/// use annals::CommandError;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Account { pub balance: i64 }
///
/// #[aggregate]
/// impl Account {
///     #[event("Opened")]
///     pub fn open() -> Self { Account { balance: 10 } }
///     #[event("Withdrawn")]
///     fn withdrawn(&mut self, amount: i64) { self.balance -= amount; }
///     pub fn withdraw(&mut self, amount: i64) -> Result<(), String> {
///         if amount > self.balance {
///             return Err("insufficient funds".into());
///         }
///         self.withdrawn(amount);
///         Ok(())
///     }
/// }
///
/// let app = Application::builder("Bank").build()?;
/// let mut account = Account::open();
/// app.save(&mut account)?;
/// match app.execute(account.id(), |a: &mut Account| a.withdraw(50)) {
///     Ok(()) => unreachable!("the balance is 10"),
///     Err(CommandError::Rejected(why)) => assert_eq!(why, "insufficient funds"),
///     Err(CommandError::Failed(e)) => return Err(e.into()),
/// }
/// // A missing aggregate is a failure of annals, not of the command.
/// let missing = app.execute(Uuid::new_v4(), |a: &mut Account| a.withdraw(5));
/// assert!(matches!(missing, Err(CommandError::Failed(e)) if e.is_not_found()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The command returned its error: nothing was saved.
    #[error("the command was rejected: {0}")]
    Rejected(E),
    /// Loading or saving failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// What [`Application::verify`] found.
///
/// ```
/// # use annals::prelude::*;
/// # #[aggregate]
/// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// # pub struct Dog { pub name: String, pub tricks: Vec<String> }
/// # #[aggregate]
/// # impl Dog {
/// #     #[event("Registered")]
/// #     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
/// #     #[event("TrickAdded")]
/// #     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
/// # }
/// let app = Application::builder("Kennel").hash_chain(true).build()?;
/// let mut dog = Dog::register("Fido".into());
/// dog.add_trick("sit".into());
/// app.save(&mut dog)?;
/// match app.verify::<Dog>(dog.id())? {
///     annals::Verification::Intact { events } => assert_eq!(events, 2),
///     annals::Verification::Broken { version, reason } => panic!("broken at {version}: {reason}"),
/// }
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every link holds.
    Intact {
        /// How many events were checked.
        events: u64,
    },
    /// The first event whose link does not hold.
    Broken {
        /// Its version.
        version: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Configures an [`Application`] in code, from the environment, or both
/// (settings made after [`from_env`](Self::from_env) win). `Debug` never
/// shows the cipher key.
///
/// Settings are checked by [`build`](Self::build): the builder's methods
/// never fail, and the first bad setting is `build`'s error.
///
/// ```
/// use annals::prelude::*;
/// use annals::mapper::Compressor;
///
/// let app = Application::builder("Kennel")
///     .sqlite(":memory:")                      // or .memory(), .postgres(config), .store(..)
///     .compressor(Some(Compressor::Zlib))      // zlib, then
///     .cipher_key(annals::cipher::create_key()) // AES-GCM
///     .hash_chain(true)
///     .cache(1_000)
///     .build()?;
/// assert_eq!(app.name(), "Kennel");
/// assert!(app.mapper().hash_chain());
/// # Ok::<(), annals::Error>(())
/// ```
#[must_use]
pub struct ApplicationBuilder {
    name: String,
    persistence: Persistence,
    compressor: Option<Compressor>,
    cipher_key: Option<(String, String)>,
    cipher_bound: bool,
    snapshotting: bool,
    intervals: HashMap<TypeId, u64>,
    cache_size: usize,
    hash_chain: bool,
    codec: Codec,
    errors: Vec<Error>,
}

impl fmt::Debug for ApplicationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationBuilder")
            .field("name", &self.name)
            .field("persistence", &self.persistence)
            .field("compressor", &self.compressor)
            .field("cipher_key", &self.cipher_key.as_ref().map(|_| "***"))
            .field("snapshotting", &self.snapshotting)
            .field("cache_size", &self.cache_size)
            .field("hash_chain", &self.hash_chain)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl ApplicationBuilder {
    /// Reads the settings from the process environment (see [`crate::env`]
    /// and [`with_env`](Self::with_env)).
    ///
    /// # Errors
    ///
    /// As [`with_env`](Self::with_env).
    pub fn from_env(self) -> Result<Self> {
        let env = Env::from_process(&self.name);
        self.with_env(&env)
    }

    /// Reads the settings from `env`: `PERSISTENCE_MODULE` and the store's
    /// settings, `COMPRESSOR_TOPIC`, `CIPHER_KEY` (and `CIPHER_TOPIC`),
    /// `IS_SNAPSHOTTING_ENABLED`, `AGGREGATE_CACHE_MAXSIZE`,
    /// `IS_HASH_CHAINING_ENABLED` (the table is [`settings::ALL`]). Settings
    /// `env` does not have keep the builder's values.
    ///
    /// ```
    /// use annals::env::Env;
    /// use annals::prelude::*;
    ///
    /// let env = Env::from_map("Kennel", [
    ///     ("PERSISTENCE_MODULE", "sqlite"),
    ///     ("KENNEL_SQLITE_DBNAME", ":memory:"), // the prefixed name wins
    ///     ("SQLITE_DBNAME", "elsewhere.db"),
    ///     ("IS_HASH_CHAINING_ENABLED", "yes"),
    /// ]);
    /// let app = Application::builder("Kennel").with_env(&env)?.build()?;
    /// assert!(app.mapper().hash_chain());
    ///
    /// let bad = Env::from_map("Kennel", [("AGGREGATE_CACHE_MAXSIZE", "lots")]);
    /// let err = Application::builder("Kennel").with_env(&bad).unwrap_err();
    /// assert!(matches!(err, annals::Error::Config { setting, .. } if setting == "AGGREGATE_CACHE_MAXSIZE"));
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable as it was found: an unknown
    /// `PERSISTENCE_MODULE`, a store setting that is missing
    /// (`SQLITE_DBNAME`, `POSTGRES_DBNAME`) or bad, an unknown
    /// `COMPRESSOR_TOPIC` or `CIPHER_TOPIC`, a value that does not parse (a
    /// number, a yes/no flag). A bad `CIPHER_KEY` is found by
    /// [`build`](Self::build).
    pub fn with_env(mut self, env: &Env) -> Result<Self> {
        if let Some(persistence) = Persistence::from_env(env)? {
            self.persistence = persistence;
        }
        if let Some(compressor) = Compressor::from_env(env)? {
            self.compressor = Some(compressor);
        }
        if let Some((var, topic)) = env.get(CIPHER_TOPIC) {
            cipher::check_topic(&var, &topic)?;
        }
        if let Some(key) = env.get(cipher::CIPHER_KEY) {
            self.cipher_key = Some(key);
        }
        if let Some(bound) = env.flag(settings::CIPHER_ASSOCIATED_DATA.name)? {
            self.cipher_bound = bound;
        }
        if let Some(enabled) = env.flag(IS_SNAPSHOTTING_ENABLED)? {
            self.snapshotting = enabled;
        }
        if let Some(size) = env.parse::<usize>(AGGREGATE_CACHE_MAXSIZE)? {
            self.cache_size = size;
        }
        if let Some(on) = env.flag(IS_HASH_CHAINING_ENABLED)? {
            self.hash_chain = on;
        }
        if env.get(crate::mapper::CODEC).is_some() {
            self.codec = Codec::from_env(env)?;
        }
        Ok(self)
    }

    /// Keeps events in memory.
    pub fn memory(self) -> Self {
        self.persistence(Persistence::Memory)
    }

    /// Keeps events in the SQLite database `dbname` (a file path or
    /// `:memory:`), with default settings (for others, pass a
    /// [`SqliteConfig`] to [`store`](Self::store)). The database is opened
    /// by [`build`](Self::build).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// # pub struct Dog { pub name: String, pub tricks: Vec<String> }
    /// # #[aggregate]
    /// # impl Dog {
    /// #     #[event("Registered")]
    /// #     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
    /// #     #[event("TrickAdded")]
    /// #     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
    /// # }
    /// let app = Application::builder("Kennel").sqlite(":memory:").build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// app.save(&mut dog)?;
    /// assert_eq!(app.get::<Dog>(dog.id())?.name, "Fido");
    /// # Ok::<(), annals::Error>(())
    /// ```
    #[cfg(feature = "sqlite")]
    pub fn sqlite(self, dbname: impl Into<String>) -> Self {
        self.persistence(Persistence::Sqlite(SqliteConfig::new(dbname)))
    }

    /// Keeps events in PostgreSQL, in tables named after the application
    /// (`kennel_events`, ...). The server is connected to, and the tables
    /// created, by [`build`](Self::build).
    ///
    /// ```no_run
    /// use annals::persistence::postgres::PostgresConfig;
    /// use annals::prelude::*;
    ///
    /// let mut config = PostgresConfig::new("test"); // 127.0.0.1:5432, user postgres
    /// config.pool_size = 10;
    /// let app = Application::builder("Kennel").postgres(config).build()?;
    /// # Ok::<(), annals::Error>(())
    /// ```
    #[cfg(feature = "postgres")]
    pub fn postgres(self, config: PostgresConfig) -> Self {
        self.persistence(Persistence::Postgres(config))
    }

    /// Keeps events in `store` (a store of the user's own, or any built-in
    /// store's settings: [`SqliteConfig`], [`PostgresConfig`]). It is
    /// opened by [`build`](Self::build). See [`Store`] for a store of one's
    /// own.
    ///
    /// ```
    /// use annals::persistence::sqlite::SqliteConfig;
    /// use annals::prelude::*;
    ///
    /// let mut config = SqliteConfig::new(":memory:");
    /// config.table_prefix = Some("kennel".into()); // kennel_events, ...
    /// let app = Application::builder("Kennel").store(config).build()?;
    /// assert_eq!(app.last_notification_id()?, None);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn store(self, store: impl Store + 'static) -> Self {
        self.persistence(Persistence::store(store))
    }

    /// Keeps events where `persistence` says.
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// Keeps events in the given recorder (snapshots then stay in memory).
    pub fn recorder(self, recorder: Arc<dyn ProcessRecorder>) -> Self {
        self.persistence(Persistence::Recorder(recorder))
    }

    /// Keeps events and snapshots in the stores of `other`: a second
    /// application on the same data. Snapshotting is on if it is on in
    /// `other`; other settings, such as the cipher key, are not copied.
    pub fn stores_of(mut self, other: &Application) -> Self {
        self.snapshotting = other.snapshots().is_some();
        let snapshots = other.snapshots().map_or_else(
            || Arc::new(MemoryRecorder::new()) as Arc<dyn AggregateRecorder>,
            |s| s.recorder().clone(),
        );
        self.persistence(Persistence::Recorders(other.recorder().clone(), snapshots))
    }

    /// Compresses the state of stored events and snapshots (`None`: no
    /// compression). Events stored compressed are read only by an
    /// application that compresses too.
    ///
    /// ```
    /// use annals::mapper::Compressor;
    /// use annals::prelude::*;
    ///
    /// let app = Application::builder("Kennel").compressor(Some(Compressor::Zlib)).build()?;
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn compressor(mut self, compressor: Option<Compressor>) -> Self {
        self.compressor = compressor;
        self
    }

    /// Encrypts the state of stored events and snapshots with AES-GCM under
    /// `key` (base64 of 16, 24 or 32 bytes; see [`cipher::create_key`]). A
    /// bad key makes [`build`](Self::build) fail, naming `CIPHER_KEY`.
    ///
    /// ```
    /// use annals::prelude::*;
    ///
    /// let key = annals::cipher::create_key(); // keep it: without it the events are unreadable
    /// let app = Application::builder("Kennel").cipher_key(key).build()?;
    ///
    /// let err = Application::builder("Kennel").cipher_key("c2hvcnQ=").build().unwrap_err();
    /// assert!(matches!(err, annals::Error::Config { setting, .. } if setting == "CIPHER_KEY"));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn cipher_key(mut self, key: impl Into<String>) -> Self {
        self.cipher_key = Some((cipher::CIPHER_KEY.to_owned(), key.into()));
        self
    }

    /// Whether each ciphertext is bound to its event (the default: a state
    /// moved into another event does not decrypt); `false` for the Python
    /// library's layout and for stores annals wrote before it bound them
    /// (`CIPHER_ASSOCIATED_DATA`).
    pub fn cipher_associated_data(mut self, bound: bool) -> Self {
        self.cipher_bound = bound;
        self
    }

    /// Turns the snapshot store on or off.
    pub fn snapshotting(mut self, enabled: bool) -> Self {
        self.snapshotting = enabled;
        self
    }

    /// Takes a snapshot of aggregates of type `A` every `interval` events
    /// (at versions 5, 10, ... for 5), when they are saved. Turns
    /// snapshotting on. `A`'s struct must derive `Serialize` and
    /// `Deserialize`: if it does not, or `interval` is 0,
    /// [`build`](Self::build) fails ([`Error::Config`]).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// # pub struct Dog { pub name: String, pub tricks: Vec<String> }
    /// # #[aggregate]
    /// # impl Dog {
    /// #     #[event("Registered")]
    /// #     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
    /// #     #[event("TrickAdded")]
    /// #     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
    /// # }
    /// let app = Application::builder("Kennel").snapshot_every::<Dog>(2).build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// dog.add_trick("sit".into());
    /// dog.add_trick("roll over".into());
    /// app.save(&mut dog)?; // versions 1 to 3: the 2nd event is due
    /// let snapshots = app.snapshots().expect("snapshot_every turns snapshots on");
    /// assert_eq!(snapshots.versions::<Dog>(dog.id())?, [3]);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn snapshot_every<A: Aggregate>(mut self, interval: u64) -> Self {
        if !A::SNAPSHOTS {
            self.errors.push(Error::config(
                "snapshot interval",
                format!(
                    "{} cannot be snapshotted: derive Serialize and Deserialize on it",
                    A::NAME
                ),
            ));
        } else if interval == 0 {
            self.errors.push(Error::config(
                "snapshot interval",
                format!("the snapshot interval of {} must be at least 1", A::NAME),
            ));
        }
        self.intervals.insert(TypeId::of::<A>(), interval);
        self.snapshotting = true;
        self
    }

    /// Chains each stream's events by hash (see [`Application::verify`],
    /// and [`Verification`] for an example). Turn it on for new stores:
    /// events stored without it have no hash.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// let app = Application::builder("Kennel").hash_chain(true).build()?;
    /// assert!(app.mapper().hash_chain());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn hash_chain(mut self, on: bool) -> Self {
        self.hash_chain = on;
        self
    }

    /// Writes events and snapshots in `codec`'s format: annals' own (the
    /// default) or the Python library's, for a store shared with Python
    /// applications (see [`Codec`] and `docs/howto/python.md`). Both are
    /// read whichever is chosen.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// use annals::mapper::Codec;
    /// let app = Application::builder("TrainingSchool").codec(Codec::Python).build()?;
    /// assert_eq!(app.mapper().codec(), Codec::Python);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Keeps up to `max_size` aggregates in an LRU cache (0: no cache).
    /// Aggregates whose struct does not derive `Clone` are not cached.
    /// [`get`](Application::get) then replays only the events stored
    /// after the cached copy (another process's saves are still seen).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// # pub struct Dog { pub name: String, pub tricks: Vec<String> }
    /// # #[aggregate]
    /// # impl Dog {
    /// #     #[event("Registered")]
    /// #     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
    /// #     #[event("TrickAdded")]
    /// #     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
    /// # }
    /// let app = Application::builder("Kennel").cache(100).build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// app.save(&mut dog)?; // cached
    /// let copy: Dog = app.get(dog.id())?; // from the cache: a copy
    /// assert_eq!(copy.name, "Fido");
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn cache(mut self, max_size: usize) -> Self {
        self.cache_size = max_size;
        self
    }

    /// Creates (or upgrades: a single-row tracking table gets its
    /// migration row, a sequence behind its rows is moved on) every table
    /// the application's store uses, whatever `CREATE_TABLE` says, and
    /// closes it: the migrate step of a deployment that runs with
    /// `CREATE_TABLE=no`. Run it for each application of a system (its
    /// followers included) before starting them. The SQL itself is
    /// [`PostgresConfig::ddl`] and [`SqliteConfig::ddl`].
    ///
    /// ```
    /// # use annals::prelude::*;
    /// let dir = std::env::temp_dir().join(format!("annals-migrate-{}", Uuid::new_v4()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let file = dir.join("school.db").to_string_lossy().into_owned();
    /// let env = annals::env::Env::from_map("School", [
    ///     ("PERSISTENCE_MODULE", "sqlite"),
    ///     ("SQLITE_DBNAME", file.as_str()),
    ///     ("CREATE_TABLE", "no"),
    /// ]);
    /// Application::builder("School").with_env(&env)?.migrate()?;
    /// let app = Application::builder("School").with_env(&env)?.build()?;
    /// assert_eq!(app.last_notification_id()?, None); // the tables are there
    /// # std::fs::remove_dir_all(dir).ok();
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn migrate(mut self) -> Result<()> {
        self.persistence = self.persistence.creating_tables();
        self.build().map(drop)
    }

    /// The application: opens the store (creating its tables unless told
    /// not to) and checks every setting.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for the first bad setting: a bad cipher key
    /// (naming `CIPHER_KEY`), a snapshot interval of 0 or for a type that
    /// cannot be snapshotted, a bad store setting (a SQLite table prefix, a
    /// PostgreSQL application name too long for its table names);
    /// [`Error::Persistence`] when the store cannot be opened or prepared
    /// (a file that cannot be opened, a server that cannot be reached).
    pub fn build(mut self) -> Result<Application> {
        if !self.errors.is_empty() {
            return Err(self.errors.swap_remove(0));
        }
        let cipher = self
            .cipher_key
            .map(|(var, key)| {
                Cipher::from_base64(&key).map_err(|e| match e {
                    Error::Config { message, .. } => Error::Config {
                        setting: var,
                        message,
                    },
                    other => other,
                })
            })
            .transpose()?;
        if self.codec == Codec::Python && self.hash_chain {
            return Err(Error::config(
                IS_HASH_CHAINING_ENABLED,
                "the Python codec (CODEC=python) cannot chain hashes: the Python library would not read them; turn one of them off",
            ));
        }
        let mapper = Arc::new(
            Mapper::new()
                .with_codec(self.codec)
                .with_compressor(self.compressor)
                .with_cipher(cipher)
                .with_associated_data(self.cipher_bound)
                .with_hash_chain(self.hash_chain),
        );
        let Recorders {
            events: recorder,
            snapshots: snapshot_recorder,
        } = self.persistence.open(&self.name)?;
        let snapshots = self
            .snapshotting
            .then(|| Snapshots::new(snapshot_recorder, mapper.clone()));
        Ok(Application {
            repository: Repository {
                recorder: recorder.clone(),
                mapper,
                snapshots,
                cache: NonZeroUsize::new(self.cache_size).map(Cache::new),
            },
            name: self.name,
            recorder,
            intervals: self.intervals,
            notifier: Notifier::default(),
        })
    }
}

/// One or several aggregates that [`Application::save`] stores together.
pub trait Save {
    /// Appends the stored form of every pending event to `out`, giving
    /// events without correlation or causation ids those of `metadata`.
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()>;
    /// The events are stored: forget them, update the cache, take due
    /// snapshots.
    fn saved(&mut self, app: &Application);
    /// The events were handed over to be stored in a larger transaction:
    /// forget them (no cache update, no snapshot).
    fn forget_pending(&mut self);
}

/// What a save encodes: the rows, and which aggregates they are of (to say
/// which one a conflict was about).
#[derive(Debug, Default)]
pub struct Encoded {
    pub(crate) events: Vec<StoredEvent>,
    streams: Vec<Stream>,
    /// The first correlation id given to an event, for the save's span.
    correlation_id: Option<uuid::Uuid>,
}

/// One aggregate of a save. Its ids are not kept as strings (two
/// allocations per save): the stored one is in its first row, and the
/// displayed one is made from that for an error or a recording span.
#[derive(Debug)]
struct Stream {
    aggregate: &'static str,
    /// The index in `Encoded::events` of its first row.
    first: usize,
    first_version: u64,
    /// The id as its type displays it, from the stored form.
    display: fn(&str) -> String,
}

impl Stream {
    fn stored_id<'a>(&self, events: &'a [StoredEvent]) -> Option<&'a str> {
        events.get(self.first).map(|e| e.originator_id.as_str())
    }

    fn id(&self, events: &[StoredEvent]) -> Option<String> {
        self.stored_id(events).map(self.display)
    }
}

/// `stored` as `A`'s id type displays it (as stored, if it does not parse).
fn display_id<A: Aggregate>(stored: &str) -> String {
    A::Id::from_stored(stored).map_or_else(|_| stored.to_owned(), |id| id.to_string())
}

impl Encoded {
    /// The rows.
    pub fn events(&self) -> &[StoredEvent] {
        &self.events
    }

    /// Records on a `save` span what is saved: the aggregate type when
    /// there is one, the id and versions when there is one stream, the
    /// number of events and the correlation id (`metadata`'s, else the
    /// first event's).
    fn record(&self, span: &tracing::Span, metadata: Option<uuid::Uuid>) {
        span.record("events", self.events.len());
        if let Some(correlation_id) = metadata.or(self.correlation_id) {
            span.record("correlation_id", tracing::field::display(correlation_id));
        }
        let Some(first) = self.streams.first() else {
            return;
        };
        if self.streams.iter().all(|s| s.aggregate == first.aggregate) {
            span.record("aggregate", first.aggregate);
        }
        if let ([stream], (Some(first), Some(last))) =
            (&self.streams[..], (self.events.first(), self.events.last()))
        {
            if !span.is_disabled() {
                if let Some(id) = stream.id(&self.events) {
                    span.record("id", id.as_str());
                }
            }
            span.record("first_version", first.originator_version);
            span.record("last_version", last.originator_version);
        }
    }

    /// `error`, with the aggregate it is about where that can be told: the
    /// stream the store named, or the one stream saved.
    pub(crate) fn explain(&self, error: Error) -> Error {
        let Error::Conflict {
            aggregate: None,
            id,
            version,
            message,
        } = error
        else {
            return error;
        };
        let stream = match &id {
            Some(stored) => self
                .streams
                .iter()
                .find(|s| s.stored_id(&self.events) == Some(stored.as_str())),
            None if self.streams.len() == 1 => self.streams.first(),
            None => None,
        };
        match stream {
            Some(s) => Error::Conflict {
                aggregate: Some(s.aggregate),
                id: s.id(&self.events),
                version: version.or(Some(s.first_version)),
                message,
            },
            None => Error::Conflict {
                aggregate: None,
                id,
                version,
                message,
            },
        }
    }
}

/// Clears the pending events (they are stored); returns them.
fn forget_pending<A: Aggregate>(aggregate: &mut A) -> Vec<crate::DomainEvent<A>> {
    let meta = aggregate.__meta_mut();
    if let Some(hash) = meta.pending_hash.take() {
        meta.last_hash = Some(hash);
    }
    meta.take_pending()
}

fn encode_aggregate<A: Aggregate>(
    aggregate: &mut A,
    mapper: &Mapper,
    metadata: &Metadata,
    out: &mut Encoded,
) -> Result<()> {
    let meta = aggregate.__meta_mut();
    if let Some(first) = meta.pending.first() {
        out.streams.push(Stream {
            aggregate: A::NAME,
            first: out.events.len(),
            first_version: first.originator_version,
            display: display_id::<A>,
        });
    }
    let mut chain = meta.last_hash;
    for event in &mut meta.pending {
        event.correlation_id = event.correlation_id.or(metadata.correlation_id);
        event.causation_id = event.causation_id.or(metadata.causation_id);
        out.correlation_id = out.correlation_id.or(event.correlation_id);
        out.events.push(mapper.encode_link(event, &mut chain)?);
    }
    meta.pending_hash = if mapper.hash_chain() { chain } else { None };
    Ok(())
}

impl<A: Aggregate> Save for &mut A {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        encode_aggregate(&mut **self, mapper, metadata, out)
    }
    fn saved(&mut self, app: &Application) {
        app.saved_aggregate(&mut **self);
    }
    fn forget_pending(&mut self) {
        forget_pending(&mut **self);
    }
}

impl<A: Aggregate> Save for &mut [A] {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        self.iter_mut()
            .try_for_each(|a| encode_aggregate(a, mapper, metadata, out))
    }
    fn saved(&mut self, app: &Application) {
        for a in self.iter_mut() {
            app.saved_aggregate(a);
        }
    }
    fn forget_pending(&mut self) {
        for a in self.iter_mut() {
            forget_pending(a);
        }
    }
}

impl<S: Save> Save for Vec<S> {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        self.iter_mut()
            .try_for_each(|s| s.encode_pending(mapper, metadata, out))
    }
    fn saved(&mut self, app: &Application) {
        for s in self.iter_mut() {
            s.saved(app);
        }
    }
    fn forget_pending(&mut self) {
        self.iter_mut().for_each(Save::forget_pending);
    }
}

macro_rules! save_tuple {
    ($($s:ident $i:tt),+) => {
        impl<$($s: Save),+> Save for ($($s,)+) {
            fn encode_pending(
                &mut self,
                mapper: &Mapper,
                metadata: &Metadata,
                out: &mut Encoded,
            ) -> Result<()> {
                $(self.$i.encode_pending(mapper, metadata, out)?;)+
                Ok(())
            }
            fn saved(&mut self, app: &Application) {
                $(self.$i.saved(app);)+
            }
            fn forget_pending(&mut self) {
                $(self.$i.forget_pending();)+
            }
        }
    };
}

/// Aggregates of any types, gathered at run time, saved together:
/// `app.save(batch)` stores all of their events in one transaction.
///
/// ```
/// use annals::prelude::*;
/// use annals::application::Batch;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Cat { pub name: String }
/// #[aggregate]
/// impl Cat {
///     #[event("Adopted")]
///     pub fn adopt(name: String) -> Self { Cat { name } }
/// }
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Bowl { pub size: u8 }
/// #[aggregate]
/// impl Bowl {
///     #[event("Bought")]
///     pub fn buy(size: u8) -> Self { Bowl { size } }
/// }
///
/// let app = Application::builder("Home").build()?;
/// let mut cats: Vec<Cat> = ["Tom", "Kit"].map(|n| Cat::adopt(n.into())).into();
/// let mut bowl = Bowl::buy(2);
/// let mut batch = Batch::new();
/// for cat in &mut cats {
///     batch.push(cat);
/// }
/// batch.push(&mut bowl);
/// assert_eq!(app.save(batch)?.len(), 3);
/// assert!(app.contains::<Bowl>(bowl.id())?);
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Default)]
#[must_use = "a batch stores nothing until it is saved"]
pub struct Batch<'a> {
    members: Vec<Box<dyn Save + 'a>>,
}

impl fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("members", &self.members.len())
            .finish()
    }
}

impl<'a> Batch<'a> {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an aggregate (`&mut dog`), or anything else [`Save`] takes.
    pub fn push<A: Aggregate>(&mut self, aggregate: &'a mut A) {
        self.members.push(Box::new(aggregate));
    }

    /// Adds anything [`Save`] takes (a slice, a tuple, another batch).
    pub fn push_save(&mut self, save: impl Save + 'a) {
        self.members.push(Box::new(save));
    }

    /// How many members were pushed.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl Save for Batch<'_> {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        self.members.encode_pending(mapper, metadata, out)
    }
    fn saved(&mut self, app: &Application) {
        self.members.saved(app);
    }
    fn forget_pending(&mut self) {
        self.members.forget_pending();
    }
}

impl<S: Save + ?Sized> Save for Box<S> {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        (**self).encode_pending(mapper, metadata, out)
    }
    fn saved(&mut self, app: &Application) {
        (**self).saved(app);
    }
    fn forget_pending(&mut self) {
        (**self).forget_pending();
    }
}

save_tuple!(S0 0, S1 1);
save_tuple!(S0 0, S1 1, S2 2);
save_tuple!(S0 0, S1 1, S2 2, S3 3);
save_tuple!(S0 0, S1 1, S2 2, S3 3, S4 4);
save_tuple!(S0 0, S1 1, S2 2, S3 3, S4 4, S5 5);
