//! Every SQL statement of the MariaDB/MySQL store, built once per
//! application from a validated table prefix.

use annals_core::persistence::{TrackingLayout, MIGRATION_ROW};

/// The longest `originator_id` (characters): a `VARCHAR(255)` with a
/// binary collation holds UUIDs (32 hex digits) and text ids alike.
pub(crate) const MAX_ID_CHARS: usize = 255;

/// The longest idempotency key (characters); the primary key's 2,048
/// bytes stay within InnoDB's 3,072.
pub(crate) const MAX_KEY_CHARS: usize = 512;

/// The longest upstream application name in a tracking record.
pub(crate) const MAX_APP_CHARS: usize = 255;

/// How many events one `INSERT` statement carries (4 parameters each, of
/// the protocol's 65,535).
pub(crate) const ROWS_PER_INSERT: usize = 1000;

/// The options of every table: InnoDB (transactions, row locks), and
/// 4-byte UTF-8 throughout.
const TABLE_OPTIONS: &str = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// The SQL of one recorder.
#[derive(Debug)]
pub(crate) struct Sql {
    /// `{name}_events`, quoted, as shown in errors.
    pub(crate) events: String,
    /// `{name}_snapshots`, quoted.
    pub(crate) snapshots: String,
    /// `{name}_tracking`, quoted.
    pub(crate) tracking: String,
    /// `{name}_outcomes`, quoted: idempotency keys and their outcomes.
    pub(crate) outcomes: String,
    /// `{name}_lock`, quoted: the one row writers lock first.
    pub(crate) lock: String,
    /// The tracking table's bare name, for `information_schema`.
    pub(crate) bare_tracking: String,
    /// The layout of the tracking table these statements write.
    pub(crate) tracking_layout: TrackingLayout,
    /// Every table but the tracking table, each if missing (the data
    /// keys' last).
    pub(crate) create: [String; 5],
    /// The lock table's one row, if missing.
    pub(crate) lock_row: String,
    /// The tracking table in [`tracking_layout`](Self::tracking_layout), if missing.
    pub(crate) create_tracking: String,
    /// (Single-row layout) the row by which the Python library knows the
    /// layout, if missing.
    pub(crate) migration_row: Option<String>,
    /// Begins a writing transaction and takes the writers' lock, in one
    /// round trip (two statements).
    pub(crate) begin_and_lock: String,
    pub(crate) select_events_asc: String,
    pub(crate) select_events_desc: String,
    pub(crate) select_snapshots_asc: String,
    pub(crate) select_snapshots_desc: String,
    /// `select_notifications` with no topic filter; `?` topics appended.
    pub(crate) select_notifications: String,
    pub(crate) max_notification_id: String,
    pub(crate) max_tracking_id: String,
    pub(crate) has_tracking_id: String,
    /// The upstream applications tracked, sorted (the single-row
    /// layout's marker row left out).
    pub(crate) tracked_applications: String,
    /// (Single-row) the tracked id of an application, locked.
    pub(crate) tracked_for_update: String,
    /// Inserts a tracking record (multi-row), or sets the application's
    /// row (single-row: the caller checked it moves forward).
    pub(crate) insert_tracking: String,
    pub(crate) insert_outcome: String,
    pub(crate) select_outcome: String,
    /// Under eventsourcing_django's tables ([`Sql::django`]), the
    /// application's name as an SQL literal: its rows' `application_name`.
    pub(crate) django_app: Option<String>,
    /// The statements of `{name}_data_keys` (never used under Django's
    /// tables, which keep no keys).
    pub(crate) keys: crate::keys::KeySql,
}

