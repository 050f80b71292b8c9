//! # annals: event sourcing for Rust
//!
//! Model the domain as plain structs and methods; annotate the methods that
//! change state with `#[event("Name")]`. `#[aggregate]` turns each one into
//! a variant of a generated event enum and the logic that applies it:
//! calling the method records a pending event and runs its body; replaying
//! the stored event runs the same body.
//!
//! ```
//! use annals::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[aggregate]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct Dog {
//!     pub name: String,
//!     pub tricks: Vec<String>,
//! }
//!
//! #[aggregate]
//! impl Dog {
//!     #[event("Registered")]
//!     pub fn register(name: String) -> Self {
//!         Dog { name, tricks: Vec::new() }
//!     }
//!
//!     #[event("TrickAdded")]
//!     pub fn add_trick(&mut self, trick: String) {
//!         self.tricks.push(trick);
//!     }
//! }
//!
//! let app = Application::new("DogSchool")?;
//! let mut dog = Dog::register("Fido".into());
//! dog.add_trick("roll over".into());
//! app.save(&mut dog)?;
//!
//! let copy: Dog = app.repository().get(dog.id())?;
//! assert_eq!(copy.tricks, ["roll over"]);
//! assert_eq!(copy.version(), 2);
//! assert_eq!(DogEvent::TOPICS, ["Dog.Registered", "Dog.TrickAdded"]);
//! # Ok::<(), annals::Error>(())
//! ```
//!
//! What `#[aggregate]` on the impl block accepts:
//! - `name = "Dog"`: the prefix of the topics (default: the type's name);
//! - `id = String`: string ids (stream names) instead of [`Uuid`]s;
//! - `initial_version = 0`: the creation event's version (default 1);
//! - `version = N`: the version of the snapshot state, with
//!   `#[upcast(snapshot, from = k)]` functions for older ones;
//! - `aliases = ["OldName"]`: former names, whose topics still decode;
//! - `derive(PartialEq, ...)`: more derives for the event enum (it always
//!   derives `Debug` and `Clone`);
//! - `crate = "path"`: where annals is, if renamed.
//!
//! What `#[event(...)]` accepts: the event's name (default: the method's
//! name in UpperCamelCase), `topic = "..."` (default `"{name}.{Event}"`),
//! `version = N` (with `#[upcast("Name", from = k)]` functions in the same
//! impl block), `aliases = ["Old.Topic"]`, and `discard` (the event
//! discards the aggregate).
//!
//! A creation event method takes its new aggregate's id from an associated
//! function `create_id` with parameters named like its own arguments, when
//! the `#[aggregate]` impl block defines one (in another impl block it is
//! not seen, and ids are random); `<method>_with_id(id, ..)` takes the id
//! from the caller. An event method called while an event body runs (an
//! event body calling another event method) records nothing of its own:
//! its effect is part of the outer event, and replay repeats it.
//!
//! Where to go next: [`Application`] (saving, getting, snapshots,
//! verification), [`persistence`] (memory, SQLite, PostgreSQL), [`mapper`]
//! (compression and encryption), [`system`] (followers, process
//! applications, projections, runners). The how-tos in `docs/howto/` are
//! run as tests.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod application;
pub mod cipher;
pub mod clock;
pub mod domain;
pub mod env;
pub mod error;
pub mod mapper;
pub mod persistence;
pub mod repository;
pub mod rows;
pub mod settings;
pub mod system;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use annals_macros::{aggregate, event, upcast};
pub use application::{Application, ApplicationBuilder, Persistence, Save, Verification};
pub use clock::Timestamp;
pub use domain::{Aggregate, AggregateId, DomainEvent, Event, Header, Metadata};
pub use error::{Error, Result};
pub use repository::{Repository, Snapshots};
/// serde_json, for upcasters (`fn(state: &mut annals::json::Value)`).
pub use serde_json as json;
pub use uuid::Uuid;

/// The how-tos in `docs/howto/`, compiled and run as doctests.
#[cfg(doctest)]
mod howto {
    #[doc = include_str!("../../docs/howto/upcasting.md")]
    struct Upcasting;
    #[doc = include_str!("../../docs/howto/renaming.md")]
    struct Renaming;
    #[doc = include_str!("../../docs/howto/hash-chains.md")]
    struct HashChains;
    #[doc = include_str!("../../docs/howto/correlation.md")]
    struct Correlation;
    #[cfg(feature = "testing")]
    #[doc = include_str!("../../docs/howto/testing.md")]
    struct Testing;
    #[doc = include_str!("../../README.md")]
    struct Readme;
}

/// What an application module needs: `use annals::prelude::*;`.
pub mod prelude {
    pub use crate::application::Application;
    pub use crate::domain::{Aggregate, Event};
    pub use crate::error::{Error, Result};
    pub use crate::{aggregate, event, upcast, Uuid};
}

/// Used by the code that the macros generate; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::clock::stored as timestamp;
    pub use crate::clock::Timestamp;
    pub use crate::domain::Header;
    pub use crate::domain::{
        __created, __triggered, applying, Aggregate, AggregateId, AggregateState, Event, Meta,
    };
    pub use serde;
    pub use serde_json as json;
    pub use uuid::Uuid;

    /// The event type of an aggregate whose impl block failed to expand:
    /// it has no values, so nothing can be done with it.
    #[derive(Debug, Clone)]
    pub enum Never {}

    impl Event for Never {
        const TOPICS: &'static [&'static str] = &[];
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
        fn __variant_of(_: &str) -> Option<usize> {
            None
        }
        fn __deserialize<'de, D: serde::Deserializer<'de>>(
            _: usize,
            _: D,
        ) -> std::result::Result<(Self, Header), D::Error> {
            Err(serde::de::Error::custom("no events"))
        }
    }
}

#[cfg(test)]
mod layers;
