//! The writing side of the MariaDB/MySQL recorder: the connection of the
//! open group transaction as the group-commit engine drives it, and the
//! statements of one save.

use std::fmt;
use std::sync::Arc;

use mysql::prelude::Queryable;
use mysql::Value;
use r2d2::PooledConnection;

use super::pool::{describe, is_broken, server_code, Connections, Manager};
use super::sql::{Sql, ROLLBACK_TO_SAVEPOINT, ROWS_PER_INSERT, SAVEPOINT};
use annals_core::error::Error;
use annals_core::persistence::group_commit::{CommitFailure, GroupTransaction};
use annals_core::persistence::{
    transaction_lost, StoreTx, StoredEvent, TrackingLayout, UserWrites,
};

/// The server's error for a taken key.
pub(crate) const DUPLICATE_KEY: u16 = 1062;

/// The server's error for a savepoint that does not exist (the
/// transaction it was in has ended).
const NO_SUCH_SAVEPOINT: u16 = 1305;

/// Why a write failed.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The server said no, or the connection broke (`broken`).
    Db { error: mysql::Error, broken: bool },
    /// A conflict, or no connection could be had.
    Other(Error),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Db { error, .. } => f.write_str(&describe(error)),
            WriteError::Other(e) => e.fmt(f),
        }
    }
}

/// How a failed joining save is undone, leaving the group's other saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    /// Rolling back to its savepoint.
    Savepoint,
    /// Nothing is left to undo: its one statement failed on a taken key,
    /// and the server rolled that statement back (and only it).
    Done,
    /// It cannot be: the whole group is rolled back.
    Impossible,
}

/// A save's tracking record: the upstream application's name and the
/// notification id.
pub(crate) type TrackingRow<'a> = (&'a str, u64);

/// The connection of the open group transaction.
pub(crate) struct GroupWriter {
    connections: Connections,
    sql: Arc<Sql>,
    /// Taken from the pool when a group begins, given back when it ends.
    conn: Option<PooledConnection<Manager>>,
    /// A connection broke: check the next one before using it.
    suspect: bool,
    /// Whether the save about to run joins an open group (the engine asks
    /// for its savepoint; `save` takes one only if it needs it).
    joining: bool,
    /// How the last joining save can be undone if it fails.
    undo: Undo,
}

impl GroupWriter {
    /// The writer of a recorder: no connection until a group begins.
    pub(crate) fn new(connections: Connections, sql: Arc<Sql>) -> Self {
        Self {
            connections,
            sql,
            conn: None,
            suspect: false,
            joining: false,
            undo: Undo::Impossible,
        }
    }

    fn conn(&mut self) -> Result<&mut PooledConnection<Manager>, WriteError> {
        self.conn.as_mut().ok_or_else(|| {
            WriteError::Other(Error::persistence("writing", "no connection for the group"))
        })
    }

    /// Classifies `error`; a broken connection is dropped.
    fn fail(&mut self, error: mysql::Error) -> WriteError {
        let broken = is_broken(&error);
        if broken {
            if let Some(conn) = &mut self.conn {
                conn.broken = true;
            }
            self.conn = None;
            self.suspect = true;
        }
        WriteError::Db { error, broken }
    }

