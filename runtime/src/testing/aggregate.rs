//! The aggregate test kit: given events, when a command, then events, an
//! error or a state.

use std::convert::Infallible;
use std::fmt::{self, Debug};

use super::{diff, list, memory_app, store_events};
use crate::application::Application;
use crate::domain::{Aggregate, AggregateId, DomainEvent, Event};

/// Given / when / then for one aggregate type `A`.
///
/// Start from the aggregate's past, [`given`](Self::given) as its own
/// event values (replayed through the repository, exactly as stored events
/// are) or [`given_aggregate`](Self::given_aggregate) as a value built in
/// the test; or start from nothing with
/// [`when_created`](Self::when_created). Then run one command with
/// [`when`](Self::when) and check the [`Outcome`].
///
/// ```
/// use annals::prelude::*;
/// use annals::testing::AggregateTest;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Dog { pub name: String, pub tricks: Vec<String> }
///
/// #[derive(Debug, PartialEq)]
/// pub enum DogError { AlreadyKnown(String) }
///
/// #[aggregate(derive(PartialEq))]
/// impl Dog {
///     #[event("Registered")]
///     pub fn register(name: String) -> Self { Dog { name, tricks: vec![] } }
///     #[event("TrickAdded")]
///     fn trick_added(&mut self, trick: String) { self.tricks.push(trick); }
///
///     pub fn add_trick(&mut self, trick: &str) -> Result<(), DogError> {
///         if self.tricks.iter().any(|t| t == trick) {
///             return Err(DogError::AlreadyKnown(trick.into()));
///         }
///         self.trick_added(trick.into());
///         Ok(())
///     }
/// }
///
/// let registered = DogEvent::Registered { name: "Fido".into() };
/// let sit = DogEvent::TrickAdded { trick: "sit".into() };
///
/// AggregateTest::<Dog>::given([registered.clone()])
///     .when(|dog| dog.add_trick("sit"))
///     .then_events(vec![sit.clone()])
///     .then_state(|dog| assert_eq!(dog.version(), 2));
///
/// AggregateTest::<Dog>::given([registered, sit])
///     .when(|dog| dog.add_trick("sit"))
///     .then_error(DogError::AlreadyKnown("sit".into()))
///     .then_no_events();
/// ```
pub struct AggregateTest<A: Aggregate> {
    app: Application,
    aggregate: A,
}

