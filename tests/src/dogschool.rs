//! The Python library's tutorial dogs and trick counters, as annals
//! models them to share a store with the Python side of the interop tests
//! (`tests/python/dogschool.py`): the same topics (`dogschool:Dog.Registered`),
//! fields and ids, in the Python codec. `tests/tests/python.rs` shares
//! eventsourcing's own tables with it, `tests/tests/django.rs`
//! eventsourcing_django's.

use annals::prelude::*;
use annals::system::{Policies, Policy};
use serde::{Deserialize, Serialize};

/// A dog of the training school.
///
/// ```
/// use annals::prelude::*;
/// use annals_tests::dogschool::Dog;
///
/// let mut dog = Dog::register("Fido".into(), Uuid::nil());
/// dog.add_trick("sit".into());
/// assert_eq!((dog.tricks.len(), dog.version()), (1, 2));
/// ```
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// Its owner (a UUID, as Python's transcoder writes one).
    #[serde(with = "annals::transcoding::python")]
    pub owner: Uuid,
    /// What it can do, in the order it learned it.
    pub tricks: Vec<String>,
}

#[aggregate(python = "dogschool")]
impl Dog {
    /// A new dog.
    #[event("Registered")]
    pub fn register(
        name: String,
        #[serde(with = "annals::transcoding::python")] owner: Uuid,
    ) -> Self {
        Dog {
            name,
            owner,
            tricks: Vec::new(),
        }
    }

    /// It learned `trick`.
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }
}

/// How many times a trick was added, to any dog.
///
/// ```
/// use annals::prelude::*;
/// use annals_tests::dogschool::Counter;
///
/// let mut counter = Counter::start("sit".into());
/// counter.increment();
/// assert_eq!(counter.count, 1);
/// assert_eq!(counter.id(), Counter::create_id("sit"));
/// ```
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counter {
    /// The trick.
    pub name: String,
    /// How many times it was added.
    pub count: u64,
}

#[aggregate(python = "dogschool")]
impl Counter {
    /// The counter's id, from its trick, as Python's `Counter.create_id`.
    pub fn create_id(name: &str) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("/counters/{name}").as_bytes())
    }

    /// A counter at 0.
    #[event("Started")]
    pub fn start(name: String) -> Self {
        Counter { name, count: 0 }
    }

    /// One more.
    #[event("Incremented")]
    pub fn increment(&mut self) {
        self.count += 1;
    }
}

/// The policy of a Counters process application: each trick added to a
/// dog increments its counter, as Python's `Counters` does.
///
/// ```
/// use std::sync::Arc;
/// use annals::prelude::*;
/// use annals::system::ProcessApplication;
///
/// let counters = Arc::new(Application::builder("Counters").build()?);
/// let _process = ProcessApplication::new(counters, annals_tests::dogschool::counting_tricks());
/// # Ok::<(), annals::Error>(())
/// ```
pub fn counting_tricks() -> impl Policy {
    Policies::new().on::<Dog>(|event, processing| {
        let DogEvent::TrickAdded { trick } = &event.event else {
            return Ok(());
        };
        let mut counter = match processing.app().get::<Counter>(Counter::create_id(trick)) {
            Ok(counter) => counter,
            Err(e) if e.is_not_found() => Counter::start(trick.clone()),
            Err(e) => return Err(e),
        };
        counter.increment();
        processing.save(&mut counter)
    })
}
