//! Every SQL statement of the SQLite store, built once from the table
//! names.

use std::fmt::Write as _;
use std::sync::Arc;

use super::settings::Tables;
use annals_core::persistence::{EventQuery, NotificationQuery, TrackingLayout, MIGRATION_ROW};

/// The columns of table `?1` with each one's position in the primary key
/// (0: not in it); no rows when the table does not exist.
pub(super) const TABLE_KEY: &str = "SELECT name, pk FROM pragma_table_info(?1)";

/// The SQL the recorder runs, built once from the table names and the
/// tracking table's layout.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) create: Vec<String>,
    /// Shared with the saves queued for the writer's holder.
    pub(super) insert_event: Arc<str>,
    /// Multi-row: a plain insert (a duplicate is a constraint violation).
    /// Single-row: an upsert that only moves the row forward, returning
    /// the id when it did (no row: tracked already).
    pub(super) insert_tracking: String,
    pub(super) tracking_layout: TrackingLayout,
    pub(super) max_notification_id: String,
    pub(super) max_tracking_id: String,
    pub(super) has_tracking_id: String,
    /// The upstream applications tracked, sorted (the single-row
    /// layout's marker row left out).
    pub(super) tracked_applications: String,
    /// An idempotency key and its outcome (a stored key: a constraint
    /// violation).
    pub(super) insert_outcome: String,
    pub(super) select_outcome: String,
    pub(super) events_table: String,
    pub(super) tracking_table: String,
    pub(super) outcomes_table: String,
    /// The condition that picks the application's rows, with its `AND`
    /// ([`Tables::rows`]).
    pub(super) rows: String,
}

