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
//! The attributes are documented, with what each accepts and examples, on
//! [`macro@aggregate`], [`macro@event`] and [`macro@upcast`].
//!
//! A creation event method takes its new aggregate's id from an associated
//! function `create_id` with parameters named like its own arguments, when
//! the `#[aggregate]` impl block defines one; a `create_id` in another impl
//! block of the type is a compile error (E0592, "duplicate definitions"),
//! since the creation methods could not see it. `<method>_with_id(id, ..)`
//! takes the id from the caller.
//!
//! An event body can read its event's timestamp with
//! [`current_event_timestamp()`]: the recorded time when the method is
//! called, the stored time on replay. An event method of the same aggregate
//! type called while an event body runs (an event body calling another
//! event method) records nothing of its own: its effect is part of the
//! outer event, and replay repeats it. Event methods of other aggregate
//! types (creating another aggregate in a body) record as usual.
//!
//! Where to go next: [`Application`] (saving, getting, snapshots,
//! verification), [`persistence`] (memory, SQLite, PostgreSQL), [`mapper`]
//! (compression and encryption), [`system`] (followers, process
//! applications, projections, runners). The how-tos in `docs/howto/` are
//! run as tests.
//!
//! # Features
//!
//! Each store is a crate of its own, re-exported behind a feature;
//! feature-gated items are labelled on docs.rs.
//!
//! | feature | what it adds |
//! |---|---|
//! | `sqlite` (default) | the SQLite store (`persistence::sqlite`, crate `annals-sqlite`) and the `rusqlite` it links |
//! | `postgres` | the PostgreSQL store (`persistence::postgres`, crate `annals-postgres`) and the `postgres` client |
//! | `mysql` | the MariaDB/MySQL store (`persistence::mysql`, crate `annals-mysql`) and the `mysql` client |
//! | `object-store` | the object store on a directory or in memory (`persistence::object`, crate `annals-object-store`) |
//! | `s3` | the object store on Amazon S3 and S3-protocol servers |
//! | `azure` | the object store on Azure Blob Storage (and Azurite) |
//! | `tokio` | `asynchronous`: the application's calls as `Send` futures, its log as streams |
//! | `axum` | `web`: annals' errors as JSON responses |
//! | `testing` | `testing`: given/when/then kits and the recorder contract suite |
//!
//! The memory store is always there, and so are [`metrics`] (saves,
//! events, conflicts, retries, latencies, followers' positions and lags,
//! through the `metrics` facade: no-ops until the application installs a
//! recorder, such as a Prometheus exporter). The traits a store implements, and
//! what every store shares, are the crate `annals-core`'s, re-exported
//! here ([`persistence`], [`error`], [`settings`], [`env`](mod@env)); a
//! store written outside annals depends on `annals-core` alone.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod any_event;
pub mod application;
#[cfg(feature = "tokio")]
pub mod asynchronous;
pub mod cipher;
pub mod clock;
pub mod dcb;
pub mod domain;
pub mod log;
pub mod mapper;
pub mod metrics;
pub mod persistence;
pub mod personal;
pub mod repository;
pub mod system;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
/// The DCB recorder contract suite as `#[test]`s: annals-core's, re-exported.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use annals_core::dcb_recorder_contract;
/// The key store contract suite as `#[test]`s: annals-core's, re-exported.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use annals_core::key_store_contract;
/// The recorder contract suite as `#[test]`s: annals-core's, re-exported.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use annals_core::recorder_contract;
pub mod transcoding;
#[cfg(feature = "axum")]
pub mod web;

