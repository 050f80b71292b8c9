//! The SQLite recorders: events (with the log and tracking records) and
//! snapshots, over the connections of one database.

use std::fmt;
use std::sync::Arc;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::connection::{
    self, open_readers, open_writer, sqlite_error, to_u64, QueuedInsert, StatementCount,
    WriteConnection,
};
use super::settings::{SqliteConfig, Tables};
use super::sql::{select_events_sql, Statements, TABLE_KEY};

mod import;
use annals_core::error::{Error, Result};
use annals_core::persistence::group_commit::{CommitFailure, GroupCommit, SaveFailure};
use annals_core::persistence::transaction_lost;
use annals_core::persistence::wake::{Signal, Watch};
use annals_core::persistence::{
    to_i64, AggregateRecorder, ApplicationRecorder, EventQuery, KeyedOutcome, Notification,
    NotificationQuery, ProcessRecorder, StoreTx, StoredEvent, Tracking, TrackingLayout, UserWrites,
};

/// The connections of one database, shared by its events and snapshot
/// recorders.
pub(super) struct Shared {
    /// The writer, under group commit: saves that arrive while another is
    /// writing share its transaction and its flush.
    writer: GroupCommit<WriteConnection>,
    /// Read-only connections of a file database (WAL): reads never wait
    /// for writes. `None` for `:memory:`, read through the writer.
    readers: Option<r2d2::Pool<SqliteConnectionManager>>,
    pub(super) config: SqliteConfig,
}

/// Events in a SQLite database.
///
/// ```
/// use annals_sqlite::SqliteRecorder;
/// use annals_core::persistence::{AggregateRecorder, ApplicationRecorder, EventQuery, StoredEvent};
///
/// let recorder = SqliteRecorder::in_memory()?;
/// let row = StoredEvent {
///     originator_id: "dog-1".into(),
///     originator_version: 1,
///     topic: "Dog.Registered".into(),
///     state: b"{}".to_vec(),
/// };
/// assert_eq!(recorder.insert_events(&[row])?, [1]);
/// assert_eq!(recorder.select_events("dog-1", &EventQuery::all())?.len(), 1);
/// assert_eq!(recorder.max_notification_id()?, 1);
/// # Ok::<(), annals_core::Error>(())
/// ```
pub struct SqliteRecorder {
    shared: Arc<Shared>,
    statements: Statements,
    tables: Tables,
}

