//! Streams ended for good: the tombstone that replaces the events of an
//! archived or deleted stream.
//!
//! Ending a stream ([`AggregateRecorder::end_stream`]) removes every event
//! of it and, in the same transaction, stores one event in its place: a
//! tombstone, at the version after the last, with the reserved topic
//! [`TOMBSTONE_TOPIC`] and a small JSON state that says whether the stream
//! was archived (and where to) or deleted, and when. It holds nothing of
//! the stream's data. Its notification keeps the log's order: the removed
//! events' ids become gaps, every other event keeps its id.
//!
//! The topic begins with `:`, which no `#[aggregate]` topic may contain
//! and no topic of the Python library begins with (its topics are
//! `module:Class.Event`, with a module), so no event of an application can
//! be taken for a tombstone or the other way round.
//!
//! ```
//! use annals_core::ending::{is_tombstone, Tombstone};
//!
//! let tombstone = Tombstone::archived("archive.db", "2026-03-01T09:00:00Z");
//! let stored = tombstone.to_stored("dog-1", 4);
//! assert!(is_tombstone(&stored.topic));
//! assert_eq!(stored.originator_version, 4);
//! let read = Tombstone::from_stored(&stored)?;
//! assert_eq!(read, tombstone);
//! let err = read.error("dog-1");
//! assert!(err.is_stream_ended());
//! assert_eq!(err.to_string(), "stream dog-1 was archived to archive.db at 2026-03-01T09:00:00Z; its events are no longer in this store");
//! # Ok::<(), annals_core::Error>(())
//! ```
//!
//! [`AggregateRecorder::end_stream`]: crate::persistence::AggregateRecorder::end_stream

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rows::StoredEvent;

/// The topic of a tombstone: reserved, no application's event has it.
pub const TOMBSTONE_TOPIC: &str = ":annals:stream-ended";

/// Whether `topic` is a tombstone's.
pub fn is_tombstone(topic: &str) -> bool {
    topic == TOMBSTONE_TOPIC
}

/// What a tombstone says: archived (where to) or deleted, and when.
///
/// See the [module](self) for an example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// `"archived"` or `"deleted"`.
    pub ended: Ended,
    /// When the stream was ended (RFC 3339, as the application's clock
    /// said).
    pub at: String,
    /// Where its events went (an archive's location, as the operator
    /// named it), when archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// How a stream was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ended {
    /// Its events were copied to an archive store, then removed.
    Archived,
    /// Its events were removed.
    Deleted,
}

impl Tombstone {
    /// The tombstone of a stream archived to `to` at `at` (RFC 3339).
    pub fn archived(to: impl Into<String>, at: impl Into<String>) -> Self {
        Tombstone {
            ended: Ended::Archived,
            at: at.into(),
            to: Some(to.into()),
        }
    }

    /// The tombstone of a stream deleted at `at` (RFC 3339).
    pub fn deleted(at: impl Into<String>) -> Self {
        Tombstone {
            ended: Ended::Deleted,
            at: at.into(),
            to: None,
        }
    }

    /// The stored event of this tombstone, in stream `originator_id` at
    /// `version` (the version after the stream's last).
    pub fn to_stored(&self, originator_id: &str, version: u64) -> StoredEvent {
        StoredEvent {
            originator_id: originator_id.to_owned(),
            originator_version: version,
            topic: TOMBSTONE_TOPIC.to_owned(),
            // A struct of strings always serializes.
            state: serde_json::to_vec(self).unwrap_or_default(),
        }
    }

    /// The tombstone a stored event is.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] when its topic is not [`TOMBSTONE_TOPIC`] or its
    /// state is not a tombstone's JSON.
    pub fn from_stored(stored: &StoredEvent) -> Result<Self> {
        let corrupt = |message: String| Error::Corrupt {
            aggregate: "stream",
            id: stored.originator_id.clone(),
            message,
        };
        if !is_tombstone(&stored.topic) {
            return Err(corrupt(format!(
                "version {} has topic {:?}, not a tombstone's",
                stored.originator_version, stored.topic
            )));
        }
        serde_json::from_slice(&stored.state).map_err(|e| {
            corrupt(format!(
                "the tombstone at version {} does not read: {e}",
                stored.originator_version
            ))
        })
    }

    /// The error of a get (or another write) of the stream `id` this
    /// tombstone ended: [`Error::StreamEnded`].
    pub fn error(&self, id: impl Into<String>) -> Error {
        Error::StreamEnded {
            id: id.into(),
            archived_to: self.to.clone(),
            at: self.at.clone(),
        }
    }
}

/// The error of stream `stored.originator_id`, ended by the tombstone
/// `stored`: [`Error::StreamEnded`], or [`Error::Corrupt`] when the
/// tombstone does not read.
pub fn ended_error(stored: &StoredEvent) -> Error {
    match Tombstone::from_stored(stored) {
        Ok(tombstone) => tombstone.error(stored.originator_id.clone()),
        Err(e) => e,
    }
}

/// The checks every store makes before it ends stream `originator_id`,
/// given the stream's last stored event (`None`: it has none) and the
/// tombstone to store (`None`: a store of snapshots, which only removes).
/// `Ok(false)`: the stream has no events, nothing is to be done; `Ok(true)`:
/// remove the events and store the tombstone.
///
/// # Errors
///
/// [`Error::Config`] for a tombstone of another stream or with another
/// topic; [`Error::StreamEnded`] when the stream's last event is a
/// tombstone; [`Error::Conflict`] when the tombstone's version is not the
/// one after the stream's last (another writer stored an event since the
/// caller read the stream).
pub fn check_end(
    originator_id: &str,
    last: Option<&StoredEvent>,
    tombstone: Option<&StoredEvent>,
) -> Result<bool> {
    if let Some(t) = tombstone {
        if t.originator_id != originator_id || !is_tombstone(&t.topic) {
            return Err(Error::config(
                "tombstone",
                format!(
                    "the tombstone must be of stream {originator_id} with topic {TOMBSTONE_TOPIC:?} \
                     (it is of {} with topic {:?})",
                    t.originator_id, t.topic
                ),
            ));
        }
    }
    let Some(last) = last else {
        return Ok(false);
    };
    if is_tombstone(&last.topic) {
        return Err(ended_error(last));
    }
    if let Some(t) = tombstone {
        if last.originator_version.checked_add(1) != Some(t.originator_version) {
            return Err(Error::Conflict {
                aggregate: None,
                id: Some(originator_id.to_owned()),
                version: Some(t.originator_version),
                message: format!(
                    "stream {originator_id} is at version {}, so its tombstone goes at {}, not {}; \
                     an event was stored since the stream was read",
                    last.originator_version,
                    last.originator_version.saturating_add(1),
                    t.originator_version
                ),
            });
        }
    }
    Ok(true)
}

/// The error of a recorder that cannot end streams (the trait's default):
/// an [`Error::Config`] naming `PERSISTENCE_MODULE`.
pub fn no_end_stream(recorder: &str) -> Error {
    Error::config(
        crate::settings::PERSISTENCE_MODULE.name,
        format!(
            "{recorder} cannot end (archive or delete) a stream: its events are immutable there; \
             use the SQLite, PostgreSQL, MySQL or memory store"
        ),
    )
}
