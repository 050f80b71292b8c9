//! The settings of a SQLite store, from code or from the environment, and
//! the table names they give.

use std::time::Duration;

use annals_core::env::Env;
use annals_core::error::{Error, Result};
use annals_core::persistence::TrackingLayout;
use annals_core::settings;

/// The Python library's default: 5 seconds.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest lock timeout SQLite takes: its busy timeout is an `int` of
/// milliseconds (`i32::MAX` ms, about 24.8 days).
pub(super) const MAX_LOCK_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Settings of a SQLite store: give them to
/// `ApplicationBuilder::store`, or read them from `SQLITE_*` variables.
///
/// ```
/// use std::time::Duration;
/// use annals_core::env::Env;
/// use annals_core::persistence::Store;
/// use annals_sqlite::SqliteConfig;
///
/// let mut config = SqliteConfig::new(":memory:");
/// config.lock_timeout = Duration::from_secs(1);
/// config.table_prefix = Some("kennel".into()); // kennel_events, kennel_snapshots, kennel_tracking, kennel_outcomes
/// // `ApplicationBuilder::store(config)` in an application.
/// let recorders = config.open("Kennel")?;
/// assert_eq!(recorders.events.max_notification_id()?, 0);
///
/// let env = Env::from_map("Kennel", [("SQLITE_DBNAME", "kennel.db"), ("SQLITE_LOCK_TIMEOUT", "0.5")]);
/// let config = SqliteConfig::from_env(&env)?;
/// assert_eq!((config.dbname.as_str(), config.lock_timeout), ("kennel.db", Duration::from_millis(500)));
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SqliteConfig {
    /// A file path, `:memory:`, or a `file:` URI.
    pub dbname: String,
    /// How long a write waits for another writer's lock before it fails.
    pub lock_timeout: Duration,
    /// Table names `{prefix}_events`, `{prefix}_snapshots`,
    /// `{prefix}_tracking` instead of the Python library's `stored_events`,
    /// `stored_snapshots`, `tracking` (and `{prefix}_outcomes` instead of
    /// `stored_outcomes`, annals' table of idempotency keys).
    pub table_prefix: Option<String>,
    /// Whether to create missing tables when the store is opened.
    pub create_tables: bool,
    /// How many read connections a file database may open.
    pub read_pool_size: u32,
    /// The layout of the tracking table, when annals creates it
    /// (`SINGLE_ROW_TRACKING`, yes/no, default yes: single-row). An existing
    /// table is used in the layout it has, except that a single-row table
    /// is refused when this says multi-row.
    pub tracking_layout: TrackingLayout,
    /// Whether to read and write eventsourcing_django's tables
    /// (`stored_events`, `snapshots`, `notification_tracking`, made by
    /// Django's migrations) rather than the application's own
    /// (`DJANGO_TABLES`, yes/no, default no): the rows of the application
    /// opened ([`Store::open`](annals_core::persistence::Store::open)'s
    /// name, as given), in tables annals never creates.
    pub django_tables: bool,
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
            tracking_layout: TrackingLayout::SingleRow,
            django_tables: false,
        }
    }

    /// Settings from `SQLITE_DBNAME` (required), `SQLITE_LOCK_TIMEOUT`
    /// (seconds, whole or fractional), `SQLITE_TABLE_PREFIX`,
    /// `SINGLE_ROW_TRACKING` and `CREATE_TABLE` (yes/no).
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable: `SQLITE_DBNAME` is not set,
    /// or a value does not parse. A bad table prefix is found when the
    /// store is opened.
    pub fn from_env(env: &Env) -> Result<Self> {
        let (_, dbname) = env.get(settings::SQLITE_DBNAME.name).ok_or_else(|| {
            Error::config(
                settings::SQLITE_DBNAME.name,
                "not set: name the SQLite database file (or :memory:)",
            )
        })?;
        let mut config = Self::new(dbname);
        if let Some(timeout) = env.seconds(settings::SQLITE_LOCK_TIMEOUT.name)? {
            let name = env.get(settings::SQLITE_LOCK_TIMEOUT.name).map_or_else(
                || settings::SQLITE_LOCK_TIMEOUT.name.to_owned(),
                |(key, _)| key,
            );
            check_lock_timeout(&name, timeout)?;
            config.lock_timeout = timeout;
        }
        if let Some((_, prefix)) = env.get(settings::SQLITE_TABLE_PREFIX.name) {
            config.table_prefix = Some(prefix);
        }
        if let Some(create) = env.flag(settings::CREATE_TABLE.name)? {
            config.create_tables = create;
        }
        if let Some(single_row) = env.flag(settings::SINGLE_ROW_TRACKING.name)? {
            config.tracking_layout = TrackingLayout::from_flag(single_row);
        }
        if let Some(django) = env.flag(settings::DJANGO_TABLES.name)? {
            config.django_tables = django;
        }
        Ok(config)
    }

    /// Checks what the environment's reader checks, for a config built in
    /// code.
    pub(super) fn check(&self) -> Result<()> {
        check_lock_timeout(settings::SQLITE_LOCK_TIMEOUT.name, self.lock_timeout)
    }

    pub(super) fn is_memory(&self) -> bool {
        self.dbname == ":memory:" || self.dbname.contains("mode=memory")
    }
}

