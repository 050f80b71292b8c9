//! Python's `aggregate7a`: `aggregate7`'s typed models, frozen. A command
//! function takes the dog and returns the next one, holding its event; a
//! mutator per event returns a new dog. In annals the models are serde
//! structs, the mutators `Evolve`, and the commands take the dog by value
//! and return it with the event recorded; the settings come from the
//! environment with the application's own over it, as Python's
//! `DogSchool(env={...})`.

use annals::prelude::*;
use annals::{Evolve, Uuid};
use serde::{Deserialize, Serialize};

pub use super::aggregate7::{DogDetails, Trick};

/// The dog's events (Python's `DogRegistered`, `TrickAdded` models).
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
        /// The trick, a model.
        trick: Trick,
    },
}

/// A dog (Python's frozen `Dog` model).
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// Its tricks.
    pub tricks: Vec<Trick>,
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
        trick: Trick {
            name: trick.to_owned(),
        },
    })
}

/// Python's `mutate_dog`.
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

/// The application (Python's `DogSchool`: snapshots, one taken
/// automatically every 5 versions).
#[derive(Debug)]
pub struct DogSchool {
    app: Application,
}

impl DogSchool {
    /// The school on `persistence`, with settings from the process
    /// environment and `env` over it (`COMPRESSOR_TOPIC`, `CIPHER_KEY`,
    /// ...).
    ///
    /// # Errors
    ///
    /// A bad setting, or a store that cannot be opened.
    pub fn new<'a>(
        persistence: annals::Persistence,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> annals::Result<Self> {
        let app = Application::builder("DogSchool")
            .persistence(persistence)
            .snapshot_every::<Dog>(5)
            .env(env)?
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

    /// Dog `id`, as the school shows it: the tricks' names.
    ///
    /// # Errors
    ///
    /// No such dog, or the store failed.
    pub fn get_dog(&self, id: Uuid) -> annals::Result<DogDetails> {
        let dog: Dog = self.app.get(id)?;
        Ok(DogDetails {
            name: dog.name,
            tricks: dog.tricks.into_iter().map(|t| t.name).collect(),
        })
    }
}
