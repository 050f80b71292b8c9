//! The writing side of the PostgreSQL recorder: the connection of the open
//! group transaction as the group-commit engine drives it, and the
//! statements of one save (queued saves inserted together, a save with a
//! tracking record or the user's writes in a savepoint when it joins).

use std::fmt;
use std::sync::Arc;

use postgres::types::ToSql;
use r2d2::PooledConnection;

use super::columns::Columns;
use super::pool::{describe, is_broken, Conn, Connections, Manager, StepError};
use super::recorder::stored_form;
use super::settings::OriginatorIdType;
use super::sql::{Sql, Stmt};
use annals_core::error::Error;
use annals_core::persistence::group_commit::{CommitFailure, GroupTransaction};
use annals_core::persistence::transaction_lost;
use annals_core::persistence::{StoreTx, StoredEvent, TrackingLayout, UserWrites};

/// Why a write failed.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The server said no, or the connection broke (`broken`).
    Db {
        error: postgres::Error,
        broken: bool,
    },
    /// No connection could be had.
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
    /// Nothing is left to undo: it deleted what it had stored.
    Done,
    /// It cannot be: its error aborted the group's transaction.
    Impossible,
}

/// The connection of the open group transaction, as the group-commit
/// engine drives it.
pub(super) struct GroupWriter {
    connections: Connections,
    sql: Arc<Sql>,
    id_type: OriginatorIdType,
    /// Taken from the pool when a group begins, given back when it ends.
    conn: Option<PooledConnection<Manager>>,
    /// A connection broke: check the next one before using it.
    suspect: bool,
    /// Whether a save of the open group stored events (then followers are
    /// notified at its commit).
    stored: bool,
    /// Whether a joining save's savepoint is open (released by the next
    /// one, or by the commit).
    savepoint: bool,
    /// Whether the save about to run joins an open group (the engine asks
    /// for its savepoint; it is sent only if the save needs one).
    joining: bool,
    /// How the last joining save can be undone if it fails.
    undo: Undo,
    /// Whether a transaction of this writer has moved the notification id
    /// sequence past the stored ids (see [`Sql::sync_sequence`]): done
    /// once, in the first.
    synced: bool,
    /// Failures the tests make this writer suffer.
    #[cfg(test)]
    pub(super) faults: Faults,
}

impl GroupWriter {
    /// The writer of a recorder: no connection until a group begins.
    pub(super) fn new(connections: Connections, sql: Arc<Sql>, id_type: OriginatorIdType) -> Self {
        GroupWriter {
            connections,
            sql,
            id_type,
            conn: None,
            suspect: false,
            stored: false,
            savepoint: false,
            joining: false,
            undo: Undo::Impossible,
            synced: false,
            #[cfg(test)]
            faults: Faults::default(),
        }
    }

    fn conn(&mut self) -> Result<&mut PooledConnection<Manager>, WriteError> {
        self.conn.as_mut().ok_or_else(|| {
            WriteError::Other(Error::persistence("writing", "no connection for the group"))
        })
    }

    /// Classifies `error`; a broken connection is dropped.
    fn fail(&mut self, error: postgres::Error) -> WriteError {
        let broken = self
            .conn
            .as_ref()
            .is_none_or(|conn| is_broken(&conn.client, &error));
        if broken {
            if let Some(conn) = &mut self.conn {
                conn.broken = true;
            }
            self.conn = None;
            self.suspect = true;
        }
        WriteError::Db { error, broken }
    }

