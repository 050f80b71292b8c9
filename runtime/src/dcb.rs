//! Dynamic consistency boundaries, the domain side: events tagged from
//! their fields, states folded from the events that match a query derived
//! from what they read, and decisions appended on the condition that
//! nothing in that boundary changed since it was read (Python
//! eventsourcing 9.5's `eventsourcing.dcb.domain` and `application`).
//!
//! - **Events** are plain structs, one per event type, that derive
//!   [`Tagged`](macro@Tagged) (and serde's `Serialize` and `Deserialize`):
//!   the stored type is `#[dcb(type = "...")]` or the struct's name, the
//!   tags come from the fields marked `#[tag]` or `#[tag(prefix = "...")]`,
//!   and the data is MessagePack of a map of the fields, as Python's
//!   `MessagePackMapper` writes it.
//! - **States** ([`Perspective`]) say which events they read, as a type:
//!   an enum that derives [`DcbEvents`](macro@DcbEvents), or one `Tagged`
//!   struct. Their query is made of exactly those types (and the tags the
//!   state is given), so a state cannot be handed an event it cannot
//!   decode: reading one more type means adding a variant, which the
//!   compiler then makes `apply` handle.
//! - **Groups**: a tuple of states is a state ([`Boundary`]): the union of
//!   their queries, each event folded into the members it matches.
//! - **Decisions**: [`DcbApplication::decide`] (or a [`Slice`] and
//!   [`DcbApplication::run`]) reads the boundary, folds it, runs the
//!   decision and appends its events with the condition (the same query,
//!   `after` = the head read), retrying a failed condition as
//!   [`Application::execute`](crate::Application::execute) retries a
//!   conflict. The decision's own error is
//!   [`CommandError::Rejected`]; the store's, [`CommandError::Failed`].
//!
//! ```
//! use annals::dcb::{DcbApplication, DcbEvents, Perspective, Tagged};
//! use annals::persistence::dcb::MemoryDcbRecorder;
//! use annals::CommandError;
//! use serde::{Deserialize, Serialize};
//! use std::sync::Arc;
//!
//! #[derive(Debug, Serialize, Deserialize, Tagged)]
//! struct CourseRegistered {
//!     #[tag(prefix = "course-")]
//!     course: String,
//!     capacity: u32,
//! }
//!
//! #[derive(Debug, Serialize, Deserialize, Tagged)]
//! struct StudentJoinedCourse {
//!     #[tag(prefix = "course-")]
//!     course: String,
//!     #[tag(prefix = "student-")]
//!     student: String,
//! }
//!
//! // What the course's state reads: these two types, nothing else.
//! #[derive(DcbEvents)]
//! enum CourseEvent {
//!     Registered(CourseRegistered),
//!     Joined(StudentJoinedCourse),
//! }
//!
//! #[derive(Clone)]
//! struct Course { id: String, capacity: Option<u32>, students: u32 }
//!
//! impl Perspective for Course {
//!     type Events = CourseEvent;
//!     fn tags(&self) -> Vec<String> { vec![format!("course-{}", self.id)] }
//!     fn apply(&mut self, event: CourseEvent) {
//!         match event {
//!             CourseEvent::Registered(e) => self.capacity = Some(e.capacity),
//!             CourseEvent::Joined(_) => self.students += 1,
//!         }
//!     }
//! }
//!
//! let app = DcbApplication::new(Arc::new(MemoryDcbRecorder::new()));
//! app.append([CourseRegistered { course: "maths".into(), capacity: 1 }])?;
//! let course = Course { id: "maths".into(), capacity: None, students: 0 };
//! let join = |student: &str| {
//!     let student = student.to_owned();
//!     app.decide(course.clone(), move |c: &Course| match c.capacity {
//!         None => Err("no such course"),
//!         Some(capacity) if c.students >= capacity => Err("the course is full"),
//!         Some(_) => Ok(vec![StudentJoinedCourse { course: c.id.clone(), student: student.clone() }.into()]),
//!     })
//! };
//! assert_eq!(join("ada").unwrap(), Some(2));
//! assert!(matches!(join("bob"), Err(CommandError::Rejected("the course is full"))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What is shared with Python's DCB applications: the store (PostgreSQL's
//! `postgres_tt` tables), tags, and the data of events whose fields
//! MessagePack encodes alike (strings, integers, floats, booleans, lists,
//! maps, `None`/`Option`, and UUIDs, written as strings as msgspec writes
//! them). Python's `type` is the topic of its decision class
//! (`"module:Class"`): name the Rust struct's type after it,
//! `#[dcb(type = "courses.domain:StudentJoinedCourse")]`, for both sides
//! to read each other's events. Python's enduring objects map to plain
//! fields: their id (`<class>-<uuid4>`) is a tagged field, and their
//! initial event has a field `originator_topic` naming the class. The
//! courses example (`examples/src/courses.rs`) shares one store with
//! Python's `Enrolment` application this way, tested against 9.5.6.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::application::{CommandError, RetryPolicy};
use crate::error::{Error, Result};
use crate::persistence::dcb::{
    DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder, DcbSequencedEvent,
};