impl fmt::Debug for SqliteRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteRecorder")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn open(config: SqliteConfig) -> Result<Self> {
        let writer = open_writer(&config)?;
        let readers = if config.is_memory() {
            None
        } else {
            Some(open_readers(&writer, &config)?)
        };
        // Not for `:memory:`, where reads go through the writer and would
        // see the saves of an open group before it commits.
        let share = readers.is_some();
        Ok(Self {
            writer: GroupCommit::new(WriteConnection::new(writer, config.clone()), share),
            readers,
            config,
        })
    }

    /// Runs `f` on the writer, after any open group has committed, with no
    /// transaction of its own (each statement commits).
    pub(super) fn write<T>(
        &self,
        context: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.writer
            .exclusive(|w| f(&w.conn))
            .map_err(|e| sqlite_error(context, &self.config, e))
    }

    /// Moves the WAL's pages into the database file and empties it (as far
    /// as readers allow), so a page overwritten in the file is not kept
    /// in the log.
    pub(super) fn checkpoint(&self) -> Result<()> {
        if self.config.is_memory() {
            return Ok(());
        }
        self.write("checkpointing the WAL", |conn| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        })
    }

    pub(super) fn read<T>(
        &self,
        context: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let result = match &self.readers {
            Some(pool) => {
                let conn = pool.get().map_err(|e| {
                    Error::persistence(
                        format!("{context}: no read connection to {:?}", self.config.dbname),
                        e,
                    )
                })?;
                f(&conn)
            }
            None => self.writer.exclusive(|w| f(&w.conn)),
        };
        result.map_err(|e| sqlite_error(context, &self.config, e))
    }

    /// As [`read`](Self::read), on the writing connection when it is idle:
    /// SQLite drops a reader's page cache whenever another connection
    /// writes, while the writer's holds the rows just written (measured:
    /// a get from a fresh 240 KB snapshot 0.80 -> 0.37 ms). For a stream's
    /// reads, which are short; a save that arrives meanwhile waits for the
    /// read.
    fn read_recent<T>(
        &self,
        context: &str,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        if self.readers.is_some() {
            // Not a writer left in a transaction it could not end (its
            // replacement failed to open): it would show that group's rows.
            let idle = self
                .writer
                .try_idle(|w| w.conn.is_autocommit().then(|| f(&w.conn)));
            if let Some(Some(result)) = idle {
                return result.map_err(|e| sqlite_error(context, &self.config, e));
            }
        }
        self.read(context, f)
    }

    /// Inserts rows into a table (and a tracking record, with the
    /// statements of the tracking table's layout, and an idempotency key)
    /// in one transaction; returns the rowids when `rowids` is set.
    fn insert(
        &self,
        insert_sql: &Arc<str>,
        events: &[StoredEvent],
        tracking: Option<(&Statements, &Tracking)>,
        keyed: Option<(&Statements, &KeyedOutcome)>,
        rowids: bool,
        mut writes: Option<&mut UserWrites<'_>>,
    ) -> Result<Vec<u64>> {
        // Checked before the transaction, converted again in it (not
        // collected: a vector of converted rows cost an allocation).
        for e in events {
            to_i64("originator version", e.originator_version)?;
        }
        let tracked = tracking
            .map(|(sql, t)| Ok((sql, t, to_i64("notification id", t.notification_id)?)))
            .transpose()?;
        if tracked.is_none()
            && keyed.is_none()
            && writes.is_none()
            && self.readers.is_some()
            && !self.writer.likely_alone()
        {
            // Events alone, while other saves are running: queued, for the
            // writer's holder to insert with the others. Its copy of the
            // rows costs less than a hand-off of the writer; a save that
            // will most likely be alone keeps its rows and the writer. Not
            // for `:memory:`, whose saves do not share transactions.
            let queued = QueuedInsert {
                sql: insert_sql.clone(),
                events: events.to_vec(),
                rowids,
            };
            return self
                .writer
                .save_queued(queued)
                .map_err(|e| self.save_error(e));
        }
        let mut lost = false;
        let saved = self.writer.save(|w| {
            let one = events.len() + usize::from(tracked.is_some()) + usize::from(keyed.is_some())
                <= 1
                && writes.is_none();
            w.mark(if one {
                StatementCount::One
            } else {
                StatementCount::Several
            })?;
            let conn = &w.conn;
            if let Some((sql, k)) = keyed {
                // First: a stored key fails the save before anything of
                // it is written.
                let inserted = conn
                    .prepare_cached(&sql.insert_outcome)?
                    .execute(params![k.key, k.outcome]);
                if let Err(e) = inserted {
                    return Err(match e.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::ConstraintViolation) => {
                            key_stored(&sql.outcomes_table, k)
                        }
                        _ => e,
                    });
                }
            }
            if let Some((sql, t, id)) = tracked {
                insert_tracking(conn, sql, t, id)?;
            }
            let ids = connection::insert_rows(conn, insert_sql, events, rowids)?;
            if let Some(writes) = writes.as_deref_mut() {
                if !writes.run(StoreTx::shared::<rusqlite::Connection>("sqlite", conn)) {
                    // The user's error is kept by `writes`; this one only
                    // fails the save, which rolls it back.
                    return Err(user_failed());
                }
                if conn.is_autocommit() {
                    lost = true;
                    return Err(user_failed());
                }
            }
            Ok(ids)
        });
        if let Some(error) = writes.and_then(UserWrites::take_error) {
            return Err(error);
        }
        if lost {
            return Err(transaction_lost(
                "SQLite",
                "the transaction was ended, so whether this save (and those sharing its \
                 transaction) is stored is unknown",
            ));
        }
        saved.map_err(|e| self.save_error(e))
    }

    /// Ends stream `originator_id` of `table` (a table and the condition
    /// that picks the application's rows: [`Tables::rows`]) in one
    /// transaction of the writer: the stream read, checked
    /// ([`annals_core::ending::check_end`]), the tombstone inserted with
    /// `insert_sql` first (so it takes a rowid above every removed one,
    /// which SQLite would otherwise give out again), then the stream's
    /// other rows deleted under `PRAGMA secure_delete`, so their bytes are
    /// overwritten in the database's pages (the write-ahead log keeps its
    /// copies until a checkpoint).
    fn end_stream(
        &self,
        (table, rows): (&str, &str),
        insert_sql: &Arc<str>,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        let before = tombstone
            .map(|t| to_i64("originator version", t.originator_version))
            .transpose()?;
        let select = select_events_sql(table, rows, &EventQuery::all());
        let delete = match before {
            Some(_) => format!(
                "DELETE FROM {table} WHERE {rows}originator_id = ?1 AND originator_version < ?2"
            ),
            None => format!("DELETE FROM {table} WHERE {rows}originator_id = ?1"),
        };
        let ended = self.writer.save(|w| {
            w.mark(StatementCount::Several)?;
            let conn = &w.conn;
            let mut events = Vec::new();
            {
                let mut stmt = conn.prepare_cached(&select)?;
                let mut found = stmt.query(params![originator_id])?;
                while let Some(row) = found.next()? {
                    let version = match to_u64(table, "originator_version", row.get(0)?) {
                        Ok(version) => version,
                        // A corrupt row: nothing was written yet.
                        Err(e) => return Ok(Err(e)),
                    };
                    events.push(StoredEvent {
                        originator_id: originator_id.to_owned(),
                        originator_version: version,
                        topic: row.get(1)?,
                        state: row.get(2)?,
                    });
                }
            }
            match annals_core::ending::check_end(originator_id, events.last(), tombstone) {
                Ok(true) => {}
                Ok(false) => return Ok(Ok(Vec::new())),
                // Nothing was written: the error is the answer.
                Err(e) => return Ok(Err(e)),
            }
            if let Some(tombstone) = tombstone {
                connection::insert_rows(conn, insert_sql, std::slice::from_ref(tombstone), false)?;
            }
            let secure: i64 = conn.query_row("PRAGMA secure_delete", [], |r| r.get(0))?;
            conn.pragma_update(None, "secure_delete", 1)?;
            let deleted = match before {
                Some(before) => conn
                    .prepare_cached(&delete)?
                    .execute(params![originator_id, before]),
                None => conn
                    .prepare_cached(&delete)?
                    .execute(params![originator_id]),
            };
            conn.pragma_update(None, "secure_delete", secure)?;
            deleted?;
            Ok(Ok(events))
        });
        ended.map_err(|e| match e {
            SaveFailure::NotBegun(e) | SaveFailure::Refused { error: e, .. } => {
                sqlite_error("ending a stream", &self.config, e)
            }
            SaveFailure::GroupFailed(
                CommitFailure::RolledBack(why) | CommitFailure::Unknown(why),
            ) => Error::persistence(
                format!(
                    "committing the end of stream {originator_id} to SQLite database {:?}; \
                     nothing of it was stored",
                    self.config.dbname
                ),
                why,
            ),
        })?
    }

    fn save_error(&self, e: SaveFailure<rusqlite::Error>) -> Error {
        match e {
            SaveFailure::NotBegun(e) | SaveFailure::Refused { error: e, .. } => {
                sqlite_error("inserting events", &self.config, e)
            }
            SaveFailure::GroupFailed(
                CommitFailure::RolledBack(why) | CommitFailure::Unknown(why),
            ) => Error::persistence(
                format!(
                    "committing events to SQLite database {:?}; nothing of this save was stored",
                    self.config.dbname
                ),
                why,
            ),
        }
    }

    fn select_events(
        &self,
        table: (&str, &str),
        originator_id: &str,
        query: &EventQuery,
    ) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::new();
        self.each_event(table, originator_id, query, |version, topic, state| {
            events.push(StoredEvent {
                originator_id: originator_id.to_owned(),
                originator_version: version,
                topic: topic.to_owned(),
                state: state.to_vec(),
            });
            Ok(())
        })?;
        Ok(events)
    }

    /// As `select_events`, one row's buffers filled again for each row.
    fn visit_events(
        &self,
        table: (&str, &str),
        originator_id: &str,
        query: &EventQuery,
        visit: &mut dyn FnMut(&StoredEvent) -> Result<()>,
    ) -> Result<usize> {
        let mut row = StoredEvent::buffer(originator_id.to_owned());
        self.each_event(table, originator_id, query, |version, topic, state| {
            row.refill(version, topic, state);
            visit(&row)
        })
    }

    /// Calls `f` with the version, topic and state of each row of one
    /// stream of `table` (a table, and the condition that picks the
    /// application's rows in it: [`Tables::rows`]), as `query` says,
    /// borrowed from the statement; returns how many rows it read.
    fn each_event(
        &self,
        (table, rows): (&str, &str),
        originator_id: &str,
        query: &EventQuery,
        mut f: impl FnMut(u64, &str, &[u8]) -> Result<()>,
    ) -> Result<usize> {
        let gt = query.gt.map(|v| to_i64("version", v)).transpose()?;
        let lte = query.lte.map(|v| to_i64("version", v)).transpose()?;
        let sql = select_events_sql(table, rows, query);
        self.read_recent("selecting events", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            stmt.raw_bind_parameter(1, originator_id)?;
            if let Some(gt) = gt {
                stmt.raw_bind_parameter(2, gt)?;
            }
            if let Some(lte) = lte {
                stmt.raw_bind_parameter(3, lte)?;
            }
            let mut rows = stmt.raw_query();
            let mut read = 0;
            while let Some(row) = rows.next()? {
                let originator_version = match to_u64(table, "originator_version", row.get(0)?) {
                    Ok(version) => version,
                    Err(e) => return Ok(Err(e)),
                };
                // What `get::<String>` and `get::<Vec<u8>>` take: text, and
                // a blob.
                let (topic, state) = (row.get_ref(1)?.as_str()?, row.get_ref(2)?.as_blob()?);
                if let Err(e) = f(originator_version, topic, state) {
                    return Ok(Err(e));
                }
                read += 1;
            }
            Ok(Ok(read))
        })?
    }
}

