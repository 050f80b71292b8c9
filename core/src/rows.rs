//! The rows that recorders store and the mapper produces: stored events,
//! notifications and tracking records. They know nothing of aggregates or
//! of any store, so every layer above can use them.

/// One stored event: the row a recorder writes.
///
/// ```
/// use annals_core::persistence::StoredEvent;
///
/// let row = StoredEvent {
///     originator_id: "4b4c2a3cb0f04b7e8e3f2f3f0a1b2c3d".into(),
///     originator_version: 1,
///     topic: "Dog.Registered".into(),
///     state: br#"{"name":"Fido"}"#.to_vec(),
/// };
/// assert_eq!(row.originator_version, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The aggregate's id in its stored form.
    pub originator_id: String,
    /// The aggregate's version after this event.
    pub originator_version: u64,
    /// What kind of event this is (`"Dog.TrickAdded"`).
    pub topic: String,
    /// The event's encoded state.
    pub state: Vec<u8>,
}

impl StoredEvent {
    /// An event of stream `originator_id` with empty buffers, for
    /// [`refill`](Self::refill) to fill row after row.
    pub fn buffer(originator_id: String) -> Self {
        StoredEvent {
            originator_id,
            originator_version: 0,
            topic: String::new(),
            state: Vec::new(),
        }
    }

    /// This event's version, topic and state set to a row's, in the
    /// buffers it has (a recorder's visit reads a stream into one event).
    pub fn refill(&mut self, version: u64, topic: &str, state: &[u8]) {
        self.originator_version = version;
        self.topic.clear();
        self.topic.push_str(topic);
        self.state.clear();
        self.state.extend_from_slice(state);
    }
}

/// A stored event with its position in the application's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The position in the log: increasing in commit order, from 1. Ids
    /// may have gaps (PostgreSQL takes them from a sequence, and a
    /// transaction that fails wastes the ones it drew): read the log from
    /// the last id seen + 1, never by counting.
    pub id: u64,
    /// The event.
    pub event: StoredEvent,
}

/// "Notification `notification_id` of upstream application
/// `application_name` has been processed."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// The upstream application's name.
    pub application_name: String,
    /// The processed notification's id.
    pub notification_id: u64,
}

/// "The request with idempotency key `key` was carried out, and answered
/// `outcome`": stored with the events of that request, in the same
/// transaction, so that a retried request with the same key finds it and
/// answers the same, storing nothing twice
/// ([`ProcessRecorder::insert_events_keyed`](crate::persistence::ProcessRecorder::insert_events_keyed)).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
/// use annals_core::persistence::{KeyedOutcome, ProcessRecorder, StoredEvent};
///
/// let recorder = MemoryRecorder::new();
/// let deposited = StoredEvent {
///     originator_id: "account-1".into(),
///     originator_version: 2,
///     topic: "Account.Deposited".into(),
///     state: br#"{"amount":10}"#.to_vec(),
/// };
/// let outcome = KeyedOutcome {
///     key: "request-7".into(),
///     outcome: br#"{"balance":10}"#.to_vec(),
/// };
/// recorder.insert_events_keyed(&[deposited.clone()], None, &outcome)?;
/// // The retried request finds the first one's answer ...
/// assert_eq!(recorder.select_outcome("request-7")?, Some(outcome.outcome.clone()));
/// // ... and could not store its events again.
/// let again = StoredEvent { originator_version: 3, ..deposited };
/// assert!(recorder.insert_events_keyed(&[again], None, &outcome).unwrap_err().is_conflict());
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedOutcome {
    /// The idempotency key the client chose for its request (an HTTP
    /// `Idempotency-Key` header): unique in the application's store.
    pub key: String,
    /// What the request answered, encoded (the application stores its
    /// command's output as JSON, sealed as event states are).
    pub outcome: Vec<u8>,
}
