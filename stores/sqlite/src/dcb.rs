//! The SQLite DCB recorder: tagged events read by query and appended on a
//! condition, checked and inserted in one write transaction.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, params_from_iter, Connection, TransactionBehavior};

use super::connection::{self, open_readers, open_writer, sqlite_error, to_u64};
use super::dcb_sql::DcbTables;
use super::settings::{SqliteConfig, Tables};
use annals_core::error::{Error, Result};
use annals_core::persistence::dcb::{
    condition_failed, no_events, DcbAppendCondition, DcbEvent, DcbQuery, DcbReadResponse,
    DcbRecorder, DcbSequencedEvent,
};
use annals_core::persistence::to_i64;
use annals_core::persistence::wake::{Notifier, Signal, Watch};

/// A DCB event store in a SQLite database (Python has none: the design is
/// annals').
///
/// The tables are `dcb_events` (the position is the rowid) and `dcb_tags`
/// (a B-tree on `(tag, position)`, so a query by tag reads that tag's
/// events alone, whatever the size of the store); with
/// [`table_prefix`](SqliteConfig::table_prefix) `p`, `p_dcb_events` and
/// `p_dcb_tags`, so they can share a file with an application's tables.
/// An append begins `IMMEDIATE` (SQLite's write lock, waited for up to
/// the lock timeout), checks its condition, inserts and commits: no other
/// append, of this process or another, comes between the check and the
/// insert. Reads of a file database use read-only connections (WAL), and
/// see one snapshot: the head and the events of a read agree.
///
/// ```
/// use annals_core::persistence::dcb::{DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder};
/// use annals_sqlite::SqliteDcbRecorder;
///
/// let store = SqliteDcbRecorder::in_memory()?;
/// let course = DcbQuery::item(DcbQueryItem::new().tags(["course-1"]));
/// let read = store.read(&course, None, None)?;
/// let condition = DcbAppendCondition::new(course.clone()).after(read.head);
/// let registered = DcbEvent::new("CourseRegistered", b"{}".to_vec()).tags(["course-1"]);
/// assert_eq!(store.append(&[registered.clone()], Some(&condition))?, 1);
/// assert!(store.append(&[registered], Some(&condition)).unwrap_err().is_conflict());
/// assert_eq!(store.read(&course, None, None)?.events.len(), 1);
/// # Ok::<(), annals_core::Error>(())
/// ```
pub struct SqliteDcbRecorder {
    /// The writer (and, for `:memory:`, the reader too).
    writer: Mutex<Connection>,
    /// Read-only connections of a file database; `None` for `:memory:`.
    readers: Option<r2d2::Pool<SqliteConnectionManager>>,
    tables: DcbTables,
    config: SqliteConfig,
    /// Raised after each append, for the subscriptions of this process.
    appended: Notifier,
}

