//! The MariaDB/MySQL recorders: events (with the log, tracking records and
//! idempotency keys) and snapshots, on one pool, with writes under group
//! commit.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Params, Value};
use r2d2::{Pool, PooledConnection};

use super::pool::{
    described, is_broken, server_code, setting_at_fault, Conn, Connections, Manager, Transport,
};
use super::settings::{table_prefix, MysqlConfig};
use super::sql::{Sql, MAX_APP_CHARS, MAX_ID_CHARS, MAX_KEY_CHARS, PRIMARY_KEY, TABLE_EXISTS};
use super::writer::{GroupWriter, WriteError, DUPLICATE_KEY};
use annals_core::error::{Error, Result};
use annals_core::persistence::group_commit::{CommitFailure, GroupCommit, SaveFailure};
use annals_core::persistence::wake::{Signal, Watch};
use annals_core::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, KeyedOutcome, Notification,
    NotificationQuery, ProcessRecorder, StoreTx, StoredEvent, Tracking, TrackingLayout, UserWrites,
    MIGRATION_ROW,
};
use annals_core::settings;

/// How often a watcher looks at the highest notification id.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

/// A row of a stream: id, version, topic, state.
type EventRow = (String, u64, String, Vec<u8>);

/// Stores events in MariaDB or MySQL, in tables of the application's own
/// (`{name}_events`, `{name}_snapshots`, `{name}_tracking`,
/// `{name}_outcomes`, `{name}_data_keys` and `{name}_lock`, the writers'
/// lock), through a pool
/// of connections. `Send + Sync`: share it behind an `Arc`. An application
/// opens one itself (`PERSISTENCE_MODULE=mysql`); open one directly to read
/// or write the rows.
///
/// ```no_run
/// use annals_mysql::{MysqlConfig, MysqlRecorder};
/// use annals_core::persistence::{AggregateRecorder, ApplicationRecorder, EventQuery, StoredEvent};
///
/// let recorder = MysqlRecorder::open(&MysqlConfig::new("test"), "kennel")?; // kennel_events, ...
/// let row = StoredEvent {
///     originator_id: format!("dog-{}", std::process::id()),
///     originator_version: 1,
///     topic: "Dog.Registered".into(),
///     state: b"{}".to_vec(),
/// };
/// let ids = recorder.insert_events(std::slice::from_ref(&row))?;
/// assert_eq!(recorder.select_events(&row.originator_id, &EventQuery::all())?.len(), 1);
/// assert!(recorder.max_notification_id()? >= ids[0]);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone)]
pub struct MysqlRecorder {
    connections: Connections,
    /// How to open a connection of its own (the watcher's).
    transport: Transport,
    sql: Arc<Sql>,
    /// Saves of this process that arrive while one is being written share
    /// its transaction (and its lock and log flush).
    group: Arc<GroupCommit<GroupWriter>>,
}

impl fmt::Debug for MysqlRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlRecorder")
            .field("server", &self.connections.server)
            .field("events", &self.sql.events)
            .finish_non_exhaustive()
    }
}

