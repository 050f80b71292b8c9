//! Dynamic consistency boundaries (DCB): tagged events in one sequence,
//! read by query, appended on a condition.
//!
//! The model of Python eventsourcing 9.5's `eventsourcing.dcb` (and of the
//! specification at dcb.events). An event ([`DcbEvent`]) has a type, data
//! and tags, and belongs to no stream: the store gives it a position in
//! one sequence. A decision reads the events that match a [`DcbQuery`]
//! ([`DcbRecorder::read`]), and appends new ones on the condition
//! ([`DcbAppendCondition`]) that no event matching that query was
//! appended after the position it read ([`DcbRecorder::append`]); a
//! failed condition is a [`Conflict`](crate::Error::Conflict) and stores
//! nothing.
//!
//! Positions are unique and increase in the order of appends; there may be
//! gaps (PostgreSQL's sequence skips the positions of rolled-back
//! appends).
//!
//! ```
//! use annals_core::persistence::dcb::{
//!     DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder, MemoryDcbRecorder,
//! };
//!
//! let store = MemoryDcbRecorder::new();
//! let boundary = DcbQuery::item(DcbQueryItem::new().tags(["course-1"]));
//!
//! // Decide from what the boundary holds now...
//! let read = store.read(&boundary, None, None)?;
//! assert!(read.events.is_empty());
//! // ...and append only if nothing in it changed since.
//! let registered = DcbEvent::new("CourseRegistered", b"{}".to_vec()).tags(["course-1"]);
//! let condition = DcbAppendCondition::new(boundary.clone()).after(read.head);
//! assert_eq!(store.append(&[registered.clone()], Some(&condition))?, 1);
//! // The same decision again, from the same read: the boundary changed.
//! let err = store.append(&[registered], Some(&condition)).unwrap_err();
//! assert!(err.is_conflict());
//! # Ok::<(), annals_core::Error>(())
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::wake::{Notifier, Signal, Watch};
use crate::error::{Error, Result};

/// An event to append: a type, opaque data and tags.
///
/// ```
/// use annals_core::persistence::dcb::DcbEvent;
///
/// let event = DcbEvent::new("StudentJoinedCourse", br#"{"seat":3}"#.to_vec())
///     .tags(["student-1", "course-1"]);
/// assert_eq!(event.type_, "StudentJoinedCourse");
/// assert_eq!(event.tags, ["student-1", "course-1"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DcbEvent {
    /// The event's type (Python's `type`).
    pub type_: String,
    /// The event's data, as stored.
    pub data: Vec<u8>,
    /// The tags a query selects the event by.
    pub tags: Vec<String>,
}

impl DcbEvent {
    /// An event of type `type_` with `data` and no tags.
    pub fn new(type_: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            type_: type_.into(),
            data: data.into(),
            tags: Vec::new(),
        }
    }

    /// The event with these tags (instead of the ones it had).
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// A stored event and its position in the store's sequence.
///
/// ```
/// use annals_core::persistence::dcb::{DcbEvent, DcbRecorder, MemoryDcbRecorder, DcbQuery};
///
/// let store = MemoryDcbRecorder::new();
/// store.append(&[DcbEvent::new("A", b"1".to_vec())], None)?;
/// let read = store.read(&DcbQuery::all(), None, None)?;
/// assert_eq!((read.events[0].position, read.events[0].event.type_.as_str()), (1, "A"));
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DcbSequencedEvent {
    /// The event as appended.
    pub event: DcbEvent,
    /// Its position: unique, increasing in append order, maybe with gaps.
    pub position: u64,
}

/// One way an event can match a query: its type is one of `types` (or
/// `types` is empty), and it has every one of `tags`.
///
/// ```
/// use annals_core::persistence::dcb::{DcbEvent, DcbQueryItem};
///
/// let item = DcbQueryItem::new().types(["StudentJoinedCourse"]).tags(["course-1"]);
/// let joined = DcbEvent::new("StudentJoinedCourse", vec![]).tags(["student-1", "course-1"]);
/// assert!(item.matches(&joined));
/// assert!(!item.matches(&DcbEvent::new("StudentJoinedCourse", vec![]).tags(["course-2"])));
/// // No types and no tags: every event.
/// assert!(DcbQueryItem::new().matches(&joined));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DcbQueryItem {
    /// The types it accepts (any type when empty).
    pub types: Vec<String>,
    /// The tags an event must all have.
    pub tags: Vec<String>,
}

