//! Every SQL statement of the PostgreSQL store, built once per
//! application from validated names.

use super::settings::{OriginatorIdType, MAX_IDENTIFIER};
use annals_core::persistence::{TrackingLayout, MIGRATION_ROW};

/// The storage options the Python library (9.5) creates its tables with:
/// autovacuum on, vacuuming rarely (these tables are appended to), and
/// analyzing often, so the planner's statistics follow the table's growth.
const TABLE_OPTIONS: &str = "WITH (\
    autovacuum_enabled = true, \
    autovacuum_vacuum_threshold = 100000000, \
    autovacuum_vacuum_scale_factor = 0.5, \
    autovacuum_analyze_threshold = 1000, \
    autovacuum_analyze_scale_factor = 0.01)";

/// Whether table `$1` (a qualified, quoted name) exists, and the columns of
/// its primary key.
pub(super) const TABLE_KEY: &str = "SELECT to_regclass($1) IS NOT NULL, \
    ARRAY(SELECT a.attname::text FROM pg_index i \
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
          WHERE i.indrelid = to_regclass($1) AND i.indisprimary)";

/// The type of the `originator_id` column of table `$1` (a qualified,
/// quoted name), if it has one.
pub(super) const ORIGINATOR_ID_COLUMN: &str = "SELECT format_type(atttypid, atttypmod) \
    FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = 'originator_id'";

/// The statements a connection prepares once and keeps.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stmt {
    InsertEvents,
    InsertEventsSkippingTaken,
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
    UndoInsertEvents,
    InsertOutcome,
    SelectOutcome,
}

pub(super) const STATEMENTS: usize = 18;

/// The SQL of one recorder, built once from validated names.
#[derive(Debug)]
pub(super) struct Sql {
    /// The events table, qualified and quoted, as shown in errors.
    pub(super) events: String,
    /// The snapshots table, as `events`.
    pub(super) snapshots: String,
    /// The tracking table, as `events`.
    pub(super) tracking: String,
    /// The table of idempotency keys and their outcomes, as `events`.
    pub(super) outcomes: String,
    /// `{name}_events`, the NOTIFY channel.
    pub(super) channel: String,
    /// The unique index on the events' notification ids.
    pub(super) index: String,
    /// The layout of the tracking table these statements write.
    pub(super) tracking_layout: TrackingLayout,
    pub(super) begin_and_lock: String,
    /// `begin_and_lock`, then [`sync_sequence`](Self::sync_sequence): for
    /// a writer's first transaction.
    pub(super) begin_lock_and_sync: String,
    /// Moves the notification id sequence past the highest id stored, if it
    /// is behind (tables that annals numbered itself, before it took ids
    /// from the sequence); run under the events table's lock.
    pub(super) sync_sequence: String,
    pub(super) notify_and_commit: String,
    /// The events table, its notification id index, the snapshots table
    /// and the outcomes table, each if missing: run only for what is
    /// missing, since even `IF NOT EXISTS` needs the right to create in the
    /// schema (and, for the index, to own the table), which a service's
    /// role may not have.
    pub(super) create: [String; 4],
    /// Whether each of [`create`](Self::create)'s objects is missing
    /// (`to_regclass` of each is NULL), in its order.
    pub(super) missing: String,
    /// The tracking table in this layout, if missing.
    pub(super) create_tracking: String,
    /// (Single-row layout) the row by which the Python library knows the
    /// layout, if missing; and whether the table has it.
    pub(super) migration_row: Option<(String, String)>,
    /// Whether the notification id sequence is behind the ids stored
    /// ([`sync_sequence`](Self::sync_sequence)'s condition, without the
    /// lock that needs more than the right to read).
    pub(super) sequence_behind: String,
    pub(super) statements: [String; STATEMENTS],
    /// Whether these are the statements of eventsourcing_django's tables
    /// (see [`Sql::django`]).
    pub(super) django: bool,
    /// The data keys table's statements (none under Django's tables).
    pub(super) keys: crate::recorder::KeySql,
    /// Deletes the events of stream `$1` below version `$2`, returning
    /// them (ending a stream: its tombstone is at `$2`).
    pub(super) delete_events: String,
    /// Deletes the snapshots of stream `$1`, returning them.
    pub(super) delete_snapshots: String,
    /// The upstream applications tracked, sorted (the single-row
    /// layout's marker row left out).
    pub(super) tracked_applications: String,
    /// The events table's columns an import copies into (`COPY ... FROM
    /// STDIN`), with the value of any that is not an event's (the Django
    /// tables' `application_name`).
    pub(super) copy_events: String,
    /// The application's name, for the Django tables' `application_name`.
    pub(super) copy_application: Option<String>,
}

