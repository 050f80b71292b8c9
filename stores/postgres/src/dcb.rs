//! The PostgreSQL DCB recorder, in Python eventsourcing 9.5's `postgres_tt`
//! layout: a Python `DCBApplication` and an annals one share its tables.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use postgres::error::SqlState;
use postgres::types::{to_sql_checked, IsNull, Kind, ToSql, Type};
use postgres::{Row, Statement};
use r2d2::Pool;

use super::dcb_sql::{DcbStmt, TtSql};
use super::listener::{watch_listening, Listener};
use super::pool::{described, is_broken, setting_at_fault, Conn, Connections, Manager};
use super::settings::{check_schema, table_prefix, PostgresConfig};
use super::tls::Transport;
use annals_core::error::{Error, Result};
use annals_core::persistence::dcb::{
    condition_failed, no_events, DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem,
    DcbReadResponse, DcbRecorder, DcbSequencedEvent,
};
use annals_core::persistence::to_i64;
use annals_core::persistence::wake::{Notifier, Signal, Watch};

/// A DCB event store in PostgreSQL, in the tables, types and functions of
/// Python eventsourcing 9.5's `PostgresDCBRecorderTT` (`postgres_tt.py`),
/// created with Python's own DDL ([`ddl`](Self::ddl) shows it): for
/// application `courses`, the tables `courses_events_tt_main` and
/// `courses_events_tt_tag`, the types `dcb_event_tt` and
/// `dcb_query_item_tt`, and the functions `dcb_unconditional_append_tt` and
/// `dcb_conditional_append_tt`, which lock the events table, check the
/// condition, insert and `NOTIFY` in one statement.
///
/// An append without a condition goes through `dcb_conditional_append_tt`
/// with no query items (it never conflicts), so that it takes the table's
/// lock and positions commit in order, which Python's
/// `dcb_unconditional_append_tt` does not ensure.
///
/// Reads and appends take Python's paths: a query whose items all have
/// tags is read through the tags table, and appended on by
/// `dcb_conditional_append_tt`; a query of one type alone is read by type;
/// an empty query reads everything. For the other queries Python raises
/// "Unsupported query"; annals reads them with a scan after the position
/// (and appends on them as Python does for a query without tags: the
/// table locked, checked, then `dcb_unconditional_append_tt`).
///
/// Each connection prepares these statements once and keeps them. A read
/// without a limit asks for the head and the events in one statement
/// (Python's `SELECT MAX(id)` and Python's read, joined: one snapshot,
/// one round trip; Python sends the two one after the other), so a
/// decision costs two round trips, its read and its append.
///
/// Broken connections: the pool does not ping a connection each time it
/// hands one out. A read on a connection the server closed is tried once
/// more on one that answers; an append first pings a connection that sat
/// idle for a second or more, since an append that breaks midway is not
/// repeated (whether it committed is unknown): its error is returned.
///
/// The schema is [`schema`](PostgresConfig::schema), by default
/// `public` (Python's default). The types and functions carry no table
/// name: one schema holds one DCB store.
///
/// ```no_run
/// use annals_core::persistence::dcb::{DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder};
/// use annals_postgres::{PostgresConfig, PostgresDcbRecorder};
///
/// let store = PostgresDcbRecorder::open(&PostgresConfig::new("school"), "Courses")?;
/// let course = DcbQuery::item(DcbQueryItem::new().tags(["course-1"]));
/// let read = store.read(&course, None, None)?;
/// let condition = DcbAppendCondition::new(course).after(read.head);
/// store.append(&[DcbEvent::new("CourseRegistered", b"{}".to_vec()).tags(["course-1"])], Some(&condition))?;
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone)]
pub struct PostgresDcbRecorder {
    connections: Connections,
    transport: Transport,
    config: PostgresConfig,
    sql: Arc<TtSql>,
    appended: Arc<Notifier>,
}

impl fmt::Debug for PostgresDcbRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresDcbRecorder")
            .field("config", &self.config)
            .field("events", &self.sql.events_table)
            .finish_non_exhaustive()
    }
}

/// An event as the composite `dcb_event_tt` (type, data, tags).
#[derive(Debug)]
struct PgEvent<'a>(&'a DcbEvent);

/// A query item as the composite `dcb_query_item_tt` (types, tags).
#[derive(Debug)]
struct PgQueryItem(DcbQueryItem);

