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
//!   applications can share one file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::{
    to_i64, AggregateRecorder, ApplicationRecorder, EventQuery, Notification, NotificationQuery,
    ProcessRecorder, StoredEvent, Tracking,
};
use crate::env::Env;
use crate::error::{Error, Result};

/// The Python library's default: 5 seconds.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a SQLite store.
#[derive(Debug, Clone, PartialEq)]
pub struct SqliteConfig {
    /// A file path, `:memory:`, or a `file:` URI.
    pub dbname: String,
    /// How long a write waits for another writer's lock before it fails.
    pub lock_timeout: Duration,
    /// Table names `{prefix}_events`, `{prefix}_snapshots`,
    /// `{prefix}_tracking` instead of the Python library's `stored_events`,
    /// `stored_snapshots`, `tracking`.
    pub table_prefix: Option<String>,
    /// Whether to create missing tables when the store is opened.
    pub create_tables: bool,
    /// How many read connections a file database may open.
    pub read_pool_size: u32,
}

impl SqliteConfig {
    /// A store in `dbname` with default settings.
    pub fn new(dbname: impl Into<String>) -> Self {
        Self {
            dbname: dbname.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            table_prefix: None,
            create_tables: true,
            read_pool_size: 4,
        }
    }

    /// Settings from `SQLITE_DBNAME` (required), `SQLITE_LOCK_TIMEOUT`
    /// (seconds), `SQLITE_TABLE_PREFIX` and `CREATE_TABLE` (yes/no).
    pub fn from_env(env: &Env) -> Result<Self> {
        let (_, dbname) = env.get("SQLITE_DBNAME").ok_or_else(|| {
            Error::config(
                "SQLITE_DBNAME",
                "not set: name the SQLite database file (or :memory:)",
            )
        })?;
        let mut config = Self::new(dbname);
        if let Some(timeout) = env.seconds("SQLITE_LOCK_TIMEOUT")? {
            config.lock_timeout = timeout;
        }
        if let Some((_, prefix)) = env.get("SQLITE_TABLE_PREFIX") {
            config.table_prefix = Some(prefix);
        }
        if let Some(create) = env.flag("CREATE_TABLE")? {
            config.create_tables = create;
        }
        Ok(config)
    }

    fn is_memory(&self) -> bool {
        self.dbname == ":memory:" || self.dbname.contains("mode=memory")
    }
}

/// Validated table names.
#[derive(Debug, Clone)]
struct Tables {
    events: String,
    snapshots: String,
    tracking: String,
}

impl Tables {
    fn new(prefix: Option<&str>) -> Result<Self> {
        let Some(prefix) = prefix else {
            return Ok(Self {
                events: "stored_events".into(),
                snapshots: "stored_snapshots".into(),
                tracking: "tracking".into(),
            });
        };
        let valid = prefix.len() <= 50
            && prefix.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::config(
                "SQLITE_TABLE_PREFIX",
                format!("{prefix:?} is not a valid table prefix: use ASCII letters, digits and '_', not starting with a digit, at most 50 characters"),
            ));
        }
        let prefix = prefix.to_ascii_lowercase();
        Ok(Self {
            events: format!("{prefix}_events"),
            snapshots: format!("{prefix}_snapshots"),
            tracking: format!("{prefix}_tracking"),
        })
    }
}

/// The SQL the recorder runs, built once from the table names.
#[derive(Debug)]
struct Statements {
    create: Vec<String>,
    insert_event: String,
    insert_tracking: String,
    max_notification_id: String,
    max_tracking_id: String,
    has_tracking_id: String,
    events_table: String,
}