    /// The statements of one save, in the open group: its idempotency key
    /// first (a stored key fails it before anything else is written), its
    /// tracking record, its events (ids from the column's AUTO_INCREMENT,
    /// under the writers' lock), then the user's writes.
    pub(crate) fn save(
        &mut self,
        events: &[StoredEvent],
        tracking: Option<TrackingRow<'_>>,
        keyed: Option<(&str, &[u8])>,
        writes: Option<&mut UserWrites<'_>>,
    ) -> Result<Vec<u64>, WriteError> {
        self.undo = Undo::Impossible;
        // A joiner whose save is one INSERT (events alone, one chunk)
        // needs no savepoint: a taken key fails that statement, which the
        // server rolls back by itself. Anything more takes one.
        let one_statement = tracking.is_none()
            && keyed.is_none()
            && writes.is_none()
            && events.len() <= ROWS_PER_INSERT;
        if std::mem::take(&mut self.joining) && !one_statement {
            let conn = self.conn()?;
            if let Err(e) = conn.conn.query_drop(SAVEPOINT) {
                return Err(self.fail(e));
            }
            self.undo = Undo::Savepoint;
        }
        let sql = self.sql.clone();
        let conn = self.conn()?;
        let result = insert(conn, &sql, events, tracking, keyed);
        if one_statement && matches!(result, Ok(Err(Error::Conflict { .. }))) {
            self.undo = Undo::Done;
        }
        match result {
            Ok(Ok(ids)) => {
                if let Some(writes) = writes {
                    self.user_writes(writes)?;
                }
                Ok(ids)
            }
            Ok(Err(conflict)) => Err(WriteError::Other(conflict)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Runs the user's writes on the group's connection, then checks that
    /// they left the transaction open: a savepoint taken outside a
    /// transaction is gone at once, so its release fails.
    fn user_writes(&mut self, writes: &mut UserWrites<'_>) -> Result<(), WriteError> {
        let conn = self.conn()?;
        if !writes.run(StoreTx::exclusive::<mysql::Conn>("mysql", &mut conn.conn)) {
            // The user's error is kept by `writes`; this one only fails
            // the save, which rolls it back.
            return Err(WriteError::Other(Error::user(
                "the writes of the user's own rows failed",
            )));
        }
        let checked = conn
            .conn
            .query_drop("SAVEPOINT annals_check")
            .and_then(|()| conn.conn.query_drop("RELEASE SAVEPOINT annals_check"));
        match checked {
            Ok(()) => Ok(()),
            Err(e) if is_broken(&e) => Err(self.fail(e)),
            Err(e) => Err(WriteError::Other(transaction_lost(
                "MariaDB/MySQL",
                describe(&e),
            ))),
        }
    }

    fn begin_on_connection(&mut self) -> Result<(), WriteError> {
        if self.conn.is_none() {
            let conn = if std::mem::take(&mut self.suspect) {
                self.connections.checkout_checked()
            } else {
                self.connections.checkout()
            };
            self.conn = Some(conn.map_err(WriteError::Other)?);
        }
        let sql = self.sql.clone();
        let conn = self.conn()?;
        let locked = begin_and_lock(&mut conn.conn, &sql.begin_and_lock);
        match locked {
            Ok(true) => Ok(()),
            Ok(false) => {
                conn.rollback();
                Err(WriteError::Other(Error::persistence(
                    format!("locking {} for writing", sql.events),
                    format!(
                        "the one row of {} is missing, and writers lock it to number events \
                         in the order they commit: insert it again (INSERT INTO {} VALUES (1)), \
                         or open the store with CREATE_TABLE=yes",
                        sql.lock, sql.lock
                    ),
                )))
            }
            Err(e) => {
                if let Some(conn) = &mut self.conn {
                    if !is_broken(&e) {
                        conn.rollback();
                    }
                }
                Err(self.fail(e))
            }
        }
    }
}

/// Sends `START TRANSACTION` and the writers' lock in one round trip
/// (`begin_and_lock`, two statements): whether the lock row was there.
pub(crate) fn begin_and_lock(
    conn: &mut mysql::Conn,
    begin_and_lock: &str,
) -> Result<bool, mysql::Error> {
    let mut result = conn.query_iter(begin_and_lock)?;
    let mut locked = false;
    // Every result set read, so the connection is ready for the next
    // statement; an error of the second statement comes out here.
    while let Some(set) = result.iter() {
        for row in set {
            row?;
            locked = true;
        }
    }
    Ok(locked)
}

/// The inserts of one save: its ids, or its conflict (nothing of the save
/// left to undo but what its savepoint or the group's rollback undoes).
fn insert(
    conn: &mut PooledConnection<Manager>,
    sql: &Sql,
    events: &[StoredEvent],
    tracking: Option<TrackingRow<'_>>,
    keyed: Option<(&str, &[u8])>,
) -> Result<Result<Vec<u64>, Error>, mysql::Error> {
    if let Some((key, outcome)) = keyed {
        match conn.conn.exec_drop(&sql.insert_outcome, (key, outcome)) {
            Err(e) if server_code(&e) == Some(DUPLICATE_KEY) => {
                return Ok(Err(Error::conflict(format!(
                    "{}: the idempotency key {key:?} is stored already (its request was \
                     carried out)",
                    sql.outcomes
                ))))
            }
            other => other?,
        }
    }
    if let Some((name, id)) = tracking {
        let tracked = || {
            Error::conflict(format!(
                "{}: notification {id} of {name:?}{} is tracked already",
                sql.tracking,
                match sql.tracking_layout {
                    TrackingLayout::SingleRow => " or a later one",
                    TrackingLayout::MultiRow => "",
                }
            ))
        };
        match sql.tracking_layout {
            TrackingLayout::MultiRow => {
                match conn.conn.exec_drop(&sql.insert_tracking, (name, id)) {
                    Err(e) if server_code(&e) == Some(DUPLICATE_KEY) => return Ok(Err(tracked())),
                    other => other?,
                }
            }
            TrackingLayout::SingleRow => {
                // Moved forward only: the row is locked (writers are
                // serialized by the writers' lock already; this also holds
                // off a writer that does not take it).
                let current: Option<u64> =
                    conn.conn.exec_first(&sql.tracked_for_update, (name,))?;
                if current.is_some_and(|current| current >= id) {
                    return Ok(Err(tracked()));
                }
                conn.conn.exec_drop(&sql.insert_tracking, (name, id))?;
            }
        }
    }
    let mut ids = Vec::with_capacity(events.len());
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let statement = sql.insert_rows(&sql.events, chunk.len());
        let mut params = Vec::with_capacity(chunk.len() * 4);
        for e in chunk {
            params.push(Value::from(e.originator_id.as_str()));
            params.push(Value::from(e.originator_version));
            params.push(Value::from(e.topic.as_str()));
            params.push(Value::from(e.state.as_slice()));
        }
        match conn.conn.exec_drop(&statement, params) {
            Err(e) if server_code(&e) == Some(DUPLICATE_KEY) => {
                return Ok(Err(super::recorder::duplicate(sql, &e)))
            }
            other => other?,
        }
        // One multi-row insert under the writers' lock: its ids are the
        // first (LAST_INSERT_ID) and those after it, a step apart.
        let first = conn.conn.last_insert_id();
        let affected = conn.conn.affected_rows();
        if affected != chunk.len() as u64 || first == 0 {
            return Ok(Err(Error::persistence(
                format!("inserting events ({})", sql.events),
                format!(
                    "the server reported {affected} rows inserted from id {first}, for {} \
                     events: the table is not as annals created it",
                    chunk.len()
                ),
            )));
        }
        let step = conn.id_step;
        ids.extend((0..chunk.len() as u64).map(|i| first + i * step));
    }
    Ok(Ok(ids))
}

impl GroupTransaction for GroupWriter {
    type Error = WriteError;
    /// Nothing is queued: every save runs its own statements.
    type Queued = ();

    fn begin(&mut self) -> Result<(), WriteError> {
        match self.begin_on_connection() {
            // Nothing was sent that could commit: once more, on a
            // connection that answers.
            Err(WriteError::Db { broken: true, .. }) => self.begin_on_connection(),
            other => other,
        }
    }

    fn savepoint(&mut self) -> Result<(), WriteError> {
        // Taken by `save`, and only if the save needs it.
        self.joining = true;
        Ok(())
    }

    fn release(&mut self) -> Result<(), WriteError> {
        // Replaced by the next joiner's (same name), or ended by the commit.
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> bool {
        match std::mem::replace(&mut self.undo, Undo::Impossible) {
            Undo::Savepoint => {}
            Undo::Done => return true,
            Undo::Impossible => return false,
        }
        // Fails when the transaction itself is gone (a deadlock rolled it
        // back): then the whole group is rolled back.
        self.conn
            .as_mut()
            .is_some_and(|conn| match conn.conn.query_drop(ROLLBACK_TO_SAVEPOINT) {
                Ok(()) => true,
                Err(e) => {
                    if server_code(&e) != Some(NO_SUCH_SAVEPOINT) {
                        conn.broken |= is_broken(&e);
                    }
                    false
                }
            })
    }

    fn commit(&mut self) -> Result<(), CommitFailure> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(CommitFailure::RolledBack("the connection was lost".into()));
        };
        match conn.conn.query_drop("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) if is_broken(&e) => {
                conn.broken = true;
                self.conn = None;
                self.suspect = true;
                Err(CommitFailure::Unknown(describe(&e)))
            }
            Err(e) => {
                conn.rollback();
                Err(CommitFailure::RolledBack(describe(&e)))
            }
        }
    }

    fn rollback(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.rollback();
        }
    }

    fn ended(&mut self) {
        self.joining = false;
        self.undo = Undo::Impossible;
        // Back to the pool between groups (readers may need it).
        self.conn = None;
    }

    fn insert_queued(&mut self, _queued: &()) -> Result<Vec<u64>, WriteError> {
        Ok(Vec::new())
    }
}
