//! The settings of a MariaDB/MySQL store, from code or from `MYSQL_*`
//! variables, and the check of the application's name.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use annals_core::env::Env;
use annals_core::error::{Error, Result};
use annals_core::persistence::TrackingLayout;
use annals_core::settings;

/// MySQL's limit on table names, in characters.
const MAX_IDENTIFIER: usize = 64;

/// The most connections a pool may keep (`MYSQL_POOL_SIZE`).
pub(crate) const MAX_POOL_SIZE: u32 = 1000;

/// The longest lock wait the server takes (`innodb_lock_wait_timeout`:
/// 1 to 1,073,741,824 seconds).
const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(1_073_741_824);

/// Whether and how connections use TLS (the modes of `POSTGRES_SSLMODE`,
/// and of MySQL's `--ssl-mode`).
///
/// ```
/// use annals_mysql::SslMode;
///
/// assert_eq!("verify-full".parse::<SslMode>(), Ok(SslMode::VerifyFull));
/// assert!("sometimes".parse::<SslMode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Never (the default: a server on this machine or a private network).
    #[default]
    Disable,
    /// TLS if the server offers it, the certificate not checked; plain
    /// when the server has no TLS.
    Prefer,
    /// TLS or no connection; the certificate not checked.
    Require,
    /// TLS, the certificate signed by the root certificate
    /// (`MYSQL_SSLROOTCERT`, or the system's roots); any host name.
    VerifyCa,
    /// TLS, the certificate signed by the root certificate and naming the
    /// host connected to.
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (MySQL's
    /// `verify_identity` too), in any case.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(
            match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
                "disable" | "disabled" => SslMode::Disable,
                "prefer" | "preferred" => SslMode::Prefer,
                "require" | "required" => SslMode::Require,
                "verify-ca" => SslMode::VerifyCa,
                "verify-full" | "verify-identity" => SslMode::VerifyFull,
                _ => {
                    return Err(
                        "expected disable, prefer, require, verify-ca or verify-full".to_owned(),
                    )
                }
            },
        )
    }
}

/// Where the MariaDB/MySQL server is and how to use it: give it to
/// `ApplicationBuilder::store`, or read it from `MYSQL_*` variables.
/// `Debug` never shows the password.
///
/// ```no_run
/// use annals_core::env::Env;
/// use annals_core::persistence::Store;
/// use annals_mysql::MysqlConfig;
///
/// let mut config = MysqlConfig::new("test");
/// config.host = "db.internal".into();
/// config.password = Some("secret".into());
/// let recorders = config.open("Kennel")?; // kennel_events, ...
///
/// let env = Env::from_map("Kennel", [("MYSQL_DBNAME", "test"), ("MYSQL_POOL_SIZE", "10")]);
/// let config = MysqlConfig::from_env(&env)?;
/// assert_eq!(config.pool_size, 10);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlConfig {
    /// The database's name (`MYSQL_DBNAME`, required).
    pub dbname: String,
    /// The server's host name or address (`MYSQL_HOST`, default
    /// `127.0.0.1`).
    pub host: String,
    /// The server's port (`MYSQL_PORT`, default 3306).
    pub port: u16,
    /// The user (`MYSQL_USER`, default `root`).
    pub user: String,
    /// The user's password (`MYSQL_PASSWORD`); never shown by `Debug` or
    /// in errors.
    pub password: Option<String>,
    /// How long to wait for the TCP connection, and for a free connection
    /// of the pool (`MYSQL_CONNECT_TIMEOUT`, seconds, default 5).
    pub connect_timeout: Duration,
    /// How long a statement waits for a row lock, writers for the writers'
    /// lock in particular (`MYSQL_LOCK_TIMEOUT`, whole seconds; by default
    /// the server's `innodb_lock_wait_timeout`, 50 s unless set).
    pub lock_timeout: Option<Duration>,
    /// How many connections the pool keeps at most (`MYSQL_POOL_SIZE`, 1
    /// to 1000, default 5).
    pub pool_size: u32,
    /// The layout of the tracking table, when annals creates it
    /// (`SINGLE_ROW_TRACKING`, yes/no, default yes). An existing table is
    /// used in the layout it has, except that a single-row table is
    /// refused when this says multi-row.
    pub tracking_layout: TrackingLayout,
    /// TLS (`MYSQL_SSLMODE`; default `disable`).
    pub ssl_mode: SslMode,
    /// The root certificate, PEM, that the server's must be signed by
    /// (`MYSQL_SSLROOTCERT`; by default the system's roots).
    pub ssl_root_cert: Option<PathBuf>,
    /// Whether to create missing tables when the store is opened
    /// (`CREATE_TABLE`, yes/no, default yes).
    pub create_tables: bool,
    /// Whether to read and write eventsourcing_django's tables
    /// (`stored_events`, `snapshots`, `notification_tracking`, made by
    /// Django's migrations) rather than the application's own
    /// (`DJANGO_TABLES`, yes/no, default no): the rows of the application's
    /// name, as given, in tables annals never creates.
    pub django_tables: bool,
}

