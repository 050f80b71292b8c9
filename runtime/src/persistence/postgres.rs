//! The PostgreSQL recorder.
//!
//! The tables are the Python eventsourcing library's (9.x), per application
//! (`{name}` is the application's name, lower-cased):
//!
//! - `{name}_events`: `originator_id` (`uuid`, or `text` with
//!   [`OriginatorIdType::Text`]), `originator_version bigint`, `topic text`,
//!   `state bytea`, `notification_id bigserial`, primary key
//!   `(originator_id, originator_version)` and a unique index on
//!   `notification_id`;
//! - `{name}_tracking`: `application_name text`, `notification_id bigint`,
//!   primary key on both;
//! - `{name}_snapshots`: the events' columns without `notification_id`.
//!
//! Writers take `LOCK TABLE {name}_events IN EXCLUSIVE MODE` for the length
//! of their transaction and number their events from
//! `max(notification_id) + 1` on, so notification ids are given and committed in one order, with
//! no gaps: a reader that has seen id N never later finds a newly committed
//! id below N. Readers take no lock that writers wait on.
//!
//! Every committed insert sends `NOTIFY {name}_events`; a follower can wait
//! for it with [`PostgresRecorder::listen`].
//!
//! # Broken connections
//!
//! Reads are retried once, on another connection, when the connection broke
//! (closed by the server, I/O error). Writes are retried once only when the
//! connection broke before `COMMIT` was sent: the transaction then cannot
//! have committed. When it breaks after `COMMIT` was sent, whether the
//! events were stored is unknown, and the error says so rather than risk
//! storing them twice or reporting a conflict for the caller's own events.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use r2d2::{ManageConnection, Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;
use uuid::Uuid;

use super::{
    to_i64, AggregateRecorder, ApplicationRecorder, EventQuery, Notification, NotificationQuery,
    ProcessRecorder, StoredEvent, Tracking,
};
use crate::env::Env;
use crate::error::{Error, Result};

/// PostgreSQL's limit on identifiers (table, index and channel names), in
/// bytes.
const MAX_IDENTIFIER: usize = 63;

/// The key of the advisory lock that serializes `create_tables` across
/// processes (concurrent `CREATE TABLE IF NOT EXISTS` can fail otherwise).
const DDL_LOCK_KEY: i64 = 0x616e_6e61_6c73; // "annals"

/// The type of the `originator_id` columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OriginatorIdType {
    /// `uuid`, as the Python library: ids must be UUIDs (any form
    /// `Uuid::parse_str` reads); they are read back as 32 lower-case hex
    /// digits, the form annals stores.
    #[default]
    Uuid,
    /// `text`: any string id (for aggregates with `id = String`, such as
    /// `"dog-fido"`).
    Text,
}

impl OriginatorIdType {
    fn sql(self) -> &'static str {
        match self {
            OriginatorIdType::Uuid => "uuid",
            OriginatorIdType::Text => "text",
        }
    }
}

impl fmt::Display for OriginatorIdType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

impl FromStr for OriginatorIdType {
    type Err = String;

    /// `uuid` or `text`, in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uuid" => Ok(OriginatorIdType::Uuid),
            "text" => Ok(OriginatorIdType::Text),
            _ => Err("expected `uuid` or `text`".to_owned()),
        }
    }
}

/// Where the PostgreSQL server is and how to use it.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// The database's name (`POSTGRES_DBNAME`, required).
    pub dbname: String,
    /// The server's host name or address, or a Unix socket directory
    /// (`POSTGRES_HOST`, default `127.0.0.1`).
    pub host: String,
    /// The server's port (`POSTGRES_PORT`, default 5432).
    pub port: u16,
    /// The user (`POSTGRES_USER`, default `postgres`).
    pub user: String,
    /// The user's password (`POSTGRES_PASSWORD`); never shown by `Debug`
    /// or in errors.
    pub password: Option<String>,
    /// How long to wait for a connection, and for a free connection of the
    /// pool (`POSTGRES_CONNECT_TIMEOUT`, seconds, default 5).
    pub connect_timeout: Duration,
    /// How long a statement waits for a lock, writers for the events
    /// table's lock in particular (`POSTGRES_LOCK_TIMEOUT`, seconds; none by
    /// default).
    pub lock_timeout: Option<Duration>,
    /// How long a statement may run (`POSTGRES_STATEMENT_TIMEOUT`, seconds;
    /// none by default).
    pub statement_timeout: Option<Duration>,
    /// How many connections the pool keeps at most (`POSTGRES_POOL_SIZE`,
    /// default 5).
    pub pool_size: u32,
    /// The schema of the tables, created if missing (`POSTGRES_SCHEMA`;
    /// by default the first schema of the `search_path`, usually `public`).
    pub schema: Option<String>,
    /// The type of the `originator_id` columns
    /// (`POSTGRES_ORIGINATOR_ID_TYPE`, `uuid` or `text`, default `uuid`).
    pub originator_id_type: OriginatorIdType,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("dbname", &self.dbname)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connect_timeout", &self.connect_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .field("originator_id_type", &self.originator_id_type)
            .finish()
    }
}

impl PostgresConfig {
    /// Database `dbname` on `127.0.0.1:5432` as user `postgres`, no
    /// password, 5 s connect timeout, no lock or statement timeout, 5
    /// connections, the default schema, `uuid` ids.
    pub fn new(dbname: impl Into<String>) -> Self {
        Self {
            dbname: dbname.into(),
            host: "127.0.0.1".to_owned(),
            port: 5432,
            user: "postgres".to_owned(),
            password: None,
            connect_timeout: Duration::from_secs(5),
            lock_timeout: None,
            statement_timeout: None,
            pool_size: 5,
            schema: None,
            originator_id_type: OriginatorIdType::Uuid,
        }
    }

