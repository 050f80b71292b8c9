//! The MariaDB/MySQL recorder.
//!
//! The tables are per application (`{name}` is the application's name,
//! lower-cased), InnoDB, `utf8mb4` with a binary collation (ids compare
//! byte for byte, as elsewhere in annals):
//!
//! - `{name}_events`: `originator_id VARCHAR(255)` (UUIDs and text ids
//!   alike), `originator_version BIGINT UNSIGNED`, `topic TEXT`,
//!   `state LONGBLOB`, `notification_id BIGINT UNSIGNED AUTO_INCREMENT`,
//!   primary key `(originator_id, originator_version)` and a unique key on
//!   `notification_id`;
//! - `{name}_snapshots`: the events' columns without `notification_id`;
//! - `{name}_tracking`: `application_name`, `notification_id`, in one of
//!   the Python library's two layouts
//!   ([`TrackingLayout`](annals_core::persistence::TrackingLayout)):
//!   primary key `(application_name)`, one row per upstream application
//!   (single-row, the default for new tables, with the row
//!   `('__migration__', 1)`), or on both columns, one row per notification
//!   (multi-row); an existing table is used in the layout it has;
//! - `{name}_outcomes`: idempotency keys and their outcomes;
//! - `{name}_data_keys`: the data keys of personal data, one a subject
//!   (`subject VARBINARY(1020)`, the primary key; see [`MysqlKeyStore`]);
//! - `{name}_lock`: one row, the writers' lock.
//!
//! # Notification order
//!
//! InnoDB hands out AUTO_INCREMENT ids when rows are inserted, not when
//! they commit: two transactions may take ids 5 and 6 and commit 6 first,
//! and a reader that saw 6 would skip 5 for good. So every writing
//! transaction first locks the one row of `{name}_lock` (`SELECT ... FOR
//! UPDATE`), as the PostgreSQL store takes `LOCK TABLE ... IN EXCLUSIVE
//! MODE`: writers take ids and commit in one order, and a reader that has
//! seen id N never later finds a newly committed id below N. Ids may have
//! gaps (a failed transaction wastes the ones it drew). Readers use plain
//! consistent reads, which take no lock that writers wait on.
//!
//! The lock is a row lock because it lives and dies with the transaction:
//! InnoDB releases it at COMMIT, at ROLLBACK (a deadlock's too) and when
//! the connection ends, so no path can leave it held. `GET_LOCK` is a
//! session's lock, not the transaction's: it outlives a ROLLBACK, so every
//! path (errors, a panic while the connection is lent to the user's
//! writes) would have to release it by hand, and a pooled connection could
//! keep it. `LOCK TABLES` commits the open transaction when taken and must
//! name every table the session touches, so the user's own tables could
//! not be written in the save's transaction, and it blocks readers too.
//!
//! # Broken connections
//!
//! Reads are retried once, on another connection, when the connection
//! broke (closed by the server, an I/O error). A save is retried once only
//! when its connection broke before `COMMIT` was sent and no other save
//! shared its transaction: nothing can have committed. When it breaks
//! after `COMMIT` was sent, whether the events were stored is unknown, and
//! the error says so rather than risk storing them twice.
//!
//! | file | job |
//! |---|---|
//! | `settings.rs` | [`MysqlConfig`], from code or `MYSQL_*` variables; [`SslMode`] |
//! | `sql.rs` | every SQL statement |
//! | `pool.rs` | how a connection is made (TLS), the pool, broken connections |
//! | `recorder.rs` | [`MysqlRecorder`], [`MysqlSnapshotRecorder`]; reads, saves handed to group commit, the watcher |
//! | `keys.rs` | [`MysqlKeyStore`]: the data keys of personal data |
//! | `writer.rs` | the group's connection as the group-commit engine drives it; one save's statements |
//!
//! Applications reach this crate as `annals::persistence::mysql`
//! (feature `mysql`).

mod keys;
mod pool;
mod recorder;
mod settings;
mod sql;
mod writer;

pub use keys::{MysqlKeyStore, MAX_SUBJECT_BYTES};
pub use recorder::{MysqlRecorder, MysqlSnapshotRecorder};
pub use settings::{MysqlConfig, SslMode};

use std::sync::Arc;

use annals_core::error::Result;
use annals_core::persistence::{Recorders, Store, StoreTx};

/// The mysql client this store uses: use it for projections and your own
/// tables, so that types such as `mysql::Conn` match.
pub use mysql;

/// The MariaDB/MySQL connection of a save's transaction, lent to the
/// user's writes (`Application::save_and_write`, `Processing::write`):
/// `tx.mysql()`.
///
/// ```no_run
/// use annals_core::persistence::StoreTx;
/// use annals_mysql::mysql::prelude::Queryable;
/// use annals_mysql::MysqlTx;
///
/// let mut conn = mysql::Conn::new("mysql://root@127.0.0.1:3306/test")
///     .map_err(annals_core::Error::user)?;
/// let mut tx = StoreTx::exclusive("mysql", &mut conn);
/// tx.mysql()?.query_drop("SELECT 1").map_err(annals_core::Error::user)?;
/// # Ok::<(), annals_core::Error>(())
/// ```
pub trait MysqlTx {
    /// The connection of the group transaction the save is in, inside its
    /// savepoint when it shares the group with other saves. Write and
    /// read through it; never begin, commit or roll back.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](annals_core::Error::Config) naming
    /// `PERSISTENCE_MODULE` when the application stores its events
    /// elsewhere.
    fn mysql(&mut self) -> Result<&mut mysql::Conn>;
}

impl MysqlTx for StoreTx<'_> {
    fn mysql(&mut self) -> Result<&mut mysql::Conn> {
        self.get_mut()
    }
}

impl Store for MysqlConfig {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn creating_tables(&self) -> Option<Arc<dyn Store>> {
        if self.django_tables {
            return Some(Arc::new(annals_core::persistence::django::Migrations));
        }
        let mut config = self.clone();
        config.create_tables = true;
        Some(Arc::new(config))
    }

    /// Connects and (unless `create_tables` is off) creates the tables of
    /// application `app_name` (its name, lower-cased, prefixes theirs);
    /// both recorders and the data keys (none under Django's tables)
    /// share one pool.
    fn open(&self, app_name: &str) -> Result<Recorders> {
        let recorder = MysqlRecorder::open(self, app_name)?;
        let snapshots = recorder.snapshot_recorder();
        let keys = recorder.key_store();
        let recorders = Recorders::new(Arc::new(recorder), Arc::new(snapshots));
        Ok(match keys {
            Some(keys) => recorders.with_keys(Arc::new(keys)),
            None => recorders,
        })
    }
}