impl Sql {
    /// The statements of application `prefix` (lower-cased ASCII letters,
    /// digits and underscores: checked by `table_prefix`).
    pub(crate) fn new(prefix: &str, tracking_layout: TrackingLayout) -> Self {
        let quote = |suffix: &str| format!("`{prefix}_{suffix}`");
        let events = quote("events");
        let snapshots = quote("snapshots");
        let tracking = quote("tracking");
        let outcomes = quote("outcomes");
        let lock = quote("lock");
        let keys = crate::keys::KeySql::new(&quote("data_keys"), TABLE_OPTIONS);
        let columns = "originator_id VARCHAR(255) NOT NULL, \
             originator_version BIGINT UNSIGNED NOT NULL, \
             topic TEXT NOT NULL, \
             state LONGBLOB NOT NULL";
        let create = [
            format!(
                "CREATE TABLE IF NOT EXISTS {events} ({columns}, \
                 notification_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, \
                 PRIMARY KEY (originator_id, originator_version), \
                 UNIQUE KEY notification_id (notification_id)) {TABLE_OPTIONS}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {snapshots} ({columns}, \
                 PRIMARY KEY (originator_id, originator_version)) {TABLE_OPTIONS}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {outcomes} (\
                 idempotency_key VARCHAR({MAX_KEY_CHARS}) NOT NULL, \
                 outcome LONGBLOB NOT NULL, \
                 PRIMARY KEY (idempotency_key)) {TABLE_OPTIONS}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {lock} (\
                 id TINYINT UNSIGNED NOT NULL, PRIMARY KEY (id)) {TABLE_OPTIONS}"
            ),
            keys.create.clone(),
        ];
        let tracking_key = match tracking_layout {
            TrackingLayout::SingleRow => "application_name",
            TrackingLayout::MultiRow => "application_name, notification_id",
        };
        let create_tracking = format!(
            "CREATE TABLE IF NOT EXISTS {tracking} (\
             application_name VARCHAR({MAX_APP_CHARS}) NOT NULL, \
             notification_id BIGINT UNSIGNED NOT NULL, \
             PRIMARY KEY ({tracking_key})) {TABLE_OPTIONS}"
        );
        let select_from = |table: &str, order: &str| {
            format!(
                "SELECT originator_id, originator_version, topic, state FROM {table} \
                 WHERE originator_id = ? AND originator_version >= ? AND originator_version <= ? \
                 ORDER BY originator_version {order} LIMIT ?"
            )
        };
        let (insert_tracking, has_tracking_id) = match tracking_layout {
            TrackingLayout::SingleRow => (
                format!(
                    "INSERT INTO {tracking} (application_name, notification_id) VALUES (?, ?) \
                     ON DUPLICATE KEY UPDATE notification_id = VALUES(notification_id)"
                ),
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {tracking} \
                     WHERE application_name = ? AND notification_id >= ?)"
                ),
            ),
            TrackingLayout::MultiRow => (
                format!("INSERT INTO {tracking} (application_name, notification_id) VALUES (?, ?)"),
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {tracking} \
                     WHERE application_name = ? AND notification_id = ?)"
                ),
            ),
        };
        Self {
            bare_tracking: format!("{prefix}_tracking"),
            tracking_layout,
            lock_row: format!("INSERT IGNORE INTO {lock} (id) VALUES (1)"),
            migration_row: (tracking_layout == TrackingLayout::SingleRow).then(|| {
                format!(
                    "INSERT IGNORE INTO {tracking} (application_name, notification_id) \
                     VALUES ('{MIGRATION_ROW}', 1)"
                )
            }),
            create,
            create_tracking,
            // A locking read of the one row: held until COMMIT, ROLLBACK
            // or the connection's end, whichever comes first.
            begin_and_lock: format!(
                "START TRANSACTION; SELECT id FROM {lock} WHERE id = 1 FOR UPDATE"
            ),
            select_events_asc: select_from(&events, "ASC"),
            select_events_desc: select_from(&events, "DESC"),
            select_snapshots_asc: select_from(&snapshots, "ASC"),
            select_snapshots_desc: select_from(&snapshots, "DESC"),
            select_notifications: format!(
                "SELECT notification_id, originator_id, originator_version, topic, state \
                 FROM {events} WHERE notification_id >= ? AND notification_id <= ?"
            ),
            max_notification_id: format!("SELECT MAX(notification_id) FROM {events}"),
            max_tracking_id: format!(
                "SELECT MAX(notification_id) FROM {tracking} WHERE application_name = ?"
            ),
            has_tracking_id,
            tracked_applications: format!(
                "SELECT DISTINCT application_name FROM {tracking} \
                 WHERE application_name <> '{MIGRATION_ROW}' ORDER BY 1"
            ),
            tracked_for_update: format!(
                "SELECT notification_id FROM {tracking} WHERE application_name = ? FOR UPDATE"
            ),
            insert_tracking,
            insert_outcome: format!(
                "INSERT INTO {outcomes} (idempotency_key, outcome) VALUES (?, ?)"
            ),
            select_outcome: format!("SELECT outcome FROM {outcomes} WHERE idempotency_key = ?"),
            events,
            snapshots,
            tracking,
            outcomes,
            lock,
            django_app: None,
            keys,
        }
    }

    /// The statements of eventsourcing_django's tables, application
    /// `app`'s rows (`app` checked by `django::application_name`: it goes
    /// into the SQL as a literal), read and bound as [`new`](Self::new)'s
    /// are. Ids are `stored_events.id`; tracking is a row per
    /// notification. `originator_id` is Django's `UUIDField`: MariaDB's
    /// `uuid` type (Django 5 on MariaDB 10.7+) or `char(32)` hex (MySQL);
    /// either takes annals' 32 hex digits, and is read back as them.
    /// Writers lock the table's last row and the gap after it, at
    /// REPEATABLE READ, so that an insert of a newer id, by annals or by
    /// Django (which takes no lock itself), waits for the writer's
    /// commit: ids are given and committed in one order. No statement
    /// creates anything: Django's migrations do.
    pub(crate) fn django(app: &str) -> Self {
        use annals_core::persistence::django::{EVENTS, SNAPSHOTS, TRACKING};
        let (events, snapshots, tracking) = (
            format!("`{EVENTS}`"),
            format!("`{SNAPSHOTS}`"),
            format!("`{TRACKING}`"),
        );
        let app = format!("'{app}'");
        let id = "REPLACE(CAST(originator_id AS CHAR), '-', '')";
        let select_from = |table: &str, order: &str| {
            format!(
                "SELECT {id}, originator_version, topic, state FROM {table} \
                 WHERE application_name = {app} AND originator_id = ? \
                 AND originator_version >= ? AND originator_version <= ? \
                 ORDER BY originator_version {order} LIMIT ?"
            )
        };
        let none = "SELECT 1 FROM DUAL WHERE FALSE".to_owned();
        Self {
            bare_tracking: TRACKING.to_owned(),
            tracking_layout: TrackingLayout::MultiRow,
            lock_row: none.clone(),
            migration_row: None,
            create: [
                none.clone(),
                none.clone(),
                none.clone(),
                none.clone(),
                none.clone(),
            ],
            create_tracking: none.clone(),
            // The trailing `SELECT 1` is the row that says the lock was
            // taken: the table may be empty (its gap is locked then).
            begin_and_lock: format!(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION; \
                 SELECT id FROM {events} ORDER BY id DESC LIMIT 1 FOR UPDATE; SELECT 1"
            ),
            select_events_asc: select_from(&events, "ASC"),
            select_events_desc: select_from(&events, "DESC"),
            select_snapshots_asc: select_from(&snapshots, "ASC"),
            select_snapshots_desc: select_from(&snapshots, "DESC"),
            select_notifications: format!(
                "SELECT id, {id}, originator_version, topic, state FROM {events} \
                 WHERE application_name = {app} AND id >= ? AND id <= ?"
            ),
            max_notification_id: format!(
                "SELECT MAX(id) FROM {events} WHERE application_name = {app}"
            ),
            max_tracking_id: format!(
                "SELECT MAX(notification_id) FROM {tracking} \
                 WHERE application_name = {app} AND upstream_application_name = ?"
            ),
            has_tracking_id: format!(
                "SELECT EXISTS (SELECT 1 FROM {tracking} WHERE application_name = {app} \
                 AND upstream_application_name = ? AND notification_id = ?)"
            ),
            tracked_applications: format!(
                "SELECT DISTINCT upstream_application_name FROM {tracking} \
                 WHERE application_name = {app} ORDER BY 1"
            ),
            tracked_for_update: none.clone(),
            insert_tracking: format!(
                "INSERT INTO {tracking} (application_name, upstream_application_name, notification_id) \
                 VALUES ({app}, ?, ?)"
            ),
            // Refused before these would run (`django::no_keys`).
            insert_outcome: none.clone(),
            select_outcome: none,
            outcomes: events.clone(),
            lock: events.clone(),
            events,
            snapshots,
            tracking,
            django_app: Some(app),
            // Never used: no key store under Django's tables.
            keys: crate::keys::KeySql::new("``", ""),
        }
    }

    /// `INSERT` of `rows` events into `table` (the events' or snapshots').
    pub(crate) fn insert_rows(&self, table: &str, rows: usize) -> String {
        let (columns, row) = match &self.django_app {
            Some(app) => (
                "application_name, originator_id, originator_version, topic, state",
                format!("({app}, ?, ?, ?, ?)"),
            ),
            None => (
                "originator_id, originator_version, topic, state",
                "(?, ?, ?, ?)".to_owned(),
            ),
        };
        let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
        for i in 0..rows {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&row);
        }
        sql
    }

    /// `select_notifications` for `topics` topics (0: all), ordered and limited.
    pub(crate) fn select_notifications(&self, topics: usize) -> String {
        let mut sql = self.select_notifications.clone();
        if topics > 0 {
            sql.push_str(" AND topic IN (");
            for i in 0..topics {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
            }
            sql.push(')');
        }
        sql.push_str(if self.django_app.is_some() {
            " ORDER BY id LIMIT ?"
        } else {
            " ORDER BY notification_id LIMIT ?"
        });
        sql
    }
}

/// Whether table `?` of the current database exists, and its primary
/// key's columns, in order (one row per column).
pub(crate) const PRIMARY_KEY: &str = "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
     ORDER BY ORDINAL_POSITION";

/// Whether table `?` of the current database exists.
pub(crate) const TABLE_EXISTS: &str = "SELECT COUNT(*) FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?";

/// A savepoint for a save that joins a group.
pub(crate) const SAVEPOINT: &str = "SAVEPOINT annals_save";
/// Undoes a joining save.
pub(crate) const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT annals_save";
