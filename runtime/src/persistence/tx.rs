//! [`StoreTx`]: the store's open transaction, lent to the user's code so
//! that its own rows are written in the transaction that stores the events
//! (and a process application's tracking record).

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use std::any::Any;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::error::Error;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::error::Result;
use crate::settings;

/// The transaction a save is being stored in, lent to the user's code:
/// what it writes through it is stored with the save's events (and, for a
/// process application, its tracking record) or not at all. Given to the
/// closures of `Application::save_and_write` and `Processing::write`.
///
/// Take the connection of the store the application uses with
/// [`sqlite`](Self::sqlite) or [`postgres`](Self::postgres) (the other
/// one is an error naming the store), or `match` on the variants. The
/// transaction is annals': write and read through it, take savepoints in
/// SQL if needed, but never begin, commit or roll it back (SQLite's
/// connection is lent as `&Connection`, so rusqlite's `transaction()` is
/// not at hand; on PostgreSQL, do not call `Client::transaction`, whose
/// `BEGIN` does nothing inside a transaction and whose commit or drop would
/// end annals' own). A save whose transaction was ended, or (PostgreSQL) is
/// left failed by a statement whose error was ignored, fails with
/// [`Error::Persistence`]. Do not call the application from inside (its
/// writer is held: a save would wait for itself).
///
/// ```
/// # use annals::prelude::*;
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Dog { pub name: String }
/// # #[aggregate]
/// # impl Dog {
/// #     #[event("Registered")]
/// #     pub fn register(name: String) -> Self { Dog { name } }
/// # }
/// use annals::persistence::StoreTx;
///
/// # let dir = std::env::temp_dir().join(format!("annals-doc-{}", Uuid::new_v4()));
/// # std::fs::create_dir_all(&dir).map_err(annals::Error::user)?;
/// # let db = dir.join("kennel.db").to_string_lossy().into_owned();
/// let app = Application::builder("Kennel").sqlite(db.clone()).build()?;
/// let mut dog = Dog::register("Fido".into());
/// app.save_and_write(&mut dog, |tx: &mut StoreTx<'_>| {
///     let conn = tx.sqlite()?;
///     conn.execute_batch("CREATE TABLE IF NOT EXISTS names (name TEXT UNIQUE)")
///         .map_err(annals::Error::user)?;
///     conn.execute("INSERT INTO names VALUES ('Fido')", [])
///         .map_err(annals::Error::user)?;
///     Ok(())
/// })?;
/// let names: i64 = annals::rusqlite::Connection::open(&db)
///     .and_then(|c| c.query_row("SELECT COUNT(*) FROM names", [], |r| r.get(0)))
///     .map_err(annals::Error::user)?;
/// assert_eq!(names, 1);
/// # Ok::<(), annals::Error>(())
/// ```
#[non_exhaustive]
pub enum StoreTx<'a> {
    /// The SQLite writer, inside the save's transaction (or its savepoint,
    /// when it shares a group transaction with other saves).
    #[cfg(feature = "sqlite")]
    Sqlite(&'a rusqlite::Connection),
    /// The PostgreSQL connection of the group transaction the save is in,
    /// inside its savepoint when it shares the group with other saves.
    #[cfg(feature = "postgres")]
    Postgres(&'a mut postgres::Client),
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    #[doc(hidden)]
    __None(std::convert::Infallible, std::marker::PhantomData<&'a ()>),
}

impl std::fmt::Debug for StoreTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreTx").field(&self.store()).finish()
    }
}

impl StoreTx<'_> {
    /// The store's name: `"sqlite"` or `"postgres"`.
    pub fn store(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            StoreTx::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            StoreTx::Postgres(_) => "postgres",
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            StoreTx::__None(never, _) => match *never {},
        }
    }

    /// The SQLite connection, inside the save's transaction.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `PERSISTENCE_MODULE` when the application
    /// stores its events elsewhere.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&self) -> Result<&rusqlite::Connection> {
        match self {
            StoreTx::Sqlite(conn) => Ok(conn),
            #[allow(unreachable_patterns)]
            other => Err(other.wrong_store("sqlite")),
        }
    }

    /// The PostgreSQL client, inside the save's transaction.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `PERSISTENCE_MODULE` when the application
    /// stores its events elsewhere.
    #[cfg(feature = "postgres")]
    pub fn postgres(&mut self) -> Result<&mut postgres::Client> {
        match self {
            StoreTx::Postgres(client) => Ok(client),
            #[allow(unreachable_patterns)]
            other => Err(other.wrong_store("postgres")),
        }
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn wrong_store(&self, wanted: &str) -> Error {
        Error::config(
            settings::PERSISTENCE_MODULE.name,
            format!(
                "the code writing its own rows asked for the {wanted} transaction, but this \
                 application stores its events in {}: write through tx.{}()",
                self.store(),
                self.store()
            ),
        )
    }
}

/// The error of a store that cannot lend a transaction (the default of
/// [`ProcessRecorder::insert_events_with`](super::ProcessRecorder::insert_events_with)).
pub(crate) fn no_transaction(store: &str) -> Error {
    Error::config(
        settings::PERSISTENCE_MODULE.name,
        format!(
            "{store} has no database transaction to share: writing your own rows in the \
             transaction of a save needs the SQLite or PostgreSQL store; nothing was stored"
        ),
    )
}

/// How the user's part of a save failed.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
enum Failed {
    Error(Error),
    Panic(Box<dyn Any + Send>),
}

/// The user's part of a save, run by a store inside its transaction right
/// after its own inserts. Its error (or panic) is kept here while the store
/// fails the save with an error of its own type (which rolls the save
/// back); [`result`](Self::result) then gives the user's error back as it
/// was (a panic resumes, after the rollback).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct UserWrites<'f> {
    writes: &'f mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>,
    failed: Option<Failed>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<'f> UserWrites<'f> {
    pub(crate) fn new(writes: &'f mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>) -> Self {
        Self {
            writes,
            failed: None,
        }
    }

    /// Runs the writes through `tx`: true when they succeeded.
    pub(crate) fn run(&mut self, mut tx: StoreTx<'_>) -> bool {
        self.failed = None;
        let writes = &mut self.writes;
        match catch_unwind(AssertUnwindSafe(|| (writes)(&mut tx))) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.failed = Some(Failed::Error(e));
                false
            }
            Err(panic) => {
                self.failed = Some(Failed::Panic(panic));
                false
            }
        }
    }

    /// The user's error, if the writes failed (a panic is resumed here,
    /// once the store has rolled the save back).
    pub(crate) fn take_error(&mut self) -> Option<Error> {
        match self.failed.take()? {
            Failed::Error(e) => Some(e),
            Failed::Panic(panic) => resume_unwind(panic),
        }
    }
}

/// The error of a transaction that the user's code ended or (PostgreSQL)
/// left failed.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn transaction_lost(store: &str, why: impl std::fmt::Display) -> Error {
    Error::persistence(
        format!(
            "the code writing its own rows left the {store} transaction of the save unusable \
             ({why}): it must not begin, commit or roll back, nor ignore a failed statement"
        ),
        why.to_string(),
    )
}
