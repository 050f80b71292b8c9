//! Applications: the entry point that saves aggregates and gets them back.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::domain::{Aggregate, AggregateId, DomainEvent, Metadata};
use crate::error::{Error, Result};
use crate::log::{NotificationLogReader, Subscription};
use crate::mapper::Mapper;
use crate::metrics::seconds_since;
use crate::persistence::wake::Notifier;
use crate::persistence::{
    EventQuery, KeyedOutcome, Notification, NotificationQuery, ProcessRecorder, StoreTx,
};
use crate::repository::{Repository, Snapshots};
use crate::settings;

mod builder;
mod commands;
mod ending;
mod execute;
mod save;

/// The former path of [`Persistence`](crate::Persistence), kept (hidden).
#[doc(hidden)]
pub use crate::persistence::Persistence;
pub use builder::ApplicationBuilder;
use commands::CommandLocks;
pub use commands::{CommandGuard, RetryPolicy};
pub use ending::{Archive, EndedStream, STREAMS_ENDED};
pub use execute::CommandError;
use save::forget_pending;
pub use save::{Batch, Encoded, Save};

/// Turns snapshots on (`yes`/`no`).
// A copy of the setting's name, kept (hidden) for code written against it:
// the one documented name is `settings::IS_SNAPSHOTTING_ENABLED`.
#[doc(hidden)]
pub const IS_SNAPSHOTTING_ENABLED: &str = settings::IS_SNAPSHOTTING_ENABLED.name;
/// The size of the aggregate cache (no cache when unset or 0).
// A copy of the setting's name, kept (hidden) for code written against it:
// the one documented name is `settings::AGGREGATE_CACHE_MAXSIZE`.
#[doc(hidden)]
pub const AGGREGATE_CACHE_MAXSIZE: &str = settings::AGGREGATE_CACHE_MAXSIZE.name;
/// Chains each stream's events by hash (`yes`/`no`).
// A copy of the setting's name, kept (hidden) for code written against it:
// the one documented name is `settings::IS_HASH_CHAINING_ENABLED`.
#[doc(hidden)]
pub const IS_HASH_CHAINING_ENABLED: &str = settings::IS_HASH_CHAINING_ENABLED.name;
/// The Python library's cipher setting; when set it must name AES.
// A copy of the setting's name, kept (hidden) for code written against it:
// the one documented name is `settings::CIPHER_TOPIC`.
#[doc(hidden)]
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
    snapshot_rule: SnapshotRule,
    notifier: Notifier,
    /// The aggregates whose commands run now: one command at a time each.
    commands: CommandLocks,
    retry: RetryPolicy,
    /// Where the store keeps personal data's keys (with or without a
    /// master key to open them).
    data_keys: Option<Arc<dyn crate::persistence::keys::KeyStore>>,
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
        ApplicationBuilder::new(name)
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
        self.store_pending(aggregates, metadata, None, None)
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
        self.store_pending(aggregates, Metadata::default(), Some(&mut writes), None)
    }

    /// Like [`save`](Self::save), and stores in the same transaction the
    /// idempotency key `key` with `outcome` (as JSON, compressed and
    /// encrypted as the events are, when the application does): what the
    /// request that made these events answered, for its retries to find
    /// ([`outcome`](Self::outcome)) instead of doing it again. Stores the
    /// key even when no event is pending. [`execute_once`](Self::execute_once)
    /// does the whole dance for a command on one aggregate; this is for
    /// what it does not cover (a new aggregate, several in one save).
    ///
    /// ```
    /// use annals::prelude::*;
    ///
    /// #[aggregate]
    /// #[derive(Debug)]
    /// pub struct Account { pub owner: String }
    ///
    /// #[aggregate]
    /// impl Account {
    ///     #[event("Opened")]
    ///     pub fn open(owner: String) -> Self { Account { owner } }
    /// }
    ///
    /// let app = Application::builder("Bank").build()?;
    /// // A request to open an account, with the client's idempotency key,
    /// // and its retry: the first is carried out, the retry finds its answer.
    /// let open = |key: &str| -> annals::Result<Uuid> {
    ///     if let Some(id) = app.outcome::<Uuid>(key)? {
    ///         return Ok(id); // done before: nothing more is stored
    ///     }
    ///     let mut account = Account::open("Ada".into());
    ///     let id = account.id();
    ///     app.save_once(key, &mut account, &id)?;
    ///     Ok(id)
    /// };
    /// let first = open("request-1")?;
    /// assert_eq!(open("request-1")?, first);
    /// assert_eq!(app.last_notification_id()?, Some(1), "one account opened");
    /// assert_ne!(open("request-2")?, first);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`save`](Self::save); [`Error::Conflict`] when `key` is stored
    /// already (another try of the same request was first: look its
    /// outcome up), and then nothing is stored; [`Error::Encode`] when
    /// `outcome` does not serialize; [`Error::Config`] naming
    /// `PERSISTENCE_MODULE` for a store that keeps no keys (see
    /// [`ProcessRecorder::insert_events_keyed`]).
    pub fn save_once<S: Save, T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        aggregates: S,
        outcome: &T,
    ) -> Result<Vec<u64>> {
        let keyed = KeyedOutcome {
            key: key.to_owned(),
            outcome: self.mapper().seal_outcome(key, outcome)?,
        };
        self.store_pending(aggregates, Metadata::default(), None, Some(&keyed))
    }

    /// The outcome stored with idempotency key `key`
    /// ([`save_once`](Self::save_once), [`execute_once`](Self::execute_once)),
    /// as a `T`; `None` when no save stored the key.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug)]
    /// # pub struct Note { pub text: String }
    /// # #[aggregate]
    /// # impl Note {
    /// #     #[event("Written")]
    /// #     pub fn write(text: String) -> Self { Note { text } }
    /// # }
    /// let app = Application::builder("Notes").build()?;
    /// assert_eq!(app.outcome::<String>("request-1")?, None);
    /// app.save_once("request-1", &mut Note::write("hello".into()), "written")?;
    /// assert_eq!(app.outcome::<String>("request-1")?.as_deref(), Some("written"));
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when the stored outcome does not decrypt or is not
    /// a `T` (the key was used by another kind of request); store errors;
    /// [`Error::Config`] naming `PERSISTENCE_MODULE` for a store that keeps
    /// no keys.
    pub fn outcome<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.recorder
            .select_outcome(key)?
            .map(|stored| self.mapper().open_outcome(key, stored))
            .transpose()
    }

    /// Encodes and stores the pending events of `aggregates` (with
    /// `writes`, or an idempotency key and its outcome, in the same
    /// transaction, if given), then does what follows a save: clears them,
    /// updates the cache, takes due snapshots, wakes in-process followers.
    fn store_pending<S: Save>(
        &self,
        mut aggregates: S,
        metadata: Metadata,
        writes: Option<&mut UserWrites<'_>>,
        keyed: Option<&KeyedOutcome>,
    ) -> Result<Vec<u64>> {
        let start = std::time::Instant::now();
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
        let ring = self.mapper().keys();
        // Keys written in the save's own transaction, where the store can.
        let in_save = keyed.is_none() && ring.is_some_and(|r| r.store().writes_in_saves());
        let mut attempts = 0;
        let (stored, new_keys) = loop {
            let mut stored = Encoded::default();
            let (encoded, new_keys) = crate::personal::collecting_new_keys(|| {
                aggregates.encode_pending(self.mapper(), &metadata, &mut stored)
            });
            if let Err(e) = encoded {
                // Keys made for an encoding that failed are not kept as
                // this process's: the store's (another writer's) are read.
                if let Some(ring) = ring {
                    ring.drop_unconfirmed(&new_keys);
                }
                return Err(e);
            }
            match ring {
                Some(ring) if !new_keys.is_empty() && !in_save => {
                    attempts += 1;
                    // Another writer made one of these subjects' keys
                    // first: seal again with its key.
                    if !ring.insert_all(&new_keys)? {
                        if attempts < 3 {
                            continue;
                        }
                        // Never store events sealed with a key the store
                        // does not hold: they could not be read.
                        return Err(Error::conflict(
                            "other writers kept giving this save's subjects data keys first",
                        ));
                    }
                    ring.confirm(&new_keys);
                    break (stored, Vec::new());
                }
                _ => break (stored, new_keys),
            }
        };
        if !span.is_disabled() {
            stored.record(&span, metadata.correlation_id);
        }
        let inserted = match (writes, keyed, ring.filter(|_| !new_keys.is_empty())) {
            // A key is stored even with no events: the command's outcome.
            (None, Some(keyed), _) => {
                self.recorder
                    .insert_events_keyed(&stored.events, None, keyed)
            }
            (None, None, _) if stored.events.is_empty() => return Ok(Vec::new()),
            (None, None, None) => self.recorder.insert_events(&stored.events),
            (None, None, Some(ring)) => {
                self.recorder
                    .insert_events_with(&stored.events, None, &mut |tx| {
                        ring.store().insert_keys_in(tx, &new_keys)
                    })
            }
            // (No caller gives both.)
            (Some(writes), _, None) => {
                self.recorder
                    .insert_events_with(&stored.events, None, writes)
            }
            (Some(writes), _, Some(ring)) => {
                self.recorder
                    .insert_events_with(&stored.events, None, &mut |tx| {
                        ring.store().insert_keys_in(tx, &new_keys)?;
                        writes(tx)
                    })
            }
        };
        if let Some(ring) = ring.filter(|_| !new_keys.is_empty()) {
            match &inserted {
                Ok(_) => ring.confirm(&new_keys),
                Err(_) => ring.drop_unconfirmed(&new_keys),
            }
        }
        let metrics = &self.repository.metrics;
        metrics.save_seconds.record(seconds_since(start));
        metrics.outcome(&inserted, stored.events.len());
        let ids = inserted.map_err(|e| stored.explain(e))?;
        if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
            span.record("first_notification_id", first);
            span.record("last_notification_id", last);
        }
        aggregates.saved(self);
        self.notifier.notify();
        Ok(ids)
    }

    /// Runs `reads` on a connection of the store, in a read-only
    /// transaction (one snapshot for all its statements), for the
    /// application's own tables (those [`save_and_write`](Self::save_and_write)
    /// writes): a reader on SQLite, a pooled connection on PostgreSQL,
    /// never the writer (but on SQLite in memory, which has one
    /// connection), so reads do not wait for saves. Take the connection
    /// as the writes do: `tx.sqlite()?`, `tx.postgres()?`.
    ///
    /// ```
    /// use annals::prelude::*;
    ///
    /// # let dir = std::env::temp_dir().join(format!("annals-doc-{}", Uuid::new_v4()));
    /// # std::fs::create_dir_all(&dir).map_err(annals::Error::user)?;
    /// # let db = dir.join("kennel.db").to_string_lossy().into_owned();
    /// let app = Application::builder("Kennel").sqlite(db).build()?;
    /// # app.read(|tx| tx.sqlite()?.execute_batch("CREATE TABLE names (name TEXT)").map_err(annals::Error::user))
    /// #     .unwrap_err(); // read-only: the table is made below
    /// # annals::rusqlite::Connection::open(dir.join("kennel.db")).and_then(|c| c.execute_batch("CREATE TABLE names (name TEXT); INSERT INTO names VALUES ('Fido')")).map_err(annals::Error::user)?;
    /// let names: i64 = app.read(|tx| {
    ///     tx.sqlite()?
    ///         .query_row("SELECT count(*) FROM names", [], |row| row.get(0))
    ///         .map_err(annals::Error::user)
    /// })?;
    /// assert_eq!(names, 1);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The error of `reads`; [`Error::Config`] naming `PERSISTENCE_MODULE`
    /// when the store has no connection to lend (memory, objects: see
    /// [`ProcessRecorder::read_with`]); the store's, when no connection
    /// could be had.
    pub fn read<T>(&self, reads: impl FnOnce(&mut StoreTx<'_>) -> Result<T>) -> Result<T> {
        let mut reads = Some(reads);
        let mut value = None;
        self.recorder.read_with(&mut |tx| {
            let reads = reads.take().ok_or_else(|| {
                Error::persistence(
                    "reading the application's own tables",
                    "the store ran the reads twice",
                )
            })?;
            value = Some(reads(tx)?);
            Ok(())
        })?;
        value.ok_or_else(|| {
            Error::persistence(
                "reading the application's own tables",
                "the store did not run the reads",
            )
        })
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

    /// Aggregate `id`'s stored events folded by `projector` from
    /// `initial`: Python's `repository.get(id, projector_func=...)`, for a
    /// state that is not the aggregate itself (a decider's state, a view
    /// of one stream). The events are decoded (and upcast) as `A`'s; no
    /// cache or snapshot is used, since those hold `A`'s own state.
    ///
    /// ```
    /// use annals::prelude::*;
    ///
    /// #[aggregate]
    /// #[derive(Debug)]
    /// pub struct Dog { pub name: String, pub tricks: Vec<String> }
    ///
    /// #[aggregate]
    /// impl Dog {
    ///     #[event("Registered")]
    ///     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
    ///     #[event("TrickAdded")]
    ///     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
    /// }
    ///
    /// let app = Application::builder("School").build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// dog.add_trick("sit".into());
    /// dog.add_trick("roll over".into());
    /// app.save(&mut dog)?;
    ///
    /// // Only the tricks' lengths: a state of its own, not a `Dog`.
    /// let lengths = app.project::<Dog, _>(dog.id(), Vec::new(), |mut lengths, e| {
    ///     if let DogEvent::TrickAdded { trick } = &e.event {
    ///         lengths.push(trick.len());
    ///     }
    ///     lengths
    /// })?;
    /// assert_eq!(lengths, [3, 9]);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the stream has no events; store and
    /// decoding errors.
    pub fn project<A: Aggregate, S>(
        &self,
        id: impl Into<A::Id>,
        initial: S,
        mut projector: impl FnMut(S, &DomainEvent<A>) -> S,
    ) -> Result<S> {
        let id = id.into();
        let stored = self
            .recorder
            .select_events(&id.to_stored(), &EventQuery::all())?;
        if stored.is_empty() {
            return Err(Error::NotFound {
                aggregate: A::NAME,
                id: id.to_string(),
            });
        }
        let mut state = initial;
        for stored in &stored {
            state = projector(state, &self.mapper().decode::<A>(stored)?);
        }
        Ok(state)
    }

    /// Forgets a subject's personal data (the right to erasure): erases
    /// its data key, so every `#[personal]` field sealed with it, in the
    /// store, its backups and its exports, reads as the value its model
    /// declares for forgotten data. Events, their order and hash chains
    /// stay as they were; so does what a follower made of them before.
    /// Returns whether the subject had a key. The cache of aggregates is
    /// emptied. See [`crate::personal`] for an example.
    ///
    /// Other processes trust a key they read for 30 seconds at most, so
    /// they stop opening the subject's data within that time; one that
    /// still holds the key and saves new personal data of the subject
    /// meanwhile seals it with the erased key, so that data is forgotten
    /// too.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `PERSONAL_DATA_KEY` when the application
    /// has no data keys (no master key, or a store that keeps none); the
    /// store's.
    pub fn forget(&self, subject: &str) -> Result<bool> {
        let ring = self.keys()?;
        let span = tracing::info_span!("forget", application = self.name.as_str());
        let _entered = span.enter();
        let had = ring.forget(subject)?;
        if let Some(cache) = &self.repository.cache {
            cache.clear();
        }
        tracing::info!(had_key = had, "subject forgotten");
        Ok(had)
    }

    /// Wraps every data key by the current master key
    /// (`PERSONAL_DATA_KEY`, or `CIPHER_KEY`), unwrapping those wrapped by
    /// a former one given in `PERSONAL_DATA_PREVIOUS_KEYS`; no event is
    /// rewritten. Run it after deploying the new key with the old one
    /// among the previous keys; then drop the old one.
    ///
    /// ```
    /// use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug)]
    /// # pub struct Patient { name: String }
    /// # #[aggregate]
    /// # impl Patient {
    /// #     #[event("Admitted")]
    /// #     pub fn admit(#[personal] name: String) -> Self { Patient { name } }
    /// # }
    /// let (old, new) = (annals::cipher::create_key(), annals::cipher::create_key());
    /// # let dir = std::env::temp_dir().join(format!("annals-doc-{}", Uuid::new_v4()));
    /// # std::fs::create_dir_all(&dir).map_err(annals::Error::user)?;
    /// # let db = dir.join("clinic.db").to_string_lossy().into_owned();
    /// let app = Application::builder("Clinic").sqlite(&db).personal_data_key(&old).build()?;
    /// let mut ada = Patient::admit("Ada".into());
    /// app.save(&mut ada)?;
    ///
    /// let app = Application::builder("Clinic")
    ///     .sqlite(&db)
    ///     .personal_data_key(&new)
    ///     .previous_personal_data_keys([&old])
    ///     .build()?;
    /// let rotation = app.rotate_keys()?;
    /// assert_eq!((rotation.rewrapped, rotation.current), (1, 0));
    ///
    /// // The old key is no longer needed.
    /// let app = Application::builder("Clinic").sqlite(&db).personal_data_key(&new).build()?;
    /// assert_eq!(app.get::<Patient>(ada.id())?.name, "Ada");
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`forget`](Self::forget); a key that opens with none of the
    /// master keys ([`Error::Config`] naming `PERSONAL_DATA_KEY`).
    pub fn rotate_keys(&self) -> Result<crate::personal::Rotation> {
        let ring = self.keys()?;
        let span = tracing::info_span!("rotate_keys", application = self.name.as_str());
        let _entered = span.enter();
        let rotation = ring.rotate()?;
        tracing::info!(
            rewrapped = rotation.rewrapped,
            current = rotation.current,
            "data keys wrapped by the current master key"
        );
        Ok(rotation)
    }

    /// The store's data keys of personal data, wrapped by the master key,
    /// whether or not this application has the master key: for tools that
    /// copy a store (`annals export` and `import` carry them, so the copy's
    /// personal fields open as the original's do). `None` for a store that
    /// keeps none.
    ///
    /// ```
    /// let app = annals::Application::builder("Clinic").build()?;
    /// let keys = app.data_keys().expect("the memory store keeps keys");
    /// assert!(keys.select_keys(None, 10)?.is_empty());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn data_keys(&self) -> Option<&Arc<dyn crate::persistence::keys::KeyStore>> {
        self.data_keys.as_ref()
    }

    fn keys(&self) -> Result<&std::sync::Arc<crate::personal::KeyRing>> {
        self.mapper().keys().ok_or_else(|| {
            Error::config(
                crate::settings::PERSONAL_DATA_KEY.name,
                "this application has no data keys: set PERSONAL_DATA_KEY (or CIPHER_KEY), on a \
                 store that keeps them (memory, SQLite, PostgreSQL, MariaDB/MySQL, object)",
            )
        })
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
    /// chaining is off; [`Error::StreamEnded`] when the stream was
    /// archived or deleted ([`archive_stream`](Self::archive_stream)): it
    /// has no chain left, and is not broken; store errors.
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
        if let Some(last) = events
            .last()
            .filter(|last| annals_core::ending::is_tombstone(&last.topic))
        {
            // Ended for good: no chain is left to check, and none broke.
            return Err(annals_core::ending::ended_error(last));
        }
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
        if after / interval == before / interval || aggregate.is_discarded() {
            return;
        }
        let stored = match self.snapshot_rule {
            SnapshotRule::Last => snapshots.store(&*aggregate),
            SnapshotRule::EachMultiple => (before / interval + 1..=after / interval)
                .map(|n| n * interval + A::INITIAL_VERSION - 1)
                .try_for_each(|version| {
                    if version == aggregate.version() {
                        snapshots.store(&*aggregate)
                    } else {
                        snapshots.store(&self.repository.get_at::<A>(aggregate.id(), version)?)
                    }
                }),
        };
        if let Err(e) = stored {
            // The events are stored; only the shortcut is missing.
            tracing::warn!(aggregate = A::NAME, id = %aggregate.id(), error = %e.report(), "snapshot not stored");
        }
    }
}

/// Where a save that reaches an aggregate's snapshot interval takes its
/// snapshots ([`ApplicationBuilder::snapshot_rule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SnapshotRule {
    /// One snapshot, at the save's last version: the newest state, with
    /// no replay (the default).
    #[default]
    Last,
    /// One at each multiple of the interval the save reached, as Python's
    /// `eventsourcing` takes them (at versions 5 and 10 for a save of
    /// versions 1 to 12 with an interval of 5): an application sharing its
    /// store with Python's finds the snapshots where Python's would be.
    /// Each but the last is of the aggregate replayed to that version.
    EachMultiple,
}

/// The user's writes to their own tables, run in a save's transaction.
type UserWrites<'w> = dyn FnMut(&mut StoreTx<'_>) -> Result<()> + 'w;

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
