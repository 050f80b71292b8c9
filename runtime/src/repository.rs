//! Gets aggregates back: from the cache, the newest snapshot, and the
//! events after it.

use std::any::{Any, TypeId};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::clock::Timestamp;
use crate::domain::{self, Aggregate, AggregateId, AggregateState, Event};
use crate::error::{Error, Result};
use crate::mapper::Mapper;
use crate::metrics::{seconds_since, AppMetrics};
use crate::persistence::{AggregateRecorder, EventQuery, ProcessRecorder};
use annals_core::ending::{ended_error, is_tombstone};

type CacheKey = (TypeId, String);

/// An LRU cache of aggregates, keyed by type and id. It holds copies:
/// what goes in and what comes out are never the caller's own values.
///
/// The map grows with what is put in (it is unbounded to `lru`, which
/// would allocate a bounded map's whole capacity up front: any
/// `AGGREGATE_CACHE_MAXSIZE` is accepted), and `put` evicts the least
/// recently used entries beyond `max_size`.
pub(crate) struct Cache {
    entries: Mutex<LruCache<CacheKey, Box<dyn Any + Send>>>,
    max_size: NonZeroUsize,
}

impl Cache {
    pub(crate) fn new(max_size: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(LruCache::unbounded()),
            max_size,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<CacheKey, Box<dyn Any + Send>>> {
        // Entries are replaced whole, so a poisoned lock guards sound data.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get<A: Aggregate>(&self, key: &CacheKey) -> Option<A> {
        self.lock()
            .get(key)
            .and_then(|entry| entry.downcast_ref::<A>())
            .and_then(AggregateState::__duplicate)
    }

    /// Keeps a copy of `aggregate`, unless the cache holds a newer one.
    pub(crate) fn put<A: Aggregate>(&self, aggregate: &A) {
        let Some(copy) = aggregate.__duplicate() else {
            return;
        };
        let key = (TypeId::of::<A>(), aggregate.id().to_stored());
        let mut entries = self.lock();
        let newer = entries
            .peek(&key)
            .and_then(|e| e.downcast_ref::<A>())
            .is_some_and(|cached| cached.version() > aggregate.version());
        if !newer {
            entries.put(key, Box::new(copy));
            while entries.len() > self.max_size.get() {
                entries.pop_lru();
            }
        }
    }

    /// Drops every aggregate (after a subject is forgotten: which of them
    /// hold its data is not known here).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn evict(&self, key: &CacheKey) {
        self.lock().pop(key);
    }

    /// Forgets stream `stored_id`, whatever the type it was cached as.
    pub(crate) fn evict_stream(&self, stored_id: &str) {
        let mut entries = self.lock();
        let keys: Vec<CacheKey> = entries
            .iter()
            .filter(|((_, id), _)| id == stored_id)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            entries.pop(&key);
        }
    }
}

/// The snapshots of an application: the newest state of an aggregate at
/// some version, stored apart from its events. `app.snapshots()` has them
/// when snapshotting is on; getting an aggregate starts from its newest
/// snapshot by itself, so these methods are for looking at them.
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
/// #     #[event("Retired", discard)]
/// #     pub fn retire(&mut self) {}
/// # }
/// let app = Application::builder("Kennel").snapshotting(true).build()?;
/// let mut dog = Dog::register("Fido".into());
/// dog.add_trick("sit".into());
/// app.save(&mut dog)?;
/// app.take_snapshot::<Dog>(dog.id())?;
///
/// let snapshots = app.snapshots().expect("snapshotting is on");
/// assert_eq!(snapshots.versions::<Dog>(dog.id())?, [2]);
/// let newest: Dog = snapshots.get(dog.id())?.expect("one was taken");
/// assert_eq!((newest.version(), newest.tricks.len()), (2, 1));
/// assert!(snapshots.get_at::<Dog>(dog.id(), 1)?.is_none());
/// # Ok::<(), annals::Error>(())
/// ```
pub struct Snapshots {
    recorder: Arc<dyn AggregateRecorder>,
    mapper: Arc<Mapper>,
}

impl fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshots").finish_non_exhaustive()
    }
}

impl Snapshots {
    pub(crate) fn new(recorder: Arc<dyn AggregateRecorder>, mapper: Arc<Mapper>) -> Self {
        Self { recorder, mapper }
    }

    /// The newest snapshot of aggregate `id`, as the aggregate it holds
    /// (`None` when it has none).
    ///
    /// # Errors
    ///
    /// Store and decoding errors ([`Error::UnknownVersion`] for a snapshot
    /// stored at a version this build has no upcaster from).
    pub fn get<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<Option<A>> {
        self.newest(&id.into().to_stored(), None)
    }