    /// Reads the Python library's variables: `POSTGRES_DBNAME` (required),
    /// `POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_USER`,
    /// `POSTGRES_PASSWORD`, `POSTGRES_CONNECT_TIMEOUT`,
    /// `POSTGRES_LOCK_TIMEOUT` and `POSTGRES_STATEMENT_TIMEOUT` (seconds,
    /// integer or decimal; 0 means none for the lock and statement
    /// timeouts), `POSTGRES_POOL_SIZE`, `POSTGRES_SCHEMA` and
    /// `POSTGRES_ORIGINATOR_ID_TYPE` (`uuid` or `text`). Names prefixed
    /// with the application's name win. A missing database name or a bad
    /// value is an error naming the variable.
    pub fn from_env(env: &Env) -> Result<Self> {
        let Some((_, dbname)) = env.get("POSTGRES_DBNAME") else {
            return Err(Error::config(
                "POSTGRES_DBNAME",
                "not set: it names the PostgreSQL database to use",
            ));
        };
        let mut config = Self::new(dbname);
        if let Some((_, host)) = env.get("POSTGRES_HOST") {
            config.host = host;
        }
        if let Some(port) = env.parse("POSTGRES_PORT")? {
            config.port = port;
        }
        if let Some((_, user)) = env.get("POSTGRES_USER") {
            config.user = user;
        }
        config.password = env.get("POSTGRES_PASSWORD").map(|(_, p)| p);
        if let Some(timeout) = env.seconds("POSTGRES_CONNECT_TIMEOUT")? {
            if timeout.is_zero() {
                return Err(Error::config(
                    var_name(env, "POSTGRES_CONNECT_TIMEOUT"),
                    "must be more than 0 seconds",
                ));
            }
            config.connect_timeout = timeout;
        }
        config.lock_timeout = env
            .seconds("POSTGRES_LOCK_TIMEOUT")?
            .filter(|d| !d.is_zero());
        config.statement_timeout = env
            .seconds("POSTGRES_STATEMENT_TIMEOUT")?
            .filter(|d| !d.is_zero());
        if let Some(size) = env.parse::<u32>("POSTGRES_POOL_SIZE")? {
            if size == 0 {
                return Err(Error::config(
                    var_name(env, "POSTGRES_POOL_SIZE"),
                    "must be at least 1",
                ));
            }
            config.pool_size = size;
        }
        config.schema = env.get("POSTGRES_SCHEMA").map(|(_, s)| s);
        if let Some(id_type) = env.parse("POSTGRES_ORIGINATOR_ID_TYPE")? {
            config.originator_id_type = id_type;
        }
        Ok(config)
    }

    fn connection_config(&self) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .dbname(&self.dbname)
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .connect_timeout(self.connect_timeout)
            .application_name("annals");
        if let Some(password) = &self.password {
            config.password(password);
        }
        let mut options = Vec::new();
        if let Some(timeout) = self.lock_timeout {
            options.push(format!("-c lock_timeout={}", millis(timeout)));
        }
        if let Some(timeout) = self.statement_timeout {
            options.push(format!("-c statement_timeout={}", millis(timeout)));
        }
        if !options.is_empty() {
            config.options(&options.join(" "));
        }
        config
    }

    fn server(&self) -> String {
        format!(
            "PostgreSQL database {:?} at {}:{} as {:?}",
            self.dbname, self.host, self.port, self.user
        )
    }
}

/// The name `var` was found under (prefixed or not), for errors.
fn var_name(env: &Env, var: &str) -> String {
    env.get(var).map_or_else(|| var.to_owned(), |(key, _)| key)
}

/// Whole milliseconds, at least 1 (0 would mean "no timeout" to PostgreSQL).
fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

/// Checks an application name and returns its table prefix.
fn table_prefix(app_name: &str) -> Result<String> {
    let name = app_name.to_ascii_lowercase();
    let longest = MAX_IDENTIFIER - "_snapshots".len();
    let valid_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let starts_well = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !valid_chars || !starts_well || name.len() > longest {
        return Err(Error::config(
            "application name",
            format!(
                "{app_name:?} cannot name PostgreSQL tables: use 1 to {longest} ASCII letters, \
                 digits and underscores, not starting with a digit"
            ),
        ));
    }
    Ok(name)
}

/// Checks a schema name (kept as given: it is quoted).
fn check_schema(schema: &str) -> Result<()> {
    let valid = !schema.is_empty()
        && schema.len() <= MAX_IDENTIFIER
        && schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if valid {
        Ok(())
    } else {
        Err(Error::config(
            "POSTGRES_SCHEMA",
            format!(
                "{schema:?} is not a schema name annals accepts: use 1 to {MAX_IDENTIFIER} \
                 ASCII letters, digits and underscores, not starting with a digit"
            ),
        ))
    }
}

/// The statements a connection prepares once and keeps.
#[derive(Debug, Clone, Copy)]
enum Stmt {
    InsertEvents,
    InsertTracking,
    SelectEventsAsc,
    SelectEventsDesc,
    SelectNotifications,
    SelectNotificationsTopics,
    SelectNotificationsStop,
    SelectNotificationsTopicsStop,
    MaxNotificationId,
    MaxTrackingId,
    HasTrackingId,
    InsertSnapshots,
    SelectSnapshotsAsc,
    SelectSnapshotsDesc,
}

