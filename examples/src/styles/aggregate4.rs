//! Python's `aggregate4`: explicitly defined event classes and an `apply`
//! per event (there a `singledispatchmethod`), a projector that folds the
//! events, and commands that trigger events. In annals: the events are an
//! enum written by hand (`#[derive(Event)]`), `Apply` says how each one
//! changes the dog, and the commands record events as values.

use annals::prelude::*;
use annals::{Apply, Uuid};
use serde::{Deserialize, Serialize};

/// The dog's events, written by hand (Python's `Dog.Registered` and
/// `Dog.TrickAdded` dataclasses). Stored as `Dog.Registered` and
/// `Dog.TrickAdded`, as the `#[event]` methods of the other styles store
/// them.
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

/// A dog (its struct derives serde: the school snapshots it).
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// Its tricks, in the order learned.
    pub tricks: Vec<String>,
}

impl Dog {
    /// Registers a dog: its creation event, applied and pending.
    ///
    /// # Errors
    ///
    /// None in practice: `Registered` is a creation event.
    pub fn register(name: &str) -> annals::Result<Self> {
        Self::from_event(DogEvent::Registered {
            name: name.to_owned(),
        })
    }

    /// Triggers `TrickAdded` (Python's `trigger_event`).
    ///
    /// # Errors
    ///
    /// None in practice: `TrickAdded` is not a creation event.
    pub fn add_trick(&mut self, trick: &str) -> annals::Result<()> {
        self.record(DogEvent::TrickAdded {
            trick: trick.to_owned(),
        })
    }
}

/// How each event changes the dog (Python's `apply.register(...)`).
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
        match event {
            DogEvent::Registered { .. } => {}
            DogEvent::TrickAdded { trick } => self.tricks.push(trick),
        }
    }
}

/// A dog as the school shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DogDetails {
    /// Its name.
    pub name: String,
    /// Its tricks.
    pub tricks: Vec<String>,
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
        let mut dog = Dog::register(name)?;
        self.app.save(&mut dog)?;
        Ok(dog.id())
    }

    /// Teaches dog `id` a trick.
    ///
    /// # Errors
    ///
    /// No such dog, or the store failed.
    pub fn add_trick(&self, id: Uuid, trick: &str) -> annals::Result<()> {
        let mut dog: Dog = self.app.get(id)?;
        dog.add_trick(trick)?;
        self.app.save(&mut dog)?;
        Ok(())
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