    /// The newest snapshot of aggregate `id` at or below `version`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn get_at<A: Aggregate>(&self, id: impl Into<A::Id>, version: u64) -> Result<Option<A>> {
        self.newest(&id.into().to_stored(), Some(version))
    }

    /// Every snapshot of aggregate `id`, oldest first, as the aggregates
    /// they hold (each has its `version()` and `modified_on()`).
    ///
    /// # Errors
    ///
    /// Store and decoding errors.
    pub fn list<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<Vec<A>> {
        self.recorder
            .select_events(&id.into().to_stored(), &EventQuery::all())?
            .iter()
            .map(|stored| self.mapper.decode_snapshot(stored))
            .collect()
    }

    /// The versions at which aggregate `id` has snapshots, oldest first
    /// (nothing is decoded).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn versions<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<Vec<u64>> {
        Ok(self
            .recorder
            .select_events(&id.into().to_stored(), &EventQuery::all())?
            .iter()
            .map(|stored| stored.originator_version)
            .collect())
    }

    /// The snapshot store itself.
    pub fn recorder(&self) -> &Arc<dyn AggregateRecorder> {
        &self.recorder
    }

    fn newest<A: Aggregate>(&self, stored_id: &str, version: Option<u64>) -> Result<Option<A>> {
        let mut query = EventQuery::all().descending().limit(1);
        query.lte = version;
        self.recorder
            .select_events(stored_id, &query)?
            .first()
            .map(|stored| self.mapper.decode_snapshot(stored))
            .transpose()
    }

    /// Stores a snapshot of `aggregate`. A snapshot at the same version is
    /// already stored: that is not an error.
    pub(crate) fn store<A: Aggregate>(&self, aggregate: &A) -> Result<()> {
        let (stored, new_keys) =
            crate::personal::collecting_new_keys(|| self.mapper.encode_snapshot(aggregate));
        let ring = self.mapper.keys();
        let mut stored = stored.inspect_err(|_| {
            if let Some(ring) = ring {
                ring.drop_unconfirmed(&new_keys);
            }
        })?;
        if let (Some(ring), false) = (ring, new_keys.is_empty()) {
            if !ring.insert_all(&new_keys)? {
                // Another writer made the subject's key first: seal again
                // with its key, and store no snapshot sealed with a key
                // the store does not hold (it would read as forgotten).
                let (again, again_keys) =
                    crate::personal::collecting_new_keys(|| self.mapper.encode_snapshot(aggregate));
                stored = again?;
                if !again_keys.is_empty() {
                    if !ring.insert_all(&again_keys)? {
                        ring.drop_unconfirmed(&again_keys);
                        return Ok(());
                    }
                    ring.confirm(&again_keys);
                }
            }
            ring.confirm(&new_keys);
        }
        match self.recorder.insert_events(std::slice::from_ref(&stored)) {
            Err(e) if e.is_conflict() => Ok(()),
            other => other.map(drop),
        }
    }
}