/// Derives [`trait@Tagged`] and [`trait@DcbEvents`] for a struct with
/// named fields: one DCB event type.
///
/// - `#[dcb(type = "Name")]` on the struct: the stored type (the struct's
///   name when absent; Python's topic, `"module:Class"`, to share events
///   with a Python application).
/// - `#[tag]` on a field: a tag, the field's value as `Display` writes
///   it; `#[tag(prefix = "course-")]`: the same after the prefix. Tags
///   come in field order. An event may have none.
///
/// The struct must also derive serde's `Serialize` and `Deserialize`:
/// its data is MessagePack of a map of its fields.
///
/// ```
/// use annals::dcb::Tagged;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Tagged)]
/// #[dcb(type = "courses:StudentJoinedCourse")]
/// struct Joined {
///     #[tag(prefix = "student-")]
///     student: u32,
///     #[tag(prefix = "course-")]
///     course: String,
///     note: String,
/// }
///
/// let joined = Joined { student: 7, course: "maths".into(), note: String::new() };
/// assert_eq!(Joined::TYPE, "courses:StudentJoinedCourse");
/// assert_eq!(joined.tags(), ["student-7", "course-maths"]);
/// ```
///
/// Each mistake is a compile error at the offending tokens: on an enum or
/// a tuple struct, a generic struct, an unknown option, an empty type, a
/// `#[tag]` field whose type is not `Display`, or a struct that does not
/// derive `Serialize` and `Deserialize`.
pub use annals_macros::Tagged;

/// Derives [`trait@DcbEvents`] (and `From` each event) for an enum whose
/// variants each hold one [`Tagged`](macro@Tagged) struct: the event
/// types a [`Perspective`] reads.
///
/// ```
/// use annals::dcb::{DcbEvents, Tagged};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Tagged)]
/// struct Opened { #[tag] id: u32 }
/// #[derive(Serialize, Deserialize, Tagged)]
/// struct Closed { #[tag] id: u32 }
///
/// #[derive(DcbEvents)]
/// enum Door { Opened(Opened), Closed(Closed) }
///
/// assert_eq!(Door::TYPES, ["Opened", "Closed"]);
/// let _: Door = Opened { id: 1 }.into();
/// ```
///
/// A compile error, at the offending tokens: on a struct, on an enum with
/// no variants, with a variant that does not hold exactly one value, with
/// a variant whose value is not `Tagged`, with two variants of one stored
/// type, or with `#[dcb(type = ...)]` on the enum.
pub use annals_macros::DcbEvents;

/// One DCB event type: a struct, its stored type and the tags its fields
/// give it. Derive it ([`Tagged`](macro@Tagged)).
pub trait Tagged: Serialize + DeserializeOwned {
    /// The stored type (Python's `type`).
    const TYPE: &'static str;

    /// The event's tags.
    fn tags(&self) -> Vec<String>;
}

/// The event types a [`Perspective`] reads, and how to decode them: an
/// enum that derives [`DcbEvents`](macro@DcbEvents), or one
/// [`Tagged`](macro@Tagged) struct.
pub trait DcbEvents: Sized {
    /// The stored types it decodes (its query's types).
    const TYPES: &'static [&'static str];

    /// Decodes a stored event of one of [`TYPES`](Self::TYPES).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when the type is another, or the data does not
    /// decode as the type's struct.
    fn decode(event: &DcbSequencedEvent) -> Result<Self>;
}

/// The MessagePack of `event`'s fields, as a map (Python's
/// `msgspec.msgpack.encode` of a `Struct`).
///
/// # Errors
///
/// [`Error::Encode`] when serde cannot serialize it.
pub fn encode<T: Tagged>(event: &T) -> Result<DcbEvent> {
    encode_parts(T::TYPE, event.tags(), event).0
}