impl DcbQueryItem {
    /// An item that matches every event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only events of these types.
    pub fn types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Only events with all these tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `event` matches this item.
    pub fn matches(&self, event: &DcbEvent) -> bool {
        (self.types.is_empty() || self.types.contains(&event.type_))
            && self.tags.iter().all(|tag| event.tags.contains(tag))
    }
}

/// Which events to read, or to fail an append on: those matching any of
/// its items; every event when it has none.
///
/// ```
/// use annals_core::persistence::dcb::{DcbEvent, DcbQuery, DcbQueryItem};
///
/// let boundary = DcbQuery::new([
///     DcbQueryItem::new().types(["StudentRegistered"]).tags(["student-1"]),
///     DcbQueryItem::new().types(["CourseRegistered"]).tags(["course-1"]),
/// ]);
/// let course = DcbEvent::new("CourseRegistered", vec![]).tags(["course-1"]);
/// assert!(boundary.matches(&course));
/// assert!(!boundary.matches(&DcbEvent::new("CourseRegistered", vec![]).tags(["course-2"])));
/// assert!(DcbQuery::all().matches(&course));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DcbQuery {
    /// The items, ORed.
    pub items: Vec<DcbQueryItem>,
}

impl DcbQuery {
    /// A query of these items.
    pub fn new(items: impl IntoIterator<Item = DcbQueryItem>) -> Self {
        Self {
            items: items.into_iter().collect(),
        }
    }

    /// A query of one item.
    pub fn item(item: DcbQueryItem) -> Self {
        Self { items: vec![item] }
    }

    /// The query that matches every event (no items).
    pub fn all() -> Self {
        Self::default()
    }

    /// The query with `item` added.
    pub fn or(mut self, item: DcbQueryItem) -> Self {
        self.items.push(item);
        self
    }

    /// Whether `event` matches: some item matches it, or there are none.
    pub fn matches(&self, event: &DcbEvent) -> bool {
        self.items.is_empty() || self.items.iter().any(|item| item.matches(event))
    }
}

/// The condition of an append: it fails when an event matching
/// `fail_if_events_match` is stored after position `after` (anywhere, when
/// `after` is `None`).
///
/// ```
/// use annals_core::persistence::dcb::{DcbAppendCondition, DcbQuery, DcbQueryItem};
///
/// let condition = DcbAppendCondition::new(DcbQuery::item(DcbQueryItem::new().tags(["course-1"])))
///     .after(Some(12));
/// assert_eq!(condition.after, Some(12));
/// // The default fails when the store holds any event at all.
/// assert_eq!(DcbAppendCondition::default().fail_if_events_match, DcbQuery::all());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DcbAppendCondition {
    /// The events whose presence fails the append.
    pub fail_if_events_match: DcbQuery,
    /// Only events after this position count (all, when `None`).
    pub after: Option<u64>,
}

impl DcbAppendCondition {
    /// Fails when any event matches `fail_if_events_match`.
    pub fn new(fail_if_events_match: DcbQuery) -> Self {
        Self {
            fail_if_events_match,
            after: None,
        }
    }

    /// Only events after position `after` count (usually the `head` of
    /// the read the decision was made from).
    pub fn after(mut self, after: Option<u64>) -> Self {
        self.after = after;
        self
    }
}

/// What [`DcbRecorder::read`] returns: the events in position order, and
/// `head`.
///
/// `head`, as in Python: without a limit, the last position in the store
/// when it was read (`None` when the store is empty), which a decision
/// passes as its condition's `after` even when the query matched nothing
/// recent; with a limit, the position of the last event returned (`None`
/// when none was, as with a limit of 0).
///
/// ```
/// use annals_core::persistence::dcb::{DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder, MemoryDcbRecorder};
///
/// let store = MemoryDcbRecorder::new();
/// store.append(&[DcbEvent::new("A", vec![]).tags(["x"]), DcbEvent::new("B", vec![])], None)?;
/// let x = DcbQuery::item(DcbQueryItem::new().tags(["x"]));
/// assert_eq!(store.read(&x, None, None)?.head, Some(2)); // the store's last
/// assert_eq!(store.read(&x, None, Some(1))?.head, Some(1)); // the last returned
/// assert_eq!(store.read(&x, None, Some(0))?.head, None);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DcbReadResponse {
    /// The matching events, in position order.
    pub events: Vec<DcbSequencedEvent>,
    /// See the type's documentation.
    pub head: Option<u64>,
}