impl MysqlRecorder {
    /// Connects to the server `config` names and, unless
    /// [`create_tables`](MysqlConfig::create_tables) is off
    /// (`CREATE_TABLE=no`), creates the tables of application `app_name`
    /// if they are missing. The application's name, lower-cased, prefixes
    /// the tables' names: ASCII letters, digits and underscores, not
    /// starting with a digit, at most 54 bytes. An existing tracking table
    /// is used in the layout it has ([`TrackingLayout`], from its primary
    /// key); [`tracking_layout`](MysqlConfig::tracking_layout) decides the
    /// layout of one that is created.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an application name that cannot prefix table
    /// names, a bad setting (naming it), or a tracking table in the
    /// single-row layout when multi-row tracking is asked for, or in
    /// neither layout (naming `SINGLE_ROW_TRACKING`);
    /// [`Error::Persistence`] when the server cannot be reached (naming
    /// its host and port) or the tables cannot be created.
    ///
    /// ```no_run
    /// use annals_core::env::Env;
    /// use annals_mysql::{MysqlConfig, MysqlRecorder};
    ///
    /// let env = Env::from_process("Kennel"); // MYSQL_DBNAME, MYSQL_HOST, ...
    /// let recorder = MysqlRecorder::open(&MysqlConfig::from_env(&env)?, "Kennel")?;
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn open(config: &MysqlConfig, app_name: &str) -> Result<Self> {
        let prefix = if config.django_tables {
            annals_core::persistence::django::application_name(app_name)?.to_owned()
        } else {
            table_prefix(app_name)?
        };
        config.check_naming(str::to_owned)?;
        let transport = Transport::new(config)?;
        let span =
            tracing::info_span!("annals.mysql.open", app = %prefix, server = %transport.server());
        let _entered = span.enter();
        // One connection first, directly: a server that says no (no such
        // database, a wrong password) or is down is an error at once, with
        // what went wrong.
        let first = transport.connect().map_err(|e| {
            let look_at = setting_at_fault(&e)
                .map(|vars| format!(" (check {vars})"))
                .unwrap_or_default();
            Error::persistence(
                format!("connecting to {}{look_at}", config.server()),
                described(e),
            )
        })?;
        let pool = Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(0))
            .connection_timeout(config.connect_timeout)
            // Broken connections are found when used, and handled there:
            // no round trip per checkout.
            .test_on_check_out(false)
            .build_unchecked(Manager {
                transport: transport.clone(),
            });
        let connections = Connections {
            pool,
            server: config.server(),
            pool_size: config.pool_size,
        };
        let mut first = first;
        if config.django_tables {
            check_django_tables(&mut first)?;
            return Ok(Self::with_sql(connections, transport, Sql::django(&prefix)));
        }
        let layout = prepare(&mut first, &prefix, config)?;
        Ok(Self::with_sql(
            connections,
            transport,
            Sql::new(&prefix, layout),
        ))
    }

    fn with_sql(connections: Connections, transport: Transport, sql: Sql) -> Self {
        let sql = Arc::new(sql);
        let writer = GroupWriter::new(connections.clone(), sql.clone());
        Self {
            connections,
            transport,
            sql,
            group: Arc::new(GroupCommit::new(writer, true)),
        }
    }

    /// The layout of the tracking table this recorder writes: the one the
    /// table had when the store was opened, or the one it was created in.
    ///
    /// ```no_run
    /// use annals_core::persistence::TrackingLayout;
    /// use annals_mysql::{MysqlConfig, MysqlRecorder};
    ///
    /// let recorder = MysqlRecorder::open(&MysqlConfig::new("test"), "kennel")?;
    /// assert_eq!(recorder.tracking_layout(), TrackingLayout::SingleRow);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn tracking_layout(&self) -> TrackingLayout {
        self.sql.tracking_layout
    }

    /// The data keys of personal data in the same database (the
    /// `{name}_data_keys` table), on the same pool, written in the saves'
    /// transactions; `None` under eventsourcing_django's tables, which
    /// have no place for them.
    ///
    /// ```no_run
    /// use annals_core::persistence::keys::KeyStore;
    /// use annals_mysql::{MysqlConfig, MysqlRecorder};
    ///
    /// let recorder = MysqlRecorder::open(&MysqlConfig::new("test"), "clinic")?;
    /// let keys = recorder.key_store().expect("annals' own tables keep keys");
    /// assert!(keys.writes_in_saves());
    /// assert_eq!(keys.select_key("nobody")?, None);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn key_store(&self) -> Option<crate::MysqlKeyStore> {
        self.sql.django_app.is_none().then(|| crate::MysqlKeyStore {
            recorder: self.clone(),
        })
    }

    /// The store of snapshots in the same database (the `{name}_snapshots`
    /// table), on the same pool.
    ///
    /// ```no_run
    /// use annals_core::persistence::{AggregateRecorder, EventQuery};
    /// use annals_mysql::{MysqlConfig, MysqlRecorder};
    ///
    /// let snapshots = MysqlRecorder::open(&MysqlConfig::new("test"), "kennel")?.snapshot_recorder();
    /// assert!(snapshots.select_events("dog-none", &EventQuery::all())?.is_empty());
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn snapshot_recorder(&self) -> MysqlSnapshotRecorder {
        MysqlSnapshotRecorder {
            recorder: self.clone(),
        }
    }

    fn checkout(&self) -> Result<PooledConnection<Manager>> {
        self.connections.checkout()
    }

    /// The statements of this recorder's tables.
    pub(crate) fn sql(&self) -> &Sql {
        &self.sql
    }

    /// The error of a failed statement of `table`, with what was being done.
    pub(crate) fn db_error(&self, context: &str, table: &str, e: mysql::Error) -> Error {
        match server_code(&e) {
            Some(DUPLICATE_KEY) if table == self.sql.events || table == self.sql.snapshots => {
                duplicate(&self.sql, &e)
            }
            Some(1205) => Error::persistence(
                format!("{context} ({table}): gave up waiting for a lock ({})", settings::MYSQL_LOCK_TIMEOUT.name),
                described(e),
            ),
            Some(1213) => Error::persistence(
                format!("{context} ({table}): the server chose this transaction as a deadlock's victim and rolled it back; nothing of it was stored"),
                described(e),
            ),
            Some(1146) => Error::persistence(
                format!("{context} ({table}): the table is missing (run `annals migrate`, or open the store with CREATE_TABLE=yes)"),
                described(e),
            ),
            _ => Error::persistence(format!("{context} ({table})"), described(e)),
        }
    }

    /// Runs `f` on a connection; once more on another if the connection
    /// broke.
    pub(crate) fn read<T>(
        &self,
        context: &str,
        table: &str,
        f: impl Fn(&mut Conn) -> Result<T, mysql::Error>,
    ) -> Result<T> {
        let span = tracing::debug_span!("annals.mysql.read", what = context, table);
        let _entered = span.enter();
        let mut conn = self.checkout()?;
        let e = match f(&mut conn) {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if !is_broken(&e) {
            return Err(self.db_error(context, table, e));
        }
        conn.broken = true;
        drop(conn);
        tracing::debug!(error = %e, "the connection broke; reading again on another");
        let mut conn = self.connections.checkout_checked()?;
        f(&mut conn).map_err(|e| {
            conn.broken |= is_broken(&e);
            self.db_error(context, table, e)
        })
    }

    /// One stream of `table` (`asc` and `desc`: its statements).
    fn select_stream(
        &self,
        originator_id: &str,
        query: &EventQuery,
        table: &str,
        [asc, desc]: [&str; 2],
    ) -> Result<Vec<StoredEvent>> {
        if query.gt == Some(u64::MAX) || query.limit == Some(0) {
            return Ok(Vec::new());
        }
        let from = query.gt.map_or(0, |gt| gt + 1);
        let lte = query.lte.unwrap_or(u64::MAX);
        let limit = query.limit.map_or(u64::MAX, |l| l as u64);
        let statement = if query.desc { desc } else { asc };
        let rows = self.read("selecting events", table, |conn| {
            conn.conn
                .exec::<EventRow, _, _>(statement, (originator_id, from, lte, limit))
        })?;
        Ok(rows.into_iter().map(to_event).collect())
    }

    /// Ends stream `originator_id` (of the snapshots table when
    /// `snapshots`) in one transaction of a pooled connection: under the
    /// writers' lock for the events (so the tombstone's id is numbered and
    /// committed in order with theirs), the last row read and checked
    /// ([`annals_core::ending::check_end`]), the tombstone inserted first
    /// (its id above every removed one), then the stream's other rows
    /// deleted. Under eventsourcing_django's tables, this application's
    /// rows only.
    fn end(
        &self,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
        snapshots: bool,
    ) -> Result<Vec<StoredEvent>> {
        let sql = &self.sql;
        let (table, [select_all, select]) = if snapshots {
            (
                &sql.snapshots,
                [&sql.select_snapshots_asc, &sql.select_snapshots_desc],
            )
        } else {
            (
                &sql.events,
                [&sql.select_events_asc, &sql.select_events_desc],
            )
        };
        if let Some(t) = tombstone {
            check_rows(std::slice::from_ref(t), table)?;
        }
        let rows = sql
            .django_app
            .as_ref()
            .map(|app| format!("application_name = {app} AND "))
            .unwrap_or_default();
        // The stream's rows up to `lte`: all of them but the tombstone.
        let lte = tombstone.map_or(u64::MAX, |t| t.originator_version.saturating_sub(1));
        let delete = format!(
            "DELETE FROM {table} WHERE {rows}originator_id = ? AND originator_version <= ?"
        );
        // Read's retry on a broken connection runs it again: the first
        // run's transaction was rolled back by the server, unless the
        // connection broke after its COMMIT, when the rerun finds the
        // tombstone and says the stream ended.
        self.read("ending a stream", table, |conn| {
            if snapshots {
                conn.conn.query_drop("START TRANSACTION")?;
            } else if !super::writer::begin_and_lock(&mut conn.conn, &sql.begin_and_lock)? {
                conn.rollback();
                return Ok(Err(Error::persistence(
                    format!("locking {} for writing", sql.events),
                    format!(
                        "the one row of {} is missing, and writers lock it to number events \
                         in the order they commit: open the store with CREATE_TABLE=yes",
                        sql.lock
                    ),
                )));
            }
            let ended = (|| -> std::result::Result<Result<Vec<StoredEvent>>, mysql::Error> {
                let last: Vec<EventRow> = conn
                    .conn
                    .exec(select, (originator_id, 0_u64, u64::MAX, 1_u64))?;
                let last = last.into_iter().next().map(to_event);
                match annals_core::ending::check_end(originator_id, last.as_ref(), tombstone) {
                    Ok(true) => {}
                    Ok(false) => return Ok(Ok(Vec::new())),
                    Err(e) => return Ok(Err(e)),
                }
                let removed: Vec<EventRow> = conn
                    .conn
                    .exec(select_all, (originator_id, 0_u64, lte, u64::MAX))?;
                if let Some(t) = tombstone {
                    let params = vec![
                        Value::from(t.originator_id.as_str()),
                        Value::from(t.originator_version),
                        Value::from(t.topic.as_str()),
                        Value::from(t.state.as_slice()),
                    ];
                    conn.conn
                        .exec_drop(sql.insert_rows(&sql.events, 1), params)?;
                }
                conn.conn.exec_drop(&delete, (originator_id, lte))?;
                Ok(Ok(removed.into_iter().map(to_event).collect()))
            })();
            match ended {
                Ok(Ok(removed)) => {
                    conn.conn.query_drop("COMMIT")?;
                    Ok(Ok(removed))
                }
                Ok(Err(refused)) => {
                    conn.rollback();
                    Ok(Err(refused))
                }
                Err(e) => {
                    conn.rollback();
                    Err(e)
                }
            }
        })?
    }

    /// Inserts `events` (and `tracking`, an idempotency key with its
    /// outcome, the user's writes) atomically, under the writers' lock, in
    /// a group transaction shared with the saves of other threads that
    /// arrive meanwhile (group commit): a conflict undoes this save alone.
    /// Returns once the group has committed.
    fn write(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        keyed: Option<&KeyedOutcome>,
        mut writes: Option<&mut UserWrites<'_>>,
    ) -> Result<Vec<u64>> {
        if events.is_empty() && tracking.is_none() && keyed.is_none() && writes.is_none() {
            return Ok(Vec::new());
        }
        if keyed.is_some() && self.sql.django_app.is_some() {
            return Err(annals_core::persistence::django::no_keys());
        }
        let table = &self.sql.events;
        let context = match events.len() {
            1 => "inserting 1 event".to_owned(),
            n => format!("inserting {n} events"),
        };
        let span =
            tracing::debug_span!("annals.mysql.write", events = events.len(), table = %table);
        let _entered = span.enter();
        check_rows(events, table)?;
        if let Some(t) = tracking {
            check_chars(
                &self.sql.tracking,
                "an application name",
                &t.application_name,
                MAX_APP_CHARS,
            )?;
        }
        if let Some(k) = keyed {
            check_chars(
                &self.sql.outcomes,
                "an idempotency key",
                &k.key,
                MAX_KEY_CHARS,
            )?;
        }
        let tracking = tracking.map(|t| (t.application_name.as_str(), t.notification_id));
        let keyed = keyed.map(|k| (k.key.as_str(), k.outcome.as_slice()));
        let mut retried = false;
        loop {
            let saved = self
                .group
                .save(|w| w.save(events, tracking, keyed, writes.as_deref_mut()));
            if let Some(error) = writes.as_deref_mut().and_then(UserWrites::take_error) {
                return Err(error);
            }
            return match saved {
                Ok(ids) => Ok(ids),
                Err(SaveFailure::Refused {
                    error: WriteError::Db { broken: true, .. },
                    alone: true,
                }) if !retried => {
                    // Nothing was committed: the same save again, on a
                    // connection that works.
                    retried = true;
                    continue;
                }
                Err(SaveFailure::NotBegun(e) | SaveFailure::Refused { error: e, .. }) => {
                    Err(match e {
                        WriteError::Db { error, .. } => self.db_error(&context, table, error),
                        WriteError::Other(e) => e,
                    })
                }
                Err(SaveFailure::GroupFailed(CommitFailure::RolledBack(why))) => {
                    Err(Error::persistence(
                        format!(
                            "{context} ({table}): the transaction failed, nothing of this save \
                             was stored"
                        ),
                        why,
                    ))
                }
                Err(SaveFailure::GroupFailed(CommitFailure::Unknown(why))) => {
                    Err(Error::persistence(
                        format!(
                            "{context} ({table}): the connection broke after COMMIT was sent, \
                             so whether the events were stored is unknown; select them before \
                             trying again"
                        ),
                        why,
                    ))
                }
            };
        }
    }
}

