//! The PostgreSQL recorder.
//!
//! The tables are the Python eventsourcing library's (9.x), per application
//! (`{name}` is the application's name, lower-cased):
//!
//! - `{name}_events`: `originator_id` (`uuid`, or `text` with
//!   [`OriginatorIdType::Text`]), `originator_version bigint`, `topic text`,
//!   `state bytea`, `notification_id bigserial`, primary key
//!   `(originator_id, originator_version)` and a unique index on
//!   `notification_id`;
//! - `{name}_tracking`: `application_name text`, `notification_id bigint`,
//!   in one of the Python library's two layouts
//!   ([`TrackingLayout`](annals_core::persistence::TrackingLayout)): primary key
//!   `(application_name)`, one row per upstream application (single-row,
//!   the default for new tables, with the row `('__migration__', 1)`), or
//!   on both columns, one row per notification (multi-row); an existing
//!   table is used in the layout it has;
//! - `{name}_snapshots`: the events' columns without `notification_id`.
//!
//! All three are created with the Python library's storage options
//! (autovacuum on, vacuum thresholds for append-only tables).
//!
//! Writers take `LOCK TABLE {name}_events IN EXCLUSIVE MODE` for the length
//! of their transaction and take their ids from the column's sequence, as
//! Python's writers do (under the same lock), so notification ids are given
//! and committed in one order: a reader that has seen id N never later
//! finds a newly committed id below N. Ids may have gaps (a failed
//! transaction wastes the ones it drew). Readers take no lock that writers
//! wait on.
//!
//! Every committed insert sends `NOTIFY {name}_events`; a follower can wait
//! for it with [`PostgresRecorder::listen`].
//!
//! # Broken connections
//!
//! Reads are retried once, on another connection, when the connection broke
//! (closed by the server, I/O error). Writes are retried once only when the
//! connection broke before `COMMIT` was sent: the transaction then cannot
//! have committed. When it breaks after `COMMIT` was sent, whether the
//! events were stored is unknown, and the error says so rather than risk
//! storing them twice or reporting a conflict for the caller's own events.
//! (The DCB recorder's appends are single statements: see
//! [`PostgresDcbRecorder`].)

//!
//! | file | job |
//! |---|---|
//! | `settings.rs` | [`PostgresConfig`], from code or `POSTGRES_*` variables; name checks |
//! | `sql.rs` | every SQL statement |
//! | `pool.rs` | the pool, prepared statements per connection, broken connections |
//! | `recorder.rs` | [`PostgresRecorder`], [`PostgresSnapshotRecorder`]; reads, and saves handed to group commit |
//! | `writer.rs` | the group's connection as the group-commit engine drives it; one save's statements |
//! | `listener.rs` | [`Listener`] and the watcher that wakes followers |
//! | `dcb.rs`, `dcb_sql.rs` | [`PostgresDcbRecorder`] (dynamic consistency boundaries, Python's `postgres_tt` layout) and its SQL, Python's |
//! | `tls.rs` | `POSTGRES_SSLMODE`; how a connection is made |
//! | `handshake.rs` | a connection's TLS negotiation and startup, within the connect timeout |
//!
//! Applications reach this crate as `annals::persistence::postgres`
//! (feature `postgres`).

mod columns;
mod dcb;
mod dcb_sql;
mod handshake;
mod listener;
mod pool;
mod recorder;
mod settings;
mod sql;
mod tls;
mod writer;

pub use dcb::PostgresDcbRecorder;
pub use listener::Listener;
pub use pool::describe;
pub use recorder::{PostgresKeyStore, PostgresRecorder, PostgresSnapshotRecorder};
pub use settings::{OriginatorIdType, PostgresConfig};
pub use tls::SslMode;

use std::sync::Arc;

use annals_core::error::Result;
use annals_core::persistence::{Recorders, Store, StoreTx};

/// The postgres client this store uses: use it for projections and your
/// own tables, so that types such as `postgres::Client` match.
pub use postgres;

/// The PostgreSQL client of a save's transaction, lent to the user's
/// writes (`Application::save_and_write`, `Processing::write`):
/// `tx.postgres()`.
///
/// ```no_run
/// use annals_core::persistence::StoreTx;
/// use annals_postgres::PostgresTx;
///
/// let mut client = postgres::Client::connect("host=127.0.0.1 user=postgres", postgres::NoTls)
///     .map_err(annals_core::Error::user)?;
/// let mut tx = StoreTx::exclusive("postgres", &mut client);
/// tx.postgres()?.batch_execute("SELECT 1").map_err(annals_core::Error::user)?;
/// # Ok::<(), annals_core::Error>(())
/// ```
pub trait PostgresTx {
    /// The PostgreSQL client of the group transaction the save is in,
    /// inside its savepoint when it shares the group with other saves.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](annals_core::Error::Config) naming
    /// `PERSISTENCE_MODULE` when the application stores its events
    /// elsewhere.
    fn postgres(&mut self) -> Result<&mut postgres::Client>;
}

impl PostgresTx for StoreTx<'_> {
    fn postgres(&mut self) -> Result<&mut postgres::Client> {
        self.get_mut()
    }
}

impl Store for PostgresConfig {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn creating_tables(&self) -> Option<Arc<dyn Store>> {
        if self.django_tables {
            return Some(Arc::new(annals_core::persistence::django::Migrations));
        }
        let mut config = self.clone();
        config.create_tables = true;
        Some(Arc::new(config))
    }

    /// Connects and (unless `create_tables` is off) creates the tables of application `app_name` (its name,
    /// lower-cased, prefixes theirs); both recorders share one pool.
    fn open(&self, app_name: &str) -> Result<Recorders> {
        let recorder = PostgresRecorder::open(self, app_name)?;
        let snapshots = recorder.snapshot_recorder();
        let keys = recorder.key_store();
        let recorders = Recorders::new(Arc::new(recorder), Arc::new(snapshots));
        Ok(match keys {
            Some(keys) => recorders.with_keys(Arc::new(keys)),
            None => recorders,
        })
    }
}
