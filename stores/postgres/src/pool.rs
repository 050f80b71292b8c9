//! Connections: the pool (r2d2), each connection with
//! its prepared statements, and how to tell a broken one.

use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, Statement};
use r2d2::ManageConnection;

use super::dcb_sql::{DcbStmt, TtSql, DCB_STATEMENTS};
use super::sql::{Sql, Stmt, STATEMENTS};
use super::tls::Transport;
use annals_core::error::{Error, Summary};

/// A pooled connection with its prepared statements.
/// A client that can be dropped on any thread. The blocking client runs
/// a runtime of its own and its drop blocks on it, which on a tokio
/// worker thread panics (and, during unwinding, aborts the process): an
/// application dropped inside async code would take the service down.
/// There it is dropped on a thread of its own.
pub(super) struct Anywhere(Option<Client>);

impl std::ops::Deref for Anywhere {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Some until dropped.
        self.0.as_ref().expect("a client until dropped")
    }
}

impl std::ops::DerefMut for Anywhere {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("a client until dropped")
    }
}

impl Drop for Anywhere {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            let handoff = std::sync::Arc::new(std::sync::Mutex::new(Some(client)));
            let theirs = handoff.clone();
            let spawned = std::thread::Builder::new()
                .name("annals-pg-close".into())
                .spawn(move || drop(theirs.lock().map(|mut c| c.take())));
            if let Err(e) = spawned {
                // Leak it rather than abort: its socket closes with the process.
                tracing::warn!(error = %e, "cannot start a thread to close a PostgreSQL connection");
                if let Ok(mut client) = handoff.lock() {
                    std::mem::forget(client.take());
                }
            }
        }
    }
}

pub(super) struct Conn {
    pub(super) client: Anywhere,
    statements: [Option<Statement>; STATEMENTS],
    /// The DCB recorder's statements (a pool serves one recorder: one
    /// kind or the other is used).
    dcb_statements: [Option<Statement>; DCB_STATEMENTS],
    /// When the DCB recorder last took one of its statements.
    used: Instant,
    /// Left in an unknown state: the pool must drop it.
    pub(super) broken: bool,
}

/// The statement in `slot`, prepared with `text` on `client` the first
/// time (each connection keeps its own).
fn prepared(
    client: &mut Client,
    slot: &mut Option<Statement>,
    text: &str,
) -> Result<Statement, postgres::Error> {
    if let Some(statement) = slot {
        return Ok(statement.clone());
    }
    let statement = client.prepare(text)?;
    *slot = Some(statement.clone());
    Ok(statement)
}

impl Conn {
    pub(super) fn statement(
        &mut self,
        sql: &Sql,
        which: Stmt,
    ) -> Result<Statement, postgres::Error> {
        let slot = &mut self.statements[which as usize];
        prepared(&mut self.client, slot, &sql.statements[which as usize])
    }

    /// The DCB statement `which`, prepared on this connection the first
    /// time.
    pub(super) fn dcb_statement(
        &mut self,
        sql: &TtSql,
        which: DcbStmt,
    ) -> Result<Statement, postgres::Error> {
        self.used = Instant::now();
        let slot = &mut self.dcb_statements[which as usize];
        prepared(&mut self.client, slot, sql.statement(which))
    }

    /// How long since the DCB recorder last used it (since it connected,
    /// if never).
    pub(super) fn idle_for(&self) -> Duration {
        self.used.elapsed()
    }

    pub(super) fn rollback(&mut self) {
        if self.client.is_closed() || self.client.batch_execute("ROLLBACK").is_err() {
            self.broken = true;
        }
    }
}

/// Opens connections for the pool (plain or TLS, as the settings say) and gives each
/// its statement cache.
pub(super) struct Manager {
    pub(super) transport: Transport,
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = Described;

    fn connect(&self) -> Result<Conn, Described> {
        Ok(Conn {
            client: Anywhere(Some(self.transport.connect().map_err(Described)?)),
            statements: Default::default(),
            dcb_statements: Default::default(),
            used: Instant::now(),
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), Described> {
        conn.client.simple_query("").map(drop).map_err(Described)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

/// What `e` says, in one line: for an error of the server its severity,
/// SQLSTATE, message, detail and hint (`ERROR 42501: permission denied for
/// schema public`), else the error and its sources (`error connecting to
/// server: Connection refused (os error 111)`). The `postgres` crate's own
/// `Display` shows only the kind (`db error`).
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" (detail: {detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (hint: {hint})"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// A `postgres::Error` that displays as [`describe`] says: the pool's
/// errors show their connections' errors by their `Display`.
#[derive(Debug)]
pub(super) struct Described(pub(super) postgres::Error);

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

impl std::error::Error for Described {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The source of annals' errors about PostgreSQL: `e` said as
/// [`describe`] says, with `e` as its source, so a caller walking
/// `source()` reaches it (its SQLSTATE, through `as_db_error`), while
/// [`Error::report`](annals_core::Error::report) says its causes once.
pub(super) fn described(e: postgres::Error) -> Summary {
    Summary::new(describe(&e), e)
}

/// Which setting to look at when a connection is refused with `e`, if one
/// is at fault.
pub(super) fn setting_at_fault(e: &postgres::Error) -> Option<&'static str> {
    let code = e.code()?;
    Some(if *code == SqlState::INVALID_CATALOG_NAME {
        "POSTGRES_DBNAME"
    } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        || *code == SqlState::INVALID_PASSWORD
    {
        "POSTGRES_USER, POSTGRES_PASSWORD"
    } else if *code == SqlState::INVALID_PARAMETER_VALUE {
        "POSTGRES_LOCK_TIMEOUT, POSTGRES_STATEMENT_TIMEOUT"
    } else {
        return None;
    })
}

/// Whether `e` means the connection is gone (so another may work).
pub(super) fn is_broken(client: &Client, e: &postgres::Error) -> bool {
    let closing_code = e.code().is_some_and(|code| {
        code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
    });
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    client.is_closed() || e.is_closed() || closing_code || io
}

/// Why a read failed.
pub(super) enum StepError {
    Db(postgres::Error),
    Other(Error),
}

impl From<postgres::Error> for StepError {
    fn from(e: postgres::Error) -> Self {
        StepError::Db(e)
    }
}

/// The pool, and how to take a connection from it.
#[derive(Clone)]
pub(super) struct Connections {
    pub(super) pool: r2d2::Pool<Manager>,
    /// The server, as errors name it.
    pub(super) server: String,
    pub(super) pool_size: u32,
}

impl Connections {
    pub(super) fn checkout(&self) -> annals_core::Result<r2d2::PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| Error::persistence(format!("connecting to {}", self.server), e))
    }

    /// A connection for a retry: one that answers (the pool may hold others
    /// that broke with the first).
    pub(super) fn checkout_checked(&self) -> annals_core::Result<r2d2::PooledConnection<Manager>> {
        for _ in 0..self.pool_size {
            let mut conn = self.checkout()?;
            if conn.client.check_connection().is_ok() {
                return Ok(conn);
            }
            conn.broken = true;
        }
        self.checkout()
    }
}
