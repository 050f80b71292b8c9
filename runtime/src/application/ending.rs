//! Streams ended for good: [`Application::archive_stream`] and
//! [`Application::delete_stream`].

use std::sync::Arc;

use annals_core::ending::{ended_error, is_tombstone, Tombstone};

use super::Application;
use crate::domain::AggregateId;
use crate::error::{Error, Result};
use crate::persistence::{AggregateRecorder, EventQuery, StoredEvent};

/// `annals_streams_ended_total`: streams archived or deleted.
pub const STREAMS_ENDED: &str = "annals_streams_ended_total";

/// Where [`Application::archive_stream`] copies a stream's events: a
/// store's recorder (another application's, or a store opened for the
/// purpose) and its location as the tombstone names it (a file name, a
/// database and table prefix: what an operator needs to find it again).
///
/// The events are copied as they are stored, compressed and encrypted as
/// they are: reading them back needs this application's settings
/// (`CIPHER_KEY`, `COMPRESSOR_TOPIC`).
///
/// ```
/// use std::sync::Arc;
/// use annals::application::Archive;
/// use annals::Application;
///
/// let vault = Application::builder("Vault").build()?;
/// let archive = Archive::new("the vault", vault.recorder().clone());
/// assert_eq!(archive.location(), "the vault");
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Clone)]
pub struct Archive {
    location: String,
    recorder: Arc<dyn AggregateRecorder>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Archive {
    /// An archive in `recorder`, named `location` in tombstones and errors.
    pub fn new(location: impl Into<String>, recorder: Arc<dyn AggregateRecorder>) -> Self {
        Archive {
            location: location.into(),
            recorder,
        }
    }

    /// Its location, as the tombstones name it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Its recorder.
    pub fn recorder(&self) -> &Arc<dyn AggregateRecorder> {
        &self.recorder
    }
}

/// What ending a stream did: see [`Application::archive_stream`] and
/// [`Application::delete_stream`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndedStream {
    /// The stream's id, in its stored form.
    pub id: String,
    /// How many events were removed from this application's store.
    pub removed: usize,
    /// How many of them were copied to the archive by this call (fewer
    /// than `removed` when an earlier, interrupted call had copied some).
    pub copied: usize,
    /// The tombstone's version: the one after the stream's last.
    pub version: u64,
    /// What the tombstone says.
    pub tombstone: Tombstone,
}

