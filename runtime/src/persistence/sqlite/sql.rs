//! Every SQL statement of the SQLite store, built once from the table
//! names.

use super::settings::Tables;
use crate::persistence::{EventQuery, NotificationQuery};

/// The SQL the recorder runs, built once from the table names.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) create: Vec<String>,
    pub(super) insert_event: String,
    pub(super) insert_tracking: String,
    pub(super) max_notification_id: String,
    pub(super) max_tracking_id: String,
    pub(super) has_tracking_id: String,
    pub(super) events_table: String,
    pub(super) tracking_table: String,
}

impl Statements {
    pub(super) fn new(t: &Tables) -> Self {
        Self {
            create: vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))",
                    t.events
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID",
                    t.snapshots
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (application_name TEXT, notification_id INTEGER, PRIMARY KEY (application_name, notification_id)) WITHOUT ROWID",
                    t.tracking
                ),
            ],
            insert_event: format!("INSERT INTO {} VALUES (?1, ?2, ?3, ?4)", t.events),
            insert_tracking: format!("INSERT INTO {} VALUES (?1, ?2)", t.tracking),
            max_notification_id: format!("SELECT MAX(rowid) FROM {}", t.events),
            max_tracking_id: format!(
                "SELECT MAX(notification_id) FROM {} WHERE application_name = ?1",
                t.tracking
            ),
            has_tracking_id: format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE application_name = ?1 AND notification_id = ?2)",
                t.tracking
            ),
            events_table: t.events.clone(),
            tracking_table: t.tracking.clone(),
        }
    }

    pub(super) fn select_notifications(&self, query: &NotificationQuery) -> String {
        let mut sql = format!(
            "SELECT rowid, originator_id, originator_version, topic, state FROM {} WHERE rowid >= ?1",
            self.events_table
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
        sql.push_str(" ORDER BY rowid LIMIT ?3");
        sql
    }
}

/// `SELECT` of one stream of `table`, as `query` says.
pub(super) fn select_events_sql(table: &str, query: &EventQuery) -> String {
    let mut sql =
        format!("SELECT originator_version, topic, state FROM {table} WHERE originator_id = ?1");
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
    if query.limit.is_some() {
        sql.push_str(" LIMIT ?4");
    }
    sql
}