impl fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("dbname", &self.dbname)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connect_timeout", &self.connect_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("pool_size", &self.pool_size)
            .field("tracking_layout", &self.tracking_layout)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("create_tables", &self.create_tables)
            .field("django_tables", &self.django_tables)
            .finish()
    }
}

impl MysqlConfig {
    /// Database `dbname` on `127.0.0.1:3306` as user `root`, no password,
    /// 5 s connect timeout, the server's lock wait timeout, 5 connections,
    /// single-row tracking, no TLS, tables created.
    ///
    /// ```
    /// let config = annals_mysql::MysqlConfig::new("test");
    /// assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 3306));
    /// ```
    pub fn new(dbname: impl Into<String>) -> Self {
        Self {
            dbname: dbname.into(),
            host: "127.0.0.1".to_owned(),
            port: 3306,
            user: "root".to_owned(),
            password: None,
            connect_timeout: Duration::from_secs(5),
            lock_timeout: None,
            pool_size: 5,
            tracking_layout: TrackingLayout::SingleRow,
            ssl_mode: SslMode::Disable,
            ssl_root_cert: None,
            create_tables: true,
            django_tables: false,
        }
    }

    /// Reads `MYSQL_DBNAME` (required), `MYSQL_HOST`, `MYSQL_PORT`,
    /// `MYSQL_USER`, `MYSQL_PASSWORD`, `MYSQL_CONNECT_TIMEOUT` and
    /// `MYSQL_LOCK_TIMEOUT` (seconds; 0: the server's lock wait timeout),
    /// `MYSQL_POOL_SIZE`, `MYSQL_SSLMODE`, `MYSQL_SSLROOTCERT`,
    /// `SINGLE_ROW_TRACKING` and `CREATE_TABLE` (yes/no). Names prefixed
    /// with the application's name win.
    ///
    /// ```
    /// use annals_core::env::Env;
    /// use annals_mysql::MysqlConfig;
    ///
    /// let env = Env::from_map("App", [("MYSQL_DBNAME", "test"), ("MYSQL_PORT", "many")]);
    /// let err = MysqlConfig::from_env(&env).unwrap_err();
    /// assert!(err.to_string().contains("MYSQL_PORT"), "{err}");
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable: `MYSQL_DBNAME` is not set; a
    /// value does not parse; a connect timeout of 0, a pool size of 0 or
    /// over 1000, a lock timeout the server does not take.
    pub fn from_env(env: &Env) -> Result<Self> {
        let Some((_, dbname)) = env.get(settings::MYSQL_DBNAME.name) else {
            return Err(Error::config(
                settings::MYSQL_DBNAME.name,
                "not set: it names the MariaDB/MySQL database to use",
            ));
        };
        let mut config = Self::new(dbname);
        if let Some((_, host)) = env.get(settings::MYSQL_HOST.name) {
            config.host = host;
        }
        if let Some(port) = env.parse(settings::MYSQL_PORT.name)? {
            config.port = port;
        }
        if let Some((_, user)) = env.get(settings::MYSQL_USER.name) {
            config.user = user;
        }
        config.password = env.get(settings::MYSQL_PASSWORD.name).map(|(_, p)| p);
        if let Some(timeout) = env.seconds(settings::MYSQL_CONNECT_TIMEOUT.name)? {
            config.connect_timeout = timeout;
        }
        config.lock_timeout = env
            .seconds(settings::MYSQL_LOCK_TIMEOUT.name)?
            .filter(|d| !d.is_zero());
        if let Some(size) = env.parse::<u32>(settings::MYSQL_POOL_SIZE.name)? {
            config.pool_size = size;
        }
        if let Some(single_row) = env.flag(settings::SINGLE_ROW_TRACKING.name)? {
            config.tracking_layout = TrackingLayout::from_flag(single_row);
        }
        if let Some(mode) = env.parse(settings::MYSQL_SSLMODE.name)? {
            config.ssl_mode = mode;
        }
        config.ssl_root_cert = env
            .get(settings::MYSQL_SSLROOTCERT.name)
            .map(|(_, path)| path.into());
        if let Some(create) = env.flag(settings::CREATE_TABLE.name)? {
            config.create_tables = create;
        }
        if let Some(django) = env.flag(settings::DJANGO_TABLES.name)? {
            config.django_tables = django;
        }
        config.check_naming(|var| var_name(env, var))?;
        Ok(config)
    }

