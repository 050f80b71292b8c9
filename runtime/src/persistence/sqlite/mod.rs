//! The SQLite recorder: the embedded store for one machine.
//!
//! - A file database uses WAL, so readers never block the writer; writes go
//!   through one connection per recorder and begin `IMMEDIATE`, so they take
//!   SQLite's write lock up front and wait for it (up to the lock timeout)
//!   instead of failing half-way. Several processes may write one file: a
//!   lock wait is not an error until its timeout, a lost race on the same
//!   aggregate version is a [`Conflict`](crate::Error::Conflict).
//! - `:memory:` (or a `mode=memory` URI) is one private database on one
//!   connection.
//! - The tables are the Python eventsourcing library's: `stored_events`
//!   (notification id = rowid), `stored_snapshots` and `tracking`; with a
//!   table prefix `p`, `p_events`, `p_snapshots` and `p_tracking`, so several
//!   applications can share one file. The tracking table is in one of
//!   Python's two layouts ([`TrackingLayout`](crate::persistence::TrackingLayout)):
//!   single-row (the default for new tables, with the row
//!   `('__migration__', 1)`) or multi-row; an existing table is used in the
//!   layout it has.

//! - Saves that arrive while another is writing share its transaction
//!   (group commit, [`crate::persistence`]'s engine): one fsync for all.
//! - [`ApplicationRecorder::watch`](crate::persistence::ApplicationRecorder::watch)
//!   looks at `PRAGMA data_version`, so followers see the commits of other
//!   processes within milliseconds.
//!
//! | file | job |
//! |---|---|
//! | `settings.rs` | [`SqliteConfig`], from code or `SQLITE_*` variables; table names |
//! | `sql.rs` | every SQL statement |
//! | `connection.rs` | the writer under group commit, the read pool, errors, the watcher |
//! | `recorder.rs` | [`SqliteRecorder`], [`SqliteSnapshotRecorder`] |

mod connection;
mod recorder;
mod settings;
mod sql;

pub use recorder::{SqliteRecorder, SqliteSnapshotRecorder};
pub use settings::SqliteConfig;

use std::sync::Arc;

use crate::error::Result;
use crate::persistence::{Recorders, Store};

impl Store for SqliteConfig {
    /// Opens the database; both recorders share its connections. The
    /// application's name is not used: name the tables with
    /// [`SqliteConfig::table_prefix`] to share a file.
    fn open(&self, _app_name: &str) -> Result<Recorders> {
        let recorder = SqliteRecorder::open(self.clone())?;
        let snapshots = recorder.snapshot_recorder();
        Ok(Recorders::new(Arc::new(recorder), Arc::new(snapshots)))
    }
}
