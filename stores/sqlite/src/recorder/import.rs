//! An import's batch: one transaction, the events inserted with one
//! prepared statement kept by the connection, and the import's tracking
//! record in the same transaction.

use rusqlite::params;

use super::{insert_tracking, SqliteRecorder, StatementCount};
use annals_core::error::{Error, Result};
use annals_core::persistence::{to_i64, StoredEvent, Tracking};

impl SqliteRecorder {
    /// Stores `events` and `tracking` (if any) in one transaction, or
    /// nothing; a conflict names the first event found stored (its stream
    /// and version).
    pub(super) fn import(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
    ) -> Result<usize> {
        if events.is_empty() && tracking.is_none() {
            return Ok(0);
        }
        for e in events {
            to_i64("originator version", e.originator_version)?;
        }
        let tracked = tracking
            .map(|t| Ok((t, to_i64("notification id", t.notification_id)?)))
            .transpose()?;
        let statements = &self.statements;
        // The event whose insert failed, to be named.
        let mut failed: Option<&StoredEvent> = None;
        let saved = self.shared.writer.save(|w| {
            w.mark(StatementCount::Several)?;
            let conn = &w.conn;
            if let Some((t, id)) = tracked {
                insert_tracking(conn, statements, t, id)?;
            }
            let mut insert = conn.prepare_cached(&statements.insert_event)?;
            for e in events {
                // Checked above: in range.
                let version = i64::try_from(e.originator_version)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                if let Err(error) =
                    insert.execute(params![e.originator_id, version, e.topic, e.state])
                {
                    failed = Some(e);
                    return Err(error);
                }
            }
            Ok(events.len())
        });
        saved.map_err(|error| {
            let error = self.shared.save_error(error);
            match (failed, error) {
                (Some(e), Error::Conflict { message, .. }) => Error::Conflict {
                    aggregate: None,
                    message: format!(
                        "{}: stream {} already has version {}, or the batch has it twice; nothing of the batch was stored ({message})",
                        statements.events_table, e.originator_id, e.originator_version
                    ),
                    id: Some(e.originator_id.clone()),
                    version: Some(e.originator_version),
                },
                (_, error) => error,
            }
        })
    }
}