/// An event of type `type_` with `tags`, its data the MessagePack map of
/// `fields`.
pub(crate) fn encode_parts<S: Serialize + ?Sized>(
    type_: &'static str,
    tags: Vec<String>,
    fields: &S,
) -> NewEvent {
    let mut data = Vec::new();
    let mut serializer = rmp_serde::Serializer::new(&mut data)
        .with_struct_map()
        .with_human_readable();
    NewEvent(match fields.serialize(&mut serializer) {
        Ok(()) => Ok(DcbEvent::new(type_, data).tags(tags)),
        Err(e) => Err(Error::Encode {
            topic: type_,
            aggregate: "DCB event",
            source: Box::new(e),
        }),
    })
}

/// Decodes a stored event as `T` (its type must be `T::TYPE`).
///
/// # Errors
///
/// [`Error::Decode`] (with the event's tags as its `id` and position as
/// its `version`) when the type differs or the data does not decode.
pub fn decode<T: Tagged>(event: &DcbSequencedEvent) -> Result<T> {
    if event.event.type_ != T::TYPE {
        return Err(unexpected(event, &[T::TYPE]));
    }
    let mut deserializer =
        rmp_serde::Deserializer::from_read_ref(&event.event.data).with_human_readable();
    T::deserialize(&mut deserializer).map_err(|e| decode_error(event, Box::new(e)))
}

fn decode_error(
    event: &DcbSequencedEvent,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> Error {
    Error::Decode {
        topic: event.event.type_.clone(),
        aggregate: "DCB event",
        id: event.event.tags.join(","),
        version: event.position,
        source,
    }
}

/// The error of an event whose type is none of `types`.
pub(crate) fn unexpected(event: &DcbSequencedEvent, types: &[&str]) -> Error {
    decode_error(event, format!("the type is not one of {types:?}").into())
}

/// A new event, encoded, for a decision to return: `event.into()` from
/// any [`Tagged`](macro@Tagged) struct, or from an enum that derives
/// [`DcbEvents`](macro@DcbEvents).
#[derive(Debug)]
pub struct NewEvent(Result<DcbEvent>);

impl NewEvent {
    /// The stored event it is, or the error encoding it.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`].
    pub fn into_event(self) -> Result<DcbEvent> {
        self.0
    }
}

impl<T: Tagged> From<T> for NewEvent {
    fn from(event: T) -> Self {
        NewEvent(encode(&event))
    }
}

impl From<DcbEvent> for NewEvent {
    /// An event already encoded (a type without a struct).
    fn from(event: DcbEvent) -> Self {
        NewEvent(Ok(event))
    }
}

/// A state built from the events of a consistency boundary: Python's
/// perspective (and, keyed by one tag, its enduring object).
///
/// Its query is one item: the types of [`Events`](Self::Events) and the
/// tags of [`tags`](Self::tags), which an event must all have. Each event
/// that matches is decoded as `Events` and [`apply`](Self::apply)'d, in
/// position order.
pub trait Perspective {
    /// The event types it reads.
    type Events: DcbEvents;

    /// The tags every event it reads has (none: every event of its types).
    fn tags(&self) -> Vec<String>;

    /// Folds in one event.
    fn apply(&mut self, event: Self::Events);
}

/// What a decision reads: its query, and how to fold the events that
/// match it. Every [`Perspective`] is one, and so is a tuple of up to six
/// (Python's `Group`): the union of their queries, each event folded into
/// the members whose query it matches.
pub trait Boundary {
    /// The events it reads (and that would fail its append).
    fn query(&self) -> DcbQuery;

    /// Folds in `event`, if it matches this boundary's query.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when a matching event does not decode.
    fn fold(&mut self, event: &DcbSequencedEvent) -> Result<()>;

    /// Folds in each of `events` that matches, in order (a state's tags
    /// are taken once, before the first).
    ///
    /// # Errors
    ///
    /// As [`fold`](Self::fold).
    fn fold_all(&mut self, events: &[DcbSequencedEvent]) -> Result<()> {
        events.iter().try_for_each(|event| self.fold(event))
    }
}

impl<P: Perspective> Boundary for P {
    fn query(&self) -> DcbQuery {
        DcbQuery::item(
            DcbQueryItem::new()
                .types(P::Events::TYPES.iter().copied())
                .tags(self.tags()),
        )
    }

    fn fold(&mut self, event: &DcbSequencedEvent) -> Result<()> {
        self.fold_all(std::slice::from_ref(event))
    }

    fn fold_all(&mut self, events: &[DcbSequencedEvent]) -> Result<()> {
        let tags = self.tags();
        for event in events {
            let matches = P::Events::TYPES.contains(&event.event.type_.as_str())
                && tags.iter().all(|t| event.event.tags.contains(t));
            if matches {
                self.apply(P::Events::decode(event)?);
            }
        }
        Ok(())
    }
}

macro_rules! group {
    ($($name:ident),+) => {
        impl<$($name: Boundary),+> Boundary for ($($name,)+) {
            fn query(&self) -> DcbQuery {
                #[allow(non_snake_case)]
                let ($($name,)+) = self;
                let mut items = Vec::new();
                $(items.extend($name.query().items);)+
                DcbQuery::new(items)
            }

            fn fold(&mut self, event: &DcbSequencedEvent) -> Result<()> {
                self.fold_all(std::slice::from_ref(event))
            }

            /// Each member folds the events in order. Members are
            /// independent: member by member is event by event.
            fn fold_all(&mut self, events: &[DcbSequencedEvent]) -> Result<()> {
                #[allow(non_snake_case)]
                let ($($name,)+) = self;
                $($name.fold_all(events)?;)+
                Ok(())
            }
        }
    };
}

group!(A);
group!(A, B);
group!(A, B, C);
group!(A, B, C, D);
group!(A, B, C, D, E);
group!(A, B, C, D, E, F);

/// A decision as a value (Python's slice): the state it reads and what it
/// decides from it, run by [`DcbApplication::run`].
pub trait Slice {
    /// What it reads.
    type State: Boundary;
    /// Why it refuses.
    type Error;

    /// The state, before any event is folded in.
    fn state(&self) -> Self::State;

    /// The events to append, given the folded state; or why not.
    ///
    /// # Errors
    ///
    /// The decision's refusal.
    fn decide(&self, state: &Self::State) -> std::result::Result<Vec<NewEvent>, Self::Error>;
}

/// A state folded from a store: see [`DcbApplication::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded<B> {
    /// The state.
    pub state: B,
    /// The read's head: the store's last position when it was read.
    pub head: Option<u64>,
    /// How many events were folded in.
    pub events: usize,
}

