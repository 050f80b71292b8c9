//! What a save stores: [`Save`] for one aggregate, several, or a
//! [`Batch`] of different types, and the rows they encode ([`Encoded`]).

use std::fmt;

use super::Application;
use crate::domain::{Aggregate, AggregateId, Metadata};
use crate::error::{Error, Result};
use crate::mapper::Mapper;
use crate::persistence::StoredEvent;

/// One or several aggregates that [`Application::save`] stores together.
pub trait Save {
    /// Appends the stored form of every pending event to `out`, giving
    /// events without correlation or causation ids those of `metadata`.
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()>;
    /// The events are stored: forget them, update the cache, take due
    /// snapshots.
    fn saved(&mut self, app: &Application);
    /// The events were handed over to be stored in a larger transaction:
    /// forget them (no cache update, no snapshot).
    fn forget_pending(&mut self);
}

/// What a save encodes: the rows, and which aggregates they are of (to say
/// which one a conflict was about).
#[derive(Debug, Default)]
pub struct Encoded {
    pub(crate) events: Vec<StoredEvent>,
    streams: Vec<Stream>,
    /// The first correlation id given to an event, for the save's span.
    correlation_id: Option<uuid::Uuid>,
}

/// One aggregate of a save. Its ids are not kept as strings (two
/// allocations per save): the stored one is in its first row, and the
/// displayed one is made from that for an error or a recording span.
#[derive(Debug)]
struct Stream {
    aggregate: &'static str,
    /// The index in `Encoded::events` of its first row.
    first: usize,
    first_version: u64,
    /// The id as its type displays it, from the stored form.
    display: fn(&str) -> String,
}

impl Stream {
    fn stored_id<'a>(&self, events: &'a [StoredEvent]) -> Option<&'a str> {
        events.get(self.first).map(|e| e.originator_id.as_str())
    }

    fn id(&self, events: &[StoredEvent]) -> Option<String> {
        self.stored_id(events).map(self.display)
    }
}

/// `stored` as `A`'s id type displays it (as stored, if it does not parse).
fn display_id<A: Aggregate>(stored: &str) -> String {
    A::Id::from_stored(stored).map_or_else(|_| stored.to_owned(), |id| id.to_string())
}

impl Encoded {
    /// The rows.
    pub fn events(&self) -> &[StoredEvent] {
        &self.events
    }

    /// Records on a `save` span what is saved: the aggregate type when
    /// there is one, the id and versions when there is one stream, the
    /// number of events and the correlation id (`metadata`'s, else the
    /// first event's).
    pub(super) fn record(&self, span: &tracing::Span, metadata: Option<uuid::Uuid>) {
        span.record("events", self.events.len());
        if let Some(correlation_id) = metadata.or(self.correlation_id) {
            span.record("correlation_id", tracing::field::display(correlation_id));
        }
        let Some(first) = self.streams.first() else {
            return;
        };
        if self.streams.iter().all(|s| s.aggregate == first.aggregate) {
            span.record("aggregate", first.aggregate);
        }
        if let ([stream], (Some(first), Some(last))) =
            (&self.streams[..], (self.events.first(), self.events.last()))
        {
            if !span.is_disabled() {
                if let Some(id) = stream.id(&self.events) {
                    span.record("id", id.as_str());
                }
            }
            span.record("first_version", first.originator_version);
            span.record("last_version", last.originator_version);
        }
    }

    /// `error`, with the aggregate it is about where that can be told: the
    /// stream the store named, or the one stream saved.
    pub(crate) fn explain(&self, error: Error) -> Error {
        let Error::Conflict {
            aggregate: None,
            id,
            version,
            message,
        } = error
        else {
            return error;
        };
        let stream = match &id {
            Some(stored) => self
                .streams
                .iter()
                .find(|s| s.stored_id(&self.events) == Some(stored.as_str())),
            None if self.streams.len() == 1 => self.streams.first(),
            None => None,
        };
        match stream {
            Some(s) => Error::Conflict {
                aggregate: Some(s.aggregate),
                id: s.id(&self.events),
                version: version.or(Some(s.first_version)),
                message,
            },
            None => Error::Conflict {
                aggregate: None,
                id,
                version,
                message,
            },
        }
    }
}

/// Clears the pending events (they are stored); returns them.
pub(super) fn forget_pending<A: Aggregate>(aggregate: &mut A) -> Vec<crate::DomainEvent<A>> {
    let meta = aggregate.__meta_mut();
    if let Some(hash) = meta.pending_hash.take() {
        meta.last_hash = Some(hash);
    }
    meta.take_pending()
}

fn encode_aggregate<A: Aggregate>(
    aggregate: &mut A,
    mapper: &Mapper,
    metadata: &Metadata,
    out: &mut Encoded,
) -> Result<()> {
    let meta = aggregate.__meta_mut();
    out.events.reserve(meta.pending.len());
    if let Some(first) = meta.pending.first() {
        out.streams.push(Stream {
            aggregate: A::NAME,
            first: out.events.len(),
            first_version: first.originator_version,
            display: display_id::<A>,
        });
    }
    let mut chain = meta.last_hash;
    for event in &mut meta.pending {
        event.correlation_id = event.correlation_id.or(metadata.correlation_id);
        event.causation_id = event.causation_id.or(metadata.causation_id);
        out.correlation_id = out.correlation_id.or(event.correlation_id);
        out.events.push(mapper.encode_link(event, &mut chain)?);
    }
    meta.pending_hash = if mapper.hash_chain() { chain } else { None };
    Ok(())
}

