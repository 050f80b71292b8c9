//! The one error type of annals and its `Result` alias.

use std::fmt;

/// What went wrong. Every message says what happened and, where it helps,
/// what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No aggregate with this id is stored (or it was discarded).
    #[error("{aggregate} {id} not found")]
    NotFound {
        /// The aggregate type's name.
        aggregate: &'static str,
        /// The id that was asked for.
        id: String,
    },

    /// An optimistic-concurrency conflict: another writer stored an event at
    /// a position this save wanted. Nothing of this save was stored; reload
    /// the aggregate and retry the command.
    #[error("conflict: {0}; nothing was stored, reload the aggregate and retry")]
    Conflict(String),

    /// A stored event's topic is not one this aggregate knows.
    #[error("unknown topic {topic:?} in the events of {aggregate}: it is not one of its events (renamed or removed? declare the old name as an alias)")]
    UnknownTopic {
        /// The stored topic.
        topic: String,
        /// The aggregate type that was asked to decode it.
        aggregate: &'static str,
    },

    /// A stored event's state could not be decoded.
    #[error("cannot decode event {topic:?} (version {version} of {aggregate} {id}): {source}")]
    Decode {
        /// The stored topic.
        topic: String,
        /// The aggregate type.
        aggregate: &'static str,
        /// The stored originator id.
        id: String,
        /// The stored originator version.
        version: u64,
        /// Why the bytes did not decode.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A stored event or snapshot has a version this build cannot read: newer
    /// than the current one, or with no upcaster to the current one.
    #[error("{aggregate}: {topic:?} is stored at version {stored}, and this build reads versions up to {known} (upgrade the code, or add the missing upcaster)")]
    UnknownVersion {
        /// The stored topic.
        topic: String,
        /// The aggregate type.
        aggregate: &'static str,
        /// The stored version (or the version with no upcaster).
        stored: u32,
        /// The current version.
        known: u32,
    },

    /// A hash-chained stream is broken at this event.
    #[error("broken hash chain in {aggregate} {id} at version {version}: {message}")]
    Integrity {
        /// The aggregate type.
        aggregate: &'static str,
        /// The stored originator id.
        id: String,
        /// The first event whose link does not hold.
        version: u64,
        /// What is wrong.
        message: String,
    },

    /// A domain event could not be encoded.
    #[error("cannot encode event {topic:?} of {aggregate}: {source}")]
    Encode {
        /// The event's topic.
        topic: &'static str,
        /// The aggregate type.
        aggregate: &'static str,
        /// Why it did not encode.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A stored stream breaks the rules of an event stream (for example it
    /// does not begin with a creation event).
    #[error("corrupt stream of {aggregate} {id}: {message}")]
    Corrupt {
        /// The aggregate type.
        aggregate: &'static str,
        /// The stream's id.
        id: String,
        /// What is wrong with it.
        message: String,
    },

    /// A setting is missing or has a bad value.
    #[error("configuration: {var}: {message}")]
    Config {
        /// The setting (environment variable or builder option) at fault.
        var: String,
        /// What is wrong with it.
        message: String,
    },

    /// The store failed (I/O, connection, SQL).
    #[error("persistence: {context}: {source}")]
    Persistence {
        /// What annals was doing.
        context: String,
        /// The store's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A configuration error naming the setting `var`.
    pub fn config(var: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Config {
            var: var.into(),
            message: message.to_string(),
        }
    }

    /// A persistence error: `context` says what was being done.
    pub fn persistence(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Persistence {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Whether this is an optimistic-concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// Whether this says that an aggregate was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