/// An application over a DCB store: reads boundaries, decides, and
/// appends on the condition of the read, retrying on a conflict.
///
/// ```
/// use annals::dcb::DcbApplication;
/// use annals::persistence::sqlite::SqliteDcbRecorder;
/// use std::sync::Arc;
///
/// let app = DcbApplication::new(Arc::new(SqliteDcbRecorder::in_memory()?));
/// assert_eq!(app.retry_policy().tries, 10);
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DcbApplication {
    recorder: Arc<dyn DcbRecorder>,
    retry: RetryPolicy,
}

impl DcbApplication {
    /// An application over `recorder`, retrying as [`RetryPolicy::default`].
    pub fn new(recorder: Arc<dyn DcbRecorder>) -> Self {
        Self {
            recorder,
            retry: RetryPolicy::default(),
        }
    }

    /// An application named `name` over the DCB store its settings name
    /// (see [`persistence::dcb::open`](crate::persistence::dcb::open): on
    /// PostgreSQL the tables of Python's DCB application of that name).
    ///
    /// # Errors
    ///
    /// A bad setting, or a store that cannot be opened.
    ///
    /// ```
    /// use annals::dcb::DcbApplication;
    /// use annals::env::Env;
    ///
    /// let env = Env::from_map("Enrolment", [("PERSISTENCE_MODULE", "sqlite"), ("SQLITE_DBNAME", ":memory:")]);
    /// let app = DcbApplication::open("Enrolment", &env)?;
    /// assert_eq!(app.recorder().read(&annals::persistence::dcb::DcbQuery::all(), None, None)?.head, None);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn open(name: &str, env: &crate::env::Env) -> Result<Self> {
        crate::persistence::dcb::open(name, env).map(Self::new)
    }

    /// The same, retrying failed conditions as `policy` says.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How failed conditions are retried.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The store.
    pub fn recorder(&self) -> &Arc<dyn DcbRecorder> {
        &self.recorder
    }

    /// Folds into `state` the events that match its query, and returns it
    /// with the read's head.
    ///
    /// # Errors
    ///
    /// The store failed, or an event did not decode.
    pub fn read<B: Boundary>(&self, state: B) -> Result<Folded<B>> {
        self.read_query(state).map(|(folded, _)| folded)
    }

    /// [`read`](Self::read), and the query it read (taken before any
    /// event is folded in: the condition of an append decided from it).
    fn read_query<B: Boundary>(&self, mut state: B) -> Result<(Folded<B>, DcbQuery)> {
        let query = state.query();
        let read = self.recorder.read(&query, None, None)?;
        state.fold_all(&read.events)?;
        let folded = Folded {
            state,
            head: read.head,
            events: read.events.len(),
        };
        Ok((folded, query))
    }

    /// Appends `events` with no condition (facts nothing decided on, such
    /// as a course registered by an administrator), and returns the
    /// position of the last.
    ///
    /// # Errors
    ///
    /// An event did not encode, there were none, or the store failed.
    pub fn append<I>(&self, events: I) -> Result<u64>
    where
        I: IntoIterator,
        I::Item: Into<NewEvent>,
    {
        let events = encode_all(events)?;
        self.recorder.append(&events, None)
    }

    /// Reads `state`'s boundary, folds it, runs `decision` on it, and
    /// appends the events it returns on the condition that no event
    /// matching the boundary was appended since the read. When another
    /// decision appended first, it all runs again, from a fresh clone of
    /// `state`, after a jittered pause, as the [`RetryPolicy`] says.
    /// Returns the position of the last event appended (`None` when the
    /// decision returned none: nothing is appended).
    ///
    /// # Errors
    ///
    /// [`CommandError::Rejected`] with the decision's error (nothing is
    /// appended); [`CommandError::Failed`] when the store failed, an event
    /// did not decode or encode, or the condition still failed at the
    /// last try (a conflict).
    pub fn decide<B, E, F>(
        &self,
        state: B,
        mut decision: F,
    ) -> std::result::Result<Option<u64>, CommandError<E>>
    where
        B: Boundary + Clone,
        F: FnMut(&B) -> std::result::Result<Vec<NewEvent>, E>,
    {
        self.decide_with(|| state.clone(), &mut decision)
    }

    /// Runs `slice` as [`decide`](Self::decide) runs a decision.
    ///
    /// # Errors
    ///
    /// As [`decide`](Self::decide).
    pub fn run<S: Slice>(
        &self,
        slice: &S,
    ) -> std::result::Result<Option<u64>, CommandError<S::Error>> {
        self.decide_with(|| slice.state(), |state| slice.decide(state))
    }

    fn decide_with<B, E>(
        &self,
        mut state: impl FnMut() -> B,
        mut decision: impl FnMut(&B) -> std::result::Result<Vec<NewEvent>, E>,
    ) -> std::result::Result<Option<u64>, CommandError<E>>
    where
        B: Boundary,
    {
        let policy = self.retry;
        let mut tried = 0;
        loop {
            tried += 1;
            let (folded, query) = self.read_query(state())?;
            let events = decision(&folded.state).map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(None);
            }
            let events = encode_all(events)?;
            let condition = DcbAppendCondition::new(query).after(folded.head);
            match self.recorder.append(&events, Some(&condition)) {
                Ok(position) => return Ok(Some(position)),
                Err(e) if e.is_conflict() && tried < policy.tries.max(1) => {
                    let pause = policy.pause(tried);
                    tracing::info!(tried, ?pause, "DCB condition failed; deciding again");
                    std::thread::sleep(pause);
                }
                Err(e) => return Err(CommandError::Failed(e)),
            }
        }
    }
}

