//! The domain model: aggregates, their events and their metadata.
//!
//! Users do not implement these traits by hand: `#[aggregate]` on a struct
//! and on its impl block generates the implementations (see the crate docs).

use std::fmt::{self, Debug, Display};
use std::hash::Hash;

use serde::{Deserializer, Serializer};
use uuid::Uuid;

use crate::clock::{self, Timestamp};
use crate::error::{Error, Result};

/// The type of an aggregate's id: [`Uuid`] (the default) or [`String`]
/// (stream names like `dog-fido`).
pub trait AggregateId:
    Clone + Eq + Hash + Debug + Display + Default + Send + Sync + 'static
{
    /// A new unique id, for aggregates created without one.
    fn generate() -> Self;
    /// The id as stored in the `originator_id` column (a UUID as 32
    /// lower-case hex digits, as the Python eventsourcing library stores it).
    fn to_stored(&self) -> String;
    /// The id from its stored form.
    fn from_stored(stored: &str) -> std::result::Result<Self, String>;
}

impl AggregateId for Uuid {
    fn generate() -> Self {
        Uuid::new_v4()
    }
    fn to_stored(&self) -> String {
        self.simple().to_string()
    }
    fn from_stored(stored: &str) -> std::result::Result<Self, String> {
        Uuid::parse_str(stored).map_err(|e| format!("{stored:?} is not a UUID: {e}"))
    }
}

impl AggregateId for String {
    fn generate() -> Self {
        Uuid::new_v4().to_string()
    }
    fn to_stored(&self) -> String {
        self.clone()
    }
    fn from_stored(stored: &str) -> std::result::Result<Self, String> {
        Ok(stored.to_owned())
    }
}

/// The event type of an aggregate: the enum that `#[aggregate]` generates
/// (`DogEvent` for `Dog`), one variant per `#[event]` method.
pub trait Event: Debug + Clone + Send + Sync + 'static {
    /// The topic of each variant, in declaration order.
    const TOPICS: &'static [&'static str];

    /// The current version of each variant (`#[event(.., version = N)]`).
    const VERSIONS: &'static [u32];

    /// The position of this event's variant in [`Event::TOPICS`].
    fn variant_index(&self) -> usize;

    /// The stable topic under which this event is stored
    /// (`"Dog.TrickAdded"` by default).
    fn topic(&self) -> &'static str {
        Self::TOPICS[self.variant_index()]
    }

    /// The event's name, as given in `#[event("Name")]`.
    fn name(&self) -> &'static str;

    /// Whether this event creates its aggregate.
    fn is_creation(&self) -> bool;

    /// Whether this event discards its aggregate.
    fn is_discarding(&self) -> bool;

    #[doc(hidden)]
    fn __serialize<S: Serializer>(
        &self,
        header: &Header,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error>;

    /// Upgrades a stored state of variant `variant` from version `from` to
    /// `from + 1`; false when there is no such upcaster.
    #[doc(hidden)]
    fn __upcast(variant: usize, from: u32, state: &mut serde_json::Value) -> bool;

    #[doc(hidden)]
    fn __variant_of(topic: &str) -> Option<usize>;

    #[doc(hidden)]
    fn __deserialize<'de, D: Deserializer<'de>>(
        variant: usize,
        deserializer: D,
    ) -> std::result::Result<(Self, Header), D::Error>;
}

/// The metadata that every stored event carries besides its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// When the event happened (UTC).
    pub timestamp: Timestamp,
    /// The id shared by every event that one request caused, across
    /// aggregates and applications.
    pub correlation_id: Option<Uuid>,
    /// The id of the event whose processing caused this one.
    pub causation_id: Option<Uuid>,
}

/// Correlation and causation ids for the events of one save (see
/// [`Application::save_with`](crate::Application::save_with)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The correlation id to give events that have none.
    pub correlation_id: Option<Uuid>,
    /// The causation id to give events that have none.
    pub causation_id: Option<Uuid>,
}

impl Metadata {
    /// Events correlated by `id` (typically set by a command, from a
    /// request id).
    pub fn correlated(id: Uuid) -> Self {
        Self {
            correlation_id: Some(id),
            causation_id: None,
        }
    }

    /// Events caused by processing `cause`: its id as their causation id,
    /// and its correlation id (or, when it has none, its own id) as theirs.
    pub fn caused_by<A: Aggregate>(cause: &DomainEvent<A>) -> Self {
        let id = cause.event_id();
        Self {
            correlation_id: Some(cause.correlation_id.unwrap_or(id)),
            causation_id: Some(id),
        }
    }
}