impl Statements {
    fn new(t: &Tables) -> Self {
        Self {
            create: vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))",
                    t.events
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID",
                    t.snapshots
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (application_name TEXT, notification_id INTEGER, PRIMARY KEY (application_name, notification_id)) WITHOUT ROWID",
                    t.tracking
                ),
            ],
            insert_event: format!("INSERT INTO {} VALUES (?1, ?2, ?3, ?4)", t.events),
            insert_tracking: format!("INSERT INTO {} VALUES (?1, ?2)", t.tracking),
            max_notification_id: format!("SELECT MAX(rowid) FROM {}", t.events),
            max_tracking_id: format!(
                "SELECT MAX(notification_id) FROM {} WHERE application_name = ?1",
                t.tracking
            ),
            has_tracking_id: format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE application_name = ?1 AND notification_id = ?2)",
                t.tracking
            ),
            events_table: t.events.clone(),
        }
    }

    fn select_notifications(&self, query: &NotificationQuery) -> String {
        let mut sql = format!(
            "SELECT rowid, originator_id, originator_version, topic, state FROM {} WHERE rowid >= ?1",
            self.events_table
        );
        if query.stop.is_some() {
            sql.push_str(" AND rowid <= ?2");
        }
        if !query.topics.is_empty() {
            let marks: Vec<String> = (0..query.topics.len())
                .map(|i| format!("?{}", i + 4))
                .collect();
            sql.push_str(&format!(" AND topic IN ({})", marks.join(", ")));
        }
        sql.push_str(" ORDER BY rowid LIMIT ?3");
        sql
    }
}

/// `SELECT` of one stream of `table`, as `query` says.
fn select_events_sql(table: &str, query: &EventQuery) -> String {
    let mut sql =
        format!("SELECT originator_version, topic, state FROM {table} WHERE originator_id = ?1");
    if query.gt.is_some() {
        sql.push_str(" AND originator_version > ?2");
    }
    if query.lte.is_some() {
        sql.push_str(" AND originator_version <= ?3");
    }
    sql.push_str(if query.desc {
        " ORDER BY originator_version DESC"
    } else {
        " ORDER BY originator_version"
    });
    if query.limit.is_some() {
        sql.push_str(" LIMIT ?4");
    }
    sql
}

/// The connections of one database, shared by its events and snapshot
/// recorders.
struct Shared {
    writer: Mutex<Writer>,
    /// Threads waiting for the writer: while there are some, a finished
    /// save leaves the transaction open for them (group commit).
    waiting: AtomicUsize,
    /// Commits of group transactions, for the saves waiting on them.
    group: Mutex<Group>,
    committed: Condvar,
    readers: Option<r2d2::Pool<SqliteConnectionManager>>,
    config: SqliteConfig,
}

/// The writing connection and the group transaction it has open, if any.
struct Writer {
    conn: Connection,
    /// The epoch of the open transaction.
    open: Option<u64>,
}

#[derive(Default)]
struct Group {
    next_epoch: u64,
    committed: u64,
    /// Per epoch not yet reported to all its saves: how many saves wait
    /// for it, and why it failed, if it did.
    outcomes: BTreeMap<u64, (usize, Option<String>)>,
}

/// Events in a SQLite database.
pub struct SqliteRecorder {
    shared: Arc<Shared>,
    statements: Statements,
    snapshots_table: String,
}

impl fmt::Debug for SqliteRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteRecorder")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn sqlite_error(context: &str, config: &SqliteConfig, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => Error::Conflict(format!("{context}: {e}")),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::persistence(
            format!(
                "{context}: the database {:?} stayed locked by another writer for longer than the lock timeout ({:?}; SQLITE_LOCK_TIMEOUT)",
                config.dbname, config.lock_timeout
            ),
            e,
        ),
        _ => Error::persistence(format!("{context} in SQLite database {:?}", config.dbname), e),
    }
}

fn to_u64(value: i64) -> u64 {
    // Stored versions and ids are never negative: they are written from u64.
    value.max(0) as u64
}

fn configure(conn: &Connection, config: &SqliteConfig) -> rusqlite::Result<()> {
    conn.busy_timeout(config.lock_timeout)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The connection that writes.
fn open_writer(config: &SqliteConfig) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let open_error = |e| sqlite_error("opening", config, e);
    let writer =
        Connection::open_with_flags(Path::new(&config.dbname), flags).map_err(open_error)?;
    configure(&writer, config).map_err(open_error)?;
    Ok(writer)
}