    /// The statements of a save with a tracking record, an idempotency
    /// key (and its outcome) or the user's writes (events alone are
    /// queued: `save_queued`). Those can fail in ways that abort the
    /// transaction, so a joining save of this kind takes a savepoint.
    pub(super) fn save(
        &mut self,
        columns: &[&(dyn ToSql + Sync); 4],
        count: usize,
        tracking: Option<(&str, i64)>,
        keyed: Option<(&str, &[u8])>,
        writes: Option<&mut UserWrites<'_>>,
    ) -> Result<Vec<u64>, WriteError> {
        self.undo = Undo::Impossible;
        if std::mem::take(&mut self.joining) {
            self.open_savepoint()?;
            self.undo = Undo::Savepoint;
        }
        let sql = self.sql.clone();
        let conn = self.conn()?;
        let result = (|| -> Result<Result<Vec<u64>, Error>, postgres::Error> {
            if let Some((key, outcome)) = keyed {
                // First: a stored key fails the save before anything of
                // it is written.
                let statement = conn.statement(&sql, Stmt::InsertOutcome)?;
                if conn
                    .client
                    .query_opt(&statement, &[&key, &outcome])?
                    .is_none()
                {
                    return Ok(Err(Error::conflict(format!(
                        "{}: the idempotency key {key:?} is stored already (its request was \
                         carried out)",
                        sql.outcomes
                    ))));
                }
            }
            if let Some((name, id)) = tracking {
                let statement = conn.statement(&sql, Stmt::InsertTracking)?;
                match sql.tracking_layout {
                    TrackingLayout::MultiRow => {
                        conn.client.execute(&statement, &[&name, &id])?;
                    }
                    TrackingLayout::SingleRow => {
                        if conn.client.query_opt(&statement, &[&name, &id])?.is_none() {
                            // Not moved forward: tracked already, the
                            // conflict a second multi-row record is.
                            return Ok(Err(Error::conflict(format!(
                                "{}: notification {id} of {name:?} or a later one is tracked \
                                 already",
                                sql.tracking
                            ))));
                        }
                    }
                }
            }
            let mut ids = Vec::with_capacity(count);
            if count > 0 {
                let statement = conn.statement(&sql, Stmt::InsertEvents)?;
                for row in conn.client.query(&statement, columns)? {
                    // Never negative: a bigserial sequence starts at 1.
                    let id: i64 = row.try_get(0)?;
                    ids.push(id.unsigned_abs());
                }
            }
            Ok(Ok(ids))
        })();
        match result {
            Ok(Ok(ids)) => {
                if let Some(writes) = writes {
                    self.user_writes(writes)?;
                }
                self.stored |= !ids.is_empty();
                Ok(ids)
            }
            // Nothing of this save was written (a stored key, or a
            // single-row tracking record that did not move; the key, if
            // any, is undone with it): a joiner's savepoint undoes it, an
            // opener's group is rolled back.
            Ok(Err(conflict)) => Err(WriteError::Other(conflict)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Inserts the queued saves of `batch` in one statement (see
    /// [`insert_queued`]); each save's ids, or its conflict.
    #[allow(clippy::type_complexity)]
    fn insert_batch(
        &mut self,
        batch: &[&Vec<StoredEvent>],
        joining: bool,
    ) -> Result<Vec<Result<Vec<u64>, WriteError>>, WriteError> {
        self.undo = Undo::Impossible;
        let sql = self.sql.clone();
        let id_type = self.id_type;
        let conn = self.conn()?;
        match insert_queued(conn, &sql, id_type, batch, joining) {
            Ok((results, stored)) => {
                self.stored |= stored;
                Ok(results
                    .into_iter()
                    .map(|result| result.map_err(WriteError::Other))
                    .collect())
            }
            Err(StepError::Db(e)) => Err(self.fail(e)),
            Err(StepError::Other(e)) => Err(WriteError::Other(e)),
        }
    }

    /// Opens a savepoint for a joining save, releasing the previous
    /// joiner's in the same round trip.
    fn open_savepoint(&mut self) -> Result<(), WriteError> {
        let statement = if self.savepoint {
            "RELEASE SAVEPOINT save; SAVEPOINT save"
        } else {
            "SAVEPOINT save"
        };
        let conn = self.conn()?;
        match conn.client.batch_execute(statement) {
            Ok(()) => {
                self.savepoint = true;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Runs the user's writes on the group's connection, then checks, in
    /// one round trip, that they left the transaction open and not failed
    /// (a failed statement whose error was ignored would make the group's
    /// COMMIT a silent rollback of every save in it).
    fn user_writes(&mut self, writes: &mut UserWrites<'_>) -> Result<(), WriteError> {
        let conn = self.conn()?;
        if !writes.run(StoreTx::exclusive::<postgres::Client>(
            "postgres",
            &mut conn.client,
        )) {
            // The user's error is kept by `writes`; this one only fails
            // the save, which rolls it back.
            return Err(WriteError::Other(Error::user(
                "the writes of the user's own rows failed",
            )));
        }
        match conn
            .client
            .batch_execute("SAVEPOINT annals_check; RELEASE SAVEPOINT annals_check")
        {
            Ok(()) => Ok(()),
            Err(e) if is_broken(&conn.client, &e) => Err(self.fail(e)),
            Err(e) => Err(WriteError::Other(transaction_lost(
                "PostgreSQL",
                describe(&e),
            ))),
        }
    }

    fn begin_on_connection(&mut self) -> Result<(), WriteError> {
        #[cfg(test)]
        if self.faults.begin() {
            return Err(WriteError::Other(Error::persistence(
                "begin",
                "a failure of the test",
            )));
        }
        if self.conn.is_none() {
            let conn = if std::mem::take(&mut self.suspect) {
                self.connections.checkout_checked()
            } else {
                self.connections.checkout()
            };
            self.conn = Some(conn.map_err(WriteError::Other)?);
        }
        let sql = self.sql.clone();
        let begin = if self.synced {
            &sql.begin_and_lock
        } else {
            &sql.begin_lock_and_sync
        };
        let conn = self.conn()?;
        match conn.client.batch_execute(begin) {
            Ok(()) => {
                // `setval` is not undone by a rollback: done for good.
                self.synced = true;
                Ok(())
            }
            Err(e) => {
                if let Some(conn) = &mut self.conn {
                    conn.rollback();
                }
                Err(self.fail(e))
            }
        }
    }
}

impl GroupTransaction for GroupWriter {
    type Error = WriteError;
    /// A copy of a save's events (its caller's slice may not outlive the
    /// call, and the writer's holder may be another thread).
    type Queued = Vec<StoredEvent>;
    /// Queued saves are inserted together, one statement for them all.
    const BATCH_INSERT: bool = true;

    fn begin(&mut self) -> Result<(), WriteError> {
        match self.begin_on_connection() {
            // Nothing was sent that could commit: once more, on a
            // connection that answers.
            Err(WriteError::Db { broken: true, .. }) => self.begin_on_connection(),
            other => other,
        }
    }

    fn savepoint(&mut self) -> Result<(), WriteError> {
        // Sent by `save`, and only if the save needs it.
        self.joining = true;
        Ok(())
    }

    fn release(&mut self) -> Result<(), WriteError> {
        // Kept open until the next savepoint or the commit.
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> bool {
        match std::mem::replace(&mut self.undo, Undo::Impossible) {
            Undo::Savepoint => self.conn.as_mut().is_some_and(|conn| {
                conn.client
                    .batch_execute("ROLLBACK TO SAVEPOINT save")
                    .is_ok()
            }),
            Undo::Done => true,
            Undo::Impossible => false,
        }
    }

    fn commit(&mut self) -> Result<(), CommitFailure> {
        let statement = if self.stored {
            self.sql.notify_and_commit.clone()
        } else {
            "COMMIT".to_owned()
        };
        let Some(conn) = self.conn.as_mut() else {
            return Err(CommitFailure::RolledBack("the connection was lost".into()));
        };
        #[cfg(test)]
        if self.faults.commit() {
            conn.rollback();
            return Err(CommitFailure::RolledBack("a failure of the test".into()));
        }
        match conn.client.batch_execute(&statement) {
            Ok(()) => Ok(()),
            Err(e) if is_broken(&conn.client, &e) => {
                conn.broken = true;
                self.conn = None;
                self.suspect = true;
                let why = describe(&e);
                Err(CommitFailure::Unknown(why))
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
        self.stored = false;
        self.savepoint = false;
        self.joining = false;
        // Back to the pool between groups (readers may need it).
        self.conn = None;
    }

    fn insert_queued(&mut self, queued: &Vec<StoredEvent>) -> Result<Vec<u64>, WriteError> {
        let joining = std::mem::take(&mut self.joining);
        let result = self
            .insert_batch(&[queued], joining)?
            .pop()
            .unwrap_or_else(|| Ok(Vec::new()));
        if result.is_err() {
            // Its rows are deleted (or were never stored).
            self.undo = Undo::Done;
        }
        result
    }

    fn insert_queued_batch(
        &mut self,
        batch: &[&Vec<StoredEvent>],
        joining: bool,
    ) -> Option<Result<Vec<Result<Vec<u64>, WriteError>>, WriteError>> {
        Some(self.insert_batch(batch, joining))
    }
}

/// Inserts the queued saves of `batch` in one statement: each save's ids
/// or its conflict, and whether any was stored. When a key is taken, that
/// insert is undone and each save is inserted alone, so only the saves at
/// taken keys fail (and leave nothing in the transaction). Alone and
/// opening its group (`joining` false), a save takes the plain insert,
/// whose error aborts the transaction as it would be.
#[allow(clippy::type_complexity)]
fn insert_queued(
    conn: &mut Conn,
    sql: &Sql,
    id_type: OriginatorIdType,
    batch: &[&Vec<StoredEvent>],
    joining: bool,
) -> Result<(Vec<Result<Vec<u64>, Error>>, bool), StepError> {
    let total: usize = batch.iter().map(|save| save.len()).sum();
    let rows = Columns::new(batch.iter().flat_map(|save| save.iter()), id_type, sql)
        .map_err(StepError::Other)?;
    let params = rows.params();
    let insert = if batch.len() == 1 && !joining {
        Stmt::InsertEvents
    } else {
        Stmt::InsertEventsSkippingTaken
    };
    let statement = conn.statement(sql, insert)?;
    let mut ids = Vec::with_capacity(total);
    for row in conn.client.query(&statement, &params)? {
        ids.push(row.try_get::<_, i64>(0)?);
    }
    if ids.len() == total {
        // Drawn from the sequence in the rows' order, so in the saves'.
        ids.sort_unstable();
        let mut rest = ids.as_slice();
        let mut results = Vec::with_capacity(batch.len());
        for save in batch {
            let (own, more) = rest.split_at(save.len());
            // Never negative: a bigserial sequence starts at 1.
            results.push(Ok(own.iter().map(|id| id.unsigned_abs()).collect()));
            rest = more;
        }
        return Ok((results, total > 0));
    }
    let conflict = undo_insert(conn, sql, &ids, &params)?;
    if let [_] = batch {
        return Ok((vec![Err(conflict)], false));
    }
    let mut stored = false;
    let mut results = Vec::with_capacity(batch.len());
    for save in batch {
        let (mut one, any) = insert_queued(conn, sql, id_type, std::slice::from_ref(save), true)?;
        stored |= any;
        results.append(&mut one);
    }
    Ok((results, stored))
}

/// Undoes an insert of a save that stored only `stored` (ids) of its
/// events (`columns`), because others were at taken keys, and returns the
/// conflict, naming one of those keys.
fn undo_insert(
    conn: &mut Conn,
    sql: &Sql,
    stored: &[i64],
    columns: &[&(dyn ToSql + Sync); 4],
) -> Result<Error, postgres::Error> {
    let statement = conn.statement(sql, Stmt::UndoInsertEvents)?;
    let taken = conn
        .client
        .query_opt(&statement, &[&stored, columns[0], columns[1]])?;
    Ok(match taken {
        Some(row) => {
            let id = stored_form(row.try_get(0)?);
            let version: i64 = row.try_get(1)?;
            Error::Conflict {
                aggregate: None,
                message: format!("{}: stream {id} already has version {version}", sql.events),
                id: Some(id),
                version: u64::try_from(version).ok(),
            }
        }
        None => Error::conflict(format!(
            "{}: two events of the save are at the same stream and version",
            sql.events
        )),
    })
}

/// Every `begin_every`th begin and `commit_every`th commit of a writer
/// fails (0: none), a commit after rolling back: the tests' faults.
#[cfg(test)]
#[derive(Debug, Default)]
pub(super) struct Faults {
    pub(super) begin_every: usize,
    pub(super) commit_every: usize,
    begins: usize,
    commits: usize,
}

#[cfg(test)]
impl Faults {
    fn begin(&mut self) -> bool {
        self.begins += 1;
        self.begin_every > 0 && self.begins.is_multiple_of(self.begin_every)
    }

    fn commit(&mut self) -> bool {
        self.commits += 1;
        self.commit_every > 0 && self.commits.is_multiple_of(self.commit_every)
    }
}
