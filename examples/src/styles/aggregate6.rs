//! Python's `aggregate6`: the functional style. No methods: the events are
//! values, module-level functions make them from a command's arguments
//! (and the state they decide on), and a mutator function per event folds
//! them into the state. In annals the functions stay free functions;
//! `Apply` only names the mutators, and the application runs a command
//! function with [`Application::decide`].

use annals::prelude::*;
use annals::{Apply, Uuid};
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

/// A dog: data only.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// Its tricks.
    pub tricks: Vec<String>,
}

/// Python's `register_dog`: the event.
pub fn register_dog(name: &str) -> DogEvent {
    DogEvent::DogRegistered {
        name: name.to_owned(),
    }
}

/// Python's `add_trick`: the event, decided on the dog.
pub fn add_trick(_dog: &Dog, trick: &str) -> DogEvent {
    DogEvent::TrickAdded {
        trick: trick.to_owned(),
    }
}

/// Python's `mutate_dog` for `TrickAdded`.
fn trick_added(dog: &mut Dog, trick: String) {
    dog.tricks.push(trick);
}

/// Python's `project_dog`: each event to its mutator.
#[aggregate(events = DogEvent)]
impl Apply for Dog {
    fn create(event: DogEvent) -> Result<Self, DogEvent> {
        match event {
            // Python's `mutate_dog` for `DogRegistered`, here: the struct
            // literal gets its hidden metadata from #[aggregate].
            DogEvent::DogRegistered { name } => Ok(Dog {
                name,
                tricks: Vec::new(),
            }),
            other => Err(other),
        }
    }

    fn apply(&mut self, event: DogEvent) {
        if let DogEvent::TrickAdded { trick } = event {
            trick_added(self, trick);
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
        // A decision that cannot refuse: only annals' errors remain.
        self.app
            .decide(id, |dog: &Dog| {
                Ok::<_, std::convert::Infallible>(vec![add_trick(dog, trick)])
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