impl Shared {
    fn open(config: SqliteConfig) -> Result<Self> {
        let open_error = |e| sqlite_error("opening", &config, e);
        let writer = open_writer(&config)?;
        let readers = if config.is_memory() {
            None
        } else {
            let mode: String = writer
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(open_error)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::persistence(
                    format!("opening SQLite database {:?}", config.dbname),
                    format!("could not switch to WAL journal mode (got {mode})"),
                ));
            }
            let reader_config = config.clone();
            let manager = SqliteConnectionManager::file(&config.dbname)
                .with_flags(
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_URI
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_init(move |c| configure(c, &reader_config));
            let pool = r2d2::Pool::builder()
                .max_size(config.read_pool_size.max(1))
                .min_idle(Some(0))
                // A read-only file connection does not go stale: no query
                // per checkout (measured: ~15% of a W2 read).
                .test_on_check_out(false)
                .connection_timeout(config.lock_timeout.max(Duration::from_secs(1)))
                .build_unchecked(manager);
            Some(pool)
        };
        Ok(Self {
            writer: Mutex::new(Writer {
                conn: writer,
                open: None,
            }),
            waiting: AtomicUsize::new(0),
            group: Mutex::new(Group::default()),
            committed: Condvar::new(),
            readers,
            config,
        })
    }

    /// The writer, counted as waiting while it waits.
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // A panic while the lock was held left at most an open group
        // transaction, which the next holder commits or rolls back.
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        writer
    }

    /// The writer with no group transaction open (committed first), for
    /// work that needs a transaction of its own or reads through it.
    fn writer_alone(&self) -> MutexGuard<'_, Writer> {
        let mut writer = self.writer();
        self.commit_group(&mut writer);
        writer
    }

    fn group(&self) -> MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits the open group transaction, if any, and tells its saves.
    fn commit_group(&self, writer: &mut Writer) {
        let Some(epoch) = writer.open.take() else {
            return;
        };
        let failure = writer.conn.execute_batch("COMMIT").err().map(|e| {
            let _ = writer.conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        self.end_group(writer, epoch, failure);
    }

    /// Records how group `epoch` ended and wakes its saves. A connection
    /// left inside a transaction it cannot end is replaced.
    fn end_group(&self, writer: &mut Writer, epoch: u64, failure: Option<String>) {
        writer.open = None;
        if !writer.conn.is_autocommit() {
            match open_writer(&self.config) {
                Ok(conn) => writer.conn = conn,
                Err(e) => tracing::error!(error = %e, "reopening the SQLite writer"),
            }
        }
        let mut group = self.group();
        let outcome = group.outcomes.entry(epoch).or_default();
        outcome.1 = failure;
        if outcome.0 == 0 {
            // No save waits for it (they all left with their own errors).
            group.outcomes.remove(&epoch);
        }
        group.committed = epoch;
        drop(group);
        self.committed.notify_all();
    }

    /// Waits until the group transaction `epoch` has ended: Ok if it
    /// committed.
    fn wait_for_commit(&self, epoch: u64) -> Result<()> {
        let group = self.group();
        let mut group = self
            .committed
            .wait_while(group, |g| g.committed < epoch)
            .unwrap_or_else(|e| e.into_inner());
        let outcome = group.outcomes.entry(epoch).or_default();
        let failure = outcome.1.clone();
        outcome.0 = outcome.0.saturating_sub(1);
        if outcome.0 == 0 {
            group.outcomes.remove(&epoch);
        }
        match failure {
            None => Ok(()),
            Some(why) => Err(Error::persistence(
                format!(
                    "committing events to SQLite database {:?}; nothing of this save was stored",
                    self.config.dbname
                ),
                why,
            )),
        }
    }

    fn read<T>(
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
            None => f(&self.writer_alone().conn),
        };
        result.map_err(|e| sqlite_error(context, &self.config, e))
    }

    /// Inserts rows into a table (and a tracking record) in one
    /// transaction; returns the rowids when `rowids` is set.
    fn insert(
        &self,
        insert_sql: &str,
        events: &[StoredEvent],
        tracking: Option<(&str, &Tracking)>,
        rowids: bool,
    ) -> Result<Vec<u64>> {
        let rows = events
            .iter()
            .map(|e| Ok((e, to_i64("originator version", e.originator_version)?)))
            .collect::<Result<Vec<_>>>()?;
        let tracked = tracking
            .map(|(sql, t)| Ok((sql, t, to_i64("notification id", t.notification_id)?)))
            .transpose()?;
        let err = |e| sqlite_error("inserting events", &self.config, e);
        let mut writer = self.writer();
        if writer.open.is_none() {
            writer.conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
            let mut group = self.group();
            group.next_epoch += 1;
            writer.open = Some(group.next_epoch);
        }
        let epoch = writer.open.unwrap_or_default();
        self.group().outcomes.entry(epoch).or_default().0 += 1;
        // This save, inside the group transaction: a savepoint of its own,
        // so a conflict undoes it alone.
        let saved = writer
            .conn
            .execute_batch("SAVEPOINT save")
            .and_then(|()| {
                let conn = &writer.conn;
                if let Some((sql, t, id)) = tracked {
                    conn.prepare_cached(sql)?
                        .execute(params![t.application_name, id])?;
                }
                let mut insert = conn.prepare_cached(insert_sql)?;
                let mut ids = Vec::with_capacity(if rowids { rows.len() } else { 0 });
                for (e, version) in rows {
                    insert.execute(params![e.originator_id, version, e.topic, e.state])?;
                    if rowids {
                        ids.push(to_u64(conn.last_insert_rowid()));
                    }
                }
                Ok(ids)
            })
            .and_then(|ids| writer.conn.execute_batch("RELEASE save").map(|()| ids));
        let ids = match saved {
            Ok(ids) => ids,
            Err(e) => {
                let undone = !writer.conn.is_autocommit()
                    && writer
                        .conn
                        .execute_batch("ROLLBACK TO save; RELEASE save")
                        .is_ok();
                if !undone {
                    // SQLite rolled the whole transaction back (I/O error,
                    // full disk), or this save's rows could not be undone
                    // alone: the whole group fails, none of it is stored.
                    let _ = writer.conn.execute_batch("ROLLBACK");
                    self.end_group(&mut writer, epoch, Some(e.to_string()));
                } else if self.waiting.load(Ordering::SeqCst) == 0 || !self.group_commit() {
                    self.commit_group(&mut writer);
                }
                drop(writer);
                // This save's outcome is its own error: it leaves the group.
                let mut group = self.group();
                if let Some(outcome) = group.outcomes.get_mut(&epoch) {
                    outcome.0 = outcome.0.saturating_sub(1);
                    if outcome.0 == 0 && group.committed >= epoch {
                        group.outcomes.remove(&epoch);
                    }
                }
                return Err(err(e));
            }
        };
        if self.waiting.load(Ordering::SeqCst) > 0 && self.group_commit() {
            // Others are waiting to write: they commit this transaction,
            // with their saves in it, and one flush serves all.
            drop(writer);
        } else {
            self.commit_group(&mut writer);
            drop(writer);
        }
        self.wait_for_commit(epoch)?;
        Ok(ids)
    }

    /// Whether saves may share a transaction: not for `:memory:`, where
    /// reads go through the writer and would see uncommitted saves.
    fn group_commit(&self) -> bool {
        self.readers.is_some()
    }

    fn select_events(
        &self,
        table: &str,
        originator_id: &str,
        query: &EventQuery,
    ) -> Result<Vec<StoredEvent>> {
        let gt = query.gt.map(|v| to_i64("version", v)).transpose()?;
        let lte = query.lte.map(|v| to_i64("version", v)).transpose()?;
        let limit = query.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql = select_events_sql(table, query);
        self.read("selecting events", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            stmt.raw_bind_parameter(1, originator_id)?;
            if let Some(gt) = gt {
                stmt.raw_bind_parameter(2, gt)?;
            }
            if let Some(lte) = lte {
                stmt.raw_bind_parameter(3, lte)?;
            }
            if let Some(limit) = limit {
                stmt.raw_bind_parameter(4, limit)?;
            }
            let mut rows = stmt.raw_query();
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(StoredEvent {
                    originator_id: originator_id.to_owned(),
                    originator_version: to_u64(row.get(0)?),
                    topic: row.get(1)?,
                    state: row.get(2)?,
                });
            }
            Ok(events)
        })
    }
}