const STATEMENTS: usize = 14;

/// The SQL of one recorder, built once from validated names.
#[derive(Debug)]
struct Sql {
    /// The events table, qualified and quoted, as shown in errors.
    events: String,
    /// `{name}_events`, the NOTIFY channel.
    channel: String,
    begin_and_lock: String,
    notify_and_commit: String,
    create: String,
    statements: [String; STATEMENTS],
}

impl Sql {
    fn new(prefix: &str, schema: Option<&str>, id_type: OriginatorIdType) -> Self {
        let qualify = |table: &str| match schema {
            Some(schema) => format!("\"{schema}\".\"{table}\""),
            None => format!("\"{table}\""),
        };
        let channel = format!("{prefix}_events");
        let events = qualify(&channel);
        let tracking = qualify(&format!("{prefix}_tracking"));
        let snapshots = qualify(&format!("{prefix}_snapshots"));
        // As Python names it; PostgreSQL would truncate a longer name to
        // these same 63 bytes (the name is ASCII).
        let mut index = format!("{prefix}_events_notification_id_idx");
        index.truncate(MAX_IDENTIFIER);
        let id = id_type.sql();
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {events} (\
                 originator_id {id} NOT NULL, \
                 originator_version bigint NOT NULL, \
                 topic text, \
                 state bytea, \
                 notification_id bigserial, \
                 PRIMARY KEY (originator_id, originator_version)); \
             CREATE UNIQUE INDEX IF NOT EXISTS \"{index}\" ON {events} (notification_id ASC); \
             CREATE TABLE IF NOT EXISTS {tracking} (\
                 application_name text, \
                 notification_id bigint, \
                 PRIMARY KEY (application_name, notification_id)); \
             CREATE TABLE IF NOT EXISTS {snapshots} (\
                 originator_id {id} NOT NULL, \
                 originator_version bigint NOT NULL, \
                 topic text, \
                 state bytea, \
                 PRIMARY KEY (originator_id, originator_version))"
        );
        let select_from = |table: &str, order: &str| {
            format!(
                "SELECT originator_id, originator_version, topic, state FROM {table} \
                 WHERE originator_id = $1 AND originator_version > $2 AND originator_version <= $3 \
                 ORDER BY originator_version {order} LIMIT $4"
            )
        };
        let select_events = |order: &str| select_from(&events, order);
        // Without a stop, no upper bound at all: with one (even i64::MAX),
        // the planner's first, custom plans chose a bitmap scan of the
        // whole table and a sort (measured: 5.4 ms instead of 0.2 ms for a
        // page of 1,000 from 20,000).
        let select_notifications = |filter: &str| {
            format!(
                "SELECT notification_id, originator_id, originator_version, topic, state \
                 FROM {events} WHERE notification_id >= $1{filter} \
                 ORDER BY notification_id LIMIT $2"
            )
        };
        let statements = [
            // Under the table lock, so max + n is free and in commit order.
            format!(
                "INSERT INTO {events} \
                     (originator_id, originator_version, topic, state, notification_id) \
                 SELECT u.o, u.v, u.t, u.s, m.max + u.n \
                 FROM unnest($1::{id}[], $2::bigint[], $3::text[], $4::bytea[]) \
                     WITH ORDINALITY AS u(o, v, t, s, n) \
                 CROSS JOIN (SELECT COALESCE(MAX(notification_id), 0) AS max FROM {events}) AS m \
                 RETURNING notification_id"
            ),
            format!("INSERT INTO {tracking} (application_name, notification_id) VALUES ($1, $2)"),
            select_events("ASC"),
            select_events("DESC"),
            select_notifications(""),
            select_notifications(" AND topic = ANY($3)"),
            select_notifications(" AND notification_id <= $3"),
            select_notifications(" AND notification_id <= $3 AND topic = ANY($4)"),
            format!("SELECT MAX(notification_id) FROM {events}"),
            format!("SELECT MAX(notification_id) FROM {tracking} WHERE application_name = $1"),
            format!(
                "SELECT EXISTS (SELECT 1 FROM {tracking} \
                 WHERE application_name = $1 AND notification_id = $2)"
            ),
            format!(
                "INSERT INTO {snapshots} (originator_id, originator_version, topic, state) \
                 SELECT * FROM unnest($1::{id}[], $2::bigint[], $3::text[], $4::bytea[])"
            ),
            select_from(&snapshots, "ASC"),
            select_from(&snapshots, "DESC"),
        ];
        Self {
            begin_and_lock: format!("BEGIN; LOCK TABLE {events} IN EXCLUSIVE MODE"),
            notify_and_commit: format!("NOTIFY \"{channel}\"; COMMIT"),
            events,
            channel,
            create,
            statements,
        }
    }
}

/// A pooled connection with its prepared statements.
struct Conn {
    client: Client,
    statements: [Option<Statement>; STATEMENTS],
    /// Left in an unknown state: the pool must drop it.
    broken: bool,
}

impl Conn {
    fn statement(&mut self, sql: &Sql, which: Stmt) -> Result<Statement, postgres::Error> {
        let slot = &mut self.statements[which as usize];
        if let Some(statement) = slot {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&sql.statements[which as usize])?;
        *slot = Some(statement.clone());
        Ok(statement)
    }

