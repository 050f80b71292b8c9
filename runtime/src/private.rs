//! The contract between `annals-macros` and the runtime, in one place, as
//! serde keeps serde_derive's: everything the generated code names, and
//! nothing a user should. Reached as `annals::__private` (hidden); the
//! macros name nothing else of annals. A change here is a change to both
//! crates, which is why the workspace pins `annals-macros` with `=`.
//!
//! What the generated code relies on:
//!
//! - the re-exports below: the traits an aggregate implements
//!   (`Aggregate`, `AggregateState`, `AggregateInternals` with `__meta`,
//!   `__create`; `Event`, `EventInternals` with `__serialize`,
//!   `__deserialize`, `__upcast`; `Event::__variant_of`), the hidden
//!   field's type `Meta`, `Header`, `EventField` (one bound naming the four
//!   traits an argument needs), `probe` (which impls a struct has),
//!   `applying`, `__created` and `__triggered` (the frame an event body
//!   runs in, and recording the event), the timestamp codec
//!   (`timestamp`, `Timestamp`), and serde, serde_json and uuid as annals
//!   links them;
//! - `header_timestamp`: how an event's timestamp is written, which
//!   reads the thread-local codec mode (`transcoding::python_mode`) set
//!   around a serialization by the mapper, since serde has no context
//!   parameter;
//! - `personal`: how `#[personal]` fields are sealed and opened, with the
//!   key the mapper sets around a serialization (thread-local, as above);
//! - the placeholder types `CreateIdGoesInTheAggregateImplBlock` and
//!   `Never` (the event type of an impl block that failed to expand),
//!   with their hand-written impls;
//! - on the user's types, the names the macros generate: the field
//!   `__annals`, the methods `__annals_apply_<method>` and
//!   `<method>_with_id`.

use serde::Serializer;

use crate::clock::Timestamp as Stamp;

/// What `#[derive(AnyEvent)]` names.
pub use crate::any_event::private as any;
pub use crate::clock::stored as timestamp;
pub use crate::clock::Timestamp;
/// What `#[derive(Tagged)]` and `#[derive(DcbEvents)]` name.
pub use crate::dcb::private as dcb;
pub use crate::domain::probe;
pub use crate::domain::Header;
pub use crate::domain::{
    __created, __triggered, applying, Aggregate, AggregateId, AggregateInternals, AggregateState,
    Apply, Event, EventField, EventInternals, Evolve, Meta,
};
/// How `#[personal]` fields are written and read.
pub mod personal {
    pub use crate::personal::{deserialize, deserialize_default, serialize};
}
pub use serde;
pub use serde_json as json;
pub use uuid::Uuid;

/// The parameter of the placeholder `create_id` that `#[aggregate]`
/// defines when its impl block has none: a `create_id` in another impl
/// block of the type then clashes with it (E0592) instead of being
/// silently ignored. Move that `create_id` into the `#[aggregate]` impl
/// block.
#[allow(missing_debug_implementations)]
pub enum CreateIdGoesInTheAggregateImplBlock {}

/// The event type of an aggregate whose impl block failed to expand:
/// it has no values, so nothing can be done with it.
#[derive(Debug, Clone)]
pub enum Never {}

impl Event for Never {
    const TOPICS: &'static [&'static str] = &[];
    const NAMES: &'static [&'static str] = &[];
    const VERSIONS: &'static [u32] = &[];
    fn variant_index(&self) -> usize {
        match *self {}
    }
    fn name(&self) -> &'static str {
        match *self {}
    }
    fn is_creation(&self) -> bool {
        match *self {}
    }
    fn is_discarding(&self) -> bool {
        match *self {}
    }
    fn __variant_of(_: &str) -> Option<usize> {
        None
    }
}

impl EventInternals for Never {
    fn __serialize<S: serde::Serializer>(
        &self,
        _: &Header,
        _: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match *self {}
    }
    fn __upcast(_: usize, _: u32, _: &mut serde_json::Value) -> bool {
        false
    }
    fn __deserialize<'de, D: serde::Deserializer<'de>>(
        _: usize,
        _: D,
    ) -> std::result::Result<(Self, Header, bool), D::Error> {
        Err(serde::de::Error::custom("no events"))
    }
}

/// How the generated code writes an event's timestamp: the fixed RFC 3339
/// layout, or Python's `datetime_iso` under the Python codec (the mapper
/// sets the mode on the thread around the serialization).
pub fn header_timestamp<S: Serializer>(ts: &&Stamp, serializer: S) -> Result<S::Ok, S::Error> {
    crate::transcoding::write_timestamp(ts, serializer)
}