impl<A: Aggregate + Debug> Debug for AggregateTest<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateTest")
            .field("aggregate", &self.aggregate)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> AggregateTest<A> {
    /// The aggregate that `events` (its own event values, the creation
    /// event first) make: they are encoded, stored in an in-memory
    /// application at versions `A::INITIAL_VERSION, ..` of a new id, and
    /// replayed by its repository, so the aggregate is what the repository
    /// would give an application.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// #     #[event("Renamed")] pub fn rename(&mut self, name: String) { self.name = name; }
    /// # }
    /// AggregateTest::<Dog>::given([
    ///     DogEvent::Registered { name: "Fido".into() },
    ///     DogEvent::Renamed { name: "Rex".into() },
    /// ])
    /// .when(|_| ())
    /// .then_state(|dog| assert_eq!((dog.name.as_str(), dog.version()), ("Rex", 2)));
    /// ```
    ///
    /// # Panics
    ///
    /// When `events` is empty (a command needs an aggregate: use
    /// [`when_created`](Self::when_created) to test a creation), when the
    /// last event discards the aggregate (the repository would not give it
    /// to a command), or when the events do not replay (the first is not a
    /// creation event, or a later one is).
    #[track_caller]
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let events: Vec<A::Event> = events.into_iter().collect();
        let Some(last) = events.last() else {
            panic!(
                "AggregateTest::given: no events were given; a command needs an aggregate \
                 (test a creation with AggregateTest::when_created)"
            );
        };
        if last.is_discarding() {
            panic!(
                "AggregateTest::given: the last event given, {}, discards the {}: \
                 the repository gives no discarded aggregate to a command",
                last.name(),
                A::NAME
            );
        }
        let app = memory_app("AggregateTest");
        let id = A::Id::generate();
        if let Err(e) = store_events::<A>(&app, &id, events.iter().cloned()) {
            panic!("AggregateTest::given: the given events were not stored: {e}");
        }
        match app.repository().get::<A>(id) {
            Ok(aggregate) => Self { app, aggregate },
            Err(e) => panic!(
                "AggregateTest::given: the given events do not replay: {e}\ngiven:\n{}",
                list(&events)
            ),
        }
    }

    /// An aggregate built by the test (by its creation method and
    /// commands, or loaded from elsewhere). Its pending events are saved to
    /// an in-memory application first, so what the command triggers is all
    /// that is pending after it.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate(derive(PartialEq))] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// #     #[event("Renamed")] pub fn rename(&mut self, name: String) { self.name = name; }
    /// # }
    /// AggregateTest::given_aggregate(Dog::register("Fido".into()))
    ///     .when(|dog| dog.rename("Rex".into()))
    ///     .then_events(vec![DogEvent::Renamed { name: "Rex".into() }]);
    /// ```
    ///
    /// # Panics
    ///
    /// When its pending events cannot be saved (they do not encode).
    #[track_caller]
    pub fn given_aggregate(mut aggregate: A) -> Self {
        let app = memory_app("AggregateTest");
        if let Err(e) = app.save(&mut aggregate) {
            panic!("AggregateTest::given_aggregate: its pending events were not saved: {e}");
        }
        Self { app, aggregate }
    }

    /// Runs `command` on the given aggregate. It returns the command's
    /// `Result<T, E>` with the aggregate's own error type `E`, or `()` for
    /// a command that cannot fail.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// #     #[event("Renamed")] fn renamed(&mut self, name: String) { self.name = name; }
    /// # }
    /// impl Dog {
    ///     pub fn rename(&mut self, name: &str) -> Result<usize, String> {
    ///         if name.is_empty() {
    ///             return Err("a name cannot be empty".into());
    ///         }
    ///         self.renamed(name.into());
    ///         Ok(name.len())
    ///     }
    /// }
    ///
    /// AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
    ///     .when(|dog| dog.rename(""))
    ///     .then_error_matches(|e| e.contains("empty"));
    /// ```
    pub fn when<R: CommandResult>(
        self,
        command: impl FnOnce(&mut A) -> R,
    ) -> Outcome<A, R::Ok, R::Err> {
        let Self { app, mut aggregate } = self;
        let result = command(&mut aggregate).into_result();
        Outcome::new(app, aggregate, result)
    }

    /// Runs `decide`, a decider's command (see
    /// [`Application::decide`](crate::Application::decide)), on the given
    /// aggregate, and records the events it returns, as the application
    /// would.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub tricks: Vec<String> }
    /// # #[aggregate(derive(PartialEq))] impl Dog {
    /// #     #[event("Registered")] pub fn register() -> Self { Dog { tricks: vec![] } }
    /// #     #[event("TrickAdded")] fn trick_added(&mut self, trick: String) { self.tricks.push(trick); }
    /// # }
    /// fn add_trick(dog: &Dog, trick: &str) -> Result<Vec<DogEvent>, String> {
    ///     if dog.tricks.iter().any(|t| t == trick) {
    ///         return Err(format!("knows {trick} already"));
    ///     }
    ///     Ok(vec![DogEvent::TrickAdded { trick: trick.into() }])
    /// }
    ///
    /// AggregateTest::<Dog>::given([DogEvent::Registered {}])
    ///     .when_decided(|dog| add_trick(dog, "sit"))
    ///     .then_events(vec![DogEvent::TrickAdded { trick: "sit".into() }]);
    /// AggregateTest::<Dog>::given([DogEvent::Registered {}, DogEvent::TrickAdded { trick: "sit".into() }])
    ///     .when_decided(|dog| add_trick(dog, "sit"))
    ///     .then_error_matches(|e| e.contains("already"));
    /// ```
    ///
    /// # Panics
    ///
    /// When the decision returns a creation event (it cannot be recorded
    /// on an aggregate).
    pub fn when_decided<E>(
        self,
        decide: impl FnOnce(&A) -> Result<Vec<A::Event>, E>,
    ) -> Outcome<A, (), E> {
        let Self { app, mut aggregate } = self;
        let result = decide(&aggregate).map(|events| {
            for event in events {
                if let Err(e) = aggregate.record(event) {
                    panic!("the decision returned an event that cannot be recorded: {e}");
                }
            }
        });
        Outcome::new(app, aggregate, result)
    }

    /// Runs `command`, a command of the immutable style (see
    /// [`Evolve`](crate::Evolve)): it takes the given aggregate and returns
    /// the next one. When it fails, the outcome's aggregate is the one it
    /// was given, unchanged.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # use annals::Evolve;
    /// # #[derive(Debug, Clone, PartialEq, Event)]
    /// # pub enum DogEvent { #[annals(create)] Registered {}, TrickAdded { trick: String } }
    /// # #[aggregate] #[derive(Debug, Clone)] pub struct Dog { pub tricks: Vec<String> }
    /// # #[aggregate(events = DogEvent)] impl Evolve for Dog {
    /// #     fn create(e: DogEvent) -> Result<Self, DogEvent> {
    /// #         match e { DogEvent::Registered {} => Ok(Dog { tricks: vec![] }), other => Err(other) }
    /// #     }
    /// #     fn evolve(&self, e: DogEvent) -> Self {
    /// #         match e {
    /// #             DogEvent::TrickAdded { trick } => Dog { tricks: [self.tricks.clone(), vec![trick]].concat() },
    /// #             DogEvent::Registered {} => self.clone(),
    /// #         }
    /// #     }
    /// # }
    /// fn add_trick(dog: Dog, trick: &str) -> Result<Dog, String> {
    ///     if dog.tricks.iter().any(|t| t == trick) {
    ///         return Err(format!("knows {trick} already"));
    ///     }
    ///     dog.with_event(DogEvent::TrickAdded { trick: trick.into() }).map_err(|e| e.to_string())
    /// }
    ///
    /// AggregateTest::<Dog>::given([DogEvent::Registered {}])
    ///     .when_evolved(|dog| add_trick(dog, "sit"))
    ///     .then_events(vec![DogEvent::TrickAdded { trick: "sit".into() }]);
    /// AggregateTest::<Dog>::given([DogEvent::Registered {}, DogEvent::TrickAdded { trick: "sit".into() }])
    ///     .when_evolved(|dog| add_trick(dog, "sit"))
    ///     .then_no_events()
    ///     .then_error_matches(|e| e.contains("already"));
    /// ```
    pub fn when_evolved<E>(self, command: impl FnOnce(A) -> Result<A, E>) -> Outcome<A, (), E>
    where
        A: Clone,
    {
        let Self { app, aggregate } = self;
        let before = aggregate.clone();
        match command(aggregate) {
            Ok(next) => Outcome::new(app, next, Ok(())),
            Err(e) => Outcome::new(app, before, Err(e)),
        }
    }

    /// Runs `create`, a creation command, from nothing: every event of the
    /// aggregate it returns is what it triggered.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate(derive(PartialEq))] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// AggregateTest::when_created(|| Dog::register("Fido".into()))
    ///     .then_events(vec![DogEvent::Registered { name: "Fido".into() }]);
    /// ```
    pub fn when_created(create: impl FnOnce() -> A) -> Outcome<A, (), Infallible> {
        let aggregate = create();
        Outcome::new(memory_app("AggregateTest"), aggregate, Ok(()))
    }
}

