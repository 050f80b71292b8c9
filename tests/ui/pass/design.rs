// DESIGN.md's Dog and TrainingSchool, pasted as a user would, with a main
// that drives them.
use annals::prelude::*;            // aggregate, Application, Uuid, Result, ...
use serde::{Deserialize, Serialize};

#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    pub name: String,
    pub tricks: Vec<String>,
}

#[aggregate]
impl Dog {
    /// Creation event: no receiver, returns Self. Calling it makes a new
    /// aggregate (new id, version 1) holding one pending `Registered` event.
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog { name, tricks: Vec::new() }
    }

    /// Calling it records a pending `TrickAdded { trick }` event and applies
    /// it by running this body. Replaying the stored event runs the same body.
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }

    /// Optional: deterministic ids from the creation arguments (by name).
    pub fn create_id(name: &str) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("/dogs/{name}").as_bytes())
    }
}

pub struct TrainingSchool { app: Application }

impl TrainingSchool {
    /// Configured from the environment (in memory when nothing is set).
    pub fn new() -> annals::Result<Self> {
        Ok(Self { app: Application::new("TrainingSchool")? })
    }
    /// Or configured in code.
    pub fn open(path: &str) -> annals::Result<Self> {
        Ok(Self { app: Application::builder("TrainingSchool").sqlite(path).build()? })
    }
    pub fn register(&self, name: &str) -> annals::Result<Uuid> {
        let mut dog = Dog::register(name.to_owned());
        self.app.save(&mut dog)?;
        Ok(dog.id())
    }
    pub fn add_trick(&self, id: Uuid, trick: &str) -> annals::Result<()> {
        let mut dog: Dog = self.app.repository().get(id)?;
        dog.add_trick(trick.to_owned());
        self.app.save(&mut dog)?;
        Ok(())
    }
}

fn main() -> annals::Result<()> {
    let school = TrainingSchool::new()?;
    let id = school.register("Fido")?;
    assert_eq!(id, Dog::create_id("Fido"));
    school.add_trick(id, "roll over")?;
    let dog: Dog = school.app.repository().get(id)?;
    assert_eq!(dog.tricks, ["roll over"]);
    assert_eq!(dog.version(), 2);

    let school = TrainingSchool::open(":memory:")?;
    let id = school.register("Rex")?;
    school.add_trick(id, "sit")?;
    assert_eq!(school.app.repository().get::<Dog>(id)?.tricks, ["sit"]);
    Ok(())
}