impl Statements {
    pub(super) fn new(t: &Tables, layout: TrackingLayout) -> Self {
        if let Some(app) = &t.django_app {
            return Self::django(t, app);
        }
        let tracking = &t.tracking;
        let (tracking_key, insert_tracking, has_tracking_id) = match layout {
            TrackingLayout::SingleRow => (
                "application_name",
                format!(
                    "INSERT INTO {tracking} VALUES (?1, ?2) ON CONFLICT (application_name) \
                     DO UPDATE SET notification_id = excluded.notification_id \
                     WHERE {tracking}.notification_id < excluded.notification_id \
                     RETURNING notification_id"
                ),
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {tracking} WHERE application_name = ?1 AND notification_id >= ?2)"
                ),
            ),
            TrackingLayout::MultiRow => (
                "application_name, notification_id",
                format!("INSERT INTO {tracking} VALUES (?1, ?2)"),
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {tracking} WHERE application_name = ?1 AND notification_id = ?2)"
                ),
            ),
        };
        let mut create = vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))",
                    t.events
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID",
                    t.snapshots
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {tracking} (application_name TEXT, notification_id INTEGER, PRIMARY KEY ({tracking_key})) WITHOUT ROWID"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (idempotency_key TEXT PRIMARY KEY, outcome BLOB NOT NULL) WITHOUT ROWID",
                    t.outcomes
                ),
                super::keys::KeySql::create(&t.keys),
            ];
        if layout == TrackingLayout::SingleRow {
            // The row by which the Python library knows a single-row table
            // (one without it, it renames and replaces).
            create.push(format!(
                "INSERT INTO {tracking} VALUES ('{MIGRATION_ROW}', 1) ON CONFLICT (application_name) DO NOTHING"
            ));
        }
        Self {
            create,
            insert_event: format!("INSERT INTO {} VALUES (?1, ?2, ?3, ?4)", t.events).into(),
            insert_tracking,
            tracking_layout: layout,
            max_notification_id: format!("SELECT MAX(rowid) FROM {}", t.events),
            max_tracking_id: format!(
                "SELECT MAX(notification_id) FROM {} WHERE application_name = ?1",
                t.tracking
            ),
            has_tracking_id,
            tracked_applications: format!(
                "SELECT DISTINCT application_name FROM {} \
                 WHERE application_name <> '{MIGRATION_ROW}' ORDER BY 1",
                t.tracking
            ),
            insert_outcome: format!("INSERT INTO {} VALUES (?1, ?2)", t.outcomes),
            select_outcome: format!(
                "SELECT outcome FROM {} WHERE idempotency_key = ?1",
                t.outcomes
            ),
            events_table: t.events.clone(),
            tracking_table: t.tracking.clone(),
            outcomes_table: t.outcomes.clone(),
            rows: String::new(),
        }
    }

    /// eventsourcing_django's statements, application `app`'s rows (`app`
    /// an SQL literal): ids from `stored_events.id` (the rowid), tracking
    /// a row per notification, nothing created, no idempotency keys (the
    /// recorder refuses them first).
    fn django(t: &Tables, app: &str) -> Self {
        let (events, tracking) = (&t.events, &t.tracking);
        let none = "SELECT NULL WHERE 0".to_owned();
        Self {
            create: Vec::new(),
            insert_event: format!(
                "INSERT INTO {events} (application_name, originator_id, originator_version, topic, state) \
                 VALUES ({app}, ?1, ?2, ?3, ?4)"
            )
            .into(),
            insert_tracking: format!(
                "INSERT INTO {tracking} (application_name, upstream_application_name, notification_id) \
                 VALUES ({app}, ?1, ?2)"
            ),
            tracking_layout: TrackingLayout::MultiRow,
            max_notification_id: format!(
                "SELECT MAX(id) FROM {events} WHERE application_name = {app}"
            ),
            max_tracking_id: format!(
                "SELECT MAX(notification_id) FROM {tracking} \
                 WHERE application_name = {app} AND upstream_application_name = ?1"
            ),
            has_tracking_id: format!(
                "SELECT EXISTS (SELECT 1 FROM {tracking} WHERE application_name = {app} \
                 AND upstream_application_name = ?1 AND notification_id = ?2)"
            ),
            tracked_applications: format!(
                "SELECT DISTINCT upstream_application_name FROM {tracking} \
                 WHERE application_name = {app} ORDER BY 1"
            ),
            insert_outcome: none.clone(),
            select_outcome: none,
            events_table: events.clone(),
            tracking_table: tracking.clone(),
            outcomes_table: t.outcomes.clone(),
            rows: t.rows(),
        }
    }

    pub(super) fn select_notifications(&self, query: &NotificationQuery) -> String {
        let mut sql = format!(
            "SELECT rowid, originator_id, originator_version, topic, state FROM {} WHERE {}rowid >= ?1",
            self.events_table, self.rows
        );
        if query.stop.is_some() {
            sql.push_str(" AND rowid <= ?2");
        }
        if !query.topics.is_empty() {
            let marks: Vec<String> = (0..query.topics.len())
                .map(|i| format!("?{}", i + 4))
                .collect();
            sql.push_str(&format!(" AND topic IN ({})", marks.join(", ")));
        }
        // Written in, not bound: see `select_events_sql`.
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let _ = write!(sql, " ORDER BY rowid LIMIT {limit}");
        sql
    }
}

/// `SELECT` of one stream of `table` (of the rows `rows` picks: see
/// [`Tables::rows`]), as `query` says.
pub(super) fn select_events_sql(table: &str, rows: &str, query: &EventQuery) -> String {
    let mut sql = format!(
        "SELECT originator_version, topic, state FROM {table} WHERE {rows}originator_id = ?1"
    );
    if query.gt.is_some() {
        sql.push_str(" AND originator_version > ?2");
    }
    if query.lte.is_some() {
        sql.push_str(" AND originator_version <= ?3");
    }
    sql.push_str(if query.desc {
        " ORDER BY originator_version DESC"
    } else {
        " ORDER BY originator_version"
    });
    // The limit is written into the SQL, not bound: SQLite plans with a
    // bound LIMIT's value, so a statement with one is prepared again at
    // every first step after its parameters change (callgrind: 50,000
    // instructions per get). Each limit is one cached statement.
    if let Some(limit) = query.limit {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let _ = write!(sql, " LIMIT {limit}");
    }
    sql
}
