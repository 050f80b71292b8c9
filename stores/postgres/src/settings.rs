//! The settings of a PostgreSQL store, from code or from the Python
//! library's `POSTGRES_*` variables, and the checks of the names they give.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::tls::{self, SslMode};
use annals_core::env::Env;
use annals_core::error::{Error, Result};
use annals_core::persistence::TrackingLayout;
use annals_core::settings;

/// PostgreSQL's limit on identifiers (table, index and channel names), in
/// bytes.
pub(super) const MAX_IDENTIFIER: usize = 63;

/// The most connections a pool may keep (`POSTGRES_POOL_SIZE`): the pool
/// allocates its bookkeeping for all of them up front, and a server
/// allows 100 connections by default (`max_connections`).
pub(super) const MAX_POOL_SIZE: u32 = 1000;

/// The longest `lock_timeout` and `statement_timeout` PostgreSQL takes:
/// `i32::MAX` milliseconds (about 24.8 days).
pub(super) const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

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
    pub(super) fn sql(self) -> &'static str {
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

/// Where the PostgreSQL server is and how to use it: give it to
/// `ApplicationBuilder::postgres`, or read it from `POSTGRES_*` variables.
/// `Debug` never shows the password.
///
/// ```no_run
/// use std::time::Duration;
/// use annals_core::env::Env;
/// use annals_core::persistence::Store;
/// use annals_postgres::{OriginatorIdType, PostgresConfig};
///
/// let mut config = PostgresConfig::new("test");
/// config.host = "db.internal".into();
/// config.password = Some("secret".into());
/// config.lock_timeout = Some(Duration::from_secs(2));
/// config.originator_id_type = OriginatorIdType::Text; // for `id = String` aggregates
/// // `ApplicationBuilder::store(config)` in an application.
/// let recorders = config.open("Kennel")?;
///
/// let env = Env::from_map("Kennel", [("POSTGRES_DBNAME", "test"), ("POSTGRES_POOL_SIZE", "10")]);
/// let config = PostgresConfig::from_env(&env)?;
/// assert_eq!(config.pool_size, 10);
/// # Ok::<(), annals_core::Error>(())
/// ```
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
    /// How long to wait for a connection (the TCP connect, TLS and the
    /// startup handshake, whatever the server does), and for a free
    /// connection of the pool (`POSTGRES_CONNECT_TIMEOUT`, seconds, default
    /// 5).
    pub connect_timeout: Duration,
    /// How long a statement waits for a lock, writers for the events
    /// table's lock in particular (`POSTGRES_LOCK_TIMEOUT`, seconds; none by
    /// default).
    pub lock_timeout: Option<Duration>,
    /// How long a statement may run (`POSTGRES_STATEMENT_TIMEOUT`, seconds;
    /// none by default).
    pub statement_timeout: Option<Duration>,
    /// How many connections the pool keeps at most (`POSTGRES_POOL_SIZE`,
    /// 1 to 1000, default 5).
    pub pool_size: u32,
    /// The schema of the tables, created if missing (`POSTGRES_SCHEMA`;
    /// by default the first schema of the `search_path`, usually `public`).
    pub schema: Option<String>,
    /// The type of the `originator_id` columns (`ORIGINATOR_ID_TYPE`, or
    /// its older name `POSTGRES_ORIGINATOR_ID_TYPE`; `uuid` or `text`,
    /// default `uuid`).
    pub originator_id_type: OriginatorIdType,
    /// The layout of the tracking table, when annals creates it
    /// (`SINGLE_ROW_TRACKING`, yes/no, default yes: single-row). An existing
    /// table is used in the layout it has, except that a single-row table
    /// is refused when this says multi-row.
    pub tracking_layout: TrackingLayout,
    /// TLS (`POSTGRES_SSLMODE`; default `disable`).
    pub ssl_mode: SslMode,
    /// The root certificate, PEM, that the server's must be signed by
    /// (`POSTGRES_SSLROOTCERT`; by default the system's roots).
    pub ssl_root_cert: Option<std::path::PathBuf>,
    /// Whether to create missing tables (and the schema) when the store is
    /// opened (`CREATE_TABLE`, yes/no, default yes).
    pub create_tables: bool,
    /// Whether to read and write eventsourcing_django's tables
    /// (`stored_events`, `snapshots`, `notification_tracking`, made by
    /// Django's migrations) rather than the application's own
    /// (`DJANGO_TABLES`, yes/no, default no). The application's name is
    /// then its rows' `application_name`, as given (`TrainingSchool`);
    /// the tables are never created, and must be there.
    pub django_tables: bool,
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
            .field("tracking_layout", &self.tracking_layout)
            .field("django_tables", &self.django_tables)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("create_tables", &self.create_tables)
            .finish()
    }
}