    fn rollback(&mut self) {
        if self.client.is_closed() || self.client.batch_execute("ROLLBACK").is_err() {
            self.broken = true;
        }
    }
}

/// Opens connections for the pool (through `r2d2_postgres`) and gives each
/// its statement cache.
struct Manager {
    inner: PostgresConnectionManager<NoTls>,
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        Ok(Conn {
            client: self.inner.connect()?,
            statements: Default::default(),
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        self.inner.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

/// Whether `e` means the connection is gone (so another may work).
fn is_broken(client: &Client, e: &postgres::Error) -> bool {
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
enum Fail {
    Db(postgres::Error),
    Other(Error),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

/// The `originator_id` column of an insert.
enum Ids<'a> {
    Uuid(Vec<Uuid>),
    Text(Vec<&'a str>),
}

/// The four columns of a batch of rows, as arrays for `unnest`.
struct Columns<'a> {
    ids: Ids<'a>,
    versions: Vec<i64>,
    topics: Vec<&'a str>,
    states: Vec<&'a [u8]>,
}

impl Columns<'_> {
    fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        let ids: &(dyn ToSql + Sync) = match &self.ids {
            Ids::Uuid(ids) => ids,
            Ids::Text(ids) => ids,
        };
        [ids, &self.versions, &self.topics, &self.states]
    }
}

/// One originator id as a query parameter.
enum IdParam<'a> {
    Uuid(Uuid),
    Text(&'a str),
}

impl IdParam<'_> {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            IdParam::Uuid(id) => id,
            IdParam::Text(id) => id,
        }
    }
}

/// Stores events in PostgreSQL, in the Python eventsourcing library's
/// tables, through a pool of connections. `Send + Sync`: share it behind an
/// `Arc`.
#[derive(Clone)]
pub struct PostgresRecorder {
    pool: Pool<Manager>,
    config: PostgresConfig,
    sql: Arc<Sql>,
    group: Arc<Group>,
}

impl fmt::Debug for PostgresRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresRecorder")
            .field("config", &self.config)
            .field("events", &self.sql.events)
            .finish_non_exhaustive()
    }
}

