//! Connections: the pool (r2d2), each connection with
//! its prepared statements, and how to tell a broken one.

use postgres::error::SqlState;
use postgres::{Client, Statement};
use r2d2::ManageConnection;

use super::sql::{Sql, Stmt, STATEMENTS};
use super::tls::Transport;
use crate::error::Error;

/// A pooled connection with its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    statements: [Option<Statement>; STATEMENTS],
    /// Left in an unknown state: the pool must drop it.
    pub(super) broken: bool,
}

impl Conn {
    pub(super) fn statement(
        &mut self,
        sql: &Sql,
        which: Stmt,
    ) -> Result<Statement, postgres::Error> {
        let slot = &mut self.statements[which as usize];
        if let Some(statement) = slot {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&sql.statements[which as usize])?;
        *slot = Some(statement.clone());
        Ok(statement)
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
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        Ok(Conn {
            client: self.transport.connect()?,
            statements: Default::default(),
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.client.is_closed()
    }
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
pub(super) enum Fail {
    Db(postgres::Error),
    Other(Error),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
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
    pub(super) fn checkout(&self) -> crate::Result<r2d2::PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| Error::persistence(format!("connecting to {}", self.server), e))
    }

    /// A connection for a retry: one that answers (the pool may hold others
    /// that broke with the first).
    pub(super) fn checkout_checked(&self) -> crate::Result<r2d2::PooledConnection<Manager>> {
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
