//! Recorders: where stored events live, and which store an application
//! uses.
//!
//! A recorder knows nothing of aggregates: it stores and selects
//! [`StoredEvent`] rows. The traits follow the Python eventsourcing
//! library's split:
//!
//! - [`AggregateRecorder`]: insert events atomically, select one stream;
//! - [`ApplicationRecorder`]: plus notifications, every event of the
//!   application in one total order;
//! - [`ProcessRecorder`]: plus tracking records, stored in the same
//!   transaction as the events they caused.
//!
//! The traits, the memory store and the rest of what every store shares
//! are the crate `annals-core`'s, re-exported here. Each other store is a
//! crate of its own, re-exported here behind its feature:
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`memory`] | `annals-core` | always |
//! | `sqlite` | `annals-sqlite` | `sqlite` (default) |
//! | `postgres` | `annals-postgres` | `postgres` |
//! | `mysql` | `annals-mysql` (MariaDB and MySQL) | `mysql` |
//! | `object` | `annals-object-store` | `object-store` (`s3` for Amazon S3, `azure` for Azure Blob Storage) |
//! | `umadb` | `annals-umadb` (a DCB store only) | `umadb` |
//!
//! Which store an application uses is decided here too ([`Persistence`],
//! from `PERSISTENCE_MODULE` or from code; see [`factory`]). A store
//! written outside annals depends on `annals-core`, implements the traits
//! and [`Store`], and is named in the [`Modules`] given to the builder
//! (`ApplicationBuilder::modules`) for `PERSISTENCE_MODULE` to select.

pub use annals_core::persistence::{
    keys, memory, wake, AggregateRecorder, ApplicationRecorder, EventQuery, KeyedOutcome,
    MemoryStore, Modules, Notification, NotificationQuery, OpenStore, ProcessRecorder, Recorders,
    Store, StoreTx, StoredEvent, Tracking, TrackingLayout,
};

pub mod dcb;
pub mod factory;
#[allow(deprecated)]
pub use factory::register_module;
pub use factory::{FromEnv, Persistence};

/// The SQLite store: the crate `annals-sqlite`.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use annals_sqlite as sqlite;

/// The PostgreSQL store: the crate `annals-postgres`.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use annals_postgres as postgres;

/// The MariaDB/MySQL store: the crate `annals-mysql`.
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use annals_mysql as mysql;

/// The object store (a directory, memory, S3 with feature `s3`, or Azure
/// Blob Storage with feature `azure`): the crate `annals-object-store`.
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use annals_object_store as object;

/// UmaDB, a DCB event store server: the crate `annals-umadb` (a
/// [`DcbRecorder`](dcb::DcbRecorder) only; [`dcb::open`] opens it for
/// `PERSISTENCE_MODULE=umadb`).
#[cfg(feature = "umadb")]
#[cfg_attr(docsrs, doc(cfg(feature = "umadb")))]
pub use annals_umadb as umadb;