impl SqliteRecorder {
    /// Opens (and, unless told not to, prepares) the store that `config`
    /// names.
    pub fn open(config: SqliteConfig) -> Result<Self> {
        let tables = Tables::new(config.table_prefix.as_deref())?;
        let create = config.create_tables;
        let recorder = Self {
            statements: Statements::new(&tables),
            snapshots_table: tables.snapshots,
            shared: Arc::new(Shared::open(config)?),
        };
        if create {
            recorder.create_tables()?;
        }
        Ok(recorder)
    }

    /// Opens a private in-memory database.
    pub fn in_memory() -> Result<Self> {
        Self::open(SqliteConfig::new(":memory:"))
    }

    /// Creates the tables if they do not exist.
    pub fn create_tables(&self) -> Result<()> {
        let mut writer = self.shared.writer_alone();
        let err = |e| sqlite_error("creating tables", &self.shared.config, e);
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        for sql in &self.statements.create {
            tx.execute(sql, []).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.shared.config
    }

    /// The store of snapshots in the same database (the snapshots table).
    pub fn snapshot_recorder(&self) -> SqliteSnapshotRecorder {
        SqliteSnapshotRecorder {
            shared: self.shared.clone(),
            insert: format!(
                "INSERT INTO {} VALUES (?1, ?2, ?3, ?4)",
                self.snapshots_table
            ),
            table: self.snapshots_table.clone(),
        }
    }
}

/// Snapshots in a SQLite database: the snapshots table of a
/// [`SqliteRecorder`], on the same connections.
pub struct SqliteSnapshotRecorder {
    shared: Arc<Shared>,
    table: String,
    insert: String,
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
        self.shared.insert(&self.insert, events, None, false)
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        self.shared.select_events(&self.table, originator_id, query)
    }
}

