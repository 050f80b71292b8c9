//! A world that remembers everything that was made so.

use annals::prelude::*;
use serde::{Deserialize, Serialize};

/// A world and its history.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct World {
    /// What was made so, in order.
    pub history: Vec<String>,
}

#[aggregate]
impl World {
    /// A new, empty world.
    #[event("Created")]
    pub fn create() -> Self {
        World {
            history: Vec::new(),
        }
    }

    /// Makes something so: appends it to the history.
    #[event("SomethingHappened")]
    pub fn make_it_so(&mut self, what: String) {
        self.history.push(what);
    }
}
