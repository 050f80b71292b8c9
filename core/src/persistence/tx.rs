//! [`StoreTx`]: the store's open transaction, lent to the user's code so
//! that its own rows are written in the transaction that stores the events
//! (and a process application's tracking record).

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::error::Error;
use crate::error::Result;
use crate::settings;

/// The transaction a save is being stored in, lent to the user's code:
/// what it writes through it is stored with the save's events (and, for a
/// process application, its tracking record) or not at all. Given to the
/// closures of `Application::save_and_write` and `Processing::write`;
/// and, read-only, to `Application::read`'s.
///
/// A store lends its connection with [`shared`](Self::shared) or
/// [`exclusive`](Self::exclusive); the user's code takes it back by type
/// with [`get`](Self::get) or [`get_mut`](Self::get_mut) (asking for
/// another store's type is an error naming `PERSISTENCE_MODULE`). The SQL
/// store crates add the short forms `tx.sqlite()` (`annals_sqlite::SqliteTx`)
/// and `tx.postgres()` (`annals_postgres::PostgresTx`), both in
/// `annals::prelude`. A store written outside annals lends its own
/// connection type the same way.
///
/// The transaction is the store's: write and read through it, take
/// savepoints in SQL if needed, but never begin, commit or roll it back
/// (SQLite's connection is lent shared, so rusqlite's `transaction()` is
/// not at hand; on PostgreSQL, do not call `Client::transaction`, whose
/// `BEGIN` does nothing inside a transaction and whose commit or drop would
/// end the store's own). A save whose transaction was ended, or
/// (PostgreSQL) is left failed by a statement whose error was ignored,
/// fails with [`Error::Persistence`]. Do not call the application from
/// inside (its writer is held: a save would wait for itself).
///
/// ```
/// use annals_core::persistence::StoreTx;
///
/// /// A store's connection (here, a list of lines).
/// struct Journal(Vec<String>);
///
/// let mut journal = Journal(Vec::new());
/// let mut tx = StoreTx::exclusive("journal", &mut journal);
/// assert_eq!(tx.store(), "journal");
/// tx.get_mut::<Journal>()?.0.push("written in the save".into());
/// let err = tx.get::<String>().unwrap_err(); // not this store's type
/// assert!(err.to_string().contains("PERSISTENCE_MODULE"), "{err}");
/// assert_eq!(journal.0, ["written in the save"]);
/// # Ok::<(), annals_core::Error>(())
/// ```
pub struct StoreTx<'a> {
    store: &'static str,
    lent: Lent<'a>,
}

/// The connection a store lent: shared (SQLite's writer, whose methods
/// take `&self`) or exclusive (a PostgreSQL client).
enum Lent<'a> {
    Shared(&'a dyn Any),
    Exclusive(&'a mut dyn Any),
}

impl std::fmt::Debug for StoreTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreTx").field(&self.store).finish()
    }
}

impl<'a> StoreTx<'a> {
    /// Store `store` lends `conn` to be read and written through `&C`
    /// only ([`get_mut`](Self::get_mut) is then an error).
    pub fn shared<C: Any>(store: &'static str, conn: &'a C) -> Self {
        Self {
            store,
            lent: Lent::Shared(conn),
        }
    }

    /// Store `store` lends `conn` to be read and written through
    /// `&mut C`.
    pub fn exclusive<C: Any>(store: &'static str, conn: &'a mut C) -> Self {
        Self {
            store,
            lent: Lent::Exclusive(conn),
        }
    }

    /// The name of the store that lent the transaction (`"sqlite"`,
    /// `"postgres"`, or a user's store's).
    pub fn store(&self) -> &'static str {
        self.store
    }

    /// The lent connection, as a `&C`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `PERSISTENCE_MODULE` when the store lent
    /// another type (the application stores its events elsewhere).
    pub fn get<C: Any>(&self) -> Result<&C> {
        let conn: &dyn Any = match &self.lent {
            Lent::Shared(conn) => *conn,
            Lent::Exclusive(conn) => &**conn,
        };
        conn.downcast_ref()
            .ok_or_else(|| wrong_type(self.store, std::any::type_name::<C>()))
    }

    /// The lent connection, as a `&mut C`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `PERSISTENCE_MODULE` when the store lent
    /// another type, or lent its connection shared only.
    pub fn get_mut<C: Any>(&mut self) -> Result<&mut C> {
        let store = self.store;
        let wanted = std::any::type_name::<C>();
        match &mut self.lent {
            Lent::Exclusive(conn) => conn
                .downcast_mut()
                .ok_or_else(|| wrong_type(store, wanted)),
            Lent::Shared(conn) if conn.is::<C>() => Err(Error::config(
                settings::PERSISTENCE_MODULE.name,
                format!(
                    "the {store} store lends its {wanted} shared: take it with tx.get(), not get_mut()"
                ),
            )),
            Lent::Shared(_) => Err(wrong_type(store, wanted)),
        }
    }
}