impl PostgresRecorder {
    /// Connects to the server `config` names and creates the tables of
    /// application `app_name` if they are missing. The application's name,
    /// lower-cased, prefixes the tables' names: it must be ASCII letters,
    /// digits and underscores, not start with a digit, and be at most 53
    /// bytes long.
    pub fn open(config: &PostgresConfig, app_name: &str) -> Result<Self> {
        let prefix = table_prefix(app_name)?;
        if let Some(schema) = &config.schema {
            check_schema(schema)?;
        }
        if config.pool_size == 0 {
            return Err(Error::config("POSTGRES_POOL_SIZE", "must be at least 1"));
        }
        if config.connect_timeout.is_zero() {
            return Err(Error::config(
                "POSTGRES_CONNECT_TIMEOUT",
                "must be more than 0 seconds",
            ));
        }
        let manager = Manager {
            inner: PostgresConnectionManager::new(config.connection_config(), NoTls),
        };
        let pool = Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(0))
            .connection_timeout(config.connect_timeout)
            // Broken connections are found when used, and handled there
            // (see the module's documentation): no round trip per checkout.
            .test_on_check_out(false)
            .build(manager)
            .map_err(|e| Error::persistence(format!("connecting to {}", config.server()), e))?;
        let recorder = Self {
            pool,
            sql: Arc::new(Sql::new(
                &prefix,
                config.schema.as_deref(),
                config.originator_id_type,
            )),
            config: config.clone(),
            group: Arc::default(),
        };
        recorder.create_tables()?;
        Ok(recorder)
    }

    /// Creates the schema (if one is configured), the events, tracking and
    /// snapshots tables and the notification id index, where missing. Safe
    /// to call again, and from several processes at once. An existing
    /// events table whose `originator_id` column has not the configured
    /// type is an error naming `POSTGRES_ORIGINATOR_ID_TYPE`.
    pub fn create_tables(&self) -> Result<()> {
        let context = format!("creating the tables of {}", self.sql.events);
        let mut conn = self.checkout()?;
        let result = (|| -> Result<Option<String>, postgres::Error> {
            let mut tx = conn.client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK_KEY])?;
            if let Some(schema) = &self.config.schema {
                let exists: bool = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                        &[schema],
                    )?
                    .try_get(0)?;
                if !exists {
                    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))?;
                }
            }
            tx.batch_execute(&self.sql.create)?;
            let column_type: Option<String> = tx
                .query_opt(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                     WHERE attrelid = $1::text::regclass AND attname = 'originator_id'",
                    &[&self.sql.events],
                )?
                .map(|row| row.try_get(0))
                .transpose()?;
            tx.commit()?;
            Ok(column_type)
        })();
        let column_type = result.map_err(|e| {
            if is_broken(&conn.client, &e) {
                conn.broken = true;
            }
            self.db_error(&context, e)
        })?;
        let expected = self.config.originator_id_type.sql();
        match column_type {
            Some(found) if found != expected => Err(Error::config(
                "POSTGRES_ORIGINATOR_ID_TYPE",
                format!(
                    "the table {} has a {found} originator_id column, but the setting says \
                     {expected}: set POSTGRES_ORIGINATOR_ID_TYPE={found} to use it",
                    self.sql.events
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A dedicated connection that has run `LISTEN` on this application's
    /// channel: [`Listener::wait`] returns when events were committed.
    pub fn listen(&self) -> Result<Listener> {
        let context = format!("listening to {}", self.sql.channel);
        let mut client = self
            .config
            .connection_config()
            .connect(NoTls)
            .map_err(|e| {
                Error::persistence(format!("connecting to {}", self.config.server()), e)
            })?;
        client
            .batch_execute(&format!("LISTEN \"{}\"", self.sql.channel))
            .map_err(|e| self.db_error(&context, e))?;
        Ok(Listener {
            client,
            channel: self.sql.channel.clone(),
        })
    }

    fn checkout(&self) -> Result<PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| Error::persistence(format!("connecting to {}", self.config.server()), e))
    }

    /// A connection for a retry: one that answers (the pool may hold others
    /// that broke with the first).
    fn checkout_checked(&self) -> Result<PooledConnection<Manager>> {
        for _ in 0..self.config.pool_size {
            let mut conn = self.checkout()?;
            if conn.client.check_connection().is_ok() {
                return Ok(conn);
            }
            conn.broken = true;
        }
        self.checkout()
    }

    fn db_error(&self, context: &str, e: postgres::Error) -> Error {
        let table = &self.sql.events;
        if let Some(db) = e.as_db_error() {
            if *db.code() == SqlState::UNIQUE_VIOLATION {
                return Error::Conflict(format!(
                    "{}{}",
                    db.message(),
                    db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
                ));
            }
            if *db.code() == SqlState::LOCK_NOT_AVAILABLE {
                return Error::persistence(
                    format!(
                        "{context} ({table}): gave up waiting for a lock (POSTGRES_LOCK_TIMEOUT)"
                    ),
                    e,
                );
            }
            if *db.code() == SqlState::QUERY_CANCELED {
                return Error::persistence(
                    format!(
                        "{context} ({table}): cancelled, possibly by POSTGRES_STATEMENT_TIMEOUT"
                    ),
                    e,
                );
            }
        }
        Error::persistence(format!("{context} ({table})"), e)
    }

    /// Runs `f` on a connection; once more on another if the connection
    /// broke.
    fn read<T>(&self, context: &str, f: impl Fn(&mut Conn) -> Result<T, Fail>) -> Result<T> {
        let mut conn = self.checkout()?;
        let e = match f(&mut conn) {
            Ok(value) => return Ok(value),
            Err(Fail::Other(e)) => return Err(e),
            Err(Fail::Db(e)) => e,
        };
        if !is_broken(&conn.client, &e) {
            return Err(self.db_error(context, e));
        }
        conn.broken = true;
        drop(conn);
        let mut conn = self.checkout_checked()?;
        f(&mut conn).map_err(|fail| match fail {
            Fail::Other(e) => e,
            Fail::Db(e) => {
                if is_broken(&conn.client, &e) {
                    conn.broken = true;
                }
                self.db_error(context, e)
            }
        })
    }

    fn id_param<'a>(&self, originator_id: &'a str) -> Result<IdParam<'a>> {
        Ok(match self.config.originator_id_type {
            OriginatorIdType::Uuid => IdParam::Uuid(self.parse_uuid(originator_id)?),
            OriginatorIdType::Text => IdParam::Text(originator_id),
        })
    }

    fn parse_uuid(&self, originator_id: &str) -> Result<Uuid> {
        Uuid::parse_str(originator_id).map_err(|_| {
            Error::config(
                "POSTGRES_ORIGINATOR_ID_TYPE",
                format!(
                    "originator id {originator_id:?} is not a UUID, but the originator_id \
                     column of {} is uuid: set POSTGRES_ORIGINATOR_ID_TYPE=text to store string \
                     ids (in new tables)",
                    self.sql.events
                ),
            )
        })
    }

    fn read_id(&self, row: &Row, index: usize) -> Result<String, postgres::Error> {
        Ok(match self.config.originator_id_type {
            OriginatorIdType::Uuid => row.try_get::<_, Uuid>(index)?.simple().to_string(),
            OriginatorIdType::Text => row.try_get(index)?,
        })
    }

    fn read_event(&self, row: &Row, first: usize) -> Result<StoredEvent, Fail> {
        Ok(StoredEvent {
            originator_id: self.read_id(row, first)?,
            originator_version: to_u64("originator_version", row.try_get(first + 1)?)?,
            topic: row.try_get(first + 2)?,
            state: row.try_get(first + 3)?,
        })
    }

    /// The columns of `events` as query parameters.
    fn columns<'a>(&self, events: &'a [StoredEvent]) -> Result<Columns<'a>> {
        let ids = match self.config.originator_id_type {
            OriginatorIdType::Uuid => Ids::Uuid(
                events
                    .iter()
                    .map(|e| self.parse_uuid(&e.originator_id))
                    .collect::<Result<_>>()?,
            ),
            OriginatorIdType::Text => {
                Ids::Text(events.iter().map(|e| e.originator_id.as_str()).collect())
            }
        };
        Ok(Columns {
            ids,
            versions: events
                .iter()
                .map(|e| to_i64("originator_version", e.originator_version))
                .collect::<Result<_>>()?,
            topics: events.iter().map(|e| e.topic.as_str()).collect(),
            states: events.iter().map(|e| e.state.as_slice()).collect(),
        })
    }

    /// Inserts `events` (and `tracking`) atomically, under the events
    /// table's lock: in a group transaction shared with the saves of other
    /// threads that arrive meanwhile (group commit), in a savepoint of its
    /// own, so a conflict undoes this save alone. Returns once the group
    /// has committed.
    fn write(&self, events: &[StoredEvent], tracking: Option<&Tracking>) -> Result<Vec<u64>> {
        if events.is_empty() && tracking.is_none() {
            return Ok(Vec::new());
        }
        let rows = self.columns(events)?;
        let columns = rows.params();
        let tracking = tracking
            .map(|t| {
                to_i64("tracked notification id", t.notification_id)
                    .map(|id| (t.application_name.as_str(), id))
            })
            .transpose()?;
        let context = format!("inserting {} events", events.len());
        let mut retried = false;
        loop {
            let mut writer = self.group.writer();
            let epoch = match self.open_group(&mut writer, retried) {
                Ok(epoch) => epoch,
                Err(GroupError::Retry) => {
                    retried = true;
                    continue;
                }
                Err(GroupError::Fail(e)) => return Err(e),
            };
            // The save that opened the group is alone in it (it holds the
            // writer until done): its failure rolls back the whole
            // transaction, so it needs no savepoint. A joining save takes one
            // (releasing the previous joiner's in the same round trip).
            let opener = self.group.members(epoch) == 1 && !writer.savepoint && !writer.stored;
            let savepoint = match (opener, writer.savepoint) {
                (true, _) => None,
                (false, true) => Some("RELEASE SAVEPOINT save; SAVEPOINT save"),
                (false, false) => Some("SAVEPOINT save"),
            };
            writer.savepoint |= savepoint.is_some();
            let Some(conn) = writer.conn.as_mut() else {
                return Err(Error::persistence(context, "no connection for the group"));
            };
            let saved = self.save_in_group(conn, savepoint, &columns, !events.is_empty(), tracking);
            match saved {
                Ok(mut ids) => {
                    writer.stored |= !ids.is_empty();
                    if self.group.waiting() == 0 {
                        self.commit_group(&mut writer);
                    }
                    drop(writer);
                    self.group.wait_for(epoch, &context, &self.sql.events)?;
                    // Numbered max + 1 ..= max + n in the events' order.
                    ids.sort_unstable();
                    return Ok(ids);
                }
                Err(e) => {
                    let broken = is_broken(&conn.client, &e);
                    let undone = !broken
                        && savepoint.is_some()
                        && conn
                            .client
                            .batch_execute("ROLLBACK TO SAVEPOINT save")
                            .is_ok();
                    let alone = self.group.members(epoch) == 1;
                    if !undone {
                        // The whole group fails: nothing of it is stored.
                        conn.rollback();
                        conn.broken |= broken;
                        if broken {
                            writer.conn = None;
                        }
                        self.group.end(
                            &mut writer,
                            epoch,
                            Some(GroupFailure::Failed(e.to_string())),
                        );
                    } else if self.group.waiting() == 0 {
                        self.commit_group(&mut writer);
                    }
                    drop(writer);
                    self.group.leave(epoch);
                    if broken && alone && !retried {
                        // Nothing was committed: the same save again, on a
                        // connection that works.
                        retried = true;
                        continue;
                    }
                    return Err(self.db_error(&context, e));
                }
            }
        }
    }

    /// The open group transaction's epoch, after beginning one (with the
    /// table lock) if none is open.
    fn open_group(&self, writer: &mut GroupWriter, retried: bool) -> Result<u64, GroupError> {
        if let Some(epoch) = writer.open {
            self.group.join(epoch);
            return Ok(epoch);
        }
        if writer.conn.is_none() {
            let conn = if retried {
                self.checkout_checked()
            } else {
                self.checkout()
            };
            writer.conn = Some(conn.map_err(GroupError::Fail)?);
        }
        let Some(conn) = writer.conn.as_mut() else {
            return Err(GroupError::Fail(Error::persistence(
                "beginning a write",
                "no connection",
            )));
        };
        if let Err(e) = conn.client.batch_execute(&self.sql.begin_and_lock) {
            let broken = is_broken(&conn.client, &e);
            conn.rollback();
            if broken {
                conn.broken = true;
                writer.conn = None;
                if !retried {
                    return Err(GroupError::Retry);
                }
            }
            return Err(GroupError::Fail(self.db_error("beginning a write", e)));
        }
        let epoch = self.group.begin();
        writer.open = Some(epoch);
        self.group.join(epoch);
        Ok(epoch)
    }

    /// One save inside the open group transaction, in a savepoint.
    fn save_in_group(
        &self,
        conn: &mut Conn,
        savepoint: Option<&str>,
        columns: &[&(dyn ToSql + Sync); 4],
        has_events: bool,
        tracking: Option<(&str, i64)>,
    ) -> Result<Vec<u64>, postgres::Error> {
        if let Some(savepoint) = savepoint {
            conn.client.batch_execute(savepoint)?;
        }
        if let Some((name, id)) = tracking {
            let statement = conn.statement(&self.sql, Stmt::InsertTracking)?;
            conn.client.execute(&statement, &[&name, &id])?;
        }
        let mut ids = Vec::new();
        if has_events {
            let statement = conn.statement(&self.sql, Stmt::InsertEvents)?;
            for row in conn.client.query(&statement, columns)? {
                // Never negative: numbered from max + 1 >= 1.
                let id: i64 = row.try_get(0)?;
                ids.push(id.unsigned_abs());
            }
        }
        Ok(ids)
    }

    /// Notifies followers and commits the open group transaction; tells
    /// its saves how it went.
    fn commit_group(&self, writer: &mut GroupWriter) {
        let Some(epoch) = writer.open else {
            return;
        };
        let failure = match writer.conn.as_mut() {
            None => Some(GroupFailure::Failed("the connection was lost".into())),
            Some(conn) => match conn.client.batch_execute(if writer.stored {
                &self.sql.notify_and_commit
            } else {
                "COMMIT"
            }) {
                Ok(()) => None,
                Err(e) if is_broken(&conn.client, &e) => {
                    conn.broken = true;
                    writer.conn = None;
                    Some(GroupFailure::Unknown(e.to_string()))
                }
                Err(e) => {
                    conn.rollback();
                    Some(GroupFailure::Failed(e.to_string()))
                }
            },
        };
        self.group.end(writer, epoch, failure);
    }
}

