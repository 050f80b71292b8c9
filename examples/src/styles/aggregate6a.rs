//! Python's `aggregate6a`: the functional style with immutable aggregates.
//! The dog is frozen: a command function takes it and returns the next
//! dog, holding the event it triggered; a mutator function per event
//! returns a new dog rather than changing one. In annals the mutators are
//! `Evolve`, the commands take the dog by value and return it with the
//! event recorded ([`Aggregate::with_event`]), and the application saves
//! the dog they return.

use annals::prelude::*;
use annals::{Evolve, Uuid};
use serde::{Deserialize, Serialize};

pub use super::aggregate4::DogDetails;

/// The dog's events (Python's `DogRegistered`, `TrickAdded`).
#[derive(Debug, Clone, PartialEq, Event)]
pub enum DogEvent {
    /// A dog was registered.
    #[annals(create)]
    DogRegistered {
        /// Its name.
        name: String,
    },
    /// The dog learned a trick.
    TrickAdded {
        /// The trick.
        trick: String,
    },
}

/// A dog: data only, never changed in place.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// Its tricks.
    pub tricks: Vec<String>,
}

/// Python's `register_dog`: a new dog, its event pending.
///
/// # Errors
///
/// None in practice: the event creates a dog.
pub fn register_dog(name: &str) -> annals::Result<Dog> {
    Dog::from_event(DogEvent::DogRegistered {
        name: name.to_owned(),
    })
}

/// Python's `add_trick`: the next dog, its event pending.
///
/// # Errors
///
/// None in practice: the event changes a dog.
pub fn add_trick(dog: Dog, trick: &str) -> annals::Result<Dog> {
    dog.with_event(DogEvent::TrickAdded {
        trick: trick.to_owned(),
    })
}

/// Python's `mutate_dog`: each event to the dog it makes.
#[aggregate(events = DogEvent)]
impl Evolve for Dog {
    fn create(event: DogEvent) -> Result<Self, DogEvent> {
        match event {
            DogEvent::DogRegistered { name } => Ok(Dog {
                name,
                tricks: Vec::new(),
            }),
            other => Err(other),
        }
    }

    fn evolve(&self, event: DogEvent) -> Self {
        match event {
            // `create` takes the creation events: replay never gives one
            // here.
            DogEvent::DogRegistered { .. } => self.clone(),
            DogEvent::TrickAdded { trick } => Dog {
                name: self.name.clone(),
                tricks: [self.tricks.as_slice(), &[trick]].concat(),
            },
        }
    }
}

/// The application (Python's `DogSchool`: snapshots, and one taken
/// automatically every 5 versions).
#[derive(Debug)]
pub struct DogSchool {
    app: Application,
}

impl DogSchool {
    /// The school on `persistence`.
    ///
    /// # Errors
    ///
    /// The store cannot be opened.
    pub fn new(persistence: annals::Persistence) -> annals::Result<Self> {
        let app = Application::builder("DogSchool")
            .persistence(persistence)
            .snapshot_every::<Dog>(5)
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
        let mut dog = register_dog(name)?;
        self.app.save(&mut dog)?;
        Ok(dog.id())
    }

    /// Teaches dog `id` a trick: the dog stored, the next dog, saved.
    ///
    /// # Errors
    ///
    /// No such dog, a conflict with another writer, or the store failed.
    pub fn add_trick(&self, id: Uuid, trick: &str) -> annals::Result<()> {
        let dog: Dog = self.app.get(id)?;
        let mut dog = add_trick(dog, trick)?;
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