/// What a command closure returns: `Result<T, E>` (any error type of the
/// user's), or `()` for a command that cannot fail.
///
/// ```
/// use annals::testing::CommandResult;
///
/// assert_eq!(Ok::<u8, String>(1).into_result(), Ok(1));
/// assert_eq!(().into_result(), Ok::<(), std::convert::Infallible>(()));
/// ```
pub trait CommandResult {
    /// What the command returns when it succeeds.
    type Ok;
    /// The command's error.
    type Err;
    /// The outcome as a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E> CommandResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Result<T, E> {
        self
    }
}

impl CommandResult for () {
    type Ok = ();
    type Err = Infallible;
    fn into_result(self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// What a command did: the events it triggered, what it returned, and the
/// aggregate after it. Each `then_*` check panics when it fails and returns
/// the outcome otherwise, so checks chain.
pub struct Outcome<A: Aggregate, T, E> {
    app: Application,
    aggregate: A,
    triggered: Vec<DomainEvent<A>>,
    result: Result<T, E>,
}

impl<A: Aggregate + Debug, T: Debug, E: Debug> Debug for Outcome<A, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("aggregate", &self.aggregate)
            .field("triggered", &self.triggered)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, T, E> Outcome<A, T, E> {
    fn new(app: Application, aggregate: A, result: Result<T, E>) -> Self {
        let triggered = aggregate.pending_events().to_vec();
        Self {
            app,
            aggregate,
            triggered,
            result,
        }
    }

    /// The events the command triggered, with their metadata (id,
    /// version, timestamp).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// let outcome = AggregateTest::when_created(|| Dog::register("Fido".into()));
    /// assert_eq!(outcome.events()[0].originator_version, 1);
    /// ```
    pub fn events(&self) -> &[DomainEvent<A>] {
        &self.triggered
    }

    /// The aggregate after the command.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// let outcome = AggregateTest::when_created(|| Dog::register("Fido".into()));
    /// assert_eq!(outcome.aggregate().name, "Fido");
    /// ```
    pub fn aggregate(&self) -> &A {
        &self.aggregate
    }

    /// What the command returned.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// let outcome = AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
    ///     .when(|dog| Ok::<_, String>(dog.name.len()));
    /// assert_eq!(outcome.result(), &Ok(4));
    /// ```
    pub fn result(&self) -> &Result<T, E> {
        &self.result
    }

    /// The aggregate (its triggered events still pending) and what the
    /// command returned, for checks of your own.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// let (dog, result) = AggregateTest::when_created(|| Dog::register("Fido".into())).into_parts();
    /// assert_eq!((dog.pending_events().len(), result), (1, Ok(())));
    /// ```
    pub fn into_parts(self) -> (A, Result<T, E>) {
        (self.aggregate, self.result)
    }

    /// Checks that the command succeeded and triggered exactly `expected`,
    /// in order (the event enum must derive `PartialEq`:
    /// `#[aggregate(derive(PartialEq))]` on the impl block).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate(derive(PartialEq))] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// #     #[event("Renamed")] pub fn rename(&mut self, name: String) { self.name = name; }
    /// # }
    /// AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
    ///     .when(|dog| {
    ///         dog.rename("Rex".into());
    ///         dog.rename("Max".into());
    ///     })
    ///     .then_events(vec![
    ///         DogEvent::Renamed { name: "Rex".into() },
    ///         DogEvent::Renamed { name: "Max".into() },
    ///     ]);
    /// ```
    ///
    /// # Panics
    ///
    /// When the command failed (with its error), or when its events differ
    /// from `expected` (with both lists, position by position).
    #[track_caller]
    pub fn then_events(self, expected: Vec<A::Event>) -> Self
    where
        A::Event: PartialEq,
        E: Debug,
    {
        let actual: Vec<A::Event> = self.triggered.iter().map(|e| e.event.clone()).collect();
        if let Err(e) = &self.result {
            panic!(
                "expected the command to succeed, but it failed with {e:?}\n\
                 expected events:\n{}triggered events:\n{}",
                list(&expected),
                list(&actual)
            );
        }
        if actual != expected {
            panic!(
                "the command triggered other events than expected: {}",
                diff(&expected, &actual, "triggered")
            );
        }
        self
    }

    /// Checks that the command triggered no events (whether or not it
    /// failed).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
    ///     .when(|_dog| ())
    ///     .then_no_events();
    /// ```
    ///
    /// # Panics
    ///
    /// When the command triggered events (listing them).
    #[track_caller]
    pub fn then_no_events(self) -> Self {
        if !self.triggered.is_empty() {
            let actual: Vec<&A::Event> = self.triggered.iter().map(|e| &e.event).collect();
            panic!(
                "expected no events, but the command triggered {}:\n{}",
                actual.len(),
                list(&actual)
            );
        }
        self
    }

    /// Checks that the command failed with `expected`.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
    ///     .when(|_dog| Err::<(), _>("closed on Sundays"))
    ///     .then_error("closed on Sundays");
    /// ```
    ///
    /// # Panics
    ///
    /// When the command succeeded (listing the events it triggered), or
    /// failed with another error (showing both).
    #[track_caller]
    pub fn then_error(self, expected: E) -> Self
    where
        E: PartialEq + Debug,
    {
        match &self.result {
            Ok(_) => self.succeeded(&format!("{expected:?}")),
            Err(e) if *e != expected => panic!(
                "the command failed with another error than expected:\n  - expected: {expected:?}\n  + got:      {e:?}"
            ),
            Err(_) => self,
        }
    }

    /// Checks that the command failed with an error for which `check` is
    /// true (for errors that are not `PartialEq`, or to check one part).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
    ///     .when(|_dog| "x".parse::<u32>())
    ///     .then_error_matches(|e| e.to_string().contains("invalid digit"));
    /// ```
    ///
    /// # Panics
    ///
    /// When the command succeeded (listing the events it triggered), or
    /// `check` is false for its error (showing it).
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&E) -> bool) -> Self
    where
        E: Debug,
    {
        match &self.result {
            Ok(_) => self.succeeded("an error that matches"),
            Err(e) if !check(e) => {
                panic!("the command failed, but its error does not match: {e:?}")
            }
            Err(_) => self,
        }
    }