/// How a group transaction failed.
#[derive(Debug, Clone)]
enum GroupFailure {
    /// Rolled back: nothing of it is stored.
    Failed(String),
    /// The connection broke after COMMIT was sent.
    Unknown(String),
}

enum GroupError {
    Retry,
    Fail(Error),
}

/// The connection of the open group transaction.
#[derive(Default)]
struct GroupWriter {
    conn: Option<PooledConnection<Manager>>,
    open: Option<u64>,
    /// Whether a save of the open group stored events (then followers are
    /// notified at its commit).
    stored: bool,
    /// Whether a joining save's savepoint is open (released by the next
    /// one, or by the commit).
    savepoint: bool,
}

#[derive(Default)]
struct GroupState {
    next_epoch: u64,
    committed: u64,
    /// Per epoch not yet reported to all its saves: how many saves are in
    /// it, and how it failed, if it did.
    outcomes: BTreeMap<u64, (usize, Option<GroupFailure>)>,
}

/// Group commit: saves of this process that arrive while one is being
/// written share its transaction (and its table lock and WAL flush).
#[derive(Default)]
struct Group {
    writer: Mutex<GroupWriter>,
    waiting: AtomicUsize,
    state: Mutex<GroupState>,
    committed: Condvar,
}

impl Group {
    fn writer(&self) -> MutexGuard<'_, GroupWriter> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        writer
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    fn state(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self) -> u64 {
        let mut state = self.state();
        state.next_epoch += 1;
        state.next_epoch
    }