/// The id of the event at `version` of stream `stored_id` (see
/// [`DomainEvent::event_id`]).
pub fn event_id(stored_id: &str, version: u64) -> Uuid {
    let name = format!("{stored_id}:{version}");
    Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes())
}

/// The namespace of event ids (UUID v5 of `"{originator_id}:{version}"`).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a3c_1f0e_9b57_4d2a_8e41_5c7d_0b93_e2f6);

/// An event of aggregate `A` with its metadata: which aggregate it belongs
/// to, at which version, and when it happened.
pub struct DomainEvent<A: Aggregate> {
    /// The id of the aggregate the event belongs to.
    pub originator_id: A::Id,
    /// The aggregate's version after this event.
    pub originator_version: u64,
    /// When the event happened (UTC).
    pub timestamp: Timestamp,
    /// The id shared by the events of one request (see [`Metadata`]).
    pub correlation_id: Option<Uuid>,
    /// The id of the event whose processing caused this one.
    pub causation_id: Option<Uuid>,
    /// The event itself.
    pub event: A::Event,
}

impl<A: Aggregate> DomainEvent<A> {
    /// The event's topic.
    pub fn topic(&self) -> &'static str {
        self.event.topic()
    }

    /// The event's id: the same for the same (aggregate id, version), so
    /// it needs no storage (UUID v5 of `"{stored id}:{version}"`).
    pub fn event_id(&self) -> Uuid {
        let name = format!(
            "{}:{}",
            self.originator_id.to_stored(),
            self.originator_version
        );
        Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes())
    }

    /// The event's metadata.
    pub fn header(&self) -> Header {
        Header {
            timestamp: self.timestamp,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
        }
    }
}

impl<A: Aggregate> Clone for DomainEvent<A> {
    fn clone(&self) -> Self {
        Self {
            originator_id: self.originator_id.clone(),
            originator_version: self.originator_version,
            timestamp: self.timestamp,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            event: self.event.clone(),
        }
    }
}

impl<A: Aggregate> Debug for DomainEvent<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainEvent")
            .field("originator_id", &self.originator_id)
            .field("originator_version", &self.originator_version)
            .field("timestamp", &self.timestamp)
            .field("correlation_id", &self.correlation_id)
            .field("causation_id", &self.causation_id)
            .field("event", &self.event)
            .finish()
    }
}

/// What `#[aggregate]` on the struct provides: access to the hidden
/// metadata field, and what snapshots and the aggregate cache need of the
/// struct (snapshots work when the struct derives `Serialize` and
/// `Deserialize`, the cache when it derives `Clone`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate's struct: `#[aggregate]` is missing on `struct {Self}`",
    label = "its impl block has #[aggregate], its struct has not",
    note = "add `#[aggregate]` on `struct {Self}` as well: it adds the hidden metadata field that the impl block's events use"
)]
pub trait AggregateState: Sized {
    /// Whether the state can be serialized (snapshots are possible).
    const SNAPSHOTS: bool;
    #[doc(hidden)]
    fn __serialize_state<S: Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error>;
    #[doc(hidden)]
    fn __deserialize_state<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error>;
    /// A copy of the aggregate, if its struct derives `Clone`.
    #[doc(hidden)]
    fn __duplicate(&self) -> Option<Self>;
    #[doc(hidden)]
    fn __meta(&self) -> &Meta<Self>
    where
        Self: Aggregate;
    #[doc(hidden)]
    fn __meta_mut(&mut self) -> &mut Meta<Self>
    where
        Self: Aggregate;
}

/// Decides, by the struct's traits, whether an aggregate can be
/// snapshotted (`Serialize` and `Deserialize`) and cached (`Clone`),
/// however those traits are implemented (derived, `cfg_attr`-derived or
/// written by hand). For a concrete `T`, `Probe::<T>::ITEM` resolves to
/// the inherent item when `T` has the traits and to the fallback trait's
/// otherwise; the generated `AggregateState` impl names them so.
#[doc(hidden)]
pub mod probe {
    use std::marker::PhantomData;

    use serde::de::DeserializeOwned;
    use serde::{Deserializer, Serialize, Serializer};

    /// See the module.
    pub struct Probe<T>(PhantomData<T>);

    impl<T: Serialize + DeserializeOwned> Probe<T> {
        /// `T` can be snapshotted.
        pub const SNAPSHOTS: bool = true;

        /// Serializes the state.
        pub fn serialize_state<S: Serializer>(
            state: &T,
            serializer: S,
            _: &str,
        ) -> Result<S::Ok, S::Error> {
            state.serialize(serializer)
        }