impl AggregateRecorder for SqliteRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.shared
            .insert(&self.statements.insert_event, events, None, true)
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        self.shared
            .select_events(&self.statements.events_table, originator_id, query)
    }
}

impl ApplicationRecorder for SqliteRecorder {
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        let start = to_i64("notification id", query.start)?;
        let stop = query
            .stop
            .map(|s| to_i64("notification id", s))
            .transpose()?;
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let sql = self.statements.select_notifications(query);
        self.shared.read("selecting notifications", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            stmt.raw_bind_parameter(1, start)?;
            if let Some(stop) = stop {
                stmt.raw_bind_parameter(2, stop)?;
            }
            stmt.raw_bind_parameter(3, limit)?;
            for (i, topic) in query.topics.iter().enumerate() {
                stmt.raw_bind_parameter(i + 4, topic)?;
            }
            let mut rows = stmt.raw_query();
            let mut notifications = Vec::new();
            while let Some(row) = rows.next()? {
                notifications.push(Notification {
                    id: to_u64(row.get(0)?),
                    event: StoredEvent {
                        originator_id: row.get(1)?,
                        originator_version: to_u64(row.get(2)?),
                        topic: row.get(3)?,
                        state: row.get(4)?,
                    },
                });
            }
            Ok(notifications)
        })
    }

    fn max_notification_id(&self) -> Result<u64> {
        self.shared
            .read("reading the max notification id", |conn| {
                conn.prepare_cached(&self.statements.max_notification_id)?
                    .query_row([], |row| row.get::<_, Option<i64>>(0))
            })
            .map(|max| max.map_or(0, to_u64))
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
            Some((&self.statements.insert_tracking, tracking)),
            true,
        )
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        self.shared
            .read("reading the max tracking id", |conn| {
                conn.prepare_cached(&self.statements.max_tracking_id)?
                    .query_row([application_name], |row| row.get::<_, Option<i64>>(0))
            })
            .map(|max| max.map_or(0, to_u64))
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        let id = to_i64("notification id", notification_id)?;
        self.shared.read("reading a tracking record", |conn| {
            conn.prepare_cached(&self.statements.has_tracking_id)?
                .query_row(params![application_name, id], |row| row.get(0))
        })
    }
}