    fn join(&self, epoch: u64) {
        self.state().outcomes.entry(epoch).or_default().0 += 1;
    }

    fn members(&self, epoch: u64) -> usize {
        self.state().outcomes.get(&epoch).map_or(0, |o| o.0)
    }

    /// A save leaves the group with its own error.
    fn leave(&self, epoch: u64) {
        let mut state = self.state();
        let committed = state.committed;
        if let Some(outcome) = state.outcomes.get_mut(&epoch) {
            outcome.0 = outcome.0.saturating_sub(1);
            if outcome.0 == 0 && committed >= epoch {
                state.outcomes.remove(&epoch);
            }
        }
    }

    fn end(&self, writer: &mut GroupWriter, epoch: u64, failure: Option<GroupFailure>) {
        writer.open = None;
        writer.stored = false;
        writer.savepoint = false;
        // Back to the pool between groups (readers may need it).
        writer.conn = None;
        let mut state = self.state();
        let outcome = state.outcomes.entry(epoch).or_default();
        outcome.1 = failure;
        if outcome.0 == 0 {
            state.outcomes.remove(&epoch);
        }
        state.committed = epoch;
        drop(state);
        self.committed.notify_all();
    }

    /// Waits until group `epoch` has ended: Ok if it committed.
    fn wait_for(&self, epoch: u64, context: &str, table: &str) -> Result<()> {
        let state = self.state();
        let mut state = self
            .committed
            .wait_while(state, |s| s.committed < epoch)
            .unwrap_or_else(|e| e.into_inner());
        let outcome = state.outcomes.entry(epoch).or_default();
        let failure = outcome.1.clone();
        outcome.0 = outcome.0.saturating_sub(1);
        if outcome.0 == 0 {
            state.outcomes.remove(&epoch);
        }
        match failure {
            None => Ok(()),
            Some(GroupFailure::Failed(why)) => Err(Error::persistence(
                format!(
                    "{context} ({table}): the transaction failed, nothing of this save was stored"
                ),
                why,
            )),
            Some(GroupFailure::Unknown(why)) => Err(Error::persistence(
                format!(
                    "{context} ({table}): the connection broke after COMMIT was sent, so \
                     whether the events were stored is unknown; select them before trying again"
                ),
                why,
            )),
        }
    }
}

impl PostgresRecorder {
    /// The store of snapshots in the same database (the `{name}_snapshots`
    /// table), on the same pool.
    pub fn snapshot_recorder(&self) -> PostgresSnapshotRecorder {
        PostgresSnapshotRecorder {
            recorder: self.clone(),
        }
    }

    /// One stream of the events or snapshots table (`which`: ascending and
    /// descending statements).
    fn select_stream(
        &self,
        originator_id: &str,
        query: &EventQuery,
        which: [Stmt; 2],
    ) -> Result<Vec<StoredEvent>> {
        let id = self.id_param(originator_id)?;
        if query.gt.is_some_and(|gt| gt >= i64::MAX as u64) || query.limit == Some(0) {
            return Ok(Vec::new());
        }
        let gt = query.gt.map_or(-1, bigint);
        let lte = query.lte.map_or(i64::MAX, bigint);
        let limit = query.limit.map(|l| bigint(l as u64));
        let which = which[usize::from(query.desc)];
        self.read("selecting events", |conn| {
            let statement = conn.statement(&self.sql, which)?;
            conn.client
                .query(&statement, &[id.as_sql(), &gt, &lte, &limit])?
                .iter()
                .map(|row| self.read_event(row, 0))
                .collect()
        })
    }
}