        /// Deserializes the state.
        pub fn deserialize_state<'de, D: Deserializer<'de>>(
            deserializer: D,
            _: &str,
        ) -> Result<T, D::Error> {
            T::deserialize(deserializer)
        }
    }

    impl<T: Clone> Probe<T> {
        /// A copy, for the cache.
        pub fn duplicate(state: &T) -> Option<T> {
            Some(state.clone())
        }
    }

    /// The fallback when `T` is not `Serialize` and `Deserialize`.
    pub trait NoSnapshots<T> {
        /// `T` cannot be snapshotted.
        const SNAPSHOTS: bool = false;

        /// An error: `message` says why.
        fn serialize_state<S: Serializer>(_: &T, _: S, message: &str) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom(message))
        }

        /// An error: `message` says why.
        fn deserialize_state<'de, D: Deserializer<'de>>(
            _: D,
            message: &str,
        ) -> Result<T, D::Error> {
            Err(serde::de::Error::custom(message))
        }
    }

    impl<T> NoSnapshots<T> for Probe<T> {}

    /// The fallback when `T` is not `Clone`.
    pub trait NoDuplicate<T> {
        /// No copy: the aggregate is not cached.
        fn duplicate(_: &T) -> Option<T> {
            None
        }
    }

    impl<T> NoDuplicate<T> for Probe<T> {}
}

/// What every event argument's type must be: `Serialize`, `Deserialize`,
/// `Clone` and `Debug`. The generated code uses an argument only through
/// this trait, so that a type that lacks any of them is one error that
/// names them all.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the type of an event argument: it must be Serialize, Deserialize, Clone and Debug",
    label = "an event argument: it is stored, replayed and copied",
    note = "add `#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]` to `{Self}` (or implement the ones it lacks)"
)]
pub trait EventField: Sized {
    #[doc(hidden)]
    fn __clone(&self) -> Self;
    #[doc(hidden)]
    fn __debug(&self) -> &dyn Debug;
    #[doc(hidden)]
    fn __serialize_ref<S: Serializer>(
        this: &&Self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error>;
    #[doc(hidden)]
    fn __deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error>;
}

#[diagnostic::do_not_recommend]
impl<T> EventField for T
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Debug,
{
    fn __clone(&self) -> Self {
        self.clone()
    }
    fn __debug(&self) -> &dyn Debug {
        self
    }
    fn __serialize_ref<S: Serializer>(
        this: &&Self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serde::Serialize::serialize(*this, serializer)
    }
    fn __deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        T::deserialize(deserializer)
    }
}

/// An event-sourced aggregate. `#[aggregate]` implements it; use its
/// provided methods (`id()`, `version()`, ...) through the prelude.
pub trait Aggregate: AggregateState + Send + 'static {
    /// The id type: [`Uuid`] unless `#[aggregate(id = String)]`.
    type Id: AggregateId;
    /// The generated event enum.
    type Event: Event;
    /// The aggregate's name: the prefix of its topics.
    const NAME: &'static str;
    /// The version after the creation event: 1 unless
    /// `#[aggregate(initial_version = 0)]` (EventStoreDB-style streams).
    const INITIAL_VERSION: u64 = 1;
    /// The version of the snapshot state (`#[aggregate(version = N)]`).
    const STATE_VERSION: u32 = 1;
    /// Former names of the aggregate (`#[aggregate(aliases = [..])]`).
    const ALIASES: &'static [&'static str] = &[];

    /// Upgrades a stored snapshot state from version `from` to `from + 1`;
    /// false when there is no such upcaster.
    #[doc(hidden)]
    fn __upcast_state(from: u32, state: &mut serde_json::Value) -> bool {
        let _ = (from, state);
        false
    }

    /// Runs a creation event's body; gives the event back if it is not one.
    #[doc(hidden)]
    fn __create(event: Self::Event) -> std::result::Result<Self, Self::Event>;
    /// Runs a non-creation event's body; gives the event back if it is a
    /// creation event.
    #[doc(hidden)]
    fn __apply(&mut self, event: Self::Event) -> std::result::Result<(), Self::Event>;

    /// The aggregate's id.
    fn id(&self) -> Self::Id {
        self.__meta().id.clone()
    }
    /// The version: the originator version of the last event applied.
    fn version(&self) -> u64 {
        self.__meta().version
    }
    /// When the creation event happened.
    fn created_on(&self) -> Timestamp {
        self.__meta().created_on
    }
    /// When the last event happened.
    fn modified_on(&self) -> Timestamp {
        self.__meta().modified_on
    }
    /// Events triggered since the aggregate was loaded or last saved, which
    /// the next `save` stores.
    fn pending_events(&self) -> &[DomainEvent<Self>] {
        &self.__meta().pending
    }
    /// Whether a discarding event has been applied.
    fn is_discarded(&self) -> bool {
        self.__meta().discarded
    }
}