impl<A: Aggregate> Save for &mut A {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        encode_aggregate(&mut **self, mapper, metadata, out)
    }
    fn saved(&mut self, app: &Application) {
        app.saved_aggregate(&mut **self);
    }
    fn forget_pending(&mut self) {
        forget_pending(&mut **self);
    }
}

impl<A: Aggregate> Save for &mut [A] {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        // Sized once: growing by doubling reallocates a batch's rows
        // several times (W5: malloc was an eighth of a save's instructions).
        let pending = self.iter().map(|a| a.__meta().pending.len()).sum();
        out.events.reserve(pending);
        out.streams.reserve(self.len());
        self.iter_mut()
            .try_for_each(|a| encode_aggregate(a, mapper, metadata, out))
    }
    fn saved(&mut self, app: &Application) {
        for a in self.iter_mut() {
            app.saved_aggregate(a);
        }
    }
    fn forget_pending(&mut self) {
        for a in self.iter_mut() {
            forget_pending(a);
        }
    }
}

impl<S: Save> Save for Vec<S> {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        self.iter_mut()
            .try_for_each(|s| s.encode_pending(mapper, metadata, out))
    }
    fn saved(&mut self, app: &Application) {
        for s in self.iter_mut() {
            s.saved(app);
        }
    }
    fn forget_pending(&mut self) {
        self.iter_mut().for_each(Save::forget_pending);
    }
}

macro_rules! save_tuple {
    ($($s:ident $i:tt),+) => {
        impl<$($s: Save),+> Save for ($($s,)+) {
            fn encode_pending(
                &mut self,
                mapper: &Mapper,
                metadata: &Metadata,
                out: &mut Encoded,
            ) -> Result<()> {
                $(self.$i.encode_pending(mapper, metadata, out)?;)+
                Ok(())
            }
            fn saved(&mut self, app: &Application) {
                $(self.$i.saved(app);)+
            }
            fn forget_pending(&mut self) {
                $(self.$i.forget_pending();)+
            }
        }
    };
}

/// Aggregates of any types, gathered at run time, saved together:
/// `app.save(batch)` stores all of their events in one transaction.
///
/// ```
/// use annals::prelude::*;
/// use annals::application::Batch;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Cat { pub name: String }
/// #[aggregate]
/// impl Cat {
///     #[event("Adopted")]
///     pub fn adopt(name: String) -> Self { Cat { name } }
/// }
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Bowl { pub size: u8 }
/// #[aggregate]
/// impl Bowl {
///     #[event("Bought")]
///     pub fn buy(size: u8) -> Self { Bowl { size } }
/// }
///
/// let app = Application::builder("Home").build()?;
/// let mut cats: Vec<Cat> = ["Tom", "Kit"].map(|n| Cat::adopt(n.into())).into();
/// let mut bowl = Bowl::buy(2);
/// let mut batch = Batch::new();
/// for cat in &mut cats {
///     batch.push(cat);
/// }
/// batch.push(&mut bowl);
/// assert_eq!(app.save(batch)?.len(), 3);
/// assert!(app.contains::<Bowl>(bowl.id())?);
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Default)]
#[must_use = "a batch stores nothing until it is saved"]
pub struct Batch<'a> {
    members: Vec<Box<dyn Save + 'a>>,
}

impl fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("members", &self.members.len())
            .finish()
    }
}

impl<'a> Batch<'a> {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an aggregate (`&mut dog`), or anything else [`Save`] takes.
    pub fn push<A: Aggregate>(&mut self, aggregate: &'a mut A) {
        self.members.push(Box::new(aggregate));
    }

    /// Adds anything [`Save`] takes (a slice, a tuple, another batch).
    pub fn push_save(&mut self, save: impl Save + 'a) {
        self.members.push(Box::new(save));
    }

    /// How many members were pushed.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl Save for Batch<'_> {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        self.members.encode_pending(mapper, metadata, out)
    }
    fn saved(&mut self, app: &Application) {
        self.members.saved(app);
    }
    fn forget_pending(&mut self) {
        self.members.forget_pending();
    }
}

impl<S: Save + ?Sized> Save for Box<S> {
    fn encode_pending(
        &mut self,
        mapper: &Mapper,
        metadata: &Metadata,
        out: &mut Encoded,
    ) -> Result<()> {
        (**self).encode_pending(mapper, metadata, out)
    }
    fn saved(&mut self, app: &Application) {
        (**self).saved(app);
    }
    fn forget_pending(&mut self) {
        (**self).forget_pending();
    }
}

save_tuple!(S0 0, S1 1);
save_tuple!(S0 0, S1 1, S2 2);
save_tuple!(S0 0, S1 1, S2 2, S3 3);
save_tuple!(S0 0, S1 1, S2 2, S3 3, S4 4);
save_tuple!(S0 0, S1 1, S2 2, S3 3, S4 4, S5 5);