/// Gets aggregates back from their stored events (starting from the
/// cache or the newest snapshot, when the application has them).
/// `app.repository()`; `app.get`, `app.get_at`, `app.get_as_of` and
/// `app.contains` call it.
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
/// #     #[event("Retired", discard)]
/// #     pub fn retire(&mut self) {}
/// # }
/// let app = Application::builder("Kennel").build()?;
/// let mut dog = Dog::register("Fido".into());
/// dog.add_trick("sit".into());
/// app.save(&mut dog)?;
///
/// let repository = app.repository();
/// let now: Dog = repository.get(dog.id())?;
/// let then: Dog = repository.get_at(dog.id(), 1)?;
/// assert_eq!((now.tricks.len(), then.tricks.len()), (1, 0));
/// assert!(repository.contains::<Dog>(dog.id())?);
/// assert!(!repository.contains::<Dog>(Uuid::new_v4())?);
/// # Ok::<(), annals::Error>(())
/// ```
pub struct Repository {
    pub(crate) recorder: Arc<dyn ProcessRecorder>,
    pub(crate) mapper: Arc<Mapper>,
    pub(crate) snapshots: Option<Snapshots>,
    pub(crate) cache: Option<Cache>,
    pub(crate) metrics: AppMetrics,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("snapshots", &self.snapshots.is_some())
            .field("cache", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// The current state of aggregate `id`.
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
    /// #     #[event("Retired", discard)]
    /// #     pub fn retire(&mut self) {}
    /// # }
    /// let app = Application::builder("Kennel").build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// app.save(&mut dog)?;
    /// let copy: Dog = app.repository().get(dog.id())?;
    /// assert_eq!(copy.name, "Fido");
    ///
    /// let missing = app.repository().get::<Dog>(Uuid::new_v4()).unwrap_err();
    /// assert!(missing.is_not_found());
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it has no events or was discarded;
    /// [`Error::StreamEnded`] when its stream was archived or deleted
    /// (`Application::archive_stream`, `delete_stream`);
    /// [`Error::UnknownTopic`] when the stream is another aggregate type's;
    /// decoding errors ([`Error::Decode`], [`Error::UnknownVersion`],
    /// [`Error::Integrity`] for a broken hash chain, [`Error::Corrupt`]);
    /// store errors.
    pub fn get<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<A> {
        self.timed(|| self.load(&id.into(), None))
    }

    /// The state of aggregate `id` as it was at `version` (the newest
    /// snapshot at or below `version`, and the events up to it). A
    /// `version` beyond the last gives the current state.
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
    /// #     #[event("Retired", discard)]
    /// #     pub fn retire(&mut self) {}
    /// # }
    /// let app = Application::builder("Kennel").build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// dog.add_trick("sit".into());
    /// dog.add_trick("roll over".into());
    /// app.save(&mut dog)?;
    /// let then: Dog = app.repository().get_at(dog.id(), 2)?;
    /// assert_eq!(then.tricks, ["sit"]);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it did not exist yet (a `version` below
    /// its first), or was discarded by then; otherwise as
    /// [`get`](Self::get).
    pub fn get_at<A: Aggregate>(&self, id: impl Into<A::Id>, version: u64) -> Result<A> {
        self.timed(|| self.load(&id.into(), Some(version)))
    }

    /// `get`, timed by `annals_get_seconds` (found or not).
    fn timed<A>(&self, get: impl FnOnce() -> Result<A>) -> Result<A> {
        let start = std::time::Instant::now();
        let got = get();
        self.metrics.get_seconds.record(seconds_since(start));
        got
    }

    /// The state of aggregate `id` as it was at `timestamp`: its events
    /// applied in version order, up to the first one stamped later than
    /// `timestamp`. Where timestamps do not decrease along the stream (the
    /// usual case) that is every event stamped at or before `timestamp`;
    /// where a later version is stamped earlier (a writer whose clock was
    /// behind), reading still stops at the first later stamp, so the answer
    /// is always the state at one version, as [`get_at`](Self::get_at)
    /// gives it.
    ///
    /// Replays from the stream's first event: neither the cache nor
    /// snapshots are used. A snapshot's `modified_on` is only the time of
    /// the event at its version, so it cannot tell whether an earlier event
    /// was stamped after `timestamp`, and starting from it could disagree
    /// with the events. With hash chaining on, every link read is checked,
    /// the event the reading stops at included (its timestamp is part of
    /// what the chain protects).
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
    /// #     #[event("Retired", discard)]
    /// #     pub fn retire(&mut self) {}
    /// # }
    /// use annals::clock::{set_thread_clock, FixedClock};
    /// use annals::Timestamp;
    ///
    /// let at = |t: &str| -> Timestamp { t.parse().unwrap() };
    /// let app = Application::builder("Kennel").build()?;
    /// let clock = set_thread_clock(FixedClock(at("2026-03-01T09:00:00Z")));
    /// let mut dog = Dog::register("Fido".into());
    /// drop(clock);
    /// let clock = set_thread_clock(FixedClock(at("2026-03-02T09:00:00Z")));
    /// dog.add_trick("sit".into());
    /// drop(clock);
    /// app.save(&mut dog)?;
    ///
    /// let repository = app.repository();
    /// let then: Dog = repository.get_as_of(dog.id(), at("2026-03-01T12:00:00Z"))?;
    /// assert_eq!((then.version(), then.tricks.len()), (1, 0));
    /// let now: Dog = repository.get_as_of(dog.id(), at("2026-03-02T09:00:00Z"))?;
    /// assert_eq!(now.tricks, ["sit"]);
    /// let before = repository.get_as_of::<Dog>(dog.id(), at("2026-02-28T00:00:00Z"));
    /// assert!(before.unwrap_err().is_not_found());
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it did not exist yet (`timestamp` is before
    /// its creation event's), or was discarded by then; otherwise as
    /// [`get`](Self::get).
    pub fn get_as_of<A: Aggregate>(&self, id: impl Into<A::Id>, timestamp: Timestamp) -> Result<A> {
        self.timed(|| self.replay_as_of(id.into(), timestamp))
    }

    /// The body of [`get_as_of`](Self::get_as_of).
    fn replay_as_of<A: Aggregate>(&self, id: A::Id, timestamp: Timestamp) -> Result<A> {
        /// Events selected at a time: a timestamp early in a long stream
        /// reads little of it.
        const PAGE: usize = 256;
        let stored_id = id.to_stored();
        let mut aggregate: Option<A> = None;
        let mut chain = None;
        let mut query = EventQuery::all().limit(PAGE);
        'pages: loop {
            let page = self.recorder.select_events(&stored_id, &query)?;
            for event in &page {
                if is_tombstone(&event.topic) {
                    return Err(ended_error(event));
                }
                if let Some(before) = &aggregate {
                    domain::check_follows(before, event.originator_version)?;
                }
                let mut link = chain;
                let decoded = self.mapper.decode_replayed(&id, event, &mut link)?;
                if decoded.timestamp > timestamp {
                    break 'pages;
                }
                chain = link;
                domain::replay(&mut aggregate, decoded)?;
            }
            match page.last() {
                Some(last) if page.len() == PAGE => query.gt = Some(last.originator_version),
                _ => break,
            }
        }
        match aggregate {
            Some(mut aggregate) if !aggregate.is_discarded() => {
                aggregate.__meta_mut().last_hash = chain;
                Ok(aggregate)
            }
            _ => Err(Error::NotFound {
                aggregate: A::NAME,
                id: id.to_string(),
            }),
        }
    }

    /// Whether aggregate `id` exists (stored and not discarded, nor its
    /// stream ended), from the stream's last event alone: no replay.
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
    /// #     #[event("Retired", discard)]
    /// #     pub fn retire(&mut self) {}
    /// # }
    /// let app = Application::builder("Kennel").build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// app.save(&mut dog)?;
    /// assert!(app.repository().contains::<Dog>(dog.id())?);
    /// dog.retire(); // a discarding event
    /// app.save(&mut dog)?;
    /// assert!(!app.repository().contains::<Dog>(dog.id())?);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Store and decoding errors (a stream of another aggregate type is
    /// one: its topic is not one of `A`'s).
    pub fn contains<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<bool> {
        let stored_id = id.into().to_stored();
        let last = self
            .recorder
            .select_events(&stored_id, &EventQuery::all().descending().limit(1))?;
        match last.first() {
            None => Ok(false),
            Some(stored) if is_tombstone(&stored.topic) => Ok(false),
            Some(stored) => Ok(!self.mapper.decode::<A>(stored)?.event.is_discarding()),
        }
    }

    /// Starts from the cache (current state only) or the newest snapshot at
    /// or below `version`, then replays the events after it.
    fn load<A: Aggregate>(&self, id: &A::Id, version: Option<u64>) -> Result<A> {
        /// Events selected at a time.
        const REPLAY_PAGE: usize = 4096;
        let span = tracing::debug_span!(
            "get",
            aggregate = A::NAME,
            id = %id,
            at = version,
            cached = tracing::field::Empty,
            snapshot_version = tracing::field::Empty,
            replayed = tracing::field::Empty,
            version = tracing::field::Empty,
        );
        let _entered = span.enter();
        let stored_id = id.to_stored();
        let cache = self.cache.as_ref().filter(|_| version.is_none());
        let key = (TypeId::of::<A>(), stored_id);
        let mut aggregate: Option<A> = cache.and_then(|c| c.get(&key));
        let from_cache = aggregate.is_some();
        if aggregate.is_none() {
            if let Some(snapshots) = &self.snapshots {
                aggregate = snapshots.newest(&key.1, version)?;
                if let Some(snapshot) = &aggregate {
                    span.record("snapshot_version", snapshot.version());
                }
            }
        }
        span.record("cached", from_cache);
        let mut query = EventQuery::all().limit(REPLAY_PAGE);
        query.gt = aggregate.as_ref().map(A::version);
        query.lte = version;
        let mut chain = aggregate.as_ref().and_then(|a| a.__meta().last_hash);
        let mut replayed = 0;
        // A page at a time, so a long stream's rows are never all in
        // memory at once (a short one is one query, as before).
        loop {
            let mut last = None;
            let visited = self.recorder.visit_events(&key.1, &query, &mut |event| {
                if is_tombstone(&event.topic) {
                    // Ended for good: where it went, not a decoding error.
                    return Err(ended_error(event));
                }
                if let Some(before) = &aggregate {
                    domain::check_follows(before, event.originator_version)?;
                }
                let decoded = self.mapper.decode_replayed(id, event, &mut chain)?;
                domain::replay(&mut aggregate, decoded)?;
                last = Some(event.originator_version);
                Ok(())
            })?;
            replayed += visited;
            match last {
                Some(last) if visited == REPLAY_PAGE => query.gt = Some(last),
                _ => break,
            }
        }
        span.record("replayed", replayed);
        let changed = replayed > 0 || !from_cache;
        if let Some(aggregate) = &mut aggregate {
            aggregate.__meta_mut().last_hash = chain;
        }
        let not_found = || Error::NotFound {
            aggregate: A::NAME,
            id: id.to_string(),
        };
        let aggregate = aggregate.ok_or_else(not_found)?;
        span.record("version", aggregate.version());
        if let Some(cache) = cache {
            if aggregate.is_discarded() {
                cache.evict(&key);
            } else if changed {
                cache.put(&aggregate);
            }
        }
        if aggregate.is_discarded() {
            return Err(not_found());
        }
        Ok(aggregate)
    }
}