/// The most rows a page of notifications makes room for before its first
/// row (more grow the page as they come).
const PAGE_ROOM: usize = 1_000;

/// The error that fails a save whose user's writes failed (the user's own
/// error is returned instead of it).
fn user_failed() -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure("the writes of the user's own rows failed".into())
}

/// Inserts tracking record `t` (its notification id `id`) with the
/// statements of the tracking table's layout: a constraint violation when
/// it is tracked already.
fn insert_tracking(
    conn: &Connection,
    sql: &Statements,
    t: &Tracking,
    id: i64,
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(&sql.insert_tracking)?;
    match sql.tracking_layout {
        TrackingLayout::MultiRow => {
            insert.execute(params![t.application_name, id])?;
        }
        TrackingLayout::SingleRow => {
            let moved = insert
                .query_row(params![t.application_name, id], |_| Ok(()))
                .optional()?;
            if moved.is_none() {
                return Err(tracked_already(&sql.tracking_table, t));
            }
        }
    }
    Ok(())
}

/// The error of a single-row tracking record that did not move its row
/// forward (the notification, or a later one, is tracked already): a
/// constraint violation, as a second record of a multi-row table is, so it
/// takes the same path (a conflict; nothing of the save is stored).
fn tracked_already(table: &str, t: &Tracking) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY),
        Some(format!(
            "{table}: notification {} of {:?} or a later one is tracked already",
            t.notification_id, t.application_name
        )),
    )
}