impl Application {
    /// Archives stream `id` for good: copies its events, as they are
    /// stored (compressed and encrypted as they are), to `archive`, then,
    /// in one transaction of this application's store, removes them and
    /// stores a tombstone in their place, at the version after the last.
    /// Its snapshots are removed; the cache forgets it.
    ///
    /// Afterwards [`get`](Self::get) of it is an [`Error::StreamEnded`]
    /// naming the archive's location, a save at the tombstone's version
    /// is a conflict, and the log keeps its order: every other event keeps
    /// its notification id, the removed ones are gaps, and the tombstone
    /// is a notification of its own, which followers track and pass over
    /// (their policies and projections are not called for it).
    ///
    /// The copy is idempotent: run again after a failure (between the
    /// copy and the removal, say), events found in the archive equal to
    /// the stream's are left as they are and the rest are copied. An event
    /// found there that differs is an error, and nothing is removed.
    ///
    /// The store must be one that can remove events (SQLite, PostgreSQL,
    /// MySQL, memory); the object store and UmaDB cannot.
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
    /// use annals::application::Archive;
    /// use annals::domain::AggregateId;
    ///
    /// let app = Application::builder("Kennel").build()?;
    /// let vault = Application::builder("Vault").build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// app.save(&mut dog)?;
    ///
    /// let archive = Archive::new("the vault", vault.recorder().clone());
    /// let ended = app.archive_stream(dog.id(), &archive)?;
    /// assert_eq!((ended.removed, ended.version), (1, 2));
    ///
    /// let gone = app.get::<Dog>(dog.id()).unwrap_err();
    /// assert!(gone.is_stream_ended());
    /// assert!(gone.to_string().contains("archived to the vault"));
    /// // The events, as stored, are in the vault.
    /// let stored = vault.recorder().select_events(&dog.id().to_stored(), &Default::default())?;
    /// assert_eq!(stored.len(), 1);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the stream has no events;
    /// [`Error::StreamEnded`] when it was ended already; [`Error::Corrupt`]
    /// when the archive holds an event of the stream that differs from
    /// this store's (nothing is removed); a conflict when an event was
    /// stored meanwhile (run it again); [`Error::Config`] naming
    /// `PERSISTENCE_MODULE` for a store that cannot remove events; store
    /// errors. On error the live stream is as it was.
    pub fn archive_stream(&self, id: impl AggregateId, archive: &Archive) -> Result<EndedStream> {
        let stored_id = id.to_stored();
        let span = tracing::debug_span!(
            "archive_stream",
            application = self.name(),
            id = stored_id.as_str(),
            to = archive.location(),
            removed = tracing::field::Empty,
            copied = tracing::field::Empty,
        );
        let _entered = span.enter();
        let events = self.live_stream(&stored_id)?;
        let copied = copy_to(archive, &stored_id, &events)?;
        span.record("copied", copied);
        let tombstone = Tombstone::archived(archive.location(), now());
        let mut ended = self.end(&stored_id, &events, tombstone)?;
        ended.copied = copied;
        span.record("removed", ended.removed);
        Ok(ended)
    }

    /// Deletes stream `id` for good: in one transaction of this
    /// application's store, removes its events and stores a tombstone in
    /// their place, at the version after the last (saying when, and that
    /// the stream was deleted; nothing of its data). Its snapshots are
    /// removed; the cache forgets it. For erasing data that was not
    /// marked personal; afterwards [`get`](Self::get) of it is an
    /// [`Error::StreamEnded`], and the log keeps its order, as
    /// [`archive_stream`](Self::archive_stream) says.
    ///
    /// What the database keeps of the removed rows is its own: SQLite
    /// deletes with `secure_delete` (the pages are overwritten) and then
    /// checkpoints and truncates its write-ahead log (a reader that keeps
    /// the checkpoint from completing leaves earlier copies there until
    /// the next one, with a warning logged); PostgreSQL and MySQL keep
    /// dead rows until `VACUUM` / a purge. Backups keep them too.
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
    /// let app = Application::builder("Kennel").build()?;
    /// let mut fido = Dog::register("Fido".into());
    /// let mut rex = Dog::register("Rex".into());
    /// app.save(&mut fido)?;
    /// app.save(&mut rex)?;
    ///
    /// let ended = app.delete_stream(fido.id())?;
    /// assert_eq!(ended.removed, 1);
    /// assert!(app.get::<Dog>(fido.id()).unwrap_err().is_stream_ended());
    /// // Rex keeps notification id 2; the tombstone is id 3.
    /// let ids: Vec<u64> = app.notifications(1, 10)?.iter().map(|n| n.id).collect();
    /// assert_eq!(ids, [2, 3]);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`archive_stream`](Self::archive_stream), but for the archive.
    pub fn delete_stream(&self, id: impl AggregateId) -> Result<EndedStream> {
        let stored_id = id.to_stored();
        let span = tracing::debug_span!(
            "delete_stream",
            application = self.name(),
            id = stored_id.as_str(),
            removed = tracing::field::Empty,
        );
        let _entered = span.enter();
        let events = self.live_stream(&stored_id)?;
        let ended = self.end(&stored_id, &events, Tombstone::deleted(now()))?;
        span.record("removed", ended.removed);
        Ok(ended)
    }