impl DcbReadResponse {
    /// The response to a read with `limit` of `events` from a store whose
    /// last position is `last` (only looked at without a limit): `head` as
    /// the type's documentation says.
    ///
    /// ```
    /// use annals_core::persistence::dcb::DcbReadResponse;
    ///
    /// assert_eq!(DcbReadResponse::with_head(vec![], None, Some(7)).head, Some(7));
    /// assert_eq!(DcbReadResponse::with_head(vec![], Some(5), Some(7)).head, None);
    /// ```
    pub fn with_head(
        events: Vec<DcbSequencedEvent>,
        limit: Option<usize>,
        last: Option<u64>,
    ) -> Self {
        let returned = events.last().map(|e| e.position);
        let head = match limit {
            None => last.max(returned),
            Some(_) => returned,
        };
        Self { events, head }
    }
}

/// A DCB event store: read by query, append on a condition, and (with
/// [`DcbSubscription`]) follow.
///
/// Object-safe: stores are used as `Arc<dyn DcbRecorder>`. The contract
/// every implementation passes is `testing::dcb` (feature `testing`).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbEvent, DcbQuery, DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// assert_eq!(store.append(&[DcbEvent::new("A", vec![]), DcbEvent::new("B", vec![])], None)?, 2);
/// assert_eq!(store.read(&DcbQuery::all(), Some(1), None)?.events.len(), 1);
/// # Ok::<(), annals_core::Error>(())
/// ```
pub trait DcbRecorder: Send + Sync {
    /// The events after position `after` (all, when `None`) that match
    /// `query`, in position order, at most `limit` of them, and the head
    /// (see [`DcbReadResponse`]).
    fn read(
        &self,
        query: &DcbQuery,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<DcbReadResponse>;

    /// Appends `events` atomically, unless `condition` fails, and returns
    /// the position of the last one.
    ///
    /// # Errors
    ///
    /// [`Conflict`](crate::Error::Conflict) when an event that matches the
    /// condition's query is stored after its `after`: nothing is stored.
    /// [`Error::Persistence`] for an empty `events` (as Python's
    /// `ProgrammingError`), or when the store fails.
    fn append(&self, events: &[DcbEvent], condition: Option<&DcbAppendCondition>) -> Result<u64>;

    /// Raises `signal` whenever events are appended to this store, until
    /// the returned watcher is dropped (as
    /// [`ApplicationRecorder::watch`](super::ApplicationRecorder::watch)).
    /// The default watches nothing: a [`DcbSubscription`] then polls.
    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        let _ = signal;
        Ok(Watch::none())
    }
}

/// The error of an append with no events (Python's `ProgrammingError`),
/// for stores to return.
///
/// ```
/// let err = annals_core::persistence::dcb::no_events();
/// assert!(!err.is_conflict());
/// ```
pub fn no_events() -> Error {
    Error::persistence("appending DCB events", "an append needs at least one event")
}

/// The error of an append whose condition failed (Python's
/// `IntegrityError`): a [`Conflict`](crate::Error::Conflict), for stores to
/// return.
///
/// ```
/// use annals_core::persistence::dcb::{condition_failed, DcbAppendCondition};
///
/// assert!(condition_failed(&DcbAppendCondition::default().after(Some(3))).is_conflict());
/// ```
pub fn condition_failed(condition: &DcbAppendCondition) -> Error {
    Error::conflict(format!(
        "an event matching the append condition's query is stored after position {}",
        condition
            .after
            .map_or_else(|| "0 (none read)".to_owned(), |a| a.to_string())
    ))
}

