//! [`Modules`]: the persistence modules that `PERSISTENCE_MODULE` can
//! name besides the built-in ones, as a value the caller owns and gives to
//! the application's builder (`ApplicationBuilder::modules`), not a
//! process-wide registry.
//!
//! ```
//! use std::sync::Arc;
//! use annals_core::env::Env;
//! use annals_core::persistence::{MemoryStore, Modules, Store};
//!
//! let modules = Modules::new().with("scratch", |_env: &Env| Ok(Arc::new(MemoryStore) as Arc<dyn Store>))?;
//! let open = modules.get(" Scratch ").expect("names are compared without case");
//! let store = open(&Env::from_map("Notes", [("PERSISTENCE_MODULE", "scratch")]))?;
//! assert_eq!(store.name(), "memory");
//! assert!(modules.get("cassandra").is_none());
//! # Ok::<(), annals_core::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;

use super::Store;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::settings;

/// Opens a store from an application's settings: what a persistence
/// module does when `PERSISTENCE_MODULE` names it.
pub type OpenStore = fn(&Env) -> Result<Arc<dyn Store>>;

/// Persistence modules by name (compared without case, spaces trimmed).
#[derive(Clone, Default)]
pub struct Modules {
    entries: Vec<(String, OpenStore)>,
}

impl fmt::Debug for Modules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// A module name as it is compared.
fn normal(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

impl Modules {
    /// No modules.
    pub fn new() -> Self {
        Self::default()
    }

    /// These modules and `name`, which opens its store with `open`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `PERSISTENCE_MODULE`: `name` is empty, or
    /// names a module of these already.
    pub fn with(mut self, name: &str, open: OpenStore) -> Result<Self> {
        let name = normal(name);
        let var = settings::PERSISTENCE_MODULE.name;
        if name.is_empty() {
            return Err(Error::config(var, "a persistence module needs a name"));
        }
        if self.get(&name).is_some() {
            return Err(Error::config(
                var,
                format!("the persistence module {name:?} is already registered"),
            ));
        }
        self.entries.push((name, open));
        Ok(self)
    }

    /// What module `name` opens its store with, if it is one of these.
    pub fn get(&self, name: &str) -> Option<OpenStore> {
        let name = normal(name);
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, open)| *open)
    }

    /// The modules' names, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }
}