/// That eventsourcing_django's three tables are there: annals never makes
/// them.
fn check_django_tables(first: &mut Conn) -> Result<()> {
    use annals_core::persistence::django::{missing, EVENTS, SNAPSHOTS, TRACKING};
    for table in [EVENTS, SNAPSHOTS, TRACKING] {
        let exists: u64 = first
            .conn
            .exec_first(TABLE_EXISTS, (table,))
            .map_err(|e| {
                Error::persistence("looking for eventsourcing_django's tables", described(e))
            })?
            .unwrap_or(0);
        if exists == 0 {
            return Err(missing(table));
        }
    }
    Ok(())
}

/// Creates what is missing (unless `create_tables` is off) and returns the
/// layout of the tracking table.
fn prepare(first: &mut Conn, prefix: &str, config: &MysqlConfig) -> Result<TrackingLayout> {
    let wanted = config.tracking_layout;
    let sql = Sql::new(prefix, wanted);
    let fail = |what: &str, e: mysql::Error| {
        Error::persistence(format!("{what} on {}", config.server()), described(e))
    };
    if config.create_tables {
        for create in &sql.create {
            first
                .conn
                .query_drop(create)
                .map_err(|e| fail("creating the tables", e))?;
        }
        first
            .conn
            .query_drop(&sql.lock_row)
            .map_err(|e| fail("creating the tables", e))?;
    }
    let key: Vec<String> = first
        .conn
        .exec(PRIMARY_KEY, (&sql.bare_tracking,))
        .map_err(|e| fail("reading the tracking table's key", e))?;
    let layout = match key
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {
            let exists: u64 = first
                .conn
                .exec_first(TABLE_EXISTS, (&sql.bare_tracking,))
                .map_err(|e| fail("reading the tables", e))?
                .unwrap_or(0);
            if exists > 0 {
                return Err(layout_error(&sql, "has no primary key"));
            }
            if !config.create_tables {
                return Ok(wanted);
            }
            first
                .conn
                .query_drop(&sql.create_tracking)
                .map_err(|e| fail("creating the tracking table", e))?;
            wanted
        }
        ["application_name"] => TrackingLayout::SingleRow,
        ["application_name", "notification_id"] => TrackingLayout::MultiRow,
        other => {
            return Err(layout_error(
                &sql,
                &format!(
                    "has the primary key ({}), which is neither layout's",
                    other.join(", ")
                ),
            ))
        }
    };
    if layout == TrackingLayout::SingleRow && wanted == TrackingLayout::MultiRow {
        return Err(Error::config(
            settings::SINGLE_ROW_TRACKING.name,
            format!(
                "no (multi-row tracking), but {} exists in the single-row layout (one row per \
                 upstream application), which cannot keep a record per notification",
                sql.tracking
            ),
        ));
    }
    if layout == TrackingLayout::SingleRow && config.create_tables {
        if let Some(row) = Sql::new(prefix, layout).migration_row {
            first
                .conn
                .query_drop(row)
                .map_err(|e| fail(&format!("inserting the row {MIGRATION_ROW}"), e))?;
        }
    }
    Ok(layout)
}

