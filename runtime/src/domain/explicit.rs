//! The explicit style: an aggregate whose events are an enum the user
//! writes, changed by the user's own `Apply` or `Evolve`.

use super::{Aggregate, Event as _};
use crate::error::Error;

/// How an aggregate in the explicit style changes with its events: the
/// projector of Python's aggregate examples 4 to 8, for an aggregate whose
/// events are an enum you write (`#[derive(Event)]`). Implement it with
/// `#[aggregate(events = ThatEnum)]` on the impl, which makes the
/// aggregate (as `#[aggregate]` on an impl block of `#[event]` methods
/// does, with the same options), gives its struct literals the hidden
/// metadata, and takes its snapshot upcasters (`#[upcast(snapshot, from
/// = N)]`). Called when an event is recorded ([`Aggregate::record`],
/// [`Aggregate::from_event`]) and when the aggregate is rebuilt from its
/// stored events.
///
/// ```
/// use annals::prelude::*;
/// use annals::Apply;
///
/// #[derive(Debug, Clone, PartialEq, Event)]
/// pub enum DogEvent {
///     #[annals(create)]
///     Registered { name: String },
///     TrickAdded { trick: String },
/// }
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Dog { pub name: String, pub tricks: Vec<String> }
///
/// impl Dog {
///     pub fn register(name: String) -> annals::Result<Self> {
///         Self::from_event(DogEvent::Registered { name })
///     }
///     pub fn add_trick(&mut self, trick: String) -> annals::Result<()> {
///         self.record(DogEvent::TrickAdded { trick })
///     }
/// }
///
/// #[aggregate(events = DogEvent)]
/// impl Apply for Dog {
///     fn create(event: DogEvent) -> Result<Self, DogEvent> {
///         match event {
///             DogEvent::Registered { name } => Ok(Dog { name, tricks: Vec::new() }),
///             other => Err(other),
///         }
///     }
///     fn apply(&mut self, event: DogEvent) {
///         match event {
///             DogEvent::Registered { .. } => {}
///             DogEvent::TrickAdded { trick } => self.tricks.push(trick),
///         }
///     }
/// }
///
/// let app = Application::builder("School").build()?;
/// let mut dog = Dog::register("Fido".into())?;
/// dog.add_trick("roll over".into())?;
/// app.save(&mut dog)?;
/// let copy: Dog = app.get(dog.id())?;
/// assert_eq!((copy.tricks.as_slice(), copy.version()), (&["roll over".to_owned()][..], 2));
/// let stored = app.notifications(1, 10)?;
/// assert_eq!(stored[1].event.topic, "Dog.TrickAdded");
/// # Ok::<(), annals::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` names its events with `#[aggregate(events = ...)]`, and does not say how they change it",
    label = "needs `impl annals::Apply for {Self}`",
    note = "implement `annals::Apply` for `{Self}`: `create` builds it from a creation event, `apply` changes it with any other"
)]
pub trait Apply: Aggregate {
    /// The aggregate that creation event `event` makes; any other event
    /// is given back (`other => Err(other)`).
    ///
    /// # Errors
    ///
    /// The event, when it is not one that creates the aggregate.
    fn create(event: Self::Event) -> std::result::Result<Self, Self::Event>;

    /// Changes the aggregate with `event`, which is never a creation
    /// event.
    fn apply(&mut self, event: Self::Event);
}

/// [`Apply`] for an immutable aggregate: `evolve` does not change the
/// aggregate, it returns the next one (Python's aggregate examples 5, 6a
/// and 7a, whose frozen dataclasses and models are copied with each
/// event). Implement it with `#[aggregate(events = ThatEnum)]` on the
/// impl, as `Apply`. The aggregate's metadata (id, version, pending
/// events) carries over from the aggregate evolved, so the struct literal
/// `evolve` returns names the fields you declared only. Commands in this
/// style take the aggregate by value and return it with their event
/// recorded ([`Aggregate::with_event`]).
///
/// Choose it where immutability is the point (states shared between
/// threads, kept as history); [`Apply`] changes the state in place and
/// copies nothing.
///
/// ```
/// use annals::prelude::*;
/// use annals::Evolve;
///
/// #[derive(Debug, Clone, PartialEq, Event)]
/// pub enum DogEvent {
///     #[annals(create)]
///     Registered { name: String },
///     TrickAdded { trick: String },
/// }
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Dog { pub name: String, pub tricks: Vec<String> }
///
/// /// A command: the dog it is given, with the event recorded.
/// pub fn add_trick(dog: Dog, trick: &str) -> annals::Result<Dog> {
///     dog.with_event(DogEvent::TrickAdded { trick: trick.into() })
/// }
///
/// #[aggregate(events = DogEvent)]
/// impl Evolve for Dog {
///     fn create(event: DogEvent) -> Result<Self, DogEvent> {
///         match event {
///             DogEvent::Registered { name } => Ok(Dog { name, tricks: Vec::new() }),
///             other => Err(other),
///         }
///     }
///     fn evolve(&self, event: DogEvent) -> Self {
///         match event {
///             DogEvent::Registered { .. } => unreachable!("only create gets a creation event"),
///             DogEvent::TrickAdded { trick } => Dog {
///                 name: self.name.clone(),
///                 tricks: [self.tricks.as_slice(), &[trick]].concat(),
///             },
///         }
///     }
/// }
///
/// let app = Application::builder("School").build()?;
/// let dog = Dog::from_event(DogEvent::Registered { name: "Fido".into() })?;
/// let mut dog = add_trick(dog, "roll over")?;
/// app.save(&mut dog)?;
/// let copy: Dog = app.get(dog.id())?;
/// assert_eq!((copy.tricks.as_slice(), copy.version()), (&["roll over".to_owned()][..], 2));
/// # Ok::<(), annals::Error>(())
/// ```
pub trait Evolve: Aggregate {
    /// The aggregate that creation event `event` makes; any other event
    /// is given back (`other => Err(other)`).
    ///
    /// # Errors
    ///
    /// The event, when it is not one that creates the aggregate.
    fn create(event: Self::Event) -> std::result::Result<Self, Self::Event>;

    /// The aggregate after `event`, which is never a creation event;
    /// `self` is left as it was.
    #[must_use]
    fn evolve(&self, event: Self::Event) -> Self;
}

/// The error of `event` given where it cannot go.
pub(super) fn wrong_event<A: Aggregate>(event: &A::Event, message: &str) -> Error {
    Error::WrongEvent {
        aggregate: A::NAME,
        event: event.name(),
        message: message.to_owned(),
    }
}