/// The metadata that `#[aggregate]` adds to the user's struct (as a hidden
/// field, skipped by serde).
pub struct Meta<A: Aggregate> {
    pub(crate) id: A::Id,
    pub(crate) version: u64,
    pub(crate) created_on: Timestamp,
    pub(crate) modified_on: Timestamp,
    pub(crate) discarded: bool,
    pub(crate) pending: Vec<DomainEvent<A>>,
    /// The hash of the last stored event, when streams are hash-chained.
    pub(crate) last_hash: Option<EventHash>,
    /// The hash the pending events end with, once encoded.
    pub(crate) pending_hash: Option<EventHash>,
}

/// A SHA-256 hash of a stored event (hash-chained streams).
pub type EventHash = [u8; 32];

impl<A: Aggregate> Meta<A> {
    pub(crate) fn take_pending(&mut self) -> Vec<DomainEvent<A>> {
        std::mem::take(&mut self.pending)
    }
}

impl<A: Aggregate> Default for Meta<A> {
    fn default() -> Self {
        Self {
            id: A::Id::default(),
            version: 0,
            created_on: Timestamp::UNIX_EPOCH,
            modified_on: Timestamp::UNIX_EPOCH,
            discarded: false,
            pending: Vec::new(),
            last_hash: None,
            pending_hash: None,
        }
    }
}

impl<A: Aggregate> Clone for Meta<A> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            version: self.version,
            created_on: self.created_on,
            modified_on: self.modified_on,
            discarded: self.discarded,
            pending: self.pending.clone(),
            last_hash: self.last_hash,
            pending_hash: self.pending_hash,
        }
    }
}

/// Two aggregates' metadata are equal when they are at the same version of
/// the same stream (pending events are not compared).
impl<A: Aggregate> PartialEq for Meta<A> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.version == other.version
            && self.created_on == other.created_on
            && self.modified_on == other.modified_on
            && self.discarded == other.discarded
    }
}

impl<A: Aggregate> Eq for Meta<A> {}

impl<A: Aggregate> Debug for Meta<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("modified_on", &self.modified_on)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// An event body running in this thread: of which aggregate type, for
/// which event's timestamp.
struct Frame {
    aggregate: std::any::TypeId,
    timestamp: Timestamp,
}