    #[track_caller]
    fn succeeded(self, expected: &str) -> Self {
        let actual: Vec<&A::Event> = self.triggered.iter().map(|e| &e.event).collect();
        panic!(
            "expected the command to fail with {expected}, but it succeeded, triggering:\n{}",
            list(&actual)
        )
    }

    /// Checks that the command returned `expected`.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// # }
    /// AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
    ///     .when(|dog| Ok::<_, String>(dog.name.len()))
    ///     .then_value(4);
    /// ```
    ///
    /// # Panics
    ///
    /// When the command failed, or returned something else (showing both).
    #[track_caller]
    pub fn then_value(self, expected: T) -> Self
    where
        T: PartialEq + Debug,
        E: Debug,
    {
        match &self.result {
            Ok(value) if *value == expected => self,
            Ok(value) => panic!(
                "the command returned another value than expected:\n  - expected: {expected:?}\n  + got:      {value:?}"
            ),
            Err(e) => panic!(
                "expected the command to return {expected:?}, but it failed with {e:?}"
            ),
        }
    }

    /// Runs `check` on the aggregate after the command (whether or not it
    /// failed): assert on its state there.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// #     #[event("Renamed")] pub fn rename(&mut self, name: String) { self.name = name; }
    /// # }
    /// AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
    ///     .when(|dog| dog.rename("Rex".into()))
    ///     .then_state(|dog| {
    ///         assert_eq!(dog.name, "Rex");
    ///         assert_eq!(dog.version(), 2);
    ///     });
    /// ```
    ///
    /// # Panics
    ///
    /// When `check` panics.
    pub fn then_state(self, check: impl FnOnce(&A)) -> Self {
        check(&self.aggregate);
        self
    }