/// The error of an idempotency key that is stored already: the constraint
/// violation it is, with a message that says so.
fn key_stored(table: &str, k: &KeyedOutcome) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY),
        Some(format!(
            "{table}: the idempotency key {:?} is stored already (its request was carried out)",
            k.key
        )),
    )
}

/// The layout of tracking table `table`, from its primary key; `None` when
/// it does not exist.
fn tracking_layout_of(conn: &Connection, table: &str) -> Result<Option<TrackingLayout>, StepError> {
    let columns = conn
        .prepare(TABLE_KEY)?
        .query_map([table], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let key: Vec<String> = columns
        .iter()
        .filter(|(_, pk)| *pk > 0)
        .map(|(name, _)| name.clone())
        .collect();
    Ok(TrackingLayout::of_table(table, !columns.is_empty(), &key)?)
}

/// Why preparing the tables failed.
enum StepError {
    Db(rusqlite::Error),
    Other(Error),
}

impl From<rusqlite::Error> for StepError {
    fn from(e: rusqlite::Error) -> Self {
        StepError::Db(e)
    }
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        StepError::Other(e)
    }
}

impl Shared {
    /// That eventsourcing_django's three tables are there: annals never
    /// makes them.
    fn check_django_tables(&self, tables: &Tables) -> Result<()> {
        for table in [&tables.events, &tables.snapshots, &tables.tracking] {
            let there = self
                .writer
                .exclusive(|w| {
                    w.conn
                        .prepare(TABLE_KEY)?
                        .exists([table])
                        .map_err(StepError::Db)
                })
                .map_err(|fail| match fail {
                    StepError::Db(e) => {
                        sqlite_error("looking for eventsourcing_django's tables", &self.config, e)
                    }
                    StepError::Other(e) => e,
                })?;
            if !there {
                return Err(annals_core::persistence::django::missing(table));
            }
        }
        Ok(())
    }

