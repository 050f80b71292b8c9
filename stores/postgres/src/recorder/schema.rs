//! The tables: the DDL annals runs (and prints, for migrations), their
//! creation under an advisory lock, and the tracking table's layout.

use super::super::pool::{is_broken, StepError};
use super::super::settings::{check_schema, table_prefix, PostgresConfig};
use super::super::sql::{Sql, ORIGINATOR_ID_COLUMN, TABLE_KEY};
use super::PostgresRecorder;
use annals_core::error::{Error, Result};
use annals_core::persistence::TrackingLayout;
use annals_core::settings;

/// The key of the advisory lock that serializes `create_tables` across
/// processes (concurrent `CREATE TABLE IF NOT EXISTS` can fail otherwise).
const DDL_LOCK_KEY: i64 = 0x616e_6e61_6c73; // "annals"

impl PostgresConfig {
    /// The SQL that creates the tables of application `app_name` as
    /// annals creates them (and Python's eventsourcing 9.5, with the same
    /// options), for teams that keep their schema in migrations (sqlx,
    /// refinery) and run with `CREATE_TABLE=no`.
    ///
    /// ```
    /// use annals_postgres::PostgresConfig;
    ///
    /// let ddl = PostgresConfig::new("shop").ddl("Orders")?;
    /// assert!(ddl.contains("CREATE TABLE IF NOT EXISTS \"orders_events\""));
    /// assert!(ddl.contains("\"orders_tracking\""));
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an application or schema name that cannot
    /// name tables.
    pub fn ddl(&self, app_name: &str) -> Result<String> {
        if self.django_tables {
            return Err(annals_core::persistence::django::not_ours());
        }
        let prefix = table_prefix(app_name)?;
        if let Some(schema) = &self.schema {
            check_schema(schema)?;
        }
        let sql = Sql::new(
            &prefix,
            self.schema.as_deref(),
            self.originator_id_type,
            self.tracking_layout,
        );
        let mut ddl = String::new();
        if let Some(schema) = &self.schema {
            ddl.push_str(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\";\n"));
        }
        let migration_row = sql.migration_row.as_ref().map(|(insert, _)| insert);
        for statement in sql
            .create
            .iter()
            .chain([&sql.create_tracking])
            .chain(migration_row)
        {
            ddl.push_str(statement.trim());
            ddl.push_str(";\n");
        }
        Ok(ddl)
    }
}

impl PostgresRecorder {
    /// Creates the schema (if one is configured), the events, tracking and
    /// snapshots tables and the notification id index, where missing: it
    /// looks them up first and runs only the statements for what is
    /// missing, so a role that does not own existing tables (and may not
    /// create in their schema) can call it. Safe to call again, and from
    /// several processes at once. A tracking table
    /// is created in the layout this recorder uses
    /// ([`tracking_layout`](Self::tracking_layout)), single-row ones with
    /// the Python library's `('__migration__', 1)` row; the notification id
    /// sequence is moved past the highest id stored if it is behind. An
    /// existing events table whose `originator_id` column has not the
    /// configured type is an error naming `ORIGINATOR_ID_TYPE`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for that column type mismatch, or when the
    /// tracking table was replaced by one of the other layout since the
    /// store was opened; [`Error::Persistence`] for the server's errors (no
    /// right to create tables, a lock timeout).
    pub fn create_tables(&self) -> Result<()> {
        if self.sql.django {
            return Err(annals_core::persistence::django::not_ours());
        }
        let layout = self.sql.tracking_layout;
        let found = self.prepare(true)?;
        if found != layout {
            return Err(Error::config(
                settings::SINGLE_ROW_TRACKING.name,
                format!(
                    "the tracking table {} is now in the {found:?} layout, but this store was \
                     opened with the {layout:?} one: open the store again",
                    self.sql.tracking
                ),
            ));
        }
        Ok(())
    }

    /// That eventsourcing_django's three tables are there (annals never
    /// makes them) and its `originator_id` is a `uuid` column, as Django
    /// makes a `UUIDField` on PostgreSQL.
    pub(super) fn check_django_tables(&self) -> Result<()> {
        use annals_core::persistence::django::{missing, EVENTS, SNAPSHOTS, TRACKING};
        let found = self.read("looking for eventsourcing_django's tables", |conn| {
            let row = conn.client.query_one(self.sql.missing.as_str(), &[])?;
            Ok((0..3)
                .map(|i| row.try_get(i))
                .collect::<Result<Vec<bool>, _>>()?)
        })?;
        for (gone, table) in found.iter().zip([EVENTS, SNAPSHOTS, TRACKING]) {
            if *gone {
                return Err(missing(table));
            }
        }
        let column = self.read("reading the type of stored_events.originator_id", |conn| {
            Ok(conn
                .client
                .query_opt(ORIGINATOR_ID_COLUMN, &[&self.sql.events])?
                .map(|row| row.try_get::<_, String>(0))
                .transpose()?)
        })?;
        match column.as_deref() {
            Some("uuid") => Ok(()),
            other => Err(Error::config(
                settings::DJANGO_TABLES.name,
                format!(
                    "{} has an originator_id column of type {}, where eventsourcing_django \
                     makes a uuid one on PostgreSQL: is it that package's table?",
                    self.sql.events,
                    other.unwrap_or("none")
                ),
            )),
        }
    }