impl PostgresConfig {
    /// Database `dbname` on `127.0.0.1:5432` as user `postgres`, no
    /// password, 5 s connect timeout, no lock or statement timeout, 5
    /// connections, the default schema, `uuid` ids, single-row tracking.
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
            tracking_layout: TrackingLayout::SingleRow,
            django_tables: false,
            ssl_mode: SslMode::Disable,
            ssl_root_cert: None,
            create_tables: true,
        }
    }

    /// Reads the Python library's variables: `POSTGRES_DBNAME` (required),
    /// `POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_USER`,
    /// `POSTGRES_PASSWORD`, `POSTGRES_CONNECT_TIMEOUT`,
    /// `POSTGRES_LOCK_TIMEOUT` and `POSTGRES_STATEMENT_TIMEOUT` (seconds,
    /// integer or decimal; 0 means none for the lock and statement
    /// timeouts), `POSTGRES_POOL_SIZE`, `POSTGRES_SCHEMA`,
    /// `ORIGINATOR_ID_TYPE` (`uuid` or `text`; its older name
    /// `POSTGRES_ORIGINATOR_ID_TYPE` is read too, and when both are set they
    /// must agree), `SINGLE_ROW_TRACKING` and `CREATE_TABLE` (yes/no). Names
    /// prefixed with the application's name win. A missing database name
    /// or a bad value is an error naming the variable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable: `POSTGRES_DBNAME` is not
    /// set; a value does not parse; a connect timeout of 0 or a pool size
    /// of 0; `ORIGINATOR_ID_TYPE` and `POSTGRES_ORIGINATOR_ID_TYPE` that
    /// disagree.
    pub fn from_env(env: &Env) -> Result<Self> {
        let Some((_, dbname)) = env.get(settings::POSTGRES_DBNAME.name) else {
            return Err(Error::config(
                settings::POSTGRES_DBNAME.name,
                "not set: it names the PostgreSQL database to use",
            ));
        };
        let mut config = Self::new(dbname);
        if let Some((_, host)) = env.get(settings::POSTGRES_HOST.name) {
            config.host = host;
        }
        if let Some(port) = env.parse(settings::POSTGRES_PORT.name)? {
            config.port = port;
        }
        if let Some((_, user)) = env.get(settings::POSTGRES_USER.name) {
            config.user = user;
        }
        config.password = env.get(settings::POSTGRES_PASSWORD.name).map(|(_, p)| p);
        if let Some(timeout) = env.seconds(settings::POSTGRES_CONNECT_TIMEOUT.name)? {
            // 0 is refused by `check_naming` below.
            config.connect_timeout = timeout;
        }
        config.lock_timeout = env
            .seconds(settings::POSTGRES_LOCK_TIMEOUT.name)?
            .filter(|d| !d.is_zero());
        config.statement_timeout = env
            .seconds(settings::POSTGRES_STATEMENT_TIMEOUT.name)?
            .filter(|d| !d.is_zero());
        if let Some(size) = env.parse::<u32>(settings::POSTGRES_POOL_SIZE.name)? {
            config.pool_size = size;
        }
        config.schema = env.get(settings::POSTGRES_SCHEMA.name).map(|(_, s)| s);
        if let Some(id_type) = originator_id_type(env)? {
            config.originator_id_type = id_type;
        }
        if let Some(single_row) = env.flag(settings::SINGLE_ROW_TRACKING.name)? {
            config.tracking_layout = TrackingLayout::from_flag(single_row);
        }
        if let Some(django) = env.flag(settings::DJANGO_TABLES.name)? {
            config.django_tables = django;
        }
        if let Some(mode) = env.parse(settings::POSTGRES_SSLMODE.name)? {
            config.ssl_mode = mode;
        }
        config.ssl_root_cert = env
            .get(settings::POSTGRES_SSLROOTCERT.name)
            .map(|(_, path)| path.into());
        if let Some(create) = env.flag(settings::CREATE_TABLE.name)? {
            config.create_tables = create;
        }
        config.check_naming(|var| var_name(env, var))?;
        Ok(config)
    }

    /// Checks the values that the server or the pool cannot take, naming
    /// the variable (as `name` gives it) of a value at fault.
    pub(super) fn check_naming(&self, name: impl Fn(&str) -> String) -> Result<()> {
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return Err(Error::config(
                name(settings::POSTGRES_POOL_SIZE.name),
                format!(
                    "{} connections: must be 1 to {MAX_POOL_SIZE}",
                    self.pool_size
                ),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::config(
                name(settings::POSTGRES_CONNECT_TIMEOUT.name),
                "must be more than 0 seconds",
            ));
        }
        for (var, timeout) in [
            (settings::POSTGRES_LOCK_TIMEOUT.name, self.lock_timeout),
            (
                settings::POSTGRES_STATEMENT_TIMEOUT.name,
                self.statement_timeout,
            ),
        ] {
            if timeout.is_some_and(|t| t > MAX_TIMEOUT) {
                return Err(Error::config(
                    name(var),
                    format!(
                        "{} seconds is more than PostgreSQL takes: at most {} seconds \
                         ({} milliseconds, about 24.8 days), or 0 for none",
                        timeout.unwrap_or_default().as_secs_f64(),
                        MAX_TIMEOUT.as_secs_f64(),
                        MAX_TIMEOUT.as_millis()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn connection_config(&self) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .dbname(&self.dbname)
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .connect_timeout(self.connect_timeout)
            .application_name("annals")
            .ssl_mode(tls::wire_mode(self.ssl_mode));
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

    pub(super) fn server(&self) -> String {
        format!(
            "PostgreSQL database {:?} at {}:{} as {:?}",
            self.dbname, self.host, self.port, self.user
        )
    }
}

/// `ORIGINATOR_ID_TYPE`, or its older name `POSTGRES_ORIGINATOR_ID_TYPE`
/// (either may be prefixed); both set must say the same.
fn originator_id_type(env: &Env) -> Result<Option<OriginatorIdType>> {
    let name = settings::ORIGINATOR_ID_TYPE.name;
    let older = settings::POSTGRES_ORIGINATOR_ID_TYPE.name;
    let current = env.parse::<OriginatorIdType>(name)?;
    let old = env.parse::<OriginatorIdType>(older)?;
    match (current, old) {
        (Some(current), Some(old)) if current != old => Err(Error::config(
            var_name(env, name),
            format!(
                "{current}, but {} (its older name) says {old}: set only {name}, or both to \
                 the same type",
                var_name(env, older)
            ),
        )),
        (current, old) => Ok(current.or(old)),
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
pub(super) fn table_prefix(app_name: &str) -> Result<String> {
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
pub(super) fn check_schema(schema: &str) -> Result<()> {
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
            settings::POSTGRES_SCHEMA.name,
            format!(
                "{schema:?} is not a schema name annals accepts: use 1 to {MAX_IDENTIFIER} \
                 ASCII letters, digits and underscores, not starting with a digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<PostgresConfig> {
        let mut all = vec![("POSTGRES_DBNAME", "d")];
        all.extend_from_slice(vars);
        PostgresConfig::from_env(&Env::from_map("App", all))
    }

    fn config_error(result: Result<PostgresConfig>) -> (String, String) {
        match result {
            Err(Error::Config { setting, message }) => (setting, message),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn originator_id_type_has_the_python_name_and_the_older_one() {
        let id_type = |vars: &[(&str, &str)]| from(vars).expect("config").originator_id_type;
        assert_eq!(id_type(&[]), OriginatorIdType::Uuid);
        assert_eq!(
            id_type(&[("ORIGINATOR_ID_TYPE", "text")]),
            OriginatorIdType::Text
        );
        assert_eq!(
            id_type(&[("POSTGRES_ORIGINATOR_ID_TYPE", "text")]),
            OriginatorIdType::Text
        );
        assert_eq!(
            id_type(&[
                ("ORIGINATOR_ID_TYPE", "TEXT"),
                ("POSTGRES_ORIGINATOR_ID_TYPE", "text")
            ]),
            OriginatorIdType::Text,
            "both, agreeing"
        );
        assert_eq!(
            id_type(&[
                ("ORIGINATOR_ID_TYPE", "uuid"),
                ("APP_ORIGINATOR_ID_TYPE", "text")
            ]),
            OriginatorIdType::Text,
            "the prefixed name wins"
        );

        let (var, message) = config_error(from(&[
            ("APP_ORIGINATOR_ID_TYPE", "uuid"),
            ("POSTGRES_ORIGINATOR_ID_TYPE", "text"),
        ]));
        assert_eq!(var, "APP_ORIGINATOR_ID_TYPE");
        assert!(
            message.contains("POSTGRES_ORIGINATOR_ID_TYPE")
                && message.contains("uuid")
                && message.contains("text"),
            "{message}"
        );
        let (var, message) = config_error(from(&[("ORIGINATOR_ID_TYPE", "int")]));
        assert_eq!(var, "ORIGINATOR_ID_TYPE");
        assert!(message.contains("int"), "{message}");
        let (var, _) = config_error(from(&[
            ("ORIGINATOR_ID_TYPE", "text"),
            ("POSTGRES_ORIGINATOR_ID_TYPE", "int"),
        ]));
        assert_eq!(var, "POSTGRES_ORIGINATOR_ID_TYPE");
    }

    #[test]
    fn single_row_tracking_chooses_the_layout_of_new_tables() {
        let layout = |vars: &[(&str, &str)]| from(vars).expect("config").tracking_layout;
        assert_eq!(layout(&[]), TrackingLayout::SingleRow, "Python's default");
        assert_eq!(
            layout(&[("SINGLE_ROW_TRACKING", "yes")]),
            TrackingLayout::SingleRow
        );
        assert_eq!(
            layout(&[("SINGLE_ROW_TRACKING", "f")]),
            TrackingLayout::MultiRow
        );
        assert_eq!(
            layout(&[
                ("SINGLE_ROW_TRACKING", "yes"),
                ("APP_SINGLE_ROW_TRACKING", "no")
            ]),
            TrackingLayout::MultiRow
        );
        let (var, message) = config_error(from(&[("SINGLE_ROW_TRACKING", "sometimes")]));
        assert_eq!(var, "SINGLE_ROW_TRACKING");
        assert!(message.contains("sometimes"), "{message}");
    }

    #[test]
    fn fractional_timeouts_are_read_to_the_millisecond() {
        let config = from(&[
            ("POSTGRES_LOCK_TIMEOUT", "0.5"),
            ("POSTGRES_STATEMENT_TIMEOUT", "2.25"),
            ("POSTGRES_CONNECT_TIMEOUT", "1.5"),
        ])
        .expect("config");
        assert_eq!(config.lock_timeout, Some(Duration::from_millis(500)));
        assert_eq!(config.statement_timeout, Some(Duration::from_millis(2250)));
        assert_eq!(config.connect_timeout, Duration::from_millis(1500));
        let options = config.connection_config();
        let options = options.get_options().unwrap_or_default();
        assert!(
            options.contains("-c lock_timeout=500") && options.contains("statement_timeout=2250"),
            "{options}"
        );
        for bad in ["0,5", "-0.5", "half", "inf"] {
            let (var, message) = config_error(from(&[("POSTGRES_LOCK_TIMEOUT", bad)]));
            assert_eq!(var, "POSTGRES_LOCK_TIMEOUT", "{bad}");
            assert!(!message.is_empty());
        }
    }
}