    /// Checks the values the server or the pool cannot take, naming the
    /// variable (as `name` gives it) of a value at fault.
    pub(crate) fn check_naming(&self, name: impl Fn(&str) -> String) -> Result<()> {
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return Err(Error::config(
                name(settings::MYSQL_POOL_SIZE.name),
                format!(
                    "{} connections: must be 1 to {MAX_POOL_SIZE}",
                    self.pool_size
                ),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::config(
                name(settings::MYSQL_CONNECT_TIMEOUT.name),
                "must be more than 0 seconds",
            ));
        }
        if let Some(timeout) = self.lock_timeout {
            if timeout > MAX_LOCK_TIMEOUT {
                return Err(Error::config(
                    name(settings::MYSQL_LOCK_TIMEOUT.name),
                    format!(
                        "{} seconds is more than the server takes: at most {} seconds, or 0 \
                         for the server's own",
                        timeout.as_secs_f64(),
                        MAX_LOCK_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
        if self.dbname.is_empty() {
            return Err(Error::config(
                name(settings::MYSQL_DBNAME.name),
                "empty: it names the MariaDB/MySQL database to use",
            ));
        }
        Ok(())
    }

    /// The server, as errors name it: database, host:port and user.
    pub(crate) fn server(&self) -> String {
        format!(
            "MariaDB/MySQL database {:?} at {}:{} as {:?}",
            self.dbname, self.host, self.port, self.user
        )
    }

    /// The lock wait timeout in whole seconds, at least 1.
    pub(crate) fn lock_wait_seconds(&self) -> Option<u64> {
        self.lock_timeout.map(|t| t.as_secs().max(1))
    }
}

/// The name `var` was found under (prefixed or not), for errors.
fn var_name(env: &Env, var: &str) -> String {
    env.get(var).map_or_else(|| var.to_owned(), |(key, _)| key)
}

/// Checks an application name and returns its table prefix (lower-cased).
pub(crate) fn table_prefix(app_name: &str) -> Result<String> {
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
                "{app_name:?} cannot name MariaDB/MySQL tables: use 1 to {longest} ASCII \
                 letters, digits and underscores, not starting with a digit"
            ),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<MysqlConfig> {
        let mut all = vec![("MYSQL_DBNAME", "d")];
        all.extend_from_slice(vars);
        MysqlConfig::from_env(&Env::from_map("App", all))
    }

    fn setting_at_fault(result: Result<MysqlConfig>) -> String {
        match result {
            Err(Error::Config { setting, .. }) => setting,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn reads_every_setting() {
        let config = from(&[
            ("MYSQL_HOST", "db"),
            ("MYSQL_PORT", "3307"),
            ("MYSQL_USER", "u"),
            ("MYSQL_PASSWORD", "p"),
            ("MYSQL_CONNECT_TIMEOUT", "2.5"),
            ("MYSQL_LOCK_TIMEOUT", "3"),
            ("MYSQL_POOL_SIZE", "9"),
            ("MYSQL_SSLMODE", "verify-ca"),
            ("MYSQL_SSLROOTCERT", "/ca.pem"),
            ("SINGLE_ROW_TRACKING", "no"),
            ("CREATE_TABLE", "no"),
        ])
        .expect("valid settings");
        assert_eq!(config.host, "db");
        assert_eq!(config.port, 3307);
        assert_eq!(config.user, "u");
        assert_eq!(config.password.as_deref(), Some("p"));
        assert_eq!(config.connect_timeout, Duration::from_millis(2500));
        assert_eq!(config.lock_timeout, Some(Duration::from_secs(3)));
        assert_eq!(config.pool_size, 9);
        assert_eq!(config.ssl_mode, SslMode::VerifyCa);
        assert_eq!(config.ssl_root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(config.tracking_layout, TrackingLayout::MultiRow);
        assert!(!config.create_tables);
        assert!(
            !format!("{config:?}").contains("\"p\""),
            "Debug shows no password"
        );
    }

    #[test]
    fn bad_settings_name_their_variable() {
        let missing = MysqlConfig::from_env(&Env::from_map("App", [("X", "y")]));
        assert_eq!(setting_at_fault(missing), "MYSQL_DBNAME");
        assert_eq!(setting_at_fault(from(&[("MYSQL_PORT", "x")])), "MYSQL_PORT");
        assert_eq!(
            setting_at_fault(from(&[("MYSQL_POOL_SIZE", "0")])),
            "MYSQL_POOL_SIZE"
        );
        assert_eq!(
            setting_at_fault(from(&[("APP_MYSQL_POOL_SIZE", "1001")])),
            "APP_MYSQL_POOL_SIZE"
        );
        assert_eq!(
            setting_at_fault(from(&[("MYSQL_CONNECT_TIMEOUT", "0")])),
            "MYSQL_CONNECT_TIMEOUT"
        );
        assert_eq!(
            setting_at_fault(from(&[("MYSQL_SSLMODE", "maybe")])),
            "MYSQL_SSLMODE"
        );
        assert_eq!(
            setting_at_fault(from(&[("MYSQL_LOCK_TIMEOUT", "99999999999")])),
            "MYSQL_LOCK_TIMEOUT"
        );
    }

    #[test]
    fn application_names_must_name_tables() {
        assert_eq!(table_prefix("Kennel").ok().as_deref(), Some("kennel"));
        for bad in ["", "9lives", "a-b", "a b", &"x".repeat(55)] {
            assert!(table_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