fn layout_error(sql: &Sql, why: &str) -> Error {
    Error::config(
        settings::SINGLE_ROW_TRACKING.name,
        format!(
            "{} {why}: a tracking table's key is (application_name) for one row per upstream \
             application, or (application_name, notification_id) for one per notification",
            sql.tracking
        ),
    )
}

/// A row as a stored event.
fn to_event((originator_id, originator_version, topic, state): EventRow) -> StoredEvent {
    StoredEvent {
        originator_id,
        originator_version,
        topic,
        state,
    }
}

/// Checks that every id fits its column, before anything is sent.
fn check_rows(events: &[StoredEvent], table: &str) -> Result<()> {
    events
        .iter()
        .try_for_each(|e| check_chars(table, "an originator id", &e.originator_id, MAX_ID_CHARS))
}

fn check_chars(table: &str, what: &str, value: &str, max: usize) -> Result<()> {
    let chars = value.chars().count();
    if chars > max {
        return Err(Error::persistence(
            format!("storing {what} in {table}"),
            format!("{chars} characters, and the column holds at most {max}"),
        ));
    }
    Ok(())
}

/// The conflict of a taken key (`Duplicate entry 'dog-1-3' for key
/// 'PRIMARY'`); a taken notification id is not the caller's conflict.
pub(crate) fn duplicate(sql: &Sql, e: &mysql::Error) -> Error {
    let message = match e {
        mysql::Error::MySqlError(e) => e.message.clone(),
        other => other.to_string(),
    };
    if message.contains("notification_id'") {
        return Error::persistence(
            format!("inserting events ({})", sql.events),
            format!(
                "{message}: a notification id the column's AUTO_INCREMENT gave is taken \
                 (its counter was set back by hand)"
            ),
        );
    }
    let (id, version) = conflicting_key(&message).unzip();
    Error::Conflict {
        aggregate: None,
        id,
        version,
        message,
    }
}