impl fmt::Debug for SqliteDcbRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDcbRecorder")
            .field("config", &self.config)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl SqliteDcbRecorder {
    /// Opens the database that `config` names and (unless
    /// [`create_tables`](SqliteConfig::create_tables) is off) creates the
    /// DCB tables in it. The tracking layout and the other tables are not
    /// looked at.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad table prefix or lock timeout, or
    /// under eventsourcing_django's tables
    /// ([`django_tables`](SqliteConfig::django_tables)), which have no DCB
    /// store;
    /// [`Error::Persistence`] when the database cannot be opened or the
    /// tables created.
    pub fn open(config: SqliteConfig) -> Result<Self> {
        if config.django_tables {
            return Err(annals_core::persistence::django::no_dcb());
        }
        config.check()?;
        // The prefix is checked as the application tables' prefix is.
        Tables::new(config.table_prefix.as_deref())?;
        let tables = DcbTables::new(config.table_prefix.as_deref());
        let writer = open_writer(&config)?;
        let readers = if config.is_memory() {
            None
        } else {
            Some(open_readers(&writer, &config)?)
        };
        let recorder = Self {
            writer: Mutex::new(writer),
            readers,
            tables,
            config,
            appended: Notifier::default(),
        };
        if recorder.config.create_tables {
            recorder.create_tables()?;
        }
        Ok(recorder)
    }

    /// Opens a private in-memory database.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open) (in practice only when out of memory).
    pub fn in_memory() -> Result<Self> {
        Self::open(SqliteConfig::new(":memory:"))
    }

    /// Creates the DCB tables if they do not exist, in one transaction.
    ///
    /// # Errors
    ///
    /// The database's errors (read-only, locked beyond the lock timeout).
    pub fn create_tables(&self) -> Result<()> {
        let mut conn = self.writer();
        let mut create = || -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for sql in self.tables.create() {
                tx.execute(&sql, [])?;
            }
            tx.commit()
        };
        create().map_err(|e| self.error("creating the DCB tables", e))
    }

    /// The SQL that creates the DCB tables, for migrations.
    ///
    /// ```
    /// use annals_sqlite::{SqliteConfig, SqliteDcbRecorder};
    ///
    /// let ddl = SqliteDcbRecorder::ddl(&SqliteConfig::new("school.db"));
    /// assert!(ddl.contains("CREATE TABLE IF NOT EXISTS dcb_tags"));
    /// ```
    pub fn ddl(config: &SqliteConfig) -> String {
        DcbTables::new(config.table_prefix.as_deref())
            .create()
            .iter()
            .map(|statement| format!("{statement};\n"))
            .collect()
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.config
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-append leaves the transaction to roll back when its
        // guard drops: the connection is still sound.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, context: &str, e: rusqlite::Error) -> Error {
        sqlite_error(context, &self.config, e)
    }

    /// Runs `f` on a read connection (the writer, for `:memory:`).
    fn read_with<T>(&self, context: &str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        match &self.readers {
            Some(pool) => {
                let conn = pool.get().map_err(|e| {
                    Error::persistence(
                        format!("{context}: no read connection to {:?}", self.config.dbname),
                        e,
                    )
                })?;
                f(&conn)
            }
            None => f(&self.writer()),
        }
    }
}

fn tags_json(tags: &[String]) -> Result<String> {
    serde_json::to_string(tags).map_err(|e| Error::persistence("encoding DCB tags", e))
}

fn read_events(
    tx: &Connection,
    sql: &str,
    params: Vec<rusqlite::types::Value>,
    table: &str,
) -> Result<Vec<DcbSequencedEvent>, ReadError> {
    let mut statement = tx.prepare_cached(sql)?;
    let mut rows = statement.query(params_from_iter(params))?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let position: i64 = row.get(0)?;
        let tags: String = row.get(3)?;
        let tags: Vec<String> = serde_json::from_str(&tags).map_err(|e| {
            Error::persistence(
                format!("reading {table}: the tags of position {position} are not a JSON array of strings"),
                e,
            )
        })?;
        events.push(DcbSequencedEvent {
            position: to_u64(table, "position", position)?,
            event: DcbEvent {
                type_: row.get(1)?,
                data: row.get(2)?,
                tags,
            },
        });
    }
    Ok(events)
}

/// A step's failure: the database's (to be worded) or annals' own.
enum ReadError {
    Db(rusqlite::Error),
    Other(Error),
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
    }
}