/// Makes an event-sourced aggregate: goes on the struct and on its impl
/// block.
///
/// On the **struct** it accepts only `crate = "path"` (where annals is, if
/// renamed). It adds a hidden metadata field (id, version, timestamps,
/// pending events; skipped by serde, also under `cfg_attr`). Snapshots are
/// possible when the struct implements `Serialize` and `Deserialize`, and
/// the aggregate cache keeps copies when it implements `Clone`, however the
/// traits are implemented (a hand-written `Clone` copies the hidden field
/// too: `__annals: self.__annals.clone()`).
///
/// On the **impl block** it turns every [`#[event]`](macro@event) method
/// into an event, and accepts:
/// - `name = "Dog"`: the prefix of the topics (default: the type's name);
/// - `id = String`: string ids (stream names) instead of [`Uuid`]s;
/// - `initial_version = 0`: the creation event's version (default 1);
/// - `version = N`: the version of the snapshot state, with
///   [`#[upcast(snapshot, from = k)]`](macro@upcast) functions for older
///   ones;
/// - `aliases = ["OldName"]`: former names, whose topics still decode;
/// - `event = "DogChange"`: the event enum's name (default `{Type}Event`);
/// - `event_vis = "pub(crate)"`: its visibility (default `pub`; `""` for
///   private). The enum stays reachable as `<Dog as Aggregate>::Event`, so
///   argument types need only be as visible as the struct;
/// - `derive(PartialEq, ...)`: more derives for the event enum;
/// - `crate = "path"`: where annals is, if renamed.
///
/// The generated event enum has one variant per `#[event]` method, named
/// after the event, with one named field per argument, in order:
/// `#[event("TrickAdded")] fn add_trick(&mut self, trick: String)` gives
/// `DogEvent::TrickAdded { trick: String }`. It implements [`Event`],
/// `Debug` and `Clone`; argument types must be `Serialize`, `Deserialize`,
/// `Clone` and `Debug` (one error says so when one is missing).
///
/// ```
/// use annals::prelude::*;
///
/// #[aggregate]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct Kennel { pub dogs: Vec<String> }
///
/// #[aggregate(name = "Shelter", id = String, event = "KennelChange", derive(PartialEq))]
/// impl Kennel {
///     /// The id of a new kennel, from its creation method's arguments (by name).
///     fn create_id(town: &str) -> String {
///         format!("kennel-{town}")
///     }
///
///     #[event("Opened")]
///     pub fn open(town: String) -> Self { Kennel { dogs: Vec::new() } }
///
///     #[event("DogAdmitted")]
///     pub fn admit(&mut self, dog: String) { self.dogs.push(dog); }
/// }
///
/// let mut kennel = Kennel::open("york".into());
/// kennel.admit("Fido".into());
/// assert_eq!(kennel.id(), "kennel-york");
/// assert_eq!(KennelChange::TOPICS, ["Shelter.Opened", "Shelter.DogAdmitted"]);
/// assert_eq!(kennel.pending_events()[1].event, KennelChange::DogAdmitted { dog: "Fido".into() });
///
/// let app = Application::builder("Kennels").build()?;
/// app.save(&mut kennel)?;
/// assert_eq!(app.get::<Kennel>("kennel-york")?.dogs, ["Fido"]);
/// # Ok::<(), annals::Error>(())
/// ```
pub use annals_macros::aggregate;
/// Marks a method of an [`#[aggregate]`](macro@aggregate) impl block as an
/// event (read by `#[aggregate]`; alone it is an error).
///
/// It accepts the event's name (default: the method's name in
/// UpperCamelCase), `topic = "..."` (default `"{name}.{Event}"`),
/// `version = N` (with [`#[upcast("Name", from = k)]`](macro@upcast)
/// functions in the same impl block), `aliases = ["Old.Topic"]` (former
/// topics, which still decode), and `discard` (the event discards the
/// aggregate: it is then not found). `#[annals::event]` (any path ending
/// in `event`) is read the same way.
///
/// A creation event method takes no `self` and returns `Self`; it also gets
/// a `<method>_with_id(id, ..)` twin that takes the id from the caller.
/// Other event methods take `&mut self` and return nothing. Calling one
/// records the event (pending until saved) and runs the body; replay runs
/// the same body with the stored fields. An event method's arguments may
/// carry `#[serde(..)]` attributes (`rename`, `with`, ...): they apply to
/// the stored event's fields.
///
/// ```
/// use annals::prelude::*;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Dog { pub name: String, pub tricks: Vec<String> }
///
/// #[aggregate]
/// impl Dog {
///     #[event("Registered")]
///     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
///
///     #[event("TrickLearned", topic = "dogs.TrickLearned", aliases = ["Dog.TrickAdded"])]
///     pub fn add_trick(&mut self, #[serde(rename = "what")] trick: String) {
///         self.tricks.push(trick);
///     }
///
///     #[event] // named after the method: "Retire"
///     pub fn retire(&mut self) {}
///
///     #[event("Adopted", discard)]
///     pub fn adopt(&mut self) {}
/// }
///
/// let app = Application::builder("Dogs").build()?;
/// let mut dog = Dog::register_with_id(Uuid::new_v4(), "Fido".into());
/// dog.add_trick("sit".into());
/// dog.retire();
/// assert_eq!(DogEvent::TOPICS, ["Dog.Registered", "dogs.TrickLearned", "Dog.Retire", "Dog.Adopted"]);
/// app.save(&mut dog)?;
/// assert!(app.contains::<Dog>(dog.id())?);
/// dog.adopt();
/// app.save(&mut dog)?;
/// assert!(!app.contains::<Dog>(dog.id())?);
/// # Ok::<(), annals::Error>(())
/// ```
pub use annals_macros::event;

