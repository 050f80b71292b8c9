//! Python's `aggregate5`: immutable aggregates whose commands do not
//! change them but return the events they trigger; the application
//! applies and saves those events. In annals: the commands take `&self`
//! and return events as values, and [`Application::decide`] runs them,
//! records what they return and saves it with the optimistic check of the
//! version they were decided on (a conflict decides again).

use annals::prelude::*;
use annals::{Apply, Uuid};
use serde::{Deserialize, Serialize};

pub use super::aggregate4::DogDetails;

/// The dog's events (Python's `Dog.Registered`, `Dog.TrickAdded`).
#[derive(Debug, Clone, PartialEq, Event)]
pub enum DogEvent {
    /// A dog was registered.
    #[annals(create)]
    Registered {
        /// Its name.
        name: String,
    },
    /// The dog learned a trick.
    TrickAdded {
        /// The trick.
        trick: String,
    },
}

/// A dog, changed only by its events.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// Its tricks.
    pub tricks: Vec<String>,
}

impl Dog {
    /// The event that registers a dog.
    pub fn register(name: &str) -> DogEvent {
        DogEvent::Registered {
            name: name.to_owned(),
        }
    }

    /// The event of this dog learning `trick`: the dog is not changed.
    pub fn add_trick(&self, trick: &str) -> DogEvent {
        DogEvent::TrickAdded {
            trick: trick.to_owned(),
        }
    }
}

/// Python's `mutate`, one arm per event.
#[aggregate(events = DogEvent)]
impl Apply for Dog {
    fn create(event: DogEvent) -> Result<Self, DogEvent> {
        match event {
            DogEvent::Registered { name } => Ok(Dog {
                name,
                tricks: Vec::new(),
            }),
            other => Err(other),
        }
    }

    fn apply(&mut self, event: DogEvent) {
        if let DogEvent::TrickAdded { trick } = event {
            self.tricks.push(trick);
        }
    }
}

/// The application (Python's `DogSchool`, which snapshots).
#[derive(Debug)]
pub struct DogSchool {
    app: Application,
}

impl DogSchool {
    /// The school on `persistence`, with snapshots on.
    ///
    /// # Errors
    ///
    /// The store cannot be opened.
    pub fn new(persistence: annals::Persistence) -> annals::Result<Self> {
        let app = Application::builder("DogSchool")
            .persistence(persistence)
            .snapshotting(true)
            .build()?;
        Ok(Self { app })
    }

    /// The application underneath.
    pub fn app(&self) -> &Application {
        &self.app
    }

    /// Registers a dog; its id.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn register_dog(&self, name: &str) -> annals::Result<Uuid> {
        let mut dog = Dog::from_event(Dog::register(name))?;
        self.app.save(&mut dog)?;
        Ok(dog.id())
    }

    /// Teaches dog `id` a trick: the command decides, the application
    /// saves.
    ///
    /// # Errors
    ///
    /// No such dog, or the store failed.
    pub fn add_trick(&self, id: Uuid, trick: &str) -> annals::Result<()> {
        // A decision that cannot refuse: only annals' errors remain.
        self.app
            .decide(id, |dog: &Dog| {
                Ok::<_, std::convert::Infallible>(vec![dog.add_trick(trick)])
            })
            .map(drop)
            .map_err(annals::CommandError::into_error)
    }

    /// Dog `id`, as the school shows it.
    ///
    /// # Errors
    ///
    /// No such dog, or the store failed.
    pub fn get_dog(&self, id: Uuid) -> annals::Result<DogDetails> {
        let dog: Dog = self.app.get(id)?;
        Ok(DogDetails {
            name: dog.name,
            tricks: dog.tricks,
        })
    }
}
