//! [`ReadModel`]: a database that a [`Projection`](super::Projection) keeps
//! a read model in, with its own tracking table, so each event is applied
//! exactly once; and its implementations for the clients of the SQL stores
//! annals re-exports (`crate::rusqlite::Connection`, `crate::postgres::Client`).

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::error::Error;
use crate::error::Result;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use annals_core::persistence::to_i64;

/// A database a projection writes its read model to, with a tracking
/// table of its own (`projection_tracking`). Implemented for
/// `crate::rusqlite::Connection` (feature `sqlite`) and `crate::postgres::Client`
/// (feature `postgres`); see [`Projection`](super::Projection) for an example. Implement it
/// for another database: [`apply`](Self::apply) must record the tracking
/// row and the projection's writes in one transaction, and report a
/// tracking row that exists as [`Error::Conflict`](crate::Error::Conflict).
pub trait ReadModel: Send + 'static {
    /// A transaction of the database, which the projection's code writes
    /// through.
    type Tx<'t>
    where
        Self: 't;

    /// Creates the tracking table if it is missing.
    ///
    /// # Errors
    ///
    /// The database's errors ([`Error::Persistence`](crate::Error::Persistence)).
    fn create_tracking_table(&mut self) -> Result<()>;

    /// The highest notification id of `leader` that projection `name` has
    /// applied (0 when none).
    ///
    /// # Errors
    ///
    /// The database's errors ([`Error::Persistence`](crate::Error::Persistence)).
    fn max_tracking_id(&mut self, name: &str, leader: &str) -> Result<u64>;

    /// Runs `apply` in a transaction and records, in the same transaction,
    /// that projection `name` applied notification `id` of `leader`. When
    /// that record exists already (another instance of the projection
    /// applied it), nothing is done and the answer is
    /// [`Applied::Already`]; an error of `apply` (of any kind, a conflict
    /// too) is returned as it is, and nothing of the transaction stays.
    fn apply(
        &mut self,
        name: &str,
        leader: &str,
        id: u64,
        apply: &mut dyn FnMut(&mut Self::Tx<'_>) -> Result<()>,
    ) -> Result<Applied>;
}

/// What [`ReadModel::apply`] did with a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied now, with its tracking record.
    Now,
    /// Applied before (its tracking record exists): nothing was done.
    Already,
}

#[cfg(feature = "sqlite")]
fn db_error(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::persistence(context.to_owned(), e)
}

#[cfg(feature = "sqlite")]
impl ReadModel for crate::rusqlite::Connection {
    type Tx<'t>
        = crate::rusqlite::Transaction<'t>
    where
        Self: 't;

    fn create_tracking_table(&mut self) -> Result<()> {
        self.execute_batch(
            "CREATE TABLE IF NOT EXISTS projection_tracking (projection TEXT, application_name TEXT, \
             notification_id INTEGER, PRIMARY KEY (projection, application_name, notification_id)) WITHOUT ROWID",
        )
        .map_err(|e| db_error("creating projection_tracking", e))
    }

    fn max_tracking_id(&mut self, name: &str, leader: &str) -> Result<u64> {
        self.query_row(
            "SELECT MAX(notification_id) FROM projection_tracking WHERE projection = ?1 AND application_name = ?2",
            [name, leader],
            |row| row.get::<_, Option<i64>>(0),
        )
        .map(|max| max.map_or(0, i64::unsigned_abs))
        .map_err(|e| db_error("reading projection_tracking", e))
    }

    fn apply(
        &mut self,
        name: &str,
        leader: &str,
        id: u64,
        apply: &mut dyn FnMut(&mut Self::Tx<'_>) -> Result<()>,
    ) -> Result<Applied> {
        let mut tx = self
            .transaction_with_behavior(crate::rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_error("beginning a projection transaction", e))?;
        let tracked = tx.execute(
            "INSERT INTO projection_tracking VALUES (?1, ?2, ?3)",
            crate::rusqlite::params![name, leader, to_i64("notification id", id)?],
        );
        match tracked {
            Ok(_) => {}
            // Dropping `tx` rolls it back.
            Err(e)
                if e.sqlite_error_code()
                    == Some(crate::rusqlite::ErrorCode::ConstraintViolation) =>
            {
                return Ok(Applied::Already)
            }
            Err(e) => return Err(db_error("recording projection tracking", e)),
        }
        apply(&mut tx)?;
        tx.commit()
            .map_err(|e| db_error("committing a projection transaction", e))?;
        Ok(Applied::Now)
    }
}

/// A PostgreSQL error, with what the server said in its own message.
#[cfg(feature = "postgres")]
fn pg_error(context: &str, e: crate::postgres::Error) -> Error {
    let said = crate::persistence::postgres::describe(&e);
    Error::persistence(format!("{context}: {said}"), e)
}

#[cfg(feature = "postgres")]
impl ReadModel for crate::postgres::Client {
    type Tx<'t>
        = crate::postgres::Transaction<'t>
    where
        Self: 't;

    fn create_tracking_table(&mut self) -> Result<()> {
        self.batch_execute(
            "CREATE TABLE IF NOT EXISTS projection_tracking (projection text, application_name text, \
             notification_id bigint, PRIMARY KEY (projection, application_name, notification_id))",
        )
        .map_err(|e| pg_error("creating projection_tracking", e))
    }

    fn max_tracking_id(&mut self, name: &str, leader: &str) -> Result<u64> {
        self.query_one(
            "SELECT MAX(notification_id) FROM projection_tracking WHERE projection = $1 AND application_name = $2",
            &[&name, &leader],
        )
        .and_then(|row| row.try_get::<_, Option<i64>>(0))
        .map(|max| max.map_or(0, i64::unsigned_abs))
        .map_err(|e| pg_error("reading projection_tracking", e))
    }

    fn apply(
        &mut self,
        name: &str,
        leader: &str,
        id: u64,
        apply: &mut dyn FnMut(&mut Self::Tx<'_>) -> Result<()>,
    ) -> Result<Applied> {
        let mut tx = self
            .transaction()
            .map_err(|e| pg_error("beginning a projection transaction", e))?;
        let tracked = tx.execute(
            "INSERT INTO projection_tracking VALUES ($1, $2, $3)",
            &[&name, &leader, &to_i64("notification id", id)?],
        );
        match tracked {
            Ok(_) => {}
            // Dropping `tx` rolls it back.
            Err(e) if e.code() == Some(&crate::postgres::error::SqlState::UNIQUE_VIOLATION) => {
                return Ok(Applied::Already)
            }
            Err(e) => return Err(pg_error("recording projection tracking", e)),
        }
        apply(&mut tx)?;
        tx.commit()
            .map_err(|e| pg_error("committing a projection transaction", e))?;
        Ok(Applied::Now)
    }
}
