//! The SQLite recorder: the embedded store for one machine.
//!
//! - A file database uses WAL, so readers never block the writer; writes go
//!   through one connection per recorder and begin `IMMEDIATE`, so they take
//!   SQLite's write lock up front and wait for it (up to the lock timeout)
//!   instead of failing half-way. Several processes may write one file: a
//!   lock wait is not an error until its timeout, a lost race on the same
//!   aggregate version is a [`Conflict`](annals_core::Error::Conflict).
//! - `:memory:` (or a `mode=memory` URI) is one private database on one
//!   connection.
//! - The tables are the Python eventsourcing library's: `stored_events`
//!   (notification id = rowid), `stored_snapshots` and `tracking`; with a
//!   table prefix `p`, `p_events`, `p_snapshots` and `p_tracking`, so several
//!   applications can share one file. The tracking table is in one of
//!   Python's two layouts ([`TrackingLayout`](annals_core::persistence::TrackingLayout)):
//!   single-row (the default for new tables, with the row
//!   `('__migration__', 1)`) or multi-row; an existing table is used in the
//!   layout it has.

//! - Saves that arrive while another is writing share its transaction
//!   (group commit, [`annals_core::persistence`]'s engine): one fsync for all.
//! - [`ApplicationRecorder::watch`](annals_core::persistence::ApplicationRecorder::watch)
//!   looks at `PRAGMA data_version`, so followers see the commits of other
//!   processes within milliseconds.
//!
//! | file | job |
//! |---|---|
//! | `settings.rs` | [`SqliteConfig`], from code or `SQLITE_*` variables; table names |
//! | `sql.rs` | every SQL statement |
//! | `connection.rs` | the writer under group commit, the read pool, errors, the watcher |
//! | `recorder.rs` | [`SqliteRecorder`], [`SqliteSnapshotRecorder`] |
//! | `dcb.rs`, `dcb_sql.rs` | [`SqliteDcbRecorder`] (dynamic consistency boundaries) and its SQL |
//!
//! Applications reach this crate as `annals::persistence::sqlite` (feature
//! `sqlite`, on by default).

mod connection;
mod dcb;
mod dcb_sql;
mod keys;
mod recorder;
mod settings;
mod sql;

pub use dcb::SqliteDcbRecorder;
pub use keys::SqliteKeyStore;
pub use recorder::{SqliteRecorder, SqliteSnapshotRecorder};
pub use settings::SqliteConfig;

use std::sync::Arc;

use annals_core::error::Result;
use annals_core::persistence::{Recorders, Store, StoreTx};

/// The rusqlite this store links (bundled SQLite): use it for projections
/// and your own tables, so that only one `libsqlite3-sys` is linked (two
/// versions of it cannot be, and cargo says only "links to the native
/// library sqlite3").
pub use rusqlite;

/// The SQLite connection of a save's transaction, lent to the user's
/// writes (`Application::save_and_write`, `Processing::write`): `tx.sqlite()`.
///
/// ```
/// use annals_core::persistence::StoreTx;
/// use annals_sqlite::SqliteTx;
///
/// let conn = rusqlite::Connection::open_in_memory().map_err(annals_core::Error::user)?;
/// let tx = StoreTx::shared("sqlite", &conn);
/// let one: i64 = tx.sqlite()?.query_row("SELECT 1", [], |r| r.get(0)).map_err(annals_core::Error::user)?;
/// assert_eq!(one, 1);
/// # Ok::<(), annals_core::Error>(())
/// ```
pub trait SqliteTx {
    /// The SQLite connection, inside the save's transaction (or its
    /// savepoint, when it shares a group transaction with other saves).
    ///
    /// # Errors
    ///
    /// [`Error::Config`](annals_core::Error::Config) naming
    /// `PERSISTENCE_MODULE` when the application stores its events
    /// elsewhere.
    fn sqlite(&self) -> Result<&rusqlite::Connection>;
}

impl SqliteTx for StoreTx<'_> {
    fn sqlite(&self) -> Result<&rusqlite::Connection> {
        self.get()
    }
}

impl Store for SqliteConfig {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn creating_tables(&self) -> Option<Arc<dyn Store>> {
        if self.django_tables {
            return Some(Arc::new(annals_core::persistence::django::Migrations));
        }
        let mut config = self.clone();
        config.create_tables = true;
        Some(Arc::new(config))
    }

    /// Opens the database; both recorders share its connections. The
    /// application's name is not used (name the tables with
    /// [`SqliteConfig::table_prefix`] to share a file), but under
    /// eventsourcing_django's tables ([`SqliteConfig::django_tables`]),
    /// where it picks the application's rows.
    fn open(&self, app_name: &str) -> Result<Recorders> {
        let recorder = SqliteRecorder::open_application(self.clone(), app_name)?;
        let snapshots = recorder.snapshot_recorder();
        let keys = recorder.key_store();
        let recorders = Recorders::new(Arc::new(recorder), Arc::new(snapshots));
        Ok(match keys {
            Some(keys) => recorders.with_keys(Arc::new(keys)),
            None => recorders,
        })
    }
}
