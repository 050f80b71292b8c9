//! Python's `aggregate8`: the declarative style (`@event` methods) with
//! typed models (pydantic there) for the events' values and the snapshot
//! state. In annals: `#[event]` methods whose arguments are serde structs
//! (a `Trick` is stored nested), the struct's own serde for snapshots, and
//! the application's settings from its environment.

use annals::prelude::*;
use annals::{Timestamp, Uuid};
use serde::{Deserialize, Serialize};

pub use super::aggregate7::Trick;

/// A dog (Python's `Dog`, with its `DogState` snapshot model).
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// Its tricks.
    pub tricks: Vec<Trick>,
}

#[aggregate]
impl Dog {
    /// Registers a dog (Python's `@event("Registered") __init__`).
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog {
            name,
            tricks: Vec::new(),
        }
    }

    /// Adds a trick, a model (Python's `@event("TrickAdded")`).
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, trick: Trick) {
        self.tricks.push(trick);
    }
}

/// A dog as the school shows it (Python's `get_dog` dict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DogDetails {
    /// Its name.
    pub name: String,
    /// Its tricks' names.
    pub tricks: Vec<String>,
    /// When it was registered.
    pub created_on: Timestamp,
    /// When it last changed.
    pub modified_on: Timestamp,
}

/// The application (Python's `DogSchool`).
#[derive(Debug)]
pub struct DogSchool {
    app: Application,
}

impl DogSchool {
    /// The school on `persistence`, with snapshots on, and settings from
    /// the process environment with `env` over it.
    ///
    /// # Errors
    ///
    /// A bad setting, or a store that cannot be opened.
    pub fn new<'a>(
        persistence: annals::Persistence,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> annals::Result<Self> {
        Self::with(
            Application::builder("DogSchool").persistence(persistence),
            env,
        )
    }

    /// The same, from `builder` (the tests add a snapshot interval).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with<'a>(
        builder: annals::ApplicationBuilder,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> annals::Result<Self> {
        let app = builder.snapshotting(true).env(env)?.build()?;
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
        let mut dog = Dog::register(name.to_owned());
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
        dog.add_trick(Trick {
            name: trick.to_owned(),
        });
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
            created_on: dog.created_on(),
            modified_on: dog.modified_on(),
            name: dog.name,
            tricks: dog.tricks.into_iter().map(|t| t.name).collect(),
        })
    }
}