thread_local! {
    /// The event bodies running in this thread, innermost last.
    static APPLYING: std::cell::RefCell<Vec<Frame>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Marks an event body as running until dropped. An event method of the
/// same aggregate type called while one runs (an event body that calls
/// another event method, directly or not) records nothing: its effect is
/// part of the outer event, and replaying the outer event repeats it.
/// Event methods of other aggregate types record as usual.
#[doc(hidden)]
#[must_use]
pub struct Applying {
    timestamp: Timestamp,
    records: bool,
}

impl Drop for Applying {
    fn drop(&mut self) {
        APPLYING.with(|frames| {
            frames.borrow_mut().pop();
        });
    }
}

impl Applying {
    fn push<A: Aggregate>(timestamp: Timestamp, records: bool) -> Self {
        APPLYING.with(|frames| {
            frames.borrow_mut().push(Frame {
                aggregate: std::any::TypeId::of::<A>(),
                timestamp,
            });
        });
        Self { timestamp, records }
    }

    /// Replays a stored event of `A` that happened at `timestamp`.
    fn replaying<A: Aggregate>(timestamp: Timestamp) -> Self {
        Self::push::<A>(timestamp, false)
    }
}

/// Starts the body of an event method of `A` (see [`Applying`]): a new
/// event now, or, inside a body of `A`'s, part of that event.
#[doc(hidden)]
pub fn applying<A: Aggregate>() -> Applying {
    let outer = APPLYING.with(|frames| {
        frames
            .borrow()
            .iter()
            .rev()
            .find(|frame| frame.aggregate == std::any::TypeId::of::<A>())
            .map(|frame| frame.timestamp)
    });
    match outer {
        Some(timestamp) => Applying::push::<A>(timestamp, false),
        None => Applying::push::<A>(clock::now(), true),
    }
}

/// The timestamp of the event whose body is running: when an event method
/// is called, the time it records (from the clock); when a stored event is
/// replayed, the time stored with it. So a body can keep it in the state
/// (`self.modified = annals::current_event_timestamp();`) and replay gives
/// the same value.
///
/// # Panics
///
/// Outside an event body.
pub fn current_event_timestamp() -> Timestamp {
    APPLYING.with(|frames| frames.borrow().last().map(|frame| frame.timestamp))
        .expect("annals::current_event_timestamp() is called outside an event body: call it in the body of an #[event] method")
}

/// Called by generated creation methods after the body has built `agg`.
#[doc(hidden)]
pub fn __created<A: Aggregate>(agg: &mut A, id: A::Id, event: A::Event, applying: Applying) {
    if !applying.records {
        return;
    }
    let timestamp = applying.timestamp;
    drop(applying);
    let discards = event.is_discarding();
    let meta = agg.__meta_mut();
    meta.id = id.clone();
    meta.version = A::INITIAL_VERSION;
    meta.created_on = timestamp;
    meta.modified_on = timestamp;
    meta.discarded = discards;
    meta.pending.push(DomainEvent {
        originator_id: id,
        originator_version: A::INITIAL_VERSION,
        timestamp,
        correlation_id: None,
        causation_id: None,
        event,
    });
}

/// Called by generated command methods after the body has run.
#[doc(hidden)]
pub fn __triggered<A: Aggregate>(agg: &mut A, event: A::Event, applying: Applying) {
    if !applying.records {
        return;
    }
    let timestamp = applying.timestamp;
    drop(applying);
    let meta = agg.__meta_mut();
    meta.version += 1;
    meta.modified_on = timestamp;
    meta.discarded |= event.is_discarding();
    let originator_id = meta.id.clone();
    let originator_version = meta.version;
    meta.pending.push(DomainEvent {
        originator_id,
        originator_version,
        timestamp,
        correlation_id: None,
        causation_id: None,
        event,
    });
}

/// Sets the metadata of an aggregate rebuilt from a snapshot.
pub(crate) fn restore_meta<A: Aggregate>(
    agg: &mut A,
    id: A::Id,
    version: u64,
    created_on: Timestamp,
    modified_on: Timestamp,
    last_hash: Option<EventHash>,
) {
    let meta = agg.__meta_mut();
    meta.last_hash = last_hash;
    meta.id = id;
    meta.version = version;
    meta.created_on = created_on;
    meta.modified_on = modified_on;
    meta.discarded = false;
    meta.pending.clear();
}

/// Checks that the stored event at `version` follows `agg` without a gap.
/// Callers check it before decoding the event: a missing version says more
/// than the broken hash or failed decode it would cause.
pub(crate) fn check_follows<A: Aggregate>(agg: &A, version: u64) -> Result<()> {
    let expected = agg.version() + 1;
    if version == expected {
        return Ok(());
    }
    Err(Error::Corrupt {
        aggregate: A::NAME,
        id: agg.id().to_string(),
        message: format!(
            "version {version} follows version {}: version {expected} is missing",
            agg.version()
        ),
    })
}

/// Applies a stored event to the aggregate built so far (`None` before the
/// first event), checking that it begins with a creation event and creates
/// only once (versions follow without gaps: see [`check_follows`]).
pub(crate) fn replay<A: Aggregate>(state: Option<A>, recorded: DomainEvent<A>) -> Result<A> {
    let DomainEvent {
        originator_id,
        originator_version,
        timestamp,
        event,
        ..
    } = recorded;
    let corrupt = |message: String| Error::Corrupt {
        aggregate: A::NAME,
        id: originator_id.to_string(),
        message,
    };
    let discards = event.is_discarding();
    let mut agg = match state {
        None => {
            let name = event.name();
            let created = {
                let _applying = Applying::replaying::<A>(timestamp);
                A::__create(event)
            };
            let mut agg = created.map_err(|_| {
                corrupt(format!(
                    "it begins with {name} (version {originator_version}), which is not a creation event"
                ))
            })?;
            let meta = agg.__meta_mut();
            meta.id = originator_id;
            meta.created_on = timestamp;
            agg
        }
        Some(mut agg) => {
            let name = event.name();
            let applied = {
                let _applying = Applying::replaying::<A>(timestamp);
                agg.__apply(event)
            };
            applied.map_err(|_| {
                corrupt(format!(
                    "creation event {name} at version {originator_version}"
                ))
            })?;
            agg
        }
    };
    let meta = agg.__meta_mut();
    meta.version = originator_version;
    meta.modified_on = timestamp;
    meta.discarded |= discards;
    Ok(agg)
}