fn check_lock_timeout(setting: &str, timeout: Duration) -> Result<()> {
    if timeout > MAX_LOCK_TIMEOUT {
        return Err(Error::config(
            setting,
            format!(
                "{} seconds is longer than SQLite's busy timeout can wait: at most {} seconds \
                 ({} milliseconds, about 24.8 days)",
                timeout.as_secs_f64(),
                MAX_LOCK_TIMEOUT.as_secs_f64(),
                MAX_LOCK_TIMEOUT.as_millis()
            ),
        ));
    }
    Ok(())
}

/// Validated table names.
#[derive(Debug, Clone)]
pub(super) struct Tables {
    pub(super) events: String,
    pub(super) snapshots: String,
    pub(super) tracking: String,
    /// Idempotency keys and their outcomes (not a Python table).
    pub(super) outcomes: String,
    /// The data keys of personal data (not a Python table).
    pub(super) keys: String,
    /// Under eventsourcing_django's tables, the application's rows: its
    /// name as an SQL literal (`'TrainingSchool'`).
    pub(super) django_app: Option<String>,
}

impl Tables {
    pub(super) fn new(prefix: Option<&str>) -> Result<Self> {
        let Some(prefix) = prefix else {
            return Ok(Self {
                events: "stored_events".into(),
                snapshots: "stored_snapshots".into(),
                tracking: "tracking".into(),
                outcomes: "stored_outcomes".into(),
                keys: "stored_data_keys".into(),
                django_app: None,
            });
        };
        let valid = prefix.len() <= 50
            && prefix.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::config(
                settings::SQLITE_TABLE_PREFIX.name,
                format!("{prefix:?} is not a valid table prefix: use ASCII letters, digits and '_', not starting with a digit, at most 50 characters"),
            ));
        }
        let prefix = prefix.to_ascii_lowercase();
        Ok(Self {
            events: format!("{prefix}_events"),
            snapshots: format!("{prefix}_snapshots"),
            tracking: format!("{prefix}_tracking"),
            outcomes: format!("{prefix}_outcomes"),
            keys: format!("{prefix}_data_keys"),
            django_app: None,
        })
    }

    /// eventsourcing_django's tables, application `app`'s rows.
    pub(super) fn django(app: &str) -> Result<Self> {
        use annals_core::persistence::django::{application_name, EVENTS, SNAPSHOTS, TRACKING};
        let app = application_name(app)?;
        Ok(Self {
            events: EVENTS.into(),
            snapshots: SNAPSHOTS.into(),
            tracking: TRACKING.into(),
            outcomes: String::new(),
            keys: String::new(),
            django_app: Some(format!("'{app}'")),
        })
    }

    /// The condition that picks the application's rows, with its `AND`
    /// (empty for the application's own tables).
    pub(super) fn rows(&self) -> String {
        self.django_app
            .as_ref()
            .map_or_else(String::new, |app| format!("application_name = {app} AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<SqliteConfig> {
        let mut all = vec![("SQLITE_DBNAME", ":memory:")];
        all.extend_from_slice(vars);
        SqliteConfig::from_env(&Env::from_map("App", all))
    }

    #[test]
    fn fractional_lock_timeouts_are_read_and_bad_ones_name_the_variable() {
        let timeout = |value| from(&[("SQLITE_LOCK_TIMEOUT", value)]).map(|c| c.lock_timeout);
        assert_eq!(timeout("2.5").expect("2.5"), Duration::from_millis(2500));
        assert_eq!(timeout("0.001").expect("1 ms"), Duration::from_millis(1));
        assert_eq!(timeout(" 7 ").expect("7"), Duration::from_secs(7));
        for bad in ["2,5", "-1", "soon", "NaN"] {
            match timeout(bad) {
                Err(Error::Config { setting, .. }) => {
                    assert_eq!(setting, "SQLITE_LOCK_TIMEOUT", "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn single_row_tracking_chooses_the_layout_of_new_tables() {
        let layout = |vars: &[(&str, &str)]| from(vars).map(|c| c.tracking_layout);
        assert_eq!(layout(&[]).expect("default"), TrackingLayout::SingleRow);
        assert_eq!(
            layout(&[("SINGLE_ROW_TRACKING", "no")]).expect("no"),
            TrackingLayout::MultiRow
        );
        assert_eq!(
            layout(&[("APP_SINGLE_ROW_TRACKING", "true")]).expect("yes"),
            TrackingLayout::SingleRow
        );
        match layout(&[("APP_SINGLE_ROW_TRACKING", "2")]) {
            Err(Error::Config { setting, message }) => {
                assert_eq!(setting, "APP_SINGLE_ROW_TRACKING");
                assert!(message.contains("yes/no"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