fn encode_all<I>(events: I) -> Result<Vec<DcbEvent>>
where
    I: IntoIterator,
    I::Item: Into<NewEvent>,
{
    events.into_iter().map(|e| e.into().into_event()).collect()
}

/// What `#[derive(Tagged)]` and `#[derive(DcbEvents)]` expand to names
/// (through `annals::__private::dcb`).
#[doc(hidden)]
pub mod private {
    pub use super::{decode, DcbEvents, NewEvent, Tagged};

    /// An event of `type_` with `tags`, its data the map of `fields`.
    pub fn encode_parts<S: serde::Serialize + ?Sized>(
        type_: &'static str,
        tags: Vec<String>,
        fields: &S,
    ) -> NewEvent {
        super::encode_parts(type_, tags, fields)
    }
    pub use crate::error::Result;
    pub use crate::persistence::dcb::DcbSequencedEvent;

    /// A tag: `prefix` and the value as `Display` writes it.
    pub fn tag<T: std::fmt::Display + ?Sized>(prefix: &str, value: &T) -> String {
        format!("{prefix}{value}")
    }

    /// The error of an event of none of `types`.
    pub fn unexpected(event: &DcbSequencedEvent, types: &[&str]) -> crate::Error {
        super::unexpected(event, types)
    }

    /// Whether `types` has no name twice (at compile time).
    pub const fn distinct(types: &[&str]) -> bool {
        let mut i = 0;
        while i < types.len() {
            let mut j = i + 1;
            while j < types.len() {
                if same(types[i].as_bytes(), types[j].as_bytes()) {
                    return false;
                }
                j += 1;
            }
            i += 1;
        }
        true
    }

    const fn same(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}