/// Snapshots in PostgreSQL: the `{name}_snapshots` table of a
/// [`PostgresRecorder`], on its pool. Inserts are single statements (no
/// table lock, no notification).
#[derive(Debug)]
pub struct PostgresSnapshotRecorder {
    recorder: PostgresRecorder,
}

impl AggregateRecorder for PostgresSnapshotRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let r = &self.recorder;
        let rows = r.columns(events)?;
        let columns = rows.params();
        // One statement: atomic on its own. Retried once on a broken
        // connection; a snapshot that was stored after all then conflicts,
        // which its callers take as stored.
        r.read("inserting snapshots", |conn| {
            let statement = conn.statement(&r.sql, Stmt::InsertSnapshots)?;
            conn.client.execute(&statement, &columns)?;
            Ok(Vec::new())
        })
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        self.recorder.select_stream(
            originator_id,
            query,
            [Stmt::SelectSnapshotsAsc, Stmt::SelectSnapshotsDesc],
        )
    }
}

fn to_u64(what: &str, value: i64) -> Result<u64, Fail> {
    u64::try_from(value).map_err(|_| {
        Fail::Other(Error::persistence(
            format!("reading {what}"),
            format!("{value} is negative"),
        ))
    })
}

/// Clamps a bound to PostgreSQL's bigint.
fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl AggregateRecorder for PostgresRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        self.write(events, None)
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        self.select_stream(
            originator_id,
            query,
            [Stmt::SelectEventsAsc, Stmt::SelectEventsDesc],
        )
    }
}

impl ApplicationRecorder for PostgresRecorder {
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        if query.limit == 0 || query.start > i64::MAX as u64 {
            return Ok(Vec::new());
        }
        let start = bigint(query.start);
        let stop = query.stop.map(bigint);
        let limit = bigint(query.limit as u64);
        let topics: Vec<&str> = query.topics.iter().map(String::as_str).collect();
        self.read("selecting notifications", |conn| {
            let (which, params): (Stmt, Vec<&(dyn ToSql + Sync)>) = match (&stop, topics.is_empty())
            {
                (None, true) => (Stmt::SelectNotifications, vec![&start, &limit]),
                (None, false) => (
                    Stmt::SelectNotificationsTopics,
                    vec![&start, &limit, &topics],
                ),
                (Some(stop), true) => (Stmt::SelectNotificationsStop, vec![&start, &limit, stop]),
                (Some(stop), false) => (
                    Stmt::SelectNotificationsTopicsStop,
                    vec![&start, &limit, stop, &topics],
                ),
            };
            let statement = conn.statement(&self.sql, which)?;
            let rows = conn.client.query(&statement, &params)?;
            rows.iter()
                .map(|row| {
                    Ok(Notification {
                        id: to_u64("notification_id", row.try_get(0)?)?,
                        event: self.read_event(row, 1)?,
                    })
                })
                .collect()
        })
    }

    fn listen(&self) -> Result<Option<Box<dyn crate::system::WakeUp>>> {
        Ok(Some(Box::new(PostgresRecorder::listen(self)?)))
    }

    fn max_notification_id(&self) -> Result<u64> {
        self.read("selecting the highest notification id", |conn| {
            let statement = conn.statement(&self.sql, Stmt::MaxNotificationId)?;
            let max: Option<i64> = conn.client.query_one(&statement, &[])?.try_get(0)?;
            to_u64("notification_id", max.unwrap_or(0))
        })
    }
}

impl ProcessRecorder for PostgresRecorder {
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> Result<Vec<u64>> {
        self.write(events, Some(tracking))
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        self.read("selecting the highest tracked id", |conn| {
            let statement = conn.statement(&self.sql, Stmt::MaxTrackingId)?;
            let max: Option<i64> = conn
                .client
                .query_one(&statement, &[&application_name])?
                .try_get(0)?;
            to_u64("notification_id", max.unwrap_or(0))
        })
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        let Ok(id) = i64::try_from(notification_id) else {
            return Ok(false);
        };
        self.read("selecting a tracking record", |conn| {
            let statement = conn.statement(&self.sql, Stmt::HasTrackingId)?;
            Ok(conn
                .client
                .query_one(&statement, &[&application_name, &id])?
                .try_get(0)?)
        })
    }
}

/// A dedicated connection listening to one application's channel: followers
/// wait on it instead of polling.
pub struct Listener {
    client: Client,
    channel: String,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Waits up to `timeout` for a commit of events: true if one (or more)
    /// happened since the last call, false on timeout. Every notification
    /// already received is consumed. A wake-up says "look", not what to
    /// read: select notifications after the last one seen.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let context = || format!("waiting for notifications on {}", self.channel);
        let woke = {
            let mut notifications = self.client.notifications();
            let woke = notifications
                .timeout_iter(timeout)
                .next()
                .map_err(|e| Error::persistence(context(), e))?
                .is_some();
            if woke {
                let mut pending = notifications.iter();
                while pending
                    .next()
                    .map_err(|e| Error::persistence(context(), e))?
                    .is_some()
                {}
            }
            woke
        };
        if !woke && self.client.is_closed() {
            return Err(Error::persistence(
                context(),
                "the connection closed: listen again",
            ));
        }
        Ok(woke)
    }
}
