//! Python's `aggregate7`: the functional style with typed, validated
//! models (pydantic there): events and the dog are models, a trick is a
//! model of its own, stored nested. In annals the models are serde
//! structs, the events an enum of them, and the application's settings
//! (compression, encryption, snapshots) come from its environment, as
//! Python's `DogSchool(env={...})`.

use annals::prelude::*;
use annals::{Apply, Uuid};
use serde::{Deserialize, Serialize};

/// A trick (Python's `Trick` model): stored nested in its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trick {
    /// Its name.
    pub name: String,
}

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
        /// The trick, a model.
        trick: Trick,
    },
}

/// A dog (Python's `Dog` model).
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// Its tricks.
    pub tricks: Vec<Trick>,
}

/// Python's `register_dog`.
pub fn register_dog(name: &str) -> DogEvent {
    DogEvent::DogRegistered {
        name: name.to_owned(),
    }
}

/// Python's `add_trick`.
pub fn add_trick(_dog: &Dog, trick: Trick) -> DogEvent {
    DogEvent::TrickAdded { trick }
}

/// Python's `project_dog`.
#[aggregate(events = DogEvent)]
impl Apply for Dog {
    fn create(event: DogEvent) -> Result<Self, DogEvent> {
        match event {
            DogEvent::DogRegistered { name } => Ok(Dog {
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

/// A dog as the school shows it: the tricks' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DogDetails {
    /// Its name.
    pub name: String,
    /// Its tricks' names.
    pub tricks: Vec<String>,
}

/// The application (Python's `DogSchool`).
#[derive(Debug)]
pub struct DogSchool {
    app: Application,
}

impl DogSchool {
    /// The school on `persistence`, with snapshots on, and settings from
    /// the process environment with `env` over it (`COMPRESSOR_TOPIC`,
    /// `CIPHER_KEY`, ...).
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
        let mut dog = Dog::from_event(register_dog(name))?;
        self.app.save(&mut dog)?;
        Ok(dog.id())
    }

    /// Teaches dog `id` a trick.
    ///
    /// # Errors
    ///
    /// No such dog, or the store failed.
    pub fn add_trick(&self, id: Uuid, trick: &str) -> annals::Result<()> {
        let trick = Trick {
            name: trick.to_owned(),
        };
        // A decision that cannot refuse: only annals' errors remain.
        self.app
            .decide(id, |dog: &Dog| {
                Ok::<_, std::convert::Infallible>(vec![add_trick(dog, trick.clone())])
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
            tricks: dog.tricks.into_iter().map(|t| t.name).collect(),
        })
    }
}