/// The stream and version of a duplicate entry's message.
fn conflicting_key(message: &str) -> Option<(String, u64)> {
    let entry = message
        .strip_prefix("Duplicate entry '")?
        .rsplit_once("' for key")?
        .0;
    let (id, version) = entry.rsplit_once('-')?;
    Some((id.to_owned(), version.parse().ok()?))
}

/// Snapshots in MariaDB/MySQL: the `{name}_snapshots` table of a
/// [`MysqlRecorder`], on its pool. Inserts are single statements (no lock,
/// no notification).
///
/// ```no_run
/// use annals_core::persistence::{AggregateRecorder, EventQuery, StoredEvent};
/// use annals_mysql::{MysqlConfig, MysqlRecorder};
///
/// let snapshots = MysqlRecorder::open(&MysqlConfig::new("test"), "kennel")?.snapshot_recorder();
/// let id = format!("dog-{}", std::process::id());
/// snapshots.insert_events(&[StoredEvent {
///     originator_id: id.clone(),
///     originator_version: 3,
///     topic: "Dog".into(),
///     state: b"{}".to_vec(),
/// }])?;
/// assert_eq!(snapshots.select_events(&id, &EventQuery::all().descending().limit(1))?.len(), 1);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug)]
pub struct MysqlSnapshotRecorder {
    recorder: MysqlRecorder,
}