/// Writes a record's fields in PostgreSQL's binary form: their count,
/// then each one's type, length and value.
fn write_record(
    ty: &Type,
    fields: &[&(dyn ToSql + Sync)],
    out: &mut BytesMut,
) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
    let Kind::Composite(members) = ty.kind() else {
        return Err(format!("{ty} is not a composite type").into());
    };
    if members.len() != fields.len() {
        return Err(format!(
            "{ty} has {} fields, not the {} of Python's",
            members.len(),
            fields.len()
        )
        .into());
    }
    out.put_i32(i32::try_from(fields.len())?);
    for (member, value) in members.iter().zip(fields) {
        out.put_u32(member.type_().oid());
        let at = out.len();
        out.put_i32(0);
        let length = match value.to_sql_checked(member.type_(), out)? {
            IsNull::Yes => -1,
            IsNull::No => i32::try_from(out.len() - at - 4)?,
        };
        out[at..at + 4].copy_from_slice(&length.to_be_bytes());
    }
    Ok(IsNull::No)
}

fn composite_named(ty: &Type, name: &str) -> bool {
    ty.name() == name && matches!(ty.kind(), Kind::Composite(_))
}

impl ToSql for PgEvent<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        write_record(ty, &[&self.0.type_, &self.0.data, &self.0.tags], out)
    }

    fn accepts(ty: &Type) -> bool {
        composite_named(ty, super::dcb_sql::EVENT_TYPE)
    }

    to_sql_checked!();
}

impl ToSql for PgQueryItem {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        write_record(ty, &[&self.0.types, &self.0.tags], out)
    }

    fn accepts(ty: &Type) -> bool {
        composite_named(ty, super::dcb_sql::QUERY_ITEM_TYPE)
    }

    to_sql_checked!();
}

/// The items as Python sends them, each item's tags without repeats
/// (Python's SQL counts distinct tags against the tags asked for: a
/// repeated tag would match nothing, where the model says it is the tag
/// once).
fn query_items(query: &DcbQuery) -> Vec<PgQueryItem> {
    query
        .items
        .iter()
        .map(|item| {
            let mut tags = Vec::with_capacity(item.tags.len());
            for tag in &item.tags {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
            PgQueryItem(DcbQueryItem {
                types: item.types.clone(),
                tags,
            })
        })
        .collect()
}

/// Python's `all_query_items_have_tags`.
fn all_items_have_tags(query: &DcbQuery) -> bool {
    !query.items.is_empty() && query.items.iter().all(|item| !item.tags.is_empty())
}

/// Python's `has_one_query_item_one_type`.
fn one_item_one_type(query: &DcbQuery) -> bool {
    matches!(query.items.as_slice(), [item] if item.types.len() == 1 && item.tags.is_empty())
}

/// Whether `query` matches every event (no items, or an item with neither
/// types nor tags).
fn matches_all(query: &DcbQuery) -> bool {
    query.items.is_empty()
        || query
            .items
            .iter()
            .any(|item| item.types.is_empty() && item.tags.is_empty())
}

fn event_of(row: &Row, table: &str) -> Result<DcbSequencedEvent> {
    let bad =
        |e: postgres::Error| Error::persistence(format!("reading a row of {table}"), described(e));
    let id: i64 = row.try_get("id").map_err(bad)?;
    let data: Option<Vec<u8>> = row.try_get("data").map_err(bad)?;
    Ok(DcbSequencedEvent {
        position: u64::try_from(id).map_err(|_| {
            Error::persistence(
                format!("reading {table}: id {id} is negative"),
                "a negative position",
            )
        })?,
        event: DcbEvent {
            type_: row.try_get("type").map_err(bad)?,
            // Python's table lets data be NULL; no event of either side
            // stores one.
            data: data.unwrap_or_default(),
            tags: row.try_get("tags").map_err(bad)?,
        },
    })
}

/// Whether `e` is PostgreSQL's "already exists" of a `CREATE TYPE`.
fn is_duplicate(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::DUPLICATE_OBJECT)
}