/// Marks an upcaster of an [`#[aggregate]`](macro@aggregate) impl block: a
/// `fn(state: &mut annals::json::Value)` that turns a stored state of
/// version `k` into version `k + 1`, before it is decoded (read by
/// `#[aggregate]`; alone it is an error).
///
/// It accepts `#[upcast("EventName", from = k)]` for an event raised to a
/// higher [`#[event(.., version = N)]`](macro@event), and
/// `#[upcast(snapshot, from = k)]` for the snapshot state of
/// `#[aggregate(version = N)]`. Every version below the current one needs
/// its upcaster (a gap is a compile error); they run in a chain. See
/// `docs/howto/upcasting.md`.
///
/// ```
/// use annals::json::Value;
/// use annals::persistence::{AggregateRecorder, StoredEvent};
/// use annals::prelude::*;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Dog { pub tricks: Vec<(String, u8)> }
///
/// #[aggregate]
/// impl Dog {
///     #[event("Registered")]
///     pub fn register() -> Self { Dog { tricks: Vec::new() } }
///
///     // Version 1 had no `difficulty`.
///     #[event("TrickAdded", version = 2)]
///     pub fn add_trick(&mut self, trick: String, difficulty: u8) {
///         self.tricks.push((trick, difficulty));
///     }
///
///     #[upcast("TrickAdded", from = 1)]
///     fn trick_added_v1(state: &mut Value) {
///         state["difficulty"] = 1.into();
///     }
/// }
///
/// let app = Application::builder("Dogs").build()?;
/// let id = Uuid::new_v4();
/// let row = |version, topic: &str, state: &str| StoredEvent {
///     originator_id: id.simple().to_string(),
///     originator_version: version,
///     topic: topic.into(),
///     state: state.as_bytes().to_vec(),
/// };
/// app.recorder().insert_events(&[
///     row(1, "Dog.Registered", r#"{"timestamp":"2026-01-01T00:00:00Z"}"#),
///     row(2, "Dog.TrickAdded", r#"{"timestamp":"2026-01-01T00:00:01Z","trick":"sit"}"#),
/// ])?;
/// assert_eq!(app.get::<Dog>(id)?.tricks, [("sit".to_owned(), 1)]);
/// # Ok::<(), annals::Error>(())
/// ```
pub use annals_macros::upcast;
/// Derives [`trait@Event`] for an enum you write: an aggregate's events
/// in the explicit style (Python's aggregate examples 4 to 8, and the
/// enums cqrs-es users write), each variant one event, its fields stored
/// as an `#[event]` method's arguments are. The aggregate names the enum,
/// `#[aggregate(events = DogEvent)]` on its impl block, and says how each
/// event changes it by implementing [`Apply`] (see there for a whole
/// aggregate), or, for an immutable aggregate, [`Evolve`]. It records them with [`Aggregate::record`] and
/// [`Aggregate::from_event`], and [`Application::decide`] takes them as
/// values from a command.
///
/// Options, in `#[annals(..)]`:
///
/// - on the enum, `aggregate = "Dog"`: the topics' prefix (`Dog.TrickAdded`);
///   by default the enum's name without its `Event` suffix;
/// - on a variant: `create` (it creates the aggregate; at least one does),
///   `discard`, `name = "..."` (the event's name, by default the variant's),
///   `topic = "..."`, `aliases = ["..."]` (former topics), `version = N`
///   with one `upcast(from = M, with = function)` for each version `M`
///   below it (`fn(&mut annals::json::Value)`, as `#[upcast]` takes).
///
/// The enum derives its own `Debug` and `Clone` (events need both), and
/// each field's type is an event field's (`Serialize`, `Deserialize`,
/// `Clone`, `Debug`); `#[serde(..)]` on a field shapes its stored form.
///
/// ```
/// use annals::prelude::*;
///
/// fn v1_to_v2(state: &mut annals::json::Value) {
///     state["breed"] = "unknown".into();
/// }
///
/// #[derive(Debug, Clone, Event)]
/// #[annals(aggregate = "Dog")]
/// pub enum Change {
///     #[annals(create)]
///     Registered { name: String },
///     #[annals(version = 2, upcast(from = 1, with = v1_to_v2))]
///     Described { breed: String },
///     #[annals(name = "Gone", discard)]
///     Left,
/// }
///
/// assert_eq!(Change::TOPICS, ["Dog.Registered", "Dog.Described", "Dog.Gone"]);
/// assert_eq!(Change::VERSIONS, [1, 2, 1]);
/// assert!(Change::Registered { name: "Fido".into() }.is_creation());
/// ```
///
/// Each mistake is a compile error at the offending tokens: on a struct,
/// a generic enum, a tuple variant, an unknown option, no creation event,
/// two events of one name or topic, a `:` in a topic, a version with a
/// missing upcaster or an upcaster from a version not below the event's.
pub use annals_macros::Event;
pub use any_event::AnyEvent;
pub use application::{Application, ApplicationBuilder, Batch, CommandError, Save, Verification};
pub use clock::Timestamp;
pub use domain::{
    current_event_timestamp, Aggregate, AggregateId, Apply, DomainEvent, Event, Evolve, Header,
    Metadata,
};
// What every store shares is annals-core's; these modules are its, at the
// paths an application has always used.
/// The former path of `persistence::{StoredEvent, Notification, Tracking}`,
/// kept (hidden) so that code written against it still compiles.
#[doc(hidden)]
pub use annals_core::rows;
pub use annals_core::{ending, env, error, settings};
pub use error::{Error, Result};
/// Where an application keeps its events, at the root as the builder's
/// companion (defined in [`persistence`]).
pub use persistence::Persistence;
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
    #[doc = include_str!("../../docs/howto/python.md")]
    struct Python;
    #[cfg(feature = "sqlite")]
    #[doc = include_str!("../../docs/howto/django.md")]
    struct Django;
    #[doc = include_str!("../../docs/howto/dcb.md")]
    struct Dcb;
    #[cfg(feature = "sqlite")]
    #[doc = include_str!("../../docs/howto/personal-data.md")]
    struct PersonalData;
    #[doc = include_str!("../../docs/howto/styles.md")]
    struct Styles;
    #[doc = include_str!("../../docs/howto/ending-streams.md")]
    struct EndingStreams;
    #[cfg(feature = "testing")]
    #[doc = include_str!("../../docs/howto/testing.md")]
    struct Testing;
    #[doc = include_str!("../../README.md")]
    struct Readme;
}