impl AggregateRecorder for MysqlSnapshotRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let r = &self.recorder;
        let table = &r.sql.snapshots;
        check_rows(events, table)?;
        // One statement per chunk, in one transaction when there are more.
        r.read("inserting snapshots", table, |conn| {
            let chunks: Vec<&[StoredEvent]> = events.chunks(super::sql::ROWS_PER_INSERT).collect();
            let many = chunks.len() > 1;
            if many {
                conn.conn.query_drop("START TRANSACTION")?;
            }
            for chunk in chunks {
                let mut params = Vec::with_capacity(chunk.len() * 4);
                for e in chunk {
                    params.push(Value::from(e.originator_id.as_str()));
                    params.push(Value::from(e.originator_version));
                    params.push(Value::from(e.topic.as_str()));
                    params.push(Value::from(e.state.as_slice()));
                }
                if let Err(e) = conn
                    .conn
                    .exec_drop(r.sql.insert_rows(table, chunk.len()), params)
                {
                    if many {
                        conn.rollback();
                    }
                    return Err(e);
                }
            }
            if many {
                conn.conn.query_drop("COMMIT")?;
            }
            Ok(Vec::new())
        })
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let sql = &self.recorder.sql;
        self.recorder.select_stream(
            originator_id,
            query,
            &sql.snapshots,
            [&sql.select_snapshots_asc, &sql.select_snapshots_desc],
        )
    }

    fn end_stream(
        &self,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        self.recorder.end(originator_id, tombstone, true)
    }
}