/// DCB events in memory, behind a read-write lock: the memory store's
/// [`DcbRecorder`], for tests and prototypes (Python's
/// `InMemoryDCBRecorder`).
///
/// ```
/// use annals_core::persistence::dcb::{DcbEvent, DcbQuery, DcbRecorder, MemoryDcbRecorder};
///
/// let store = MemoryDcbRecorder::new();
/// assert_eq!(store.append(&[DcbEvent::new("A", vec![])], None)?, 1);
/// assert_eq!(store.read(&DcbQuery::all(), None, None)?.head, Some(1));
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryDcbRecorder {
    events: RwLock<Vec<DcbSequencedEvent>>,
    appended: Notifier,
}

/// Events held in memory in position order with no gaps (position `n` at
/// index `n - 1`), as the memory store and the object store's cache hold
/// them: reads and condition checks by index, for stores written on top of
/// such a list.
///
/// ```
/// use annals_core::persistence::dcb::{
///     DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbSequencedEvent, Gapless,
/// };
///
/// let events: Vec<DcbSequencedEvent> = (1..=3)
///     .map(|position| DcbSequencedEvent { event: DcbEvent::new("Joined", vec![]).tags([format!("course-{position}")]), position })
///     .collect();
/// let course_2 = DcbQuery::item(DcbQueryItem::new().tags(["course-2"]));
/// let read = Gapless(&events).read(&course_2, None, None);
/// assert_eq!((read.events.len(), read.head), (1, Some(3)));
/// assert!(Gapless(&events).fails(&DcbAppendCondition::new(course_2.clone()).after(Some(1))));
/// assert!(!Gapless(&events).fails(&DcbAppendCondition::new(course_2).after(Some(2))));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Gapless<'a>(pub &'a [DcbSequencedEvent]);

impl<'a> Gapless<'a> {
    /// The events after `after` that match `query`, at most `limit`, with
    /// the head [`DcbReadResponse::with_head`] gives.
    pub fn read(
        self,
        query: &DcbQuery,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> DcbReadResponse {
        let found = self
            .after(after)
            .iter()
            .filter(|e| query.matches(&e.event))
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        let last = self.0.last().map(|e| e.position);
        DcbReadResponse::with_head(found, limit, last)
    }

    /// Whether an event after `condition.after` matches its query (the
    /// append must fail).
    pub fn fails(self, condition: &DcbAppendCondition) -> bool {
        self.after(condition.after)
            .iter()
            .any(|e| condition.fail_if_events_match.matches(&e.event))
    }

    /// The events after position `after` (position `n` is at index
    /// `n - 1`).
    fn after(self, after: Option<u64>) -> &'a [DcbSequencedEvent] {
        let first = usize::try_from(after.unwrap_or(0)).unwrap_or(usize::MAX);
        self.0.get(first..).unwrap_or(&[])
    }
}

impl MemoryDcbRecorder {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl DcbRecorder for MemoryDcbRecorder {
    fn read(
        &self,
        query: &DcbQuery,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<DcbReadResponse> {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        Ok(Gapless(&events).read(query, after, limit))
    }

    fn append(&self, events: &[DcbEvent], condition: Option<&DcbAppendCondition>) -> Result<u64> {
        if events.is_empty() {
            return Err(no_events());
        }
        let mut stored = self.events.write().unwrap_or_else(|e| e.into_inner());
        if let Some(condition) = condition {
            if Gapless(&stored).fails(condition) {
                return Err(condition_failed(condition));
            }
        }
        for event in events {
            let position = stored.len() as u64 + 1;
            stored.push(DcbSequencedEvent {
                event: event.clone(),
                position,
            });
        }
        let last = stored.len() as u64;
        drop(stored);
        self.appended.notify();
        Ok(last)
    }

    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        self.appended.subscribe(signal);
        Ok(Watch::none())
    }
}

/// How long a subscription without a store watcher waits before it looks
/// again.
const POLL: Duration = Duration::from_millis(100);

/// The events that match a query, from a position on, and then each new
/// one as it is appended (Python's `DCBSubscription`).
///
/// Reads in pages after the last position it returned, and waits on a
/// [`Signal`] that the store's [`watch`](DcbRecorder::watch) raises (and,
/// for a store that watches nothing, at most 100 ms between looks).
/// [`next_timeout`](Self::next_timeout) waits a bounded time; the
/// [`Iterator`] waits until an event comes or [`stopper`](Self::stopper)'s
/// handle stops it.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use annals_core::persistence::dcb::{
///     DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder, DcbSubscription, MemoryDcbRecorder,
/// };
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// store.append(&[DcbEvent::new("A", vec![]).tags(["x"]), DcbEvent::new("B", vec![])], None)?;
/// let x = DcbQuery::item(DcbQueryItem::new().tags(["x"]));
/// let mut subscription = DcbSubscription::new(store.clone(), x, None)?;
/// assert_eq!(subscription.next_timeout(Duration::from_secs(1))?.map(|e| e.position), Some(1));
/// assert_eq!(subscription.next_timeout(Duration::from_millis(10))?, None);
/// store.append(&[DcbEvent::new("C", vec![]).tags(["x"])], None)?;
/// assert_eq!(subscription.next_timeout(Duration::from_secs(1))?.map(|e| e.position), Some(3));
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug)]
pub struct DcbSubscription {
    recorder: Arc<dyn DcbRecorder>,
    query: DcbQuery,
    last: Option<u64>,
    page: VecDeque<DcbSequencedEvent>,
    signal: Arc<Signal>,
    stopped: Arc<AtomicBool>,
    watching: bool,
    _watch: Watch,
}

