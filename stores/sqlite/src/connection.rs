//! SQLite connections: the writer (one per database, under the
//! group-commit engine), the pool of read-only connections, errors, and
//! the watcher of commits by other connections.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, ErrorCode, OpenFlags};

use super::settings::SqliteConfig;
use annals_core::error::{Error, Result};
use annals_core::persistence::group_commit::{CommitFailure, GroupTransaction};
use annals_core::persistence::wake::{Signal, Watch};
use annals_core::persistence::StoredEvent;

/// How often the watcher looks at `data_version`: the most a commit by
/// another connection waits to be seen.
const WATCH_INTERVAL: Duration = Duration::from_millis(10);

pub(super) fn sqlite_error(context: &str, config: &SqliteConfig, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => Error::conflict(format!("{context}: {e}")),
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

/// A stored id or version: never negative in a row annals wrote (they are
/// written from u64), so a negative one is a corrupt row, not a 0.
pub(super) fn to_u64(table: &str, column: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| {
        Error::persistence(
            format!(
                "reading {table}: {column} is {value}, and annals never stores a negative one: \
                 the row is corrupt"
            ),
            "a negative stored value",
        )
    })
}

fn configure(conn: &Connection, config: &SqliteConfig) -> rusqlite::Result<()> {
    conn.busy_timeout(config.lock_timeout)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The connection that writes. With `CREATE_TABLE` off a missing file is
/// an error, not a new empty database: a mistyped path must not look like
/// an empty store.
pub(super) fn open_writer(config: &SqliteConfig) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if config.create_tables {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let open_error = |e| sqlite_error("opening", config, e);
    let writer = Connection::open_with_flags(Path::new(&config.dbname), flags).map_err(|e| {
        if !config.create_tables
            && e.sqlite_error_code() == Some(ErrorCode::CannotOpen)
            && is_missing_file(&config.dbname)
        {
            Error::persistence(
                format!(
                    "opening SQLite database {:?}: there is no such file, and with CREATE_TABLE=no \
                     it is not created: check SQLITE_DBNAME, or create the database and its \
                     tables with `annals migrate` (or CREATE_TABLE=yes)",
                    config.dbname
                ),
                e,
            )
        } else {
            open_error(e)
        }
    })?;
    configure(&writer, config).map_err(open_error)?;
    Ok(writer)
}

/// Whether `dbname` names a file that is not there, in a directory that
/// is: SQLite's "cannot open" also covers a directory, a missing
/// directory and permission denied, which its own error says better.
fn is_missing_file(dbname: &str) -> bool {
    if dbname == ":memory:" || dbname.starts_with("file:") {
        return false;
    }
    let path = Path::new(dbname);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    dir.is_dir()
        && matches!(path.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

fn read_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// Switches a file database to WAL and opens its pool of readers.
pub(super) fn open_readers(
    writer: &Connection,
    config: &SqliteConfig,
) -> Result<r2d2::Pool<SqliteConnectionManager>> {
    let mode: String = writer
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| sqlite_error("opening", config, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::persistence(
            format!("opening SQLite database {:?}", config.dbname),
            format!("could not switch to WAL journal mode (got {mode})"),
        ));
    }
    let reader_config = config.clone();
    let manager = SqliteConnectionManager::file(&config.dbname)
        .with_flags(read_flags())
        .with_init(move |c| configure(c, &reader_config));
    Ok(r2d2::Pool::builder()
        .max_size(config.read_pool_size.max(1))
        .min_idle(Some(0))
        // A read-only file connection does not go stale: no query per
        // checkout (measured: ~15% of a W2 read).
        .test_on_check_out(false)
        .connection_timeout(config.lock_timeout.max(Duration::from_secs(1)))
        .build_unchecked(manager))
}

/// How many statements a save may run: a user's writes count as several,
/// whatever they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StatementCount {
    /// At most one statement: a failure undoes itself.
    One,
    /// More than one, or the user's writes: a joining save needs a
    /// savepoint.
    Several,
}

/// A save of events alone, queued for the writer's holder to insert.
pub(super) struct QueuedInsert {
    pub(super) sql: Arc<str>,
    pub(super) events: Vec<StoredEvent>,
    /// Whether the rowids are returned (the events table's notification
    /// ids; a snapshot has none).
    pub(super) rowids: bool,
}

/// Inserts `events` with `sql`, one execution of the cached statement
/// each; returns their rowids when `rowids` is set.
pub(super) fn insert_rows(
    conn: &Connection,
    sql: &str,
    events: &[StoredEvent],
    rowids: bool,
) -> rusqlite::Result<Vec<u64>> {
    let mut insert = conn.prepare_cached(sql)?;
    let mut ids = Vec::with_capacity(if rowids { events.len() } else { 0 });
    for e in events {
        let version = i64::try_from(e.originator_version)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        insert.execute(params![e.originator_id, version, e.topic, e.state])?;
        if rowids {
            // Never negative: SQLite numbers rows from 1 up.
            ids.push(conn.last_insert_rowid().unsigned_abs());
        }
    }
    Ok(ids)
}

/// The writing connection, as the group-commit engine drives it.
pub(super) struct WriteConnection {
    pub(super) conn: Connection,
    config: SqliteConfig,
    /// This save joined a group: it is undone alone if it fails.
    joining: bool,
    /// A savepoint was taken for this save (see [`mark`](Self::mark)).
    savepoint: bool,
}

impl WriteConnection {
    pub(super) fn new(conn: Connection, config: SqliteConfig) -> Self {
        Self {
            conn,
            config,
            joining: false,
            savepoint: false,
        }
    }

    /// Called by a save before its first statement, with whether it may
    /// run more than one: a joining save that may takes a savepoint. One
    /// of a single statement needs none, since SQLite undoes a failed
    /// statement's own changes and keeps the transaction (a constraint's
    /// ABORT): SAVEPOINT and RELEASE were two of a one-event save's four
    /// statements.
    pub(super) fn mark(&mut self, statements: StatementCount) -> rusqlite::Result<()> {
        if self.joining && statements == StatementCount::Several {
            self.run("SAVEPOINT save")?;
            self.savepoint = true;
        }
        Ok(())
    }

    /// Runs one statement of the transaction's own, prepared once and
    /// kept: `execute_batch` parsed each anew (~2 k instructions per
    /// statement, three or four per save).
    fn run(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }
}

impl GroupTransaction for WriteConnection {
    type Error = rusqlite::Error;
    type Queued = QueuedInsert;

    fn begin(&mut self) -> rusqlite::Result<()> {
        self.joining = false;
        self.savepoint = false;
        // IMMEDIATE: the write lock up front, waited for up to the lock
        // timeout, instead of a failed upgrade half-way.
        self.run("BEGIN IMMEDIATE")
    }

    fn savepoint(&mut self) -> rusqlite::Result<()> {
        // Taken by the save's `mark`, and only if it needs one.
        self.joining = true;
        Ok(())
    }

    fn release(&mut self) -> rusqlite::Result<()> {
        // Kept until RELEASE succeeds: if it fails, the rollback that
        // follows must still go back to it.
        if self.savepoint {
            self.run("RELEASE save")?;
            self.savepoint = false;
        }
        self.joining = false;
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> bool {
        self.joining = false;
        let savepoint = std::mem::take(&mut self.savepoint);
        // After an I/O error or a full disk SQLite may have rolled the
        // whole transaction back already: then there is nothing to keep.
        // Without a savepoint the save was one statement, which SQLite
        // undid itself.
        !self.conn.is_autocommit()
            && (!savepoint
                || self
                    .conn
                    .execute_batch("ROLLBACK TO save; RELEASE save")
                    .is_ok())
    }

    fn commit(&mut self) -> Result<(), CommitFailure> {
        self.run("COMMIT").map_err(|e| {
            let _ = self.conn.execute_batch("ROLLBACK");
            CommitFailure::RolledBack(e.to_string())
        })
    }

    fn rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    fn insert_queued(&mut self, queued: &QueuedInsert) -> rusqlite::Result<Vec<u64>> {
        self.mark(if queued.events.len() <= 1 {
            StatementCount::One
        } else {
            StatementCount::Several
        })?;
        insert_rows(&self.conn, &queued.sql, &queued.events, queued.rowids)
    }

    fn ended(&mut self) {
        // A connection left inside a transaction it cannot end is replaced.
        if !self.conn.is_autocommit() {
            match open_writer(&self.config) {
                Ok(conn) => self.conn = conn,
                Err(e) => tracing::error!(error = %e.report(), "reopening the SQLite writer"),
            }
        }
    }
}

/// Raises `signal` whenever another connection (of this process or any
/// other) commits to the database: a dedicated read connection looks at
/// `PRAGMA data_version` every few milliseconds.
pub(super) fn watch(config: &SqliteConfig, signal: &Arc<Signal>) -> Result<Watch> {
    let err = |e| sqlite_error("watching for commits", config, e);
    let open = |config: &SqliteConfig| -> Result<Connection> {
        let conn = Connection::open_with_flags(Path::new(&config.dbname), read_flags())
            .map_err(|e| sqlite_error("watching for commits", config, e))?;
        configure(&conn, config).map_err(|e| sqlite_error("watching for commits", config, e))?;
        Ok(conn)
    };
    let version = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))
    };
    let conn = open(config)?;
    let mut seen = version(&conn).map_err(err)?;
    let mut conn = Some(conn);
    let config = config.clone();
    Watch::spawn(
        &format!("sqlite {}", config.dbname),
        signal,
        move |timeout| {
            if conn.is_none() {
                conn = Some(open(&config)?);
                // Reopened: what happened meanwhile is found by looking.
                return Ok(true);
            }
            let until = Instant::now() + timeout;
            loop {
                match conn.as_ref().map(version) {
                    Some(Ok(v)) if v != seen => {
                        seen = v;
                        return Ok(true);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        conn = None;
                        return Err(sqlite_error("watching for commits", &config, e));
                    }
                    None => return Ok(true),
                }
                if Instant::now() >= until {
                    return Ok(false);
                }
                std::thread::sleep(WATCH_INTERVAL);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_core::env::Env;

    fn writer() -> WriteConnection {
        let config = SqliteConfig::from_env(&Env::from_map("App", [("SQLITE_DBNAME", ":memory:")]))
            .expect("config");
        let conn = open_writer(&config).expect("open");
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)")
            .expect("table");
        WriteConnection::new(conn, config)
    }

    #[test]
    fn a_missing_file_is_not_created_with_create_table_no() {
        let path = std::env::temp_dir().join(format!("annals-missing-{}.db", uuid::Uuid::new_v4()));
        let dbname = path.to_string_lossy().into_owned();
        let config = |create: &str| {
            SqliteConfig::from_env(&Env::from_map(
                "App",
                [("SQLITE_DBNAME", dbname.as_str()), ("CREATE_TABLE", create)],
            ))
            .expect("config")
        };
        let message = open_writer(&config("no"))
            .expect_err("no file")
            .report()
            .to_string();
        assert!(!path.exists(), "the file was created");
        assert!(
            message.contains("annals migrate") && message.contains(&dbname),
            "{message}"
        );
        // In memory there is no file to miss.
        let memory = SqliteConfig::from_env(&Env::from_map(
            "App",
            [("SQLITE_DBNAME", ":memory:"), ("CREATE_TABLE", "no")],
        ))
        .expect("config");
        open_writer(&memory).expect("an in-memory database");
        open_writer(&config("yes")).expect("created");
        assert!(path.exists());
        std::fs::remove_file(&path).ok();
    }

    fn insert(w: &WriteConnection, k: i64) -> rusqlite::Result<()> {
        w.conn.execute("INSERT INTO t VALUES (?1)", [k]).map(drop)
    }

    fn keys(w: &WriteConnection) -> Vec<i64> {
        let mut select = w
            .conn
            .prepare("SELECT k FROM t ORDER BY k")
            .expect("prepare");
        let rows = select.query_map([], |row| row.get(0)).expect("select");
        rows.map(|k| k.expect("row")).collect()
    }

    /// A joining save is undone alone whether it took a savepoint (more
    /// than one statement) or not (one statement, which SQLite undoes).
    #[test]
    fn a_failed_joining_save_is_undone_alone_with_or_without_a_savepoint() {
        let mut w = writer();
        w.begin().expect("begin");
        w.mark(StatementCount::One).expect("opener");
        insert(&w, 1).expect("opener's row");

        // One statement, no savepoint: it fails on the opener's key.
        w.savepoint().expect("joining");
        w.mark(StatementCount::One).expect("mark");
        assert!(!w.savepoint, "one statement takes no savepoint");
        assert!(insert(&w, 1).is_err(), "a taken key");
        assert!(w.rollback_to_savepoint(), "the transaction is kept");

        // Two statements, a savepoint: the first is undone with the second.
        w.savepoint().expect("joining");
        w.mark(StatementCount::Several).expect("mark");
        assert!(w.savepoint, "two statements take a savepoint");
        insert(&w, 2).expect("a new key");
        assert!(insert(&w, 1).is_err(), "a taken key");
        assert!(w.rollback_to_savepoint(), "the transaction is kept");

        // One that succeeds, after them.
        w.savepoint().expect("joining");
        w.mark(StatementCount::One).expect("mark");
        insert(&w, 3).expect("a new key");
        w.release().expect("release");
        w.commit().expect("commit");
        assert_eq!(keys(&w), [1, 3]);
    }
}