impl AggregateRecorder for MysqlRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        self.write(events, None, None, None)
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        self.select_stream(
            originator_id,
            query,
            &self.sql.events,
            [&self.sql.select_events_asc, &self.sql.select_events_desc],
        )
    }

    /// Under `DJANGO_TABLES`, only this application's rows.
    fn end_stream(
        &self,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        self.end(originator_id, tombstone, false)
    }
}

impl ApplicationRecorder for MysqlRecorder {
    /// Notifications in id order. Writers number and commit events in one
    /// order (under the writers' lock), so a reader that has seen id N
    /// never later finds a newly committed id below N.
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let statement = self.sql.select_notifications(query.topics.len());
        let mut params: Vec<Value> =
            vec![query.start.into(), query.stop.unwrap_or(u64::MAX).into()];
        params.extend(query.topics.iter().map(|t| Value::from(t.as_str())));
        params.push((query.limit as u64).into());
        let params = Params::Positional(params);
        let rows = self.read("selecting notifications", &self.sql.events, |conn| {
            conn.conn
                .exec::<(u64, String, u64, String, Vec<u8>), _, _>(&statement, params.clone())
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, originator_id, version, topic, state)| Notification {
                id,
                event: to_event((originator_id, version, topic, state)),
            })
            .collect())
    }

    fn max_notification_id(&self) -> Result<u64> {
        self.read(
            "selecting the highest notification id",
            &self.sql.events,
            |conn| {
                let max: Option<Option<u64>> =
                    conn.conn.query_first(&self.sql.max_notification_id)?;
                Ok(max.flatten().unwrap_or(0))
            },
        )
    }

    /// MySQL has no LISTEN/NOTIFY: a thread of its own, on a connection of
    /// its own, looks at the highest notification id every 20 ms and
    /// raises `signal` when it moved (any process's commits).
    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        let transport = self.transport.clone();
        let sql = self.sql.clone();
        let server = self.connections.server.clone();
        let err = move |e: mysql::Error| {
            Error::persistence(format!("watching {} on {server}", sql.events), described(e))
        };
        let max = |conn: &mut Conn, statement: &str| -> std::result::Result<u64, mysql::Error> {
            Ok(conn
                .conn
                .query_first::<Option<u64>, _>(statement)?
                .flatten()
                .unwrap_or(0))
        };
        let statement = self.sql.max_notification_id.clone();
        let mut conn = transport.connect().map_err(&err)?;
        let mut seen = max(&mut conn, &statement).map_err(&err)?;
        let mut conn = Some(conn);
        Watch::spawn(
            &format!("mysql {}", self.sql.events),
            signal,
            move |timeout| {
                let until = Instant::now() + timeout;
                loop {
                    let Some(c) = conn.as_mut() else {
                        conn = Some(transport.connect().map_err(&err)?);
                        // Reconnected: what happened meanwhile is found by looking.
                        return Ok(true);
                    };
                    match max(c, &statement) {
                        Ok(v) if v != seen => {
                            seen = v;
                            return Ok(true);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            conn = None;
                            return Err(err(e));
                        }
                    }
                    if Instant::now() >= until {
                        return Ok(false);
                    }
                    std::thread::sleep(WATCH_INTERVAL);
                }
            },
        )
    }
}

