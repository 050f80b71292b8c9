//! The dog school: DESIGN.md's `Dog` and `TrainingSchool`, plus a command
//! that validates before it triggers an event.

use annals::prelude::*;
use serde::{Deserialize, Serialize};

/// A dog that learns tricks.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// The dog's name.
    pub name: String,
    /// The tricks it knows, in the order it learned them.
    pub tricks: Vec<String>,
}

/// Why a dog cannot learn a trick.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrickError {
    /// The trick has no name.
    #[error("a trick needs a name")]
    Empty,
    /// The dog knows it already.
    #[error("{dog} already knows {trick:?}")]
    AlreadyKnown {
        /// The dog's name.
        dog: String,
        /// The trick.
        trick: String,
    },
}

#[aggregate]
impl Dog {
    /// Registers a new dog: the creation event.
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog {
            name,
            tricks: Vec::new(),
        }
    }

    /// Adds a trick: records `TrickAdded { trick }` and applies it.
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }

    /// A command that validates first, then triggers `TrickAdded`; a
    /// rejected command records nothing.
    pub fn learn(&mut self, trick: &str) -> Result<(), TrickError> {
        let trick = trick.trim();
        if trick.is_empty() {
            return Err(TrickError::Empty);
        }
        if self.tricks.iter().any(|t| t == trick) {
            return Err(TrickError::AlreadyKnown {
                dog: self.name.clone(),
                trick: trick.to_owned(),
            });
        }
        self.add_trick(trick.to_owned());
        Ok(())
    }

    /// Deterministic ids from the creation arguments: one dog per name.
    pub fn create_id(name: &str) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("/dogs/{name}").as_bytes())
    }
}

/// What went wrong in the school: a rejected command or the store.
#[derive(Debug, thiserror::Error)]
pub enum SchoolError {
    /// The dog could not learn the trick.
    #[error(transparent)]
    Trick(#[from] TrickError),
    /// The store failed, or the dog is not there.
    #[error(transparent)]
    Store(#[from] annals::Error),
}

/// The application: registers dogs and teaches them tricks.
#[derive(Debug)]
pub struct TrainingSchool {
    app: Application,
}

impl TrainingSchool {
    /// Configured from the environment (in memory when nothing is set).
    pub fn new() -> annals::Result<Self> {
        Ok(Self {
            app: Application::new("TrainingSchool")?,
        })
    }

    /// Or configured in code: a SQLite database file at `path`.
    pub fn open(path: &str) -> annals::Result<Self> {
        Ok(Self {
            app: Application::builder("TrainingSchool")
                .sqlite(path)
                .build()?,
        })
    }

    /// On a given application (configured by the caller).
    pub fn with_application(app: Application) -> Self {
        Self { app }
    }

    /// Registers a dog; returns its id.
    pub fn register(&self, name: &str) -> annals::Result<Uuid> {
        let mut dog = Dog::register(name.to_owned());
        self.app.save(&mut dog)?;
        Ok(dog.id())
    }

    /// Teaches dog `id` a trick, if it can learn it.
    pub fn add_trick(&self, id: Uuid, trick: &str) -> Result<(), SchoolError> {
        let mut dog: Dog = self.app.repository().get(id)?;
        dog.learn(trick)?;
        self.app.save(&mut dog)?;
        Ok(())
    }

    /// Whether dog `id` is registered.
    pub fn contains(&self, id: Uuid) -> annals::Result<bool> {
        self.app.repository().contains::<Dog>(id)
    }

    /// The dog's current state.
    pub fn dog(&self, id: Uuid) -> annals::Result<Dog> {
        self.app.repository().get(id)
    }

    /// The application.
    pub fn application(&self) -> &Application {
        &self.app
    }
}