    /// The events of stream `stored_id`: a not-found error when it has
    /// none, the stream's error when it was ended.
    fn live_stream(&self, stored_id: &str) -> Result<Vec<StoredEvent>> {
        let events = self
            .recorder()
            .select_events(stored_id, &EventQuery::all())?;
        match events.last() {
            None => Err(Error::NotFound {
                aggregate: "stream",
                id: stored_id.to_owned(),
            }),
            Some(last) if is_tombstone(&last.topic) => Err(ended_error(last)),
            Some(_) => Ok(events),
        }
    }

    /// Removes the snapshots of stream `stored_id`, then its `events`
    /// (as read), storing `tombstone` after them; forgets it in the cache.
    fn end(
        &self,
        stored_id: &str,
        events: &[StoredEvent],
        tombstone: Tombstone,
    ) -> Result<EndedStream> {
        let last = events.last().map_or(0, |e| e.originator_version);
        let version = last.checked_add(1).ok_or_else(|| Error::Corrupt {
            aggregate: "stream",
            id: stored_id.to_owned(),
            message: format!("its last version is {last}: there is none after it"),
        })?;
        let stored = tombstone.to_stored(stored_id, version);
        // Snapshots first: a failure after it leaves the events, from which
        // snapshots are taken again; the other way round, a snapshot could
        // outlive its stream.
        if let Some(snapshots) = self.snapshots() {
            snapshots.recorder().end_stream(stored_id, None)?;
        }
        let removed = self.recorder().end_stream(stored_id, Some(&stored))?;
        if let Some(cache) = &self.repository().cache {
            cache.evict_stream(stored_id);
        }
        if removed.is_empty() {
            // Gone between the read and the transaction.
            return Err(Error::NotFound {
                aggregate: "stream",
                id: stored_id.to_owned(),
            });
        }
        let how = match tombstone.ended {
            annals_core::ending::Ended::Archived => "archived",
            annals_core::ending::Ended::Deleted => "deleted",
        };
        ::metrics::counter!(
            STREAMS_ENDED,
            "application" => self.name().to_owned(),
            "ended" => how
        )
        .increment(1);
        self.notifier().notify();
        Ok(EndedStream {
            id: stored_id.to_owned(),
            removed: removed.len(),
            copied: 0,
            version,
            tombstone,
        })
    }
}

/// Copies `events` (stream `stored_id`, as stored) to `archive`, those it
/// lacks; how many. An event it holds that differs is an error.
fn copy_to(archive: &Archive, stored_id: &str, events: &[StoredEvent]) -> Result<usize> {
    let held = archive
        .recorder()
        .select_events(stored_id, &EventQuery::all())?;
    let mut held_at = held.iter().peekable();
    let mut missing = Vec::new();
    for event in events {
        while held_at
            .peek()
            .is_some_and(|h| h.originator_version < event.originator_version)
        {
            held_at.next();
        }
        match held_at.peek() {
            Some(h) if h.originator_version == event.originator_version => {
                if *h != event {
                    return Err(differs(archive, stored_id, event.originator_version));
                }
            }
            _ => missing.push(event.clone()),
        }
    }
    let known: std::collections::HashSet<u64> =
        events.iter().map(|e| e.originator_version).collect();
    if let Some(extra) = held.iter().find(|h| !known.contains(&h.originator_version)) {
        return Err(differs(archive, stored_id, extra.originator_version));
    }
    if !missing.is_empty() {
        archive.recorder().insert_events(&missing)?;
    }
    Ok(missing.len())
}

fn differs(archive: &Archive, stored_id: &str, version: u64) -> Error {
    Error::Corrupt {
        aggregate: "stream",
        id: stored_id.to_owned(),
        message: format!(
            "the archive {} holds a version {version} of it that is not this store's: \
             another stream's history is there under the same id; nothing was removed",
            archive.location()
        ),
    }
}

/// Now, as the tombstone says it (RFC 3339, UTC).
fn now() -> String {
    crate::clock::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