impl ProcessRecorder for MysqlRecorder {
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> Result<Vec<u64>> {
        self.write(events, Some(tracking), None, None)
    }

    fn insert_events_with(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        writes: &mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        self.write(events, tracking, None, Some(&mut UserWrites::new(writes)))
    }

    fn insert_events_keyed(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: &KeyedOutcome,
    ) -> Result<Vec<u64>> {
        self.write(events, tracking, Some(outcome), None)
    }

    /// A pooled connection (never the group writer's) in a `READ ONLY`
    /// transaction with a consistent snapshot: one snapshot for every
    /// statement of `reads`. Rolled back after; a connection whose reads
    /// panicked is dropped, not pooled.
    fn read_with(&self, reads: &mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>) -> Result<()> {
        let context = "reading the application's own tables";
        let mut conn = self.checkout()?;
        if let Err(e) = conn
            .conn
            .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        {
            conn.broken |= is_broken(&e);
            return Err(self.db_error(context, &self.sql.events, e));
        }
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            reads(&mut StoreTx::exclusive::<mysql::Conn>(
                "mysql",
                &mut conn.conn,
            ))
        }));
        let outcome = match ran {
            Ok(outcome) => outcome,
            Err(panic) => {
                conn.broken = true;
                std::panic::resume_unwind(panic)
            }
        };
        match conn.conn.query_drop("ROLLBACK") {
            Ok(()) => outcome,
            Err(e) => {
                conn.broken = true;
                outcome.and(Err(self.db_error(context, &self.sql.events, e)))
            }
        }
    }

    fn select_outcome(&self, key: &str) -> Result<Option<Vec<u8>>> {
        // Never stored: too long (see `write`), or under Django's tables,
        // which have no place for keys.
        if key.chars().count() > MAX_KEY_CHARS || self.sql.django_app.is_some() {
            // Never stored (see `write`).
            return Ok(None);
        }
        self.read("selecting an idempotency key", &self.sql.outcomes, |conn| {
            conn.conn.exec_first(&self.sql.select_outcome, (key,))
        })
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        self.read(
            "selecting the highest tracked id",
            &self.sql.tracking,
            |conn| {
                let max: Option<Option<u64>> = conn
                    .conn
                    .exec_first(&self.sql.max_tracking_id, (application_name,))?;
                Ok(max.flatten().unwrap_or(0))
            },
        )
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        self.read("selecting a tracking record", &self.sql.tracking, |conn| {
            let found: Option<bool> = conn.conn.exec_first(
                &self.sql.has_tracking_id,
                (application_name, notification_id),
            )?;
            Ok(found.unwrap_or(false))
        })
    }

    fn tracked_applications(&self) -> Result<Vec<String>> {
        self.read(
            "listing the applications tracked",
            &self.sql.tracking,
            |conn| conn.conn.query(&self.sql.tracked_applications),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conflicting_keys_are_read_from_the_message() {
        assert_eq!(
            super::conflicting_key("Duplicate entry 'dog-1-12' for key 'PRIMARY'"),
            Some(("dog-1".to_owned(), 12))
        );
        assert_eq!(
            super::conflicting_key("Duplicate entry 'a-3' for key 'kennel_events.PRIMARY'"),
            Some(("a".to_owned(), 3))
        );
        assert_eq!(super::conflicting_key("Table is full"), None);
    }
}
