//! Running an event's body: the aggregate type and timestamp of the
//! event being applied, the metadata recorded with it, and replay.

use super::{Aggregate, DomainEvent, Event as _, EventHash};
use crate::clock::{self, Timestamp};
use crate::error::{Error, Result};

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
#[derive(Debug)]
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
/// only once (versions follow without gaps: see [`check_follows`]). The
/// aggregate is changed where it lies: moving it in and out per event cost
/// ~130 instructions an event (callgrind, W2).
pub(crate) fn replay<A: Aggregate>(state: &mut Option<A>, recorded: DomainEvent<A>) -> Result<()> {
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
    let name = event.name();
    let agg = match state {
        None => {
            let created = {
                let _applying = Applying::replaying::<A>(timestamp);
                A::__create(event)
            };
            let created = created.map_err(|_| {
                corrupt(format!(
                    "it begins with {name} (version {originator_version}), which is not a creation event"
                ))
            })?;
            let agg = state.insert(created);
            let meta = agg.__meta_mut();
            meta.id = originator_id;
            meta.created_on = timestamp;
            agg
        }
        Some(agg) => {
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
    Ok(())
}
