//! An import's batch at the database's speed: `COPY ... FROM STDIN` in
//! binary form, on a connection of the pool, in a transaction of its own
//! that takes the lock the writers take (so notification ids are drawn and
//! committed in one order), stores the import's tracking record with the
//! events, and notifies followers at its commit, as a save does.

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use super::super::columns::{parse_uuid, Columns};
use super::super::pool::{is_broken, Conn, StepError};
use super::super::settings::OriginatorIdType;
use super::super::sql::Stmt;
use super::PostgresRecorder;
use annals_core::error::{Error, Result};
use annals_core::persistence::{to_i64, StoredEvent, Tracking, TrackingLayout};

impl PostgresRecorder {
    /// Stores `events` and `tracking` (if any) in one transaction, or
    /// nothing.
    pub(super) fn import(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
    ) -> Result<usize> {
        if events.is_empty() && tracking.is_none() {
            return Ok(0);
        }
        // Refused here, before anything is sent: NUL characters, versions
        // out of range, ids that are not UUIDs for a uuid column.
        Columns::check(events, self.config.originator_id_type, &self.sql)?;
        let tracked = tracking
            .map(|t| {
                if t.application_name.contains('\0') {
                    return Err(Error::persistence(
                        "importing events",
                        "the tracking record's application name has a NUL character",
                    ));
                }
                Ok((
                    t.application_name.as_str(),
                    to_i64("notification id", t.notification_id)?,
                ))
            })
            .transpose()?;
        let mut conn = self.connections.checkout_checked()?;
        match self.copy(&mut conn, events, tracked) {
            Ok(stored) => Ok(stored),
            Err(error) => {
                // Nothing of the batch is kept: the transaction is rolled
                // back (a broken connection's, by the server).
                conn.rollback();
                Err(match error {
                    StepError::Db(e) => {
                        conn.broken |= is_broken(&conn.client, &e);
                        self.db_error("importing events", e)
                    }
                    StepError::Other(e) => e,
                })
            }
        }
    }

    fn copy(
        &self,
        conn: &mut Conn,
        events: &[StoredEvent],
        tracked: Option<(&str, i64)>,
    ) -> Result<usize, StepError> {
        let sql = &self.sql;
        conn.client.batch_execute(&sql.begin_lock_and_sync)?;
        if let Some((name, id)) = tracked {
            let statement = conn.statement(sql, Stmt::InsertTracking)?;
            match sql.tracking_layout {
                TrackingLayout::MultiRow => {
                    conn.client.execute(&statement, &[&name, &id])?;
                }
                TrackingLayout::SingleRow => {
                    if conn.client.query_opt(&statement, &[&name, &id])?.is_none() {
                        return Err(StepError::Other(Error::conflict(format!(
                            "{}: notification {id} of {name:?} or a later one is tracked \
                             already; nothing of the batch was stored",
                            sql.tracking
                        ))));
                    }
                }
            }
        }
        if !events.is_empty() {
            let id_type = match self.config.originator_id_type {
                OriginatorIdType::Uuid => Type::UUID,
                OriginatorIdType::Text => Type::TEXT,
            };
            let mut types = Vec::with_capacity(5);
            if sql.copy_application.is_some() {
                types.push(Type::VARCHAR);
            }
            types.extend([id_type, Type::INT8, Type::TEXT, Type::BYTEA]);
            let sink = conn.client.copy_in(sql.copy_events.as_str())?;
            let mut writer = BinaryCopyInWriter::new(sink, &types);
            for e in events {
                // Checked above: in range, a UUID where the column is one.
                let version =
                    to_i64("originator_version", e.originator_version).map_err(StepError::Other)?;
                let uuid;
                let id: &(dyn ToSql + Sync) = match self.config.originator_id_type {
                    OriginatorIdType::Uuid => {
                        uuid = parse_uuid(&e.originator_id, sql).map_err(StepError::Other)?;
                        &uuid
                    }
                    OriginatorIdType::Text => &e.originator_id,
                };
                match &sql.copy_application {
                    Some(app) => writer.write(&[app, id, &version, &e.topic, &e.state])?,
                    None => writer.write(&[id, &version, &e.topic, &e.state])?,
                }
            }
            writer.finish()?;
        }
        conn.client.batch_execute(if events.is_empty() {
            "COMMIT"
        } else {
            &sql.notify_and_commit
        })?;
        Ok(events.len())
    }
}
