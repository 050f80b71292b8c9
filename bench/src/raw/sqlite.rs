//! The SQLite baseline: rusqlite alone.

use std::path::Path;
use std::time::Duration;

use uuid::Uuid;

use super::{Notif, RawStore, Row, Stored};
use crate::workload::{fail, Res};

/// Plain rusqlite: WAL, synchronous=FULL, one IMMEDIATE transaction per
/// save, cached prepared statements, eventsourcing's DDL.
pub(crate) struct SqliteStore {
    conn: rusqlite::Connection,
    path: std::path::PathBuf,
}

impl SqliteStore {
    /// Opens (and creates the tables of) the database file `path`.
    pub(crate) fn open(path: &Path) -> Res<Self> {
        let conn = rusqlite::Connection::open(path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return fail(format!("journal mode {mode}, not WAL"));
        }
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version));
             CREATE TABLE IF NOT EXISTS stored_snapshots (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID;",
        )?;
        conn.busy_timeout(Duration::from_secs(30))?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    fn insert_into(&mut self, sql: &str, rows: &[Row]) -> Res<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(sql)?;
            let mut buf = [0u8; 32];
            for row in rows {
                let id = row.id.simple().encode_lower(&mut buf);
                stmt.execute(rusqlite::params![
                    &*id,
                    row.version as i64,
                    row.topic,
                    row.state
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn stored_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
}

impl RawStore for SqliteStore {
    fn insert(&mut self, rows: &[Row]) -> Res<()> {
        self.insert_into("INSERT INTO stored_events VALUES (?1, ?2, ?3, ?4)", rows)
    }

    fn select_events(&mut self, id: &Uuid, gt: u64) -> Res<Vec<Stored>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT originator_version, topic, state FROM stored_events WHERE originator_id = ?1 AND originator_version > ?2 ORDER BY originator_version",
        )?;
        let mut buf = [0u8; 32];
        let id = id.simple().encode_lower(&mut buf);
        let rows = stmt.query_map(rusqlite::params![&*id, gt as i64], stored_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn select_notifications(&mut self, start: u64, limit: usize) -> Res<Vec<Notif>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events WHERE rowid >= ?1 ORDER BY rowid LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![start as i64, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get(3)?,
                r.get(4)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_snapshot(&mut self, row: &Row) -> Res<()> {
        self.insert_into(
            "INSERT INTO stored_snapshots VALUES (?1, ?2, ?3, ?4)",
            std::slice::from_ref(row),
        )
    }

    fn newest_snapshot(&mut self, id: &Uuid) -> Res<Option<Stored>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT originator_version, topic, state FROM stored_snapshots WHERE originator_id = ?1 ORDER BY originator_version DESC LIMIT 1",
        )?;
        let mut buf = [0u8; 32];
        let id = id.simple().encode_lower(&mut buf);
        let mut rows = stmt.query_map([&*id], stored_row)?;
        Ok(rows.next().transpose()?)
    }

    fn count(&mut self) -> Res<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM stored_events", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn another(&self) -> Res<Self> {
        Self::open(&self.path)
    }
}