    /// Saves what the command triggered (to the test's in-memory
    /// application, which holds the given events) and gets the aggregate
    /// back from the repository: runs `check` on that replayed copy. A
    /// check that it replays to the state the command left: that every
    /// event body does on replay what it did when the command ran.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::testing::AggregateTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Dog { pub name: String }
    /// # #[aggregate] impl Dog {
    /// #     #[event("Registered")] pub fn register(name: String) -> Self { Dog { name } }
    /// #     #[event("Renamed")] pub fn rename(&mut self, name: String) { self.name = name; }
    /// # }
    /// AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
    ///     .when(|dog| dog.rename("Rex".into()))
    ///     .then_replayed(|replayed, after| {
    ///         assert_eq!(replayed.name, after.name);
    ///         assert_eq!(replayed.version(), after.version());
    ///     });
    /// ```
    ///
    /// # Panics
    ///
    /// When the events do not save or replay (a discarded aggregate is not
    /// found), or when `check` panics.
    #[track_caller]
    pub fn then_replayed(mut self, check: impl FnOnce(&A, &A)) -> Self {
        if let Err(e) = self.app.save(&mut self.aggregate) {
            panic!("the events the command triggered were not saved: {e}");
        }
        match self.app.repository().get::<A>(self.aggregate.id()) {
            Ok(replayed) => check(&replayed, &self.aggregate),
            Err(e) => panic!("the aggregate was saved but does not replay: {e}"),
        }
        self
    }
}
