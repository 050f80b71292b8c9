//! The one error type of annals and its `Result` alias.

use std::fmt;

/// What went wrong. Every message says what happened and, where it helps,
/// what to do about it. `#[non_exhaustive]`: a `match` needs a `_` arm.
///
/// An application's calls return it (annals re-exports it as
/// `annals::Error`); so do the stores' recorders:
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
/// use annals_core::persistence::{AggregateRecorder, StoredEvent};
/// use annals_core::Error;
///
/// let recorder = MemoryRecorder::new();
/// let registered = StoredEvent {
///     originator_id: "dog-1".into(),
///     originator_version: 1,
///     topic: "Dog.Registered".into(),
///     state: b"{}".to_vec(),
/// };
/// recorder.insert_events(&[registered.clone()])?;
/// match recorder.insert_events(&[registered]) {
///     Err(Error::Conflict { .. }) => {} // another writer was first: reload, retry
///     Err(Error::Config { setting, message }) => panic!("fix {setting}: {message}"),
///     Err(other) => return Err(other),
///     Ok(_) => panic!("version 1 was stored twice"),
/// }
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No aggregate with this id is stored (or it was discarded).
    #[error("{aggregate} {id} not found")]
    NotFound {
        /// The aggregate type's name.
        aggregate: &'static str,
        /// The id that was asked for (as the id type displays it: UUIDs
        /// hyphenated, as in every error).
        id: String,
    },

    /// An optimistic-concurrency conflict: another writer stored an event
    /// at a position this save wanted, or a tracking record that exists.
    /// Nothing of this save was stored; reload the aggregate and retry the
    /// command (`Application::execute` does).
    #[error("conflict{}: {message}; nothing was stored, reload the aggregate and retry", conflict_subject(*.aggregate, .id.as_deref(), *.version))]
    Conflict {
        /// The aggregate type, when the save was of one aggregate.
        aggregate: Option<&'static str>,
        /// The aggregate's id, when known.
        id: Option<String>,
        /// The first version the save wanted, when known.
        version: Option<u64>,
        /// What the store said.
        message: String,
    },

    /// The stream was ended for good: archived (its events moved to an
    /// archive store) or deleted. Its events are no longer in this store;
    /// a tombstone stands in their place (see [`crate::ending`]).
    #[error("stream {id} was {}; its events are no longer in this store", ended_how(.archived_to.as_deref(), .at))]
    StreamEnded {
        /// The stream's id (as the aggregate's id displays it).
        id: String,
        /// Where its events were archived to; `None` when they were
        /// deleted.
        archived_to: Option<String>,
        /// When it was ended (RFC 3339).
        at: String,
    },

    /// A stored event's topic is not one this aggregate knows.
    #[error("unknown topic {topic:?} in the events of {aggregate}: {}", unknown_topic_hint(.topic, .aggregate, .owner.as_deref()))]
    UnknownTopic {
        /// The stored topic.
        topic: String,
        /// The aggregate type that was asked to decode it.
        aggregate: &'static str,
        /// The aggregate type the topic names, when it is not `aggregate`
        /// (nor one of its aliases): the stream belongs to that type.
        owner: Option<String>,
    },

    /// A stored event's state could not be decoded.
    #[error("cannot decode event {topic:?} (version {version} of {aggregate} {id})")]
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

    /// An event given as a value where it cannot go: a creation event
    /// recorded on an aggregate that exists, or another event given to
    /// create one.
    #[error("{aggregate}: {event} {message}")]
    WrongEvent {
        /// The aggregate type.
        aggregate: &'static str,
        /// The event's name.
        event: &'static str,
        /// Why it cannot go there, and where it goes.
        message: String,
    },

    /// A domain event could not be encoded.
    #[error("cannot encode event {topic:?} of {aggregate}")]
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
    #[error("configuration: {setting}: {message}")]
    Config {
        /// The setting at fault: an environment variable (as it was found,
        /// prefixed or not), or a builder option or argument.
        setting: String,
        /// What is wrong with it.
        message: String,
    },

    /// The user's own code failed: a policy's or a projection's error
    /// (wrap it with [`Error::user`]). Displayed as the user's error.
    #[error(transparent)]
    User(Box<dyn std::error::Error + Send + Sync>),

    /// A follower could not run: its thread could not start, or its policy
    /// panicked.
    #[error("follower {follower}: {message}")]
    Follower {
        /// The follower application's name.
        follower: String,
        /// What happened.
        message: String,
    },

    /// The store failed (I/O, connection, SQL).
    #[error("persistence: {context}")]
    Persistence {
        /// What annals was doing.
        context: String,
        /// The store's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// "Dog 1234... at version 3", or less where less is known (empty when
/// nothing is).
fn subject(aggregate: Option<&str>, id: Option<&str>, version: Option<u64>) -> String {
    let mut subject: Vec<String> = Vec::new();
    subject.extend(aggregate.map(str::to_owned));
    subject.extend(id.map(str::to_owned));
    if let Some(version) = version {
        subject.push(format!("at version {version}"));
    }
    subject.join(" ")
}

/// " (Dog 1234... at version 3)", or less where less is known.
fn conflict_subject(aggregate: Option<&str>, id: Option<&str>, version: Option<u64>) -> String {
    match subject(aggregate, id, version) {
        subject if subject.is_empty() => subject,
        subject => format!(" ({subject})"),
    }
}

/// "archived to archive.db at ..." or "deleted at ...".
fn ended_how(archived_to: Option<&str>, at: &str) -> String {
    match archived_to {
        Some(to) => format!("archived to {to} at {at}"),
        None => format!("deleted at {at}"),
    }
}

fn unknown_topic_hint(topic: &str, aggregate: &str, owner: Option<&str>) -> String {
    match owner {
        Some(owner) => format!(
            "the stream belongs to another aggregate type ({owner}), not {aggregate}; \
             get it as that type (or, if {aggregate} was renamed from {owner}, declare \
             aliases = [\"{owner}\"])"
        ),
        None => format!(
            "{topic:?} is not one of its events (renamed or removed? declare the old topic \
             as an alias)"
        ),
    }
}

impl Error {
    /// A configuration error naming `setting` (an environment variable or
    /// a builder option).
    pub fn config(setting: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Config {
            setting: setting.into(),
            message: message.to_string(),
        }
    }

    /// The user's own error, from a policy or a projection.
    ///
    /// ```
    /// let err = annals_core::Error::user(std::fmt::Error);
    /// assert_eq!(err.to_string(), std::fmt::Error.to_string());
    /// assert!(err.user_error::<std::fmt::Error>().is_some());
    /// ```
    pub fn user(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::User(error.into())
    }

    /// The user's error of type `E`, if this is one.
    pub fn user_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::User(e) => e.downcast_ref(),
            _ => None,
        }
    }

    /// A conflict the store reported, knowing only what it says.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict {
            aggregate: None,
            id: None,
            version: None,
            message: message.into(),
        }
    }

    /// The error and every source below it, on one line: `"a: b: c"`. The
    /// error's own `Display` shows only its own message (its source is
    /// [`source`](std::error::Error::source), as the Rust API guidelines
    /// ask), so print this where no error reporter walks the chain.
    ///
    /// ```
    /// let err = annals_core::Error::persistence("opening the store", "disk full");
    /// assert_eq!(err.to_string(), "persistence: opening the store");
    /// assert_eq!(err.report().to_string(), "persistence: opening the store: disk full");
    /// ```
    pub fn report(&self) -> Report<'_> {
        Report(self)
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
        matches!(self, Error::Conflict { .. })
    }

    /// What a conflict is about, as far as it is known (`"Dog 1234... at
    /// version 3"`): its aggregate, id and version, none of the store's
    /// own words. `None` for other errors, and for a conflict that knows
    /// none of them.
    ///
    /// ```
    /// let conflict = annals_core::Error::Conflict {
    ///     aggregate: Some("Dog"),
    ///     id: Some("1234".into()),
    ///     version: Some(3),
    ///     message: "UNIQUE constraint failed".into(),
    /// };
    /// assert_eq!(conflict.conflict_subject().as_deref(), Some("Dog 1234 at version 3"));
    /// assert_eq!(annals_core::Error::conflict("taken").conflict_subject(), None);
    /// ```
    pub fn conflict_subject(&self) -> Option<String> {
        match self {
            Error::Conflict {
                aggregate,
                id,
                version,
                ..
            } => Some(subject(*aggregate, id.as_deref(), *version)).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    /// Whether the store failed ([`Error::Persistence`]): a connection
    /// lost, a server restarting, a disk full. Followers and subscriptions
    /// retry these with a growing pause; every other error stops them.
    pub fn is_persistence(&self) -> bool {
        matches!(self, Error::Persistence { .. })
    }

    /// Whether this says that a stream was ended for good (archived or
    /// deleted: [`Error::StreamEnded`]).
    pub fn is_stream_ended(&self) -> bool {
        matches!(self, Error::StreamEnded { .. })
    }

    /// Whether this says that an aggregate was not found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// An error with its chain of sources, one after another: see
/// [`Error::report`].
#[derive(Debug)]
pub struct Report<'a>(&'a Error);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        // A transparent variant's source is the user's error's own source.
        if let Error::User(e) = self.0 {
            source = e.source();
        }
        while let Some(e) = source {
            write!(f, ": {e}")?;
            // Its text already says its causes.
            if e.is::<Summary>() {
                break;
            }
            source = e.source();
        }
        Ok(())
    }
}

/// A cause whose text already says its own causes (a PostgreSQL error's
/// one-line description): [`Error::report`] says its text and stops
/// there, while `source()` still reaches the error it describes (so a
/// caller can downcast to it).
#[derive(Debug)]
pub struct Summary {
    text: String,
    cause: Box<dyn std::error::Error + Send + Sync>,
}

impl Summary {
    /// `cause`, said as `text`.
    pub fn new(text: String, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Summary {
            text,
            cause: cause.into(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Summary {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
