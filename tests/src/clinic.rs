//! A model with personal data: a patient's name is `#[personal]`, their
//! visits are not.

use annals::prelude::*;
use serde::{Deserialize, Serialize};

/// A patient: the name is personal data, sealed with the patient's key.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Patient {
    /// Reads as "(forgotten)" once the patient is forgotten.
    #[personal(forgotten = "(forgotten)".to_owned())]
    pub name: String,
    /// How many visits; not personal.
    pub visits: u32,
}

#[aggregate]
impl Patient {
    /// Admits a patient.
    #[event("Admitted")]
    pub fn admit(#[personal(forgotten = "(forgotten)".to_owned())] name: String) -> Self {
        Patient { name, visits: 1 }
    }

    /// Counts a visit.
    #[event("Visited")]
    pub fn visit(&mut self) {
        self.visits += 1;
    }
}