/// The error of asking store `store`'s transaction for a `wanted`.
fn wrong_type(store: &str, wanted: &str) -> Error {
    Error::config(
        settings::PERSISTENCE_MODULE.name,
        format!(
            "the code writing its own rows asked for a {wanted}, but this application \
             stores its events in {store}, which lends another connection"
        ),
    )
}

/// The error of a store that cannot lend a transaction (the default of
/// [`ProcessRecorder::insert_events_with`](super::ProcessRecorder::insert_events_with)).
pub fn no_transaction(store: &str) -> Error {
    Error::config(
        settings::PERSISTENCE_MODULE.name,
        format!(
            "{store} has no database transaction to share: writing your own rows in the \
             transaction of a save needs a store that lends one, such as SQLite or PostgreSQL; nothing was stored"
        ),
    )
}

/// The error of a store that has no connection to lend for reads (the
/// default of [`ProcessRecorder::read_with`](super::ProcessRecorder::read_with)).
///
/// ```
/// let error = annals_core::persistence::no_read_connection("my store");
/// assert!(error.to_string().contains("PERSISTENCE_MODULE"), "{error}");
/// ```
pub fn no_read_connection(store: &str) -> Error {
    Error::config(
        settings::PERSISTENCE_MODULE.name,
        format!(
            "{store} has no database connection to lend: reading your own tables needs a \
             store that keeps them, such as SQLite or PostgreSQL"
        ),
    )
}

/// The error of a store that keeps no idempotency keys (the default of
/// [`ProcessRecorder::insert_events_keyed`](super::ProcessRecorder::insert_events_keyed)
/// and [`select_outcome`](super::ProcessRecorder::select_outcome)).
///
/// ```
/// let error = annals_core::persistence::no_idempotency_keys("my store");
/// assert!(error.to_string().contains("PERSISTENCE_MODULE"), "{error}");
/// ```
pub fn no_idempotency_keys(store: &str) -> Error {
    Error::config(
        settings::PERSISTENCE_MODULE.name,
        format!(
            "{store} keeps no idempotency keys: a command with one needs a store that stores \
             the key with the events in one transaction (memory, SQLite, PostgreSQL, objects); \
             nothing was stored"
        ),
    )
}

/// How the user's part of a save failed.
enum UserFailure {
    Error(Error),
    Panic(Box<dyn Any + Send>),
}

/// The user's part of a save, run by a store inside its transaction right
/// after its own inserts. Its error (or panic) is kept here while the store
/// fails the save with an error of its own type (which rolls the save
/// back); [`take_error`](Self::take_error) then gives the user's error back as it
/// was (a panic resumes, after the rollback).
pub struct UserWrites<'f> {
    writes: &'f mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>,
    failed: Option<UserFailure>,
}

impl<'f> UserWrites<'f> {
    /// The user's `writes`, not yet run.
    pub fn new(writes: &'f mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>) -> Self {
        Self {
            writes,
            failed: None,
        }
    }

    /// Runs the writes through `tx`: true when they succeeded.
    pub fn run(&mut self, mut tx: StoreTx<'_>) -> bool {
        self.failed = None;
        let writes = &mut self.writes;
        match catch_unwind(AssertUnwindSafe(|| (writes)(&mut tx))) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.failed = Some(UserFailure::Error(e));
                false
            }
            Err(panic) => {
                self.failed = Some(UserFailure::Panic(panic));
                false
            }
        }
    }

    /// The user's error, if the writes failed (a panic is resumed here,
    /// once the store has rolled the save back).
    pub fn take_error(&mut self) -> Option<Error> {
        match self.failed.take()? {
            UserFailure::Error(e) => Some(e),
            UserFailure::Panic(panic) => resume_unwind(panic),
        }
    }
}

impl std::fmt::Debug for UserWrites<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserWrites")
            .field("failed", &self.failed.is_some())
            .finish_non_exhaustive()
    }
}

/// The error of a transaction that the user's code ended or (PostgreSQL)
/// left failed.
pub fn transaction_lost(store: &str, why: impl std::fmt::Display) -> Error {
    Error::persistence(
        format!(
            "the code writing its own rows left the {store} transaction of the save unusable \
             ({why}): it must not begin, commit or roll back, nor ignore a failed statement"
        ),
        why.to_string(),
    )
}