impl PostgresDcbRecorder {
    /// Connects to the server `config` names and, unless
    /// [`create_tables`](PostgresConfig::create_tables) is off, creates
    /// what is missing of the DCB store of application `app_name`, as
    /// Python's `PostgresTTDCBFactory` names it: events table name
    /// `<app_name, lower-cased>_events` (`dcb_events` for an empty name).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an application name that cannot prefix table
    /// names, or a bad schema name, or under eventsourcing_django's tables
    /// ([`django_tables`](PostgresConfig::django_tables)), which have no
    /// DCB store; [`Error::Persistence`] when the server
    /// cannot be reached or the tables cannot be created.
    pub fn open(config: &PostgresConfig, app_name: &str) -> Result<Self> {
        if config.django_tables {
            return Err(annals_core::persistence::django::no_dcb());
        }
        let prefix = if app_name.is_empty() {
            "dcb".to_owned()
        } else {
            table_prefix(app_name)?
        };
        if let Some(schema) = &config.schema {
            check_schema(schema)?;
        }
        let transport = Transport::new(config)?;
        transport.connect().map_err(|e| {
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
            // No round trip per checkout: reads retry once on a broken
            // connection, appends look at one that sat idle (see
            // `append`).
            .test_on_check_out(false)
            .build(Manager {
                transport: transport.clone(),
            })
            .map_err(|e| Error::persistence(format!("connecting to {}", config.server()), e))?;
        // Python's lock timeout is whole seconds, written into the
        // conditional append's body: rounded up, so a timeout is kept.
        let lock_timeout = config
            .lock_timeout
            .map_or(0, |t| t.as_secs() + u64::from(t.subsec_nanos() > 0));
        let schema = config.schema.clone().unwrap_or_else(|| "public".to_owned());
        let recorder = Self {
            connections: Connections {
                pool,
                server: config.server(),
                pool_size: config.pool_size,
            },
            transport,
            config: config.clone(),
            sql: Arc::new(TtSql::new(
                &format!("{prefix}_events"),
                &schema,
                lock_timeout,
            )),
            appended: Arc::default(),
        };
        if config.create_tables {
            recorder.create_tables()?;
        }
        Ok(recorder)
    }

    /// Creates what is missing, as Python's `create_table` does: each
    /// composite type in a transaction of its own (PostgreSQL has no
    /// `CREATE TYPE IF NOT EXISTS`; an existing one is kept), then the
    /// tables, indexes and functions in one transaction (the functions
    /// replaced: `CREATE OR REPLACE`).
    ///
    /// # Errors
    ///
    /// The server's errors (no privilege, a lock timeout).
    pub fn create_tables(&self) -> Result<()> {
        let context = format!("creating the DCB tables {}", self.sql.events_table);
        let fail = |e: postgres::Error| Error::persistence(context.clone(), described(e));
        let mut conn = self.connections.checkout()?;
        let client = &mut conn.client;
        for create in &self.sql.create_types {
            match client.batch_execute(create) {
                Ok(()) => {}
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        let mut tx = client.transaction().map_err(fail)?;
        // Python's tags table refers to the events table by its name
        // alone, found on the search path: the schema first, so it is
        // found there.
        tx.batch_execute(&format!(
            "SET LOCAL search_path TO {}, public",
            super::dcb_sql::identifier(&self.sql.schema)
        ))
        .map_err(fail)?;
        for create in &self.sql.create_rest {
            tx.batch_execute(create).map_err(fail)?;
        }
        tx.commit().map_err(fail)
    }

    /// The SQL that creates this store (types, tables, indexes,
    /// functions), Python's, for migrations.
    pub fn ddl(&self) -> String {
        self.sql
            .create_types
            .iter()
            .chain(&self.sql.create_rest)
            .map(|statement| format!("{};\n", statement.trim().trim_end_matches(';')))
            .collect()
    }

    /// The events table's name (`<name>_tt_main`), which is also the
    /// channel of its NOTIFY.
    pub fn events_table(&self) -> &str {
        &self.sql.events_table
    }

    /// The tags table's name (`<name>_tt_tag`).
    pub fn tags_table(&self) -> &str {
        &self.sql.tags_table
    }

    fn error(&self, context: &str, e: postgres::Error) -> Error {
        Error::persistence(
            format!("{context} ({})", self.sql.events_table),
            described(e),
        )
    }

    /// Reads the events of `query` after `after` with `statement`, the
    /// one [`read_statement`] chose for it.
    fn read_rows(
        client: &mut impl postgres::GenericClient,
        statement: &Statement,
        which: DcbStmt,
        query: &DcbQuery,
        after: Option<i64>,
        limit: Option<i64>,
    ) -> std::result::Result<Vec<Row>, postgres::Error> {
        match which {
            DcbStmt::SelectAll | DcbStmt::SelectAllHead => {
                client.query(statement, &[&after, &limit])
            }
            DcbStmt::SelectByType | DcbStmt::SelectByTypeHead => {
                let type_ = &query.items[0].types[0];
                client.query(statement, &[type_, &after, &limit])
            }
            _ => {
                let items = query_items(query);
                client.query(statement, &[&items, &after, &limit])
            }
        }
    }

    /// One read on `conn`: the events and, without a limit, the head,
    /// in one statement (one snapshot, one round trip).
    fn read_on(
        &self,
        conn: &mut Conn,
        query: &DcbQuery,
        after: Option<i64>,
        limit: Option<usize>,
    ) -> std::result::Result<(Option<u64>, Vec<Row>), postgres::Error> {
        let which = read_statement(query);
        let which = if limit.is_none() {
            which.with_head()
        } else {
            which
        };
        let statement = conn.dcb_statement(&self.sql, which)?;
        let mut rows = Self::read_rows(
            &mut *conn.client,
            &statement,
            which,
            query,
            after,
            limit_i64(limit),
        )?;
        if limit.is_some() {
            return Ok((None, rows));
        }
        let last = match rows.first() {
            Some(row) => row
                .try_get::<_, Option<i64>>("head")?
                .and_then(|m| u64::try_from(m).ok()),
            None => None,
        };
        // No event found: the one row of the head, its events' columns
        // NULL.
        if rows.len() == 1 && rows[0].try_get::<_, Option<i64>>("id")?.is_none() {
            rows.clear();
        }
        Ok((last, rows))
    }
}

impl PostgresDcbRecorder {
    /// One append on `conn`: the position of the last event, or `None`
    /// when the condition failed (nothing was stored).
    fn append_on(
        &self,
        conn: &mut Conn,
        pg_events: &[PgEvent<'_>],
        condition: Option<&DcbAppendCondition>,
    ) -> std::result::Result<Option<i64>, AppendError> {
        let position = |rows: Vec<Row>| -> std::result::Result<Option<i64>, AppendError> {
            match rows.first() {
                None => Ok(None),
                Some(row) => Ok(Some(row.try_get(0)?)),
            }
        };
        match condition {
            // Through the conditional function with no query items: it
            // never conflicts, and it takes the table's lock, so positions
            // commit in order (Python's unconditional function takes none:
            // two of its appends may commit out of order, and a reader
            // that saw the later one could pass the earlier by).
            None => {
                let statement = conn.dcb_statement(&self.sql, DcbStmt::ConditionalAppend)?;
                let no_items: Vec<PgQueryItem> = Vec::new();
                let after: Option<i64> = None;
                let rows = conn
                    .client
                    .query(&statement, &[&no_items, &after, &pg_events])?;
                position(rows)
            }
            Some(condition) if all_items_have_tags(&condition.fail_if_events_match) => {
                let statement = conn.dcb_statement(&self.sql, DcbStmt::ConditionalAppend)?;
                let items = query_items(&condition.fail_if_events_match);
                let after = condition
                    .after
                    .map(|a| to_i64("a position", a))
                    .transpose()
                    .map_err(AppendError::Other)?;
                let rows = conn
                    .client
                    .query(&statement, &[&items, &after, &pg_events])?;
                position(rows)
            }
            Some(condition) => {
                // Python's way for a condition without tags: lock, read,
                // then the unconditional append, in one transaction.
                let after = condition
                    .after
                    .map(|a| to_i64("a position", a))
                    .transpose()
                    .map_err(AppendError::Other)?;
                let which = read_statement(&condition.fail_if_events_match);
                let select = conn.dcb_statement(&self.sql, which)?;
                let append = conn.dcb_statement(&self.sql, DcbStmt::UnconditionalAppend)?;
                let mut tx = conn.client.transaction()?;
                if let Some(set) = &self.sql.set_lock_timeout {
                    tx.batch_execute(set)?;
                }
                tx.batch_execute(&self.sql.lock_table)?;
                let found = Self::read_rows(
                    &mut tx,
                    &select,
                    which,
                    &condition.fail_if_events_match,
                    after,
                    Some(1),
                )?;
                if !found.is_empty() {
                    return Ok(None);
                }
                let last = tx.query_one(&append, &[&pg_events])?.try_get(0)?;
                tx.commit()?;
                Ok(Some(last))
            }
        }
    }
}

/// Why an append failed, before it is said as annals' error.
enum AppendError {
    Db(postgres::Error),
    Other(Error),
}

impl From<postgres::Error> for AppendError {
    fn from(e: postgres::Error) -> Self {
        AppendError::Db(e)
    }
}

/// How long a pooled connection may sit unused before an append looks
/// whether the server still holds it.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Which statement reads `query`: Python's paths (all events, by tags, by
/// one type), else annals' scan.
fn read_statement(query: &DcbQuery) -> DcbStmt {
    if matches_all(query) {
        DcbStmt::SelectAll
    } else if all_items_have_tags(query) {
        DcbStmt::SelectByTags
    } else if one_item_one_type(query) {
        DcbStmt::SelectByType
    } else {
        DcbStmt::SelectByAnyItem
    }
}

fn limit_i64(limit: Option<usize>) -> Option<i64> {
    limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX))
}

impl DcbRecorder for PostgresDcbRecorder {
    fn read(
        &self,
        query: &DcbQuery,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<DcbReadResponse> {
        let context = "reading DCB events";
        let after = after.map(|a| to_i64("a position", a)).transpose()?;
        let mut conn = self.connections.checkout()?;
        let (last, rows) = match self.read_on(&mut conn, query, after, limit) {
            Ok(read) => read,
            // A connection the server closed (a restart, an idle timeout:
            // the pool does not ping each one it hands out): once more on
            // one that answers. A read is safe to repeat.
            Err(e) if is_broken(&conn.client, &e) => {
                conn.broken = true;
                drop(conn);
                let mut conn = self.connections.checkout_checked()?;
                self.read_on(&mut conn, query, after, limit).map_err(|e| {
                    if is_broken(&conn.client, &e) {
                        conn.broken = true;
                    }
                    self.error(context, e)
                })?
            }
            Err(e) => return Err(self.error(context, e)),
        };
        let events = rows
            .iter()
            .map(|row| event_of(row, &self.sql.events_table))
            .collect::<Result<Vec<_>>>()?;
        Ok(DcbReadResponse::with_head(events, limit, last))
    }

    fn append(&self, events: &[DcbEvent], condition: Option<&DcbAppendCondition>) -> Result<u64> {
        if events.is_empty() {
            return Err(no_events());
        }
        let context = "appending DCB events";
        let pg_events: Vec<PgEvent<'_>> = events.iter().map(PgEvent).collect();
        let mut conn = self.connections.checkout()?;
        // The pool does not ping each connection it hands out (a round
        // trip per call); one idle long enough to have been closed by the
        // server (a restart, an idle timeout) is looked at first, since
        // an append that breaks midway cannot be repeated: whether it
        // committed is unknown.
        if conn.idle_for() >= IDLE_CHECK && conn.client.check_connection().is_err() {
            conn.broken = true;
            drop(conn);
            conn = self.connections.checkout_checked()?;
        }
        let appended = self.append_on(&mut conn, &pg_events, condition);
        let last = match appended {
            Ok(Some(last)) => last,
            Ok(None) => {
                return Err(match condition {
                    Some(condition) => condition_failed(condition),
                    None => Error::persistence(
                        format!("{context} ({})", self.sql.events_table),
                        "the append function returned no position",
                    ),
                })
            }
            Err(AppendError::Db(e)) => {
                if is_broken(&conn.client, &e) {
                    conn.broken = true;
                }
                return Err(self.error(context, e));
            }
            Err(AppendError::Other(e)) => return Err(e),
        };
        drop(conn);
        self.appended.notify();
        u64::try_from(last).map_err(|_| {
            Error::persistence(
                format!("{context}: the append returned position {last}"),
                "a negative position",
            )
        })
    }

    /// Raises `signal` at each append through this recorder, and at each
    /// `NOTIFY` on the store's channel (the append functions send one, an
    /// append by Python's recorder too).
    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        self.appended.subscribe(signal);
        let recorder = self.clone();
        watch_listening(
            &format!("postgres {}", self.sql.channel),
            signal,
            move || recorder.listen(),
        )
    }
}

impl PostgresDcbRecorder {
    /// A connection of its own that has run `LISTEN` on the channel.
    fn listen(&self) -> Result<Listener> {
        let mut client = self.transport.connect().map_err(|e| {
            Error::persistence(
                format!("connecting to {}", self.config.server()),
                described(e),
            )
        })?;
        client
            .batch_execute(&format!(
                "LISTEN {}",
                super::dcb_sql::identifier(&self.sql.channel)
            ))
            .map_err(|e| self.error("listening for DCB appends", e))?;
        Ok(Listener::new(client, self.sql.channel.clone()))
    }
}