    /// The layout of the tracking table (this recorder's when it does not
    /// exist) and, with `create`, the missing tables created in it (see
    /// [`create_tables`](Self::create_tables)).
    pub(super) fn prepare(&self, create: bool) -> Result<TrackingLayout> {
        let wanted = self.sql.tracking_layout;
        let tracking = &self.sql.tracking;
        if !create {
            let found = self.read("reading the tracking table's layout", |conn| {
                let row = conn.client.query_one(TABLE_KEY, &[tracking])?;
                let key: Vec<String> = row.try_get(1)?;
                TrackingLayout::of_table(tracking, row.try_get(0)?, &key).map_err(StepError::Other)
            })?;
            return TrackingLayout::choose(tracking, found, wanted);
        }
        let context = format!("creating the tables of {}", self.sql.events);
        let mut conn = self.checkout()?;
        let result = (|| -> Result<Result<(TrackingLayout, Option<String>)>, postgres::Error> {
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
            let row = tx.query_one(TABLE_KEY, &[tracking])?;
            let key: Vec<String> = row.try_get(1)?;
            let layout = match TrackingLayout::of_table(tracking, row.try_get(0)?, &key)
                .and_then(|found| TrackingLayout::choose(tracking, found, wanted))
            {
                Ok(layout) => layout,
                // Dropping `tx` rolls it back.
                Err(e) => return Ok(Err(e)),
            };
            // Only what is missing: `IF NOT EXISTS` alone still needs the
            // rights to create (and to own the table, for the index).
            let missing = tx.query_one(&self.sql.missing, &[])?;
            for (i, create) in self.sql.create.iter().enumerate() {
                if missing.try_get::<_, bool>(i)? {
                    tx.batch_execute(create)?;
                }
            }
            if !self.sql.django {
                let keys = &self.sql.keys;
                if tx
                    .query_one(keys.missing.as_str(), &[])?
                    .try_get::<_, bool>(0)?
                {
                    tx.batch_execute(&keys.create)?;
                }
            }
            if layout == wanted {
                // Missing, or of this layout: created, or (single-row) given
                // its migration row if it lacks it.
                let tracking_exists: bool = row.try_get(0)?;
                if !tracking_exists {
                    tx.batch_execute(&self.sql.create_tracking)?;
                }
                if let Some((insert, has_it)) = &self.sql.migration_row {
                    if !tracking_exists
                        || !tx.query_one(has_it.as_str(), &[])?.try_get::<_, bool>(0)?
                    {
                        tx.batch_execute(insert)?;
                    }
                }
            }
            let column_type: Option<String> = tx
                .query_opt(ORIGINATOR_ID_COLUMN, &[&self.sql.events])?
                .map(|row| row.try_get(0))
                .transpose()?;
            // Under the lock writers take, so no id is drawn meanwhile; the
            // lock only when there is something to do (it needs more than
            // the right to read).
            let behind: bool = tx.query_one(&self.sql.sequence_behind, &[])?.try_get(0)?;
            if behind {
                tx.batch_execute(&format!(
                    "LOCK TABLE {} IN EXCLUSIVE MODE; {}",
                    self.sql.events, self.sql.sync_sequence
                ))?;
            }
            tx.commit()?;
            Ok(Ok((layout, column_type)))
        })();
        let (layout, column_type) = result.map_err(|e| {
            if is_broken(&conn.client, &e) {
                conn.broken = true;
            }
            self.db_error(&context, e)
        })??;
        let expected = self.config.originator_id_type.sql();
        match column_type {
            Some(found) if found != expected => Err(Error::config(
                settings::ORIGINATOR_ID_TYPE.name,
                format!(
                    "the table {} has a {found} originator_id column, but the setting says \
                     {expected}: set ORIGINATOR_ID_TYPE={found} to use it",
                    self.sql.events
                ),
            )),
            _ => Ok(layout),
        }
    }
}
