//! The dog of the tests that need an aggregate and nothing particular of
//! it: registered with a name, taught tricks, snapshotted (it derives
//! serde's traits) and cached (`Clone`). `tests/tests/versioning.rs`
//! stores it as the first version of the model its `v2` upcasts: a change
//! to its fields or events is a change to that test's `v1`.

use annals::prelude::*;
use serde::{Deserialize, Serialize};

/// A dog: stored as `Dog.Registered` and `Dog.TrickAdded`.
///
/// ```
/// use annals::prelude::*;
/// use annals_tests::dogs::Dog;
///
/// let app = Application::builder("Kennel").build()?;
/// let mut dog = Dog::register("Fido".into());
/// dog.add_trick("roll over".into());
/// app.save(&mut dog)?;
/// assert_eq!(app.get::<Dog>(dog.id())?.tricks, ["roll over"]);
/// # Ok::<(), annals::Error>(())
/// ```
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// What it can do, in the order it learned it.
    pub tricks: Vec<String>,
}

#[aggregate]
impl Dog {
    /// A new dog.
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog {
            name,
            tricks: Vec::new(),
        }
    }

    /// It learned `trick`.
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }
}