impl From<Error> for ReadError {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

impl SqliteDcbRecorder {
    fn worded(&self, context: &str, e: ReadError) -> Error {
        match e {
            ReadError::Db(e) => self.error(context, e),
            ReadError::Other(e) => e,
        }
    }
}

fn limit_i64(limit: Option<usize>) -> i64 {
    limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

impl DcbRecorder for SqliteDcbRecorder {
    fn read(
        &self,
        query: &DcbQuery,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<DcbReadResponse> {
        let context = "reading DCB events";
        let after = to_i64("a position", after.unwrap_or(0))?;
        let (sql, params) = self.tables.read(query, after, limit_i64(limit));
        self.read_with(context, |conn| {
            let run = || -> Result<DcbReadResponse, ReadError> {
                // One snapshot for the head and the events.
                let tx = conn.unchecked_transaction()?;
                let last = if limit.is_none() {
                    let max: Option<i64> = tx
                        .prepare_cached(&self.tables.max_position())?
                        .query_row([], |row| row.get(0))?;
                    max.map(|m| to_u64(&self.tables.events, "position", m))
                        .transpose()?
                } else {
                    None
                };
                let events = read_events(&tx, &sql, params, &self.tables.events)?;
                tx.finish()?;
                Ok(DcbReadResponse::with_head(events, limit, last))
            };
            run().map_err(|e| self.worded(context, e))
        })
    }

    fn append(&self, events: &[DcbEvent], condition: Option<&DcbAppendCondition>) -> Result<u64> {
        if events.is_empty() {
            return Err(no_events());
        }
        let context = "appending DCB events";
        let encoded = events
            .iter()
            .map(|e| tags_json(&e.tags))
            .collect::<Result<Vec<_>>>()?;
        let check = condition
            .map(|c| -> Result<_> {
                let after = to_i64("a position", c.after.unwrap_or(0))?;
                Ok(self.tables.exists(&c.fail_if_events_match, after))
            })
            .transpose()?;
        let mut conn = self.writer();
        let run = || -> Result<u64, ReadError> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let (Some((sql, params)), Some(condition)) = (check, condition) {
                let found: bool = tx
                    .prepare_cached(&sql)?
                    .query_row(params_from_iter(params), |row| row.get(0))?;
                if found {
                    return Err(ReadError::Other(condition_failed(condition)));
                }
            }
            let mut last = 0;
            {
                let mut insert_event = tx.prepare_cached(&self.tables.insert_event())?;
                let mut insert_tag = tx.prepare_cached(&self.tables.insert_tag())?;
                for (event, tags) in events.iter().zip(&encoded) {
                    insert_event.execute(params![event.type_, event.data, tags])?;
                    last = tx.last_insert_rowid();
                    for tag in &event.tags {
                        insert_tag.execute(params![tag, last])?;
                    }
                }
            }
            tx.commit()?;
            Ok(to_u64(&self.tables.events, "position", last)?)
        };
        let position = run().map_err(|e| self.worded(context, e))?;
        drop(conn);
        self.appended.notify();
        Ok(position)
    }

    /// Raises `signal` at each append through this recorder at once, and
    /// (for a file) at each commit by another connection or process, seen
    /// by `PRAGMA data_version` within milliseconds.
    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        self.appended.subscribe(signal);
        if self.readers.is_none() {
            return Ok(Watch::none());
        }
        connection::watch(&self.config, signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_core::persistence::dcb::DcbQueryItem;

    /// eventsourcing_django has no DCB tables: under `DJANGO_TABLES` the
    /// DCB store is refused, and makes no table of annals' own in the
    /// Django project's database.
    #[test]
    fn django_tables_have_no_dcb_store() {
        let dir = std::env::temp_dir().join(format!("annals-dcb-django-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let path = dir.join("django.sqlite3");
        let mut config = SqliteConfig::new(path.to_str().expect("a path"));
        config.django_tables = true;
        let Err(err) = SqliteDcbRecorder::open(config) else {
            panic!("refused");
        };
        assert!(err.to_string().contains("DJANGO_TABLES"), "{err}");
        let tables: i64 = rusqlite::Connection::open(&path)
            .expect("the file")
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .expect("a count");
        assert_eq!(tables, 0);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The plan of each query shape, as SQLite reports it.
    fn plan(
        recorder: &SqliteDcbRecorder,
        sql: &str,
        params: Vec<rusqlite::types::Value>,
    ) -> String {
        let conn = recorder.writer();
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let rows = statement
            .query_map(params_from_iter(params), |row| row.get::<_, String>(3))
            .expect("plan");
        rows.map(|r| r.expect("a row"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn tag_and_type_lookups_seek_an_index_and_never_scan_a_table() {
        let recorder = SqliteDcbRecorder::in_memory().expect("open");
        let queries = [
            DcbQuery::item(DcbQueryItem::new().tags(["a"])),
            DcbQuery::item(DcbQueryItem::new().tags(["a", "b"]).types(["T"])),
            DcbQuery::item(DcbQueryItem::new().types(["T", "U"])),
            DcbQuery::new([
                DcbQueryItem::new().tags(["a"]),
                DcbQueryItem::new().tags(["b"]).types(["T"]),
            ]),
        ];
        for query in &queries {
            let (read, params) = recorder.tables.read(query, 5, 10);
            let (exists, exists_params) = recorder.tables.exists(query, 5);
            for plan in [
                plan(&recorder, &read, params),
                plan(&recorder, &exists, exists_params),
            ] {
                assert!(
                    !plan.lines().any(|l| l.contains("SCAN")
                        && !l.contains("USING")
                        && !l.contains("CONSTANT ROW")),
                    "{query:?}: a table scan in\n{plan}"
                );
                assert!(
                    plan.contains("SEARCH"),
                    "{query:?}: no index seek in\n{plan}"
                );
            }
        }
    }
}