    /// Finds the tracking table's layout (`wanted` when the table does not
    /// exist) and, with `create`, creates the missing tables in one
    /// transaction.
    fn prepare(
        &self,
        tables: &Tables,
        wanted: TrackingLayout,
        create: bool,
    ) -> Result<TrackingLayout> {
        let context = if create {
            "creating tables"
        } else {
            "reading the tracking table's layout"
        };
        let result = self
            .writer
            .exclusive(|w| -> Result<TrackingLayout, StepError> {
                if !create {
                    let found = tracking_layout_of(&w.conn, &tables.tracking)?;
                    return Ok(TrackingLayout::choose(&tables.tracking, found, wanted)?);
                }
                let tx = w
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                let found = tracking_layout_of(&tx, &tables.tracking)?;
                let layout = TrackingLayout::choose(&tables.tracking, found, wanted)?;
                for sql in &Statements::new(tables, layout).create {
                    tx.execute(sql, [])?;
                }
                tx.commit()?;
                Ok(layout)
            });
        result.map_err(|fail| match fail {
            StepError::Db(e) => sqlite_error(context, &self.config, e),
            StepError::Other(e) => e,
        })
    }
}

impl SqliteConfig {
    /// The SQL that creates the tables this store uses, as annals (and
    /// Python's eventsourcing 9.5) creates them, for teams that keep their
    /// schema in migrations and run with `CREATE_TABLE=no`.
    ///
    /// ```
    /// use annals_sqlite::SqliteConfig;
    ///
    /// let ddl = SqliteConfig::new("school.db").ddl()?;
    /// assert!(ddl.contains("CREATE TABLE IF NOT EXISTS stored_events"));
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`](annals_core::Error::Config) for a bad table prefix.
    pub fn ddl(&self) -> Result<String> {
        let tables = Tables::new(self.table_prefix.as_deref())?;
        let statements = Statements::new(&tables, self.tracking_layout);
        Ok(statements
            .create
            .iter()
            .map(|statement| format!("{};\n", statement.trim_end_matches(';')))
            .collect())
    }
}

impl SqliteRecorder {
    /// Opens (and, unless told not to, prepares) the store that `config`
    /// names. An existing tracking table is used in the layout it has
    /// ([`TrackingLayout`], from its primary key);
    /// [`tracking_layout`](SqliteConfig::tracking_layout) decides the
    /// layout of one that is created.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](annals_core::Error::Config) for a bad table prefix
    /// (naming `SQLITE_TABLE_PREFIX`), or a tracking table in the
    /// single-row layout when multi-row tracking is asked for, or in
    /// neither layout (naming `SINGLE_ROW_TRACKING`);
    /// [`Error::Persistence`](annals_core::Error::Persistence) when the database
    /// cannot be opened or its tables created.
    pub fn open(config: SqliteConfig) -> Result<Self> {
        if config.django_tables {
            return Err(Error::config(
                annals_core::settings::DJANGO_TABLES.name,
                "eventsourcing_django's tables hold every application's rows: open the store \
                 with the application's name (SqliteRecorder::open_application, or through \
                 the application builder)",
            ));
        }
        Self::open_tables(config, None)
    }

    /// [`open`](Self::open), for application `app_name`: under
    /// eventsourcing_django's tables ([`SqliteConfig::django_tables`]) its
    /// rows, otherwise the tables [`open`](Self::open) opens (the name is
    /// not used).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); under eventsourcing_django's tables, a
    /// missing table (named, with the migration that makes it), or an
    /// application name the tables cannot hold.
    pub fn open_application(config: SqliteConfig, app_name: &str) -> Result<Self> {
        let django = config
            .django_tables
            .then(|| Tables::django(app_name))
            .transpose()?;
        Self::open_tables(config, django)
    }

    fn open_tables(config: SqliteConfig, django: Option<Tables>) -> Result<Self> {
        config.check()?;
        if let Some(tables) = django {
            let shared = Shared::open(config)?;
            shared.check_django_tables(&tables)?;
            return Ok(Self {
                statements: Statements::new(&tables, TrackingLayout::MultiRow),
                tables,
                shared: Arc::new(shared),
            });
        }
        let tables = Tables::new(config.table_prefix.as_deref())?;
        let create = config.create_tables;
        let wanted = config.tracking_layout;
        let shared = Shared::open(config)?;
        let layout = shared.prepare(&tables, wanted, create)?;
        Ok(Self {
            statements: Statements::new(&tables, layout),
            tables,
            shared: Arc::new(shared),
        })
    }

    /// Opens a private in-memory database.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open) (in practice only when out of memory).
    pub fn in_memory() -> Result<Self> {
        Self::open(SqliteConfig::new(":memory:"))
    }

    /// Creates the tables if they do not exist (a tracking table in the
    /// layout this recorder uses, [`tracking_layout`](Self::tracking_layout)).
    ///
    /// # Errors
    ///
    /// The database's errors (read-only, locked beyond the lock timeout);
    /// [`Error::Config`](annals_core::Error::Config) when the tracking table was
    /// replaced by one of the other layout since the store was opened.
    pub fn create_tables(&self) -> Result<()> {
        if self.tables.django_app.is_some() {
            return Err(annals_core::persistence::django::not_ours());
        }
        let layout = self.statements.tracking_layout;
        let found = self.shared.prepare(&self.tables, layout, true)?;
        if found != layout {
            return Err(Error::config(
                annals_core::settings::SINGLE_ROW_TRACKING.name,
                format!(
                    "the tracking table {} is now in the {found:?} layout, but this store was \
                     opened with the {layout:?} one: open the store again",
                    self.tables.tracking
                ),
            ));
        }
        Ok(())
    }

    /// The layout of the tracking table this recorder writes: the one the
    /// table had when the store was opened, or the one it was created in.
    pub fn tracking_layout(&self) -> TrackingLayout {
        self.statements.tracking_layout
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.shared.config
    }

    /// The data keys of personal data in the same database (the table
    /// `stored_data_keys`, or `{prefix}_data_keys`); `None` under
    /// eventsourcing_django's tables, which have no place for them.
    pub fn key_store(&self) -> Option<crate::SqliteKeyStore> {
        if self.tables.django_app.is_some() {
            return None;
        }
        Some(crate::SqliteKeyStore {
            shared: self.shared.clone(),
            sql: crate::keys::KeySql::new(&self.tables.keys),
        })
    }

    /// The store of snapshots in the same database (the snapshots table).
    pub fn snapshot_recorder(&self) -> SqliteSnapshotRecorder {
        let snapshots = &self.tables.snapshots;
        let insert = match &self.tables.django_app {
            Some(app) => format!(
                "INSERT INTO {snapshots} (application_name, originator_id, originator_version, topic, state) \
                 VALUES ({app}, ?1, ?2, ?3, ?4)"
            ),
            None => format!("INSERT INTO {snapshots} VALUES (?1, ?2, ?3, ?4)"),
        };
        SqliteSnapshotRecorder {
            shared: self.shared.clone(),
            insert: insert.into(),
            table: snapshots.clone(),
            rows: self.tables.rows(),
        }
    }
}

/// Snapshots in a SQLite database: the snapshots table of a
/// [`SqliteRecorder`], on the same connections.
pub struct SqliteSnapshotRecorder {
    shared: Arc<Shared>,
    table: String,
    /// The condition that picks the application's rows ([`Tables::rows`]).
    rows: String,
    insert: Arc<str>,
}

impl fmt::Debug for SqliteSnapshotRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteSnapshotRecorder")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl AggregateRecorder for SqliteSnapshotRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.shared
            .insert(&self.insert, events, None, None, false, None)
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let table = (self.table.as_str(), self.rows.as_str());
        self.shared.select_events(table, originator_id, query)
    }

    fn end_stream(
        &self,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        let table = (self.table.as_str(), self.rows.as_str());
        self.shared
            .end_stream(table, &self.insert, originator_id, tombstone)
    }
}

impl AggregateRecorder for SqliteRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.shared.insert(
            &self.statements.insert_event,
            events,
            None,
            None,
            true,
            None,
        )
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let table = (
            self.statements.events_table.as_str(),
            self.statements.rows.as_str(),
        );
        self.shared.select_events(table, originator_id, query)
    }

    fn visit_events(
        &self,
        originator_id: &str,
        query: &EventQuery,
        visit: &mut dyn FnMut(&StoredEvent) -> Result<()>,
    ) -> Result<usize> {
        let table = (
            self.statements.events_table.as_str(),
            self.statements.rows.as_str(),
        );
        self.shared.visit_events(table, originator_id, query, visit)
    }

    /// Under `DJANGO_TABLES`, only this application's rows. After the
    /// commit, a file database's write-ahead log is checkpointed and
    /// truncated (`PRAGMA wal_checkpoint(TRUNCATE)`), so the removed rows'
    /// bytes leave it too; when a reader keeps it from completing, that is
    /// logged (`warn`) and the next checkpoint does it.
    fn end_stream(
        &self,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        let table = (
            self.statements.events_table.as_str(),
            self.statements.rows.as_str(),
        );
        let removed = self.shared.end_stream(
            table,
            &self.statements.insert_event,
            originator_id,
            tombstone,
        )?;
        if !removed.is_empty() && self.shared.readers.is_some() {
            let checkpoint = self.shared.writer.exclusive(|w| {
                w.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                        row.get::<_, i64>(0)
                    })
            });
            match checkpoint {
                Ok(0) => {}
                Ok(_) => tracing::warn!(
                    dbname = self.shared.config.dbname.as_str(),
                    "the write-ahead log could not be checkpointed after a stream was ended \
                     (a reader was reading): the removed events' bytes stay in it until the next \
                     checkpoint"
                ),
                Err(e) => tracing::warn!(
                    dbname = self.shared.config.dbname.as_str(),
                    error = %e,
                    "the write-ahead log could not be checkpointed after a stream was ended"
                ),
            }
        }
        Ok(removed)
    }
}

impl ApplicationRecorder for SqliteRecorder {
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        let start = to_i64("notification id", query.start)?;
        let stop = query
            .stop
            .map(|s| to_i64("notification id", s))
            .transpose()?;
        let sql = self.statements.select_notifications(query);
        self.shared.read("selecting notifications", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            stmt.raw_bind_parameter(1, start)?;
            if let Some(stop) = stop {
                stmt.raw_bind_parameter(2, stop)?;
            }
            for (i, topic) in query.topics.iter().enumerate() {
                stmt.raw_bind_parameter(i + 4, topic)?;
            }
            let table = &self.statements.events_table;
            let mut rows = stmt.raw_query();
            // Room for a page up front, not grown by doubling; bounded,
            // since a limit may be far more than the rows there are.
            let mut notifications = Vec::with_capacity(query.limit.min(PAGE_ROOM));
            while let Some(row) = rows.next()? {
                let (id, originator_version) = match (
                    to_u64(table, "rowid", row.get(0)?),
                    to_u64(table, "originator_version", row.get(2)?),
                ) {
                    (Ok(id), Ok(version)) => (id, version),
                    (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
                };
                notifications.push(Notification {
                    id,
                    event: StoredEvent {
                        originator_id: row.get(1)?,
                        originator_version,
                        topic: row.get(3)?,
                        state: row.get(4)?,
                    },
                });
            }
            Ok(Ok(notifications))
        })?
    }

    fn max_notification_id(&self) -> Result<u64> {
        self.shared
            .read("reading the max notification id", |conn| {
                conn.prepare_cached(&self.statements.max_notification_id)?
                    .query_row([], |row| row.get::<_, Option<i64>>(0))
            })
            .and_then(|max| to_u64(&self.statements.events_table, "rowid", max.unwrap_or(0)))
    }

    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        if self.shared.readers.is_none() {
            // `:memory:`: no other connection can write to it.
            return Ok(Watch::none());
        }
        connection::watch(&self.shared.config, signal)
    }
}

impl ProcessRecorder for SqliteRecorder {
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> Result<Vec<u64>> {
        self.shared.insert(
            &self.statements.insert_event,
            events,
            Some((&self.statements, tracking)),
            None,
            true,
            None,
        )
    }

    fn insert_events_with(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        writes: &mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        self.shared.insert(
            &self.statements.insert_event,
            events,
            tracking.map(|t| (&self.statements, t)),
            None,
            true,
            Some(&mut UserWrites::new(writes)),
        )
    }

    fn insert_events_keyed(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: &KeyedOutcome,
    ) -> Result<Vec<u64>> {
        if self.tables.django_app.is_some() {
            return Err(annals_core::persistence::django::no_keys());
        }
        self.shared.insert(
            &self.statements.insert_event,
            events,
            tracking.map(|t| (&self.statements, t)),
            Some((&self.statements, outcome)),
            true,
            None,
        )
    }

    fn select_outcome(&self, key: &str) -> Result<Option<Vec<u8>>> {
        if self.tables.django_app.is_some() {
            // Never stored: eventsourcing_django's tables have no place.
            return Ok(None);
        }
        self.shared.read("reading an idempotency key", |conn| {
            conn.prepare_cached(&self.statements.select_outcome)?
                .query_row([key], |row| row.get(0))
                .optional()
        })
    }

    /// A reader (the writer, in memory) in a transaction of its own, so
    /// that the reads see one snapshot; rolled back after, even if they
    /// panic (a reader left in a transaction would keep its snapshot).
    fn read_with(&self, reads: &mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>) -> Result<()> {
        let mut outcome = Ok(());
        self.shared
            .read("reading the application's own tables", |conn| {
                let begun = conn.is_autocommit();
                if begun {
                    conn.execute_batch("BEGIN")?;
                }
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    reads(&mut StoreTx::shared::<Connection>("sqlite", conn))
                }));
                let ended = if begun && !conn.is_autocommit() {
                    conn.execute_batch("ROLLBACK")
                } else {
                    Ok(())
                };
                outcome = ran.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                ended
            })?;
        outcome
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        self.shared
            .read("reading the max tracking id", |conn| {
                conn.prepare_cached(&self.statements.max_tracking_id)?
                    .query_row([application_name], |row| row.get::<_, Option<i64>>(0))
            })
            .and_then(|max| {
                to_u64(
                    &self.statements.tracking_table,
                    "notification_id",
                    max.unwrap_or(0),
                )
            })
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        let id = to_i64("notification id", notification_id)?;
        self.shared.read("reading a tracking record", |conn| {
            conn.prepare_cached(&self.statements.has_tracking_id)?
                .query_row(params![application_name, id], |row| row.get(0))
        })
    }

    fn import_events(&self, events: &[StoredEvent], tracking: Option<&Tracking>) -> Result<usize> {
        self.import(events, tracking)
    }

    fn tracked_applications(&self) -> Result<Vec<String>> {
        self.shared
            .read("listing the applications tracked", |conn| {
                conn.prepare_cached(&self.statements.tracked_applications)?
                    .query_map([], |row| row.get(0))?
                    .collect()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteTx;

    /// Saves that arrive together while another connection holds the
    /// database's write lock (most of them queued behind the first, which
    /// waits in BEGIN) each fail with the lock named, none is left
    /// waiting, and none is stored; the store writes again once the lock
    /// is let go.
    #[test]
    fn concurrent_saves_of_a_database_another_writer_holds_each_fail_and_store_nothing() {
        let path = std::env::temp_dir().join(format!("annals-locked-{}.db", uuid::Uuid::new_v4()));
        let mut config = SqliteConfig::new(path.to_string_lossy());
        config.lock_timeout = std::time::Duration::from_millis(50);
        let recorder = SqliteRecorder::open(config).expect("open");
        let other = Connection::open(&path).expect("a second connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("the write lock");
        let row = |id: &str| StoredEvent {
            originator_id: id.into(),
            originator_version: 1,
            topic: "T".into(),
            state: b"{}".to_vec(),
        };
        let failed: Vec<Error> = std::thread::scope(|s| {
            let saves: Vec<_> = (0..8)
                .map(|t| {
                    let (recorder, row) = (&recorder, &row);
                    s.spawn(move || recorder.insert_events(&[row(&format!("s{t}"))]))
                })
                .collect();
            saves
                .into_iter()
                .map(|save| save.join().expect("thread").expect_err("locked"))
                .collect()
        });
        for e in &failed {
            assert!(e.to_string().contains("stayed locked"), "{e}");
        }
        other.execute_batch("ROLLBACK").expect("let go");
        assert!(recorder
            .select_notifications(&NotificationQuery::new(1, 100))
            .expect("select")
            .is_empty());
        assert_eq!(recorder.insert_events(&[row("after")]).expect("save"), [1]);
        drop((recorder, other));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// A joining save of no events whose writes run two statements and
    /// fail on the second stores neither (a single-statement save needs no
    /// savepoint; the user's writes always take one).
    #[test]
    fn a_joining_save_of_writes_alone_that_fails_stores_none_of_them() {
        let path = std::env::temp_dir().join(format!("annals-join-{}.db", uuid::Uuid::new_v4()));
        let recorder =
            SqliteRecorder::open(SqliteConfig::new(path.to_string_lossy())).expect("open");
        let sql = |tx: &mut StoreTx<'_>, statement: &str| -> Result<()> {
            tx.sqlite()?
                .execute_batch(statement)
                .map_err(|e| Error::persistence("the test's writes", e))
        };
        recorder
            .insert_events_with(&[], None, &mut |tx| {
                sql(tx, "CREATE TABLE own (k INTEGER PRIMARY KEY)")
            })
            .expect("create");
        let writer = &recorder.shared.writer;
        std::thread::scope(|s| {
            let opener = writer.save(|w| {
                w.conn.execute_batch("INSERT INTO own VALUES (1)")?;
                let joiner = s.spawn(|| {
                    recorder.insert_events_with(&[], None, &mut |tx| {
                        sql(tx, "INSERT INTO own VALUES (2)")?;
                        sql(tx, "INSERT INTO own VALUES (1)")
                    })
                });
                while writer.waiting() == 0 {
                    std::thread::yield_now();
                }
                Ok::<_, rusqlite::Error>(joiner)
            });
            let joiner = opener.expect("the opener's save");
            let err = joiner.join().expect("thread").expect_err("a taken key");
            assert!(err.to_string().contains("the test's writes"), "{err}");
        });
        let keys: Vec<i64> = recorder
            .shared
            .read("the test's keys", |conn| {
                let mut select = conn.prepare("SELECT k FROM own ORDER BY k")?;
                let rows = select.query_map([], |row| row.get(0))?;
                rows.collect()
            })
            .expect("select");
        assert_eq!(keys, [1], "the opener's row alone");
        drop(recorder);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
