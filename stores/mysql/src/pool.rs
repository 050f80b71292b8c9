//! Connections: how one is made (TLS as `MYSQL_SSLMODE` says), the pool
//! (r2d2), and how to tell a broken one.

use mysql::prelude::Queryable;
use mysql::{DriverError, OptsBuilder, SslOpts};
use r2d2::ManageConnection;

use super::settings::{MysqlConfig, SslMode};
use annals_core::error::{Error, Result, Summary};
use annals_core::settings;

/// A connection and what the store knows of it.
pub(crate) struct Conn {
    pub(crate) conn: mysql::Conn,
    /// The server's `auto_increment_increment` for this session: the step
    /// between the ids of one multi-row insert.
    pub(crate) id_step: u64,
    /// Set when the connection broke or was left in a transaction: the
    /// pool drops it instead of keeping it.
    pub(crate) broken: bool,
}

impl Conn {
    /// Rolls back whatever transaction is open; a connection that cannot is
    /// not kept.
    pub(crate) fn rollback(&mut self) {
        if self.conn.query_drop("ROLLBACK").is_err() {
            self.broken = true;
        }
    }
}

/// How connections are made.
#[derive(Clone)]
pub(crate) struct Transport {
    opts: OptsBuilder,
    /// `prefer`: TLS first, plain when the server has none.
    prefer: bool,
    server: String,
}

impl Transport {
    /// The connection options of `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `MYSQL_SSLROOTCERT` when it names no file.
    pub(crate) fn new(config: &MysqlConfig) -> Result<Self> {
        let mut init = vec![
            // The store's own tables are utf8mb4; so is every string sent.
            "SET NAMES utf8mb4 COLLATE utf8mb4_bin".to_owned(),
        ];
        if let Some(secs) = config.lock_wait_seconds() {
            init.push(format!("SET SESSION innodb_lock_wait_timeout = {secs}"));
        }
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(config.host.clone()))
            .tcp_port(config.port)
            .user(Some(config.user.clone()))
            .pass(config.password.clone())
            .db_name(Some(config.dbname.clone()))
            .tcp_connect_timeout(Some(config.connect_timeout))
            .prefer_socket(false)
            .init(init)
            .connect_attrs(Some(std::collections::HashMap::from([(
                "program_name",
                "annals",
            )])));
        let ssl = match config.ssl_mode {
            SslMode::Disable => None,
            SslMode::Prefer | SslMode::Require => Some(
                SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
            SslMode::VerifyCa => Some(SslOpts::default().with_danger_skip_domain_validation(true)),
            SslMode::VerifyFull => Some(SslOpts::default()),
        };
        let ssl = match (ssl, &config.ssl_root_cert) {
            (Some(ssl), Some(path)) => {
                if !path.is_file() {
                    return Err(Error::config(
                        settings::MYSQL_SSLROOTCERT.name,
                        format!("{} is not a readable file", path.display()),
                    ));
                }
                Some(ssl.with_root_cert_path(Some(path.clone())))
            }
            (ssl, _) => ssl,
        };
        Ok(Self {
            opts: opts.ssl_opts(ssl),
            prefer: config.ssl_mode == SslMode::Prefer,
            server: config.server(),
        })
    }

    /// A connection of its own (not from the pool).
    pub(crate) fn connect(&self) -> std::result::Result<Conn, mysql::Error> {
        let mut conn = match mysql::Conn::new(self.opts.clone()) {
            Err(mysql::Error::DriverError(DriverError::TlsNotSupported)) if self.prefer => {
                mysql::Conn::new(self.opts.clone().ssl_opts(None))?
            }
            other => other?,
        };
        let id_step: Option<u64> = conn.query_first("SELECT @@auto_increment_increment")?;
        Ok(Conn {
            conn,
            id_step: id_step.unwrap_or(1).max(1),
            broken: false,
        })
    }

    /// The server, as errors name it.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }
}

/// Makes and checks the pool's connections.
pub(crate) struct Manager {
    pub(crate) transport: Transport,
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = Described;

    fn connect(&self) -> std::result::Result<Conn, Described> {
        self.transport.connect().map_err(Described)
    }

    fn is_valid(&self, conn: &mut Conn) -> std::result::Result<(), Described> {
        conn.conn.ping().map_err(Described)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
    }
}

/// A client error, with the server's code and state when it has them.
#[derive(Debug)]
pub(crate) struct Described(pub(crate) mysql::Error);

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

/// The text of a client error, its causes included.
pub(crate) fn describe(e: &mysql::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        source = s.source();
    }
    text
}

/// A client error as an error's source: its text, and the error.
pub(crate) fn described(e: mysql::Error) -> Summary {
    Summary::new(describe(&e), e)
}

/// The server's error code, if the server answered with an error.
pub(crate) fn server_code(e: &mysql::Error) -> Option<u16> {
    match e {
        mysql::Error::MySqlError(e) => Some(e.code),
        _ => None,
    }
}

/// Whether `e` means the connection is gone (the server closed it or went
/// away, an I/O or protocol error): then nothing more can be sent on it.
pub(crate) fn is_broken(e: &mysql::Error) -> bool {
    match e {
        mysql::Error::MySqlError(e) => matches!(
            e.code,
            // Shutdown in progress, connection killed, the server gone
            // away or lost, an idle connection closed by the server.
            1053 | 1927 | 2006 | 2013 | 4031
        ),
        mysql::Error::IoError(_)
        | mysql::Error::CodecError(_)
        | mysql::Error::DriverError(_)
        | mysql::Error::TlsError(_) => true,
        mysql::Error::UrlError(_)
        | mysql::Error::FromValueError(_)
        | mysql::Error::FromRowError(_) => false,
    }
}

/// The settings to check when the server refused a connection.
pub(crate) fn setting_at_fault(e: &mysql::Error) -> Option<&'static str> {
    Some(match server_code(e)? {
        // Unknown database; access denied to it.
        1049 | 1044 => "MYSQL_DBNAME",
        // Access denied for the user.
        1045 | 1698 => "MYSQL_USER, MYSQL_PASSWORD",
        _ => return None,
    })
}

/// The pool, and the server it connects to (for errors).
#[derive(Clone)]
pub(crate) struct Connections {
    pub(crate) pool: r2d2::Pool<Manager>,
    pub(crate) server: String,
    pub(crate) pool_size: u32,
}

impl Connections {
    /// A connection of the pool.
    pub(crate) fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| Error::persistence(format!("connecting to {}", self.server), e))
    }

    /// A connection of the pool that answers a ping: after a broken one,
    /// the others may be broken too (a server restart).
    pub(crate) fn checkout_checked(&self) -> Result<r2d2::PooledConnection<Manager>> {
        for _ in 0..self.pool_size {
            let mut conn = self.checkout()?;
            if conn.conn.ping().is_ok() {
                return Ok(conn);
            }
            conn.broken = true;
        }
        self.checkout()
    }
}