/// What an application module needs: `use annals::prelude::*;`. It
/// brings no `Error` or `Result`, so the user's own keep their names: use
/// `annals::Error` and `annals::Result`.
pub mod prelude {
    pub use crate::application::Application;
    pub use crate::domain::{Aggregate, Event};
    /// `tx.mysql()` on a save's [`StoreTx`](crate::persistence::StoreTx).
    #[cfg(feature = "mysql")]
    pub use crate::persistence::mysql::MysqlTx as _;
    /// `tx.postgres()` on a save's [`StoreTx`](crate::persistence::StoreTx).
    #[cfg(feature = "postgres")]
    pub use crate::persistence::postgres::PostgresTx as _;
    /// `tx.sqlite()` on a save's [`StoreTx`](crate::persistence::StoreTx).
    #[cfg(feature = "sqlite")]
    pub use crate::persistence::sqlite::SqliteTx as _;
    pub use crate::{aggregate, event, upcast, Uuid};
    /// `#[derive(Event)]`: an enum you write as an aggregate's events.
    pub use annals_macros::Event;
}

/// The rusqlite that annals links (bundled SQLite): use it for projections
/// and your own tables, so that only one `libsqlite3-sys` is linked (two
/// versions of it cannot be, and cargo says only "links to the native
/// library sqlite3").
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use annals_sqlite::rusqlite;

/// The postgres client annals uses: use it for projections and your own
/// tables, so that types such as `postgres::Client` match.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use annals_postgres::postgres;

/// The mysql client annals uses: use it for projections and your own
/// tables, so that types such as `mysql::Conn` match.
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use annals_mysql::mysql;

/// chrono, whose `DateTime<Utc>` [`Timestamp`] is.
pub use chrono;

/// The contract between the macros and the runtime: what generated code
/// calls. Not a public API; `private.rs` lists it.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