impl std::fmt::Debug for dyn DcbRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn DcbRecorder")
    }
}

/// Stops a [`DcbSubscription`] from another thread: its iterator then
/// ends.
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbQuery, DcbRecorder, DcbSubscription, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// let mut subscription = DcbSubscription::new(store, DcbQuery::all(), None)?;
/// let stop = subscription.stopper();
/// let follower = std::thread::spawn(move || subscription.by_ref().count());
/// stop.stop();
/// assert_eq!(follower.join().unwrap(), 0);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DcbStopper {
    signal: Arc<Signal>,
    stopped: Arc<AtomicBool>,
}

impl DcbStopper {
    /// Stops the subscription (and wakes it, if it waits).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.signal.raise();
    }
}

/// How many events a subscription reads at once.
const PAGE: usize = 100;

impl DcbSubscription {
    /// Follows the events of `recorder` that match `query`, after position
    /// `after` (from the first, when `None`).
    ///
    /// # Errors
    ///
    /// When the store's watcher cannot be started.
    pub fn new(
        recorder: Arc<dyn DcbRecorder>,
        query: DcbQuery,
        after: Option<u64>,
    ) -> Result<Self> {
        let signal = Signal::new();
        let watch = recorder.watch(&signal)?;
        // A store without a watcher thread is looked at every 100 ms too
        // (the memory store raises the signal at once all the same).
        let watching = watch.is_watching();
        Ok(Self {
            recorder,
            query,
            last: after,
            page: VecDeque::new(),
            signal,
            stopped: Arc::new(AtomicBool::new(false)),
            watching,
            _watch: watch,
        })
    }

    /// A handle that stops this subscription from another thread.
    pub fn stopper(&self) -> DcbStopper {
        DcbStopper {
            signal: self.signal.clone(),
            stopped: self.stopped.clone(),
        }
    }

    /// The position of the last event returned (or the `after` it started
    /// from).
    pub fn position(&self) -> Option<u64> {
        self.last
    }

    /// The next matching event, waiting at most `timeout` for one to be
    /// appended; `None` when none came, or the subscription was stopped.
    ///
    /// # Errors
    ///
    /// When reading the store fails.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<DcbSequencedEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if let Some(event) = self.page.pop_front() {
                self.last = Some(event.position);
                return Ok(Some(event));
            }
            let read = self.recorder.read(&self.query, self.last, Some(PAGE))?;
            if !read.events.is_empty() {
                self.page.extend(read.events);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut wait = deadline - now;
            if !self.watching {
                wait = wait.min(POLL);
            }
            self.signal.wait(wait);
        }
    }
}

impl Iterator for DcbSubscription {
    type Item = Result<DcbSequencedEvent>;

    /// The next matching event, waiting as long as it takes; `None` once
    /// stopped.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(Duration::from_secs(1)) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) if self.stopped.load(Ordering::SeqCst) => return None,
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