/// `DELETE` of one stream's rows of `table` (with `rows`, the condition
/// that picks the application's rows, and its `AND`), below version `$2`
/// when `below` is set, returning them as the selects do.
fn delete_stream(table: &str, rows: &str, below: bool) -> String {
    let below = if below {
        " AND originator_version < $2"
    } else {
        ""
    };
    format!(
        "DELETE FROM {table} WHERE {rows}originator_id = $1{below} \
         RETURNING originator_id, originator_version, topic, state"
    )
}

impl Sql {
    pub(super) fn new(
        prefix: &str,
        schema: Option<&str>,
        id_type: OriginatorIdType,
        tracking_layout: TrackingLayout,
    ) -> Self {
        let qualify = |table: &str| match schema {
            Some(schema) => format!("\"{schema}\".\"{table}\""),
            None => format!("\"{table}\""),
        };
        let channel = format!("{prefix}_events");
        let events = qualify(&channel);
        let tracking = qualify(&format!("{prefix}_tracking"));
        let snapshots = qualify(&format!("{prefix}_snapshots"));
        // Not a Python table; as short as `_snapshots`, so it fits too.
        let outcomes = qualify(&format!("{prefix}_outcomes"));
        let keys =
            crate::recorder::KeySql::new(&qualify(&format!("{prefix}_data_keys")), TABLE_OPTIONS);
        // As Python names it; PostgreSQL would truncate a longer name to
        // these same 63 bytes (the name is ASCII).
        let mut index = format!("{prefix}_events_notification_id_idx");
        index.truncate(MAX_IDENTIFIER);
        let id = id_type.sql();
        let create = [
            format!(
                "CREATE TABLE IF NOT EXISTS {events} (\
                     originator_id {id} NOT NULL, \
                     originator_version bigint NOT NULL, \
                     topic text, \
                     state bytea, \
                     notification_id bigserial, \
                     PRIMARY KEY (originator_id, originator_version)) {TABLE_OPTIONS}"
            ),
            format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS \"{index}\" ON {events} (notification_id ASC)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {snapshots} (\
                     originator_id {id} NOT NULL, \
                     originator_version bigint NOT NULL, \
                     topic text, \
                     state bytea, \
                     PRIMARY KEY (originator_id, originator_version)) {TABLE_OPTIONS}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {outcomes} (\
                     idempotency_key text NOT NULL, \
                     outcome bytea NOT NULL, \
                     PRIMARY KEY (idempotency_key)) {TABLE_OPTIONS}"
            ),
        ];
        let missing = format!(
            "SELECT to_regclass('{events}') IS NULL, to_regclass('{}') IS NULL, \
             to_regclass('{snapshots}') IS NULL, to_regclass('{outcomes}') IS NULL",
            qualify(&index)
        );
        let migration_row = (tracking_layout == TrackingLayout::SingleRow).then(|| {
            (
                format!(
                    "INSERT INTO {tracking} VALUES ('{MIGRATION_ROW}', 1) \
                     ON CONFLICT (application_name) DO NOTHING"
                ),
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {tracking} \
                     WHERE application_name = '{MIGRATION_ROW}')"
                ),
            )
        });
        let create_tracking = match tracking_layout {
            TrackingLayout::SingleRow => format!(
                "CREATE TABLE IF NOT EXISTS {tracking} (\
                     application_name text, \
                     notification_id bigint, \
                     PRIMARY KEY (application_name)) {TABLE_OPTIONS}"
            ),
            TrackingLayout::MultiRow => format!(
                "CREATE TABLE IF NOT EXISTS {tracking} (\
                     application_name text, \
                     notification_id bigint, \
                     PRIMARY KEY (application_name, notification_id)) {TABLE_OPTIONS}"
            ),
        };
        let (insert_tracking, has_tracking_id) = match tracking_layout {
            // Python's upsert: moves the row forward, or returns no row.
            TrackingLayout::SingleRow => (
                format!(
                    "INSERT INTO {tracking} AS t (application_name, notification_id) \
                     VALUES ($1, $2) ON CONFLICT (application_name) \
                     DO UPDATE SET notification_id = EXCLUDED.notification_id \
                     WHERE t.notification_id < EXCLUDED.notification_id \
                     RETURNING notification_id"
                ),
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {tracking} \
                     WHERE application_name = $1 AND notification_id >= $2)"
                ),
            ),
            TrackingLayout::MultiRow => (
                format!(
                    "INSERT INTO {tracking} (application_name, notification_id) VALUES ($1, $2)"
                ),
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {tracking} \
                     WHERE application_name = $1 AND notification_id = $2)"
                ),
            ),
        };
        // The name is validated ASCII, quoted: it goes into a literal as it
        // is. `pg_sequence_last_value` is NULL until the sequence is first
        // used; `setval(s, max)` makes the next id max + 1.
        let behind = format!(
            "FROM (SELECT pg_get_serial_sequence('{events}', 'notification_id') AS seq) AS s, \
                  (SELECT MAX(notification_id) AS max FROM {events}) AS m \
             WHERE s.seq IS NOT NULL \
               AND m.max > COALESCE(pg_sequence_last_value(s.seq::regclass), 0)"
        );
        let sync_sequence = format!("SELECT setval(s.seq, m.max) {behind}");
        let sequence_behind = format!("SELECT EXISTS (SELECT 1 {behind})");
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
        let insert_events = format!(
            "INSERT INTO {events} (originator_id, originator_version, topic, state) \
             SELECT u.o, u.v, u.t, u.s \
             FROM unnest($1::{id}[], $2::bigint[], $3::text[], $4::bytea[]) \
                 WITH ORDINALITY AS u(o, v, t, s, n) \
             ORDER BY u.n"
        );
        let statements = [
            // Ids from the column's sequence (its default), as the Python
            // library's inserts take them, in the rows' order; under the
            // table lock, which Python's writers take too, so ids are drawn
            // and committed in one order.
            format!("{insert_events} RETURNING notification_id"),
            // For a save that joins a group: a taken key is skipped, not an
            // error. An error would abort the group's whole transaction;
            // a save stored in part (fewer ids back) is undone alone by
            // `UndoInsertEvents`, with no savepoint round trip.
            format!(
                "{insert_events} ON CONFLICT (originator_id, originator_version) DO NOTHING \
                 RETURNING notification_id"
            ),
            insert_tracking,
            select_events("ASC"),
            select_events("DESC"),
            select_notifications(""),
            select_notifications(" AND topic = ANY($3)"),
            select_notifications(" AND notification_id <= $3"),
            select_notifications(" AND notification_id <= $3 AND topic = ANY($4)"),
            format!("SELECT MAX(notification_id) FROM {events}"),
            format!("SELECT MAX(notification_id) FROM {tracking} WHERE application_name = $1"),
            has_tracking_id,
            format!(
                "INSERT INTO {snapshots} (originator_id, originator_version, topic, state) \
                 SELECT * FROM unnest($1::{id}[], $2::bigint[], $3::text[], $4::bytea[])"
            ),
            select_from(&snapshots, "ASC"),
            select_from(&snapshots, "DESC"),
            // Deletes the rows `InsertEvents` did store ($1, their ids) of
            // a save it stored only part of, and names a key of the save
            // ($2, $3) that another row has. The select sees the table as
            // it was before the delete, so the save's own rows are left out.
            format!(
                "WITH undone AS (DELETE FROM {events} WHERE notification_id = ANY($1::bigint[])) \
                 SELECT e.originator_id::text, e.originator_version \
                 FROM {events} e \
                 JOIN unnest($2::{id}[], $3::bigint[]) AS u(o, v) \
                     ON e.originator_id = u.o AND e.originator_version = u.v \
                 WHERE e.notification_id <> ALL($1::bigint[]) \
                 LIMIT 1"
            ),
            // No row back: the key is stored (by another save, committed;
            // a concurrent one is waited for). Not an error, which would
            // abort the group's transaction.
            format!(
                "INSERT INTO {outcomes} (idempotency_key, outcome) VALUES ($1, $2) \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1"
            ),
            format!("SELECT outcome FROM {outcomes} WHERE idempotency_key = $1"),
        ];
        let tracked_applications = format!(
            "SELECT DISTINCT application_name FROM {tracking} \
             WHERE application_name <> '{MIGRATION_ROW}' ORDER BY 1"
        );
        let copy_events = format!(
            "COPY {events} (originator_id, originator_version, topic, state) \
             FROM STDIN (FORMAT binary)"
        );
        let begin_and_lock = format!("BEGIN; LOCK TABLE {events} IN EXCLUSIVE MODE");
        Self {
            delete_events: delete_stream(&events, "", true),
            delete_snapshots: delete_stream(&snapshots, "", false),
            begin_lock_and_sync: format!("{begin_and_lock}; {sync_sequence}"),
            begin_and_lock,
            sync_sequence,
            notify_and_commit: format!("NOTIFY \"{channel}\"; COMMIT"),
            events,
            snapshots,
            tracking,
            outcomes,
            channel,
            index,
            tracking_layout,
            create,
            missing,
            create_tracking,
            migration_row,
            sequence_behind,
            statements,
            django: false,
            keys,
            tracked_applications,
            copy_events,
            copy_application: None,
        }
    }

    /// The statements of eventsourcing_django's tables for application
    /// `app` (checked by `django::application_name`: it goes into the SQL
    /// as a literal), in the same order and with the same parameters and
    /// columns as [`new`](Self::new)'s, so that the recorder runs them
    /// alike. The rows are the application's (`application_name`); the ids
    /// are the table's `id` column; tracking is a row per notification
    /// (the package's `notification_tracking`); writers take the lock the
    /// package takes (`LOCK TABLE stored_events IN EXCLUSIVE MODE`). No
    /// statement creates anything: Django's migrations do.
    pub(super) fn django(app: &str, schema: Option<&str>) -> Self {
        use annals_core::persistence::django::{EVENTS, SNAPSHOTS, TRACKING};
        let qualify = |table: &str| match schema {
            Some(schema) => format!("\"{schema}\".\"{table}\""),
            None => format!("\"{table}\""),
        };
        let (events, snapshots, tracking) =
            (qualify(EVENTS), qualify(SNAPSHOTS), qualify(TRACKING));
        let app_name = app;
        let app = format!("'{app}'");
        let select_from = |table: &str, order: &str| {
            format!(
                "SELECT originator_id, originator_version, topic, state FROM {table} \
                 WHERE application_name = {app} AND originator_id = $1 \
                 AND originator_version > $2 AND originator_version <= $3 \
                 ORDER BY originator_version {order} LIMIT $4"
            )
        };
        let select_notifications = |filter: &str| {
            format!(
                "SELECT id, originator_id, originator_version, topic, state \
                 FROM {events} WHERE application_name = {app} AND id >= $1{filter} \
                 ORDER BY id LIMIT $2"
            )
        };
        let insert_events = format!(
            "INSERT INTO {events} (application_name, originator_id, originator_version, topic, state) \
             SELECT {app}, u.o, u.v, u.t, u.s \
             FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[]) \
                 WITH ORDINALITY AS u(o, v, t, s, n) \
             ORDER BY u.n"
        );
        let none = "SELECT NULL WHERE false".to_owned();
        let statements = [
            format!("{insert_events} RETURNING id"),
            format!(
                "{insert_events} ON CONFLICT (application_name, originator_id, originator_version) \
                 DO NOTHING RETURNING id"
            ),
            format!(
                "INSERT INTO {tracking} (application_name, upstream_application_name, notification_id) \
                 VALUES ({app}, $1, $2)"
            ),
            select_from(&events, "ASC"),
            select_from(&events, "DESC"),
            select_notifications(""),
            select_notifications(" AND topic = ANY($3)"),
            select_notifications(" AND id <= $3"),
            select_notifications(" AND id <= $3 AND topic = ANY($4)"),
            format!("SELECT MAX(id) FROM {events} WHERE application_name = {app}"),
            format!(
                "SELECT MAX(notification_id) FROM {tracking} \
                 WHERE application_name = {app} AND upstream_application_name = $1"
            ),
            format!(
                "SELECT EXISTS (SELECT 1 FROM {tracking} WHERE application_name = {app} \
                 AND upstream_application_name = $1 AND notification_id = $2)"
            ),
            format!(
                "INSERT INTO {snapshots} (application_name, originator_id, originator_version, topic, state) \
                 SELECT {app}, u.o, u.v, u.t, u.s \
                 FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[]) AS u(o, v, t, s)"
            ),
            select_from(&snapshots, "ASC"),
            select_from(&snapshots, "DESC"),
            format!(
                "WITH undone AS (DELETE FROM {events} WHERE id = ANY($1::bigint[])) \
                 SELECT e.originator_id::text, e.originator_version \
                 FROM {events} e \
                 JOIN unnest($2::uuid[], $3::bigint[]) AS u(o, v) \
                     ON e.originator_id = u.o AND e.originator_version = u.v \
                 WHERE e.application_name = {app} AND e.id <> ALL($1::bigint[]) \
                 LIMIT 1"
            ),
            // Idempotency keys have no table here: refused before these
            // would run (`django::no_keys`).
            none.clone(),
            none.clone(),
        ];
        let tracked_applications = format!(
            "SELECT DISTINCT upstream_application_name::text FROM {tracking} \
             WHERE application_name = {app} ORDER BY 1"
        );
        let copy_events = format!(
            "COPY {events} (application_name, originator_id, originator_version, topic, state) \
             FROM STDIN (FORMAT binary)"
        );
        let begin_and_lock = format!("BEGIN; LOCK TABLE {events} IN EXCLUSIVE MODE");
        let rows = format!("application_name = {app} AND ");
        Self {
            delete_events: delete_stream(&events, &rows, true),
            delete_snapshots: delete_stream(&snapshots, &rows, false),
            begin_lock_and_sync: begin_and_lock.clone(),
            begin_and_lock,
            sync_sequence: none.clone(),
            notify_and_commit: format!("NOTIFY \"{EVENTS}\"; COMMIT"),
            channel: EVENTS.to_owned(),
            // A taken id would break the primary key.
            index: format!("{EVENTS}_pkey"),
            outcomes: events.clone(),
            events,
            snapshots,
            tracking,
            tracking_layout: TrackingLayout::MultiRow,
            create: [none.clone(), none.clone(), none.clone(), none.clone()],
            missing: format!(
                "SELECT to_regclass('{}') IS NULL, to_regclass('{}') IS NULL, \
                 to_regclass('{}') IS NULL",
                qualify(EVENTS),
                qualify(SNAPSHOTS),
                qualify(TRACKING)
            ),
            create_tracking: none.clone(),
            migration_row: None,
            sequence_behind: "SELECT false".to_owned(),
            statements,
            django: true,
            // Never used: no key store under Django's tables.
            keys: crate::recorder::KeySql::new("\"\"", ""),
            tracked_applications,
            copy_events,
            copy_application: Some(app_name.to_owned()),
        }
    }
}
