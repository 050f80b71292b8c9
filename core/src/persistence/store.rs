//! [`Store`]: a kind of store, configured, that opens the [`Recorders`] of
//! an application. Each store's settings implement it (the memory store's
//! [`MemoryStore`], annals-sqlite's `SqliteConfig`, ...), and so can a
//! store written outside annals.
//!
//! ```
//! use std::sync::Arc;
//! use annals_core::persistence::memory::MemoryRecorder;
//! use annals_core::persistence::{Recorders, Store};
//!
//! /// A store of the user's: here, memory under another name.
//! #[derive(Debug)]
//! struct Scratch;
//!
//! impl Store for Scratch {
//!     fn open(&self, _app_name: &str) -> annals_core::Result<Recorders> {
//!         Ok(Recorders::new(Arc::new(MemoryRecorder::new()), Arc::new(MemoryRecorder::new())))
//!     }
//! }
//!
//! let recorders = Scratch.open("Notes")?;
//! assert_eq!(recorders.events.max_notification_id()?, 0);
//! # Ok::<(), annals_core::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;

use super::keys::{KeyStore, MemoryKeyStore};
use super::memory::MemoryRecorder;
use super::{AggregateRecorder, ProcessRecorder};
use crate::error::Result;

/// A kind of store that can open the recorders of an application.
///
/// Implemented by each store's settings (annals-sqlite's `SqliteConfig`,
/// annals-postgres' `PostgresConfig`, [`MemoryStore`]) and by a user's own
/// stores (see the module's example).
pub trait Store: Send + Sync + fmt::Debug {
    /// Opens (and, where configured, creates) the stores of application
    /// `app_name`.
    ///
    /// # Errors
    ///
    /// The store cannot be reached or prepared, or a setting is bad.
    fn open(&self, app_name: &str) -> Result<Recorders>;

    /// The store's name, as the `store` field of the recorders' `trace`
    /// spans says it (`"sqlite"`, `"postgres"`, ...).
    fn name(&self) -> &'static str {
        "store"
    }

    /// The same store, creating its missing tables whatever its settings
    /// say (`ApplicationBuilder::migrate`), if it has tables and a setting
    /// that can turn their creation off; `None` (the default) when it
    /// always creates what it needs, or cannot be told.
    fn creating_tables(&self) -> Option<Arc<dyn Store>> {
        None
    }
}

/// The recorders of one application: its events (with the log and
/// tracking records) and its snapshots.
#[derive(Clone)]
pub struct Recorders {
    /// Events, notifications and tracking records.
    pub events: Arc<dyn ProcessRecorder>,
    /// Snapshots.
    pub snapshots: Arc<dyn AggregateRecorder>,
    /// The data keys of personal data, where the store keeps them
    /// ([`with_keys`](Self::with_keys)); `None` for a store that cannot.
    pub keys: Option<Arc<dyn KeyStore>>,
}

impl fmt::Debug for Recorders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorders").finish_non_exhaustive()
    }
}

impl Recorders {
    /// Events in `events`, snapshots in `snapshots`.
    pub fn new(events: Arc<dyn ProcessRecorder>, snapshots: Arc<dyn AggregateRecorder>) -> Self {
        Self {
            events,
            snapshots,
            keys: None,
        }
    }

    /// The same recorders, with `keys` keeping the data keys of personal
    /// data.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use annals_core::persistence::keys::MemoryKeyStore;
    /// use annals_core::persistence::memory::MemoryRecorder;
    /// use annals_core::persistence::Recorders;
    ///
    /// let recorders = Recorders::new(Arc::new(MemoryRecorder::new()), Arc::new(MemoryRecorder::new()))
    ///     .with_keys(Arc::new(MemoryKeyStore::default()));
    /// assert!(recorders.keys.is_some());
    /// ```
    pub fn with_keys(mut self, keys: Arc<dyn KeyStore>) -> Self {
        self.keys = Some(keys);
        self
    }
}

/// The memory store as a [`Store`]: each application opened gets empty
/// recorders of its own, lost when it is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn open(&self, _app_name: &str) -> Result<Recorders> {
        Ok(Recorders::new(
            Arc::new(MemoryRecorder::new()),
            Arc::new(MemoryRecorder::new()),
        )
        .with_keys(Arc::new(MemoryKeyStore::default())))
    }
}
