//! The MariaDB/MySQL baseline: the mysql crate alone.

use mysql::prelude::Queryable;
use mysql::Value;
use uuid::Uuid;

use super::{Notif, RawStore, Row, Stored};
use crate::workload::Res;

/// Plain `mysql`: the same DDL as annals; each write transaction first
/// locks the one row of `{prefix}_lock` (`SELECT ... FOR UPDATE`, sent
/// with `START TRANSACTION` in one round trip), as annals does, so ids
/// commit in the order they are given.
pub(crate) struct MyStore {
    conn: mysql::Conn,
    opts: mysql::Opts,
    events: String,
    lock: String,
    snapshots: String,
}

impl MyStore {
    /// Drops and creates tables `{prefix}_events`, `{prefix}_snapshots`
    /// and `{prefix}_lock`.
    pub(crate) fn create(opts: mysql::Opts, prefix: &str) -> Res<Self> {
        let mut conn = mysql::Conn::new(opts.clone())?;
        let options = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";
        let columns = "originator_id VARCHAR(255) NOT NULL, \
             originator_version BIGINT UNSIGNED NOT NULL, topic TEXT NOT NULL, \
             state LONGBLOB NOT NULL";
        for statement in [
            format!("DROP TABLE IF EXISTS {prefix}_events, {prefix}_snapshots, {prefix}_lock"),
            format!(
                "CREATE TABLE {prefix}_events ({columns}, \
                 notification_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, \
                 PRIMARY KEY (originator_id, originator_version), \
                 UNIQUE KEY notification_id (notification_id)) {options}"
            ),
            format!(
                "CREATE TABLE {prefix}_snapshots ({columns}, \
                 PRIMARY KEY (originator_id, originator_version)) {options}"
            ),
            format!("CREATE TABLE {prefix}_lock (id TINYINT UNSIGNED PRIMARY KEY) {options}"),
            format!("INSERT INTO {prefix}_lock VALUES (1)"),
        ] {
            conn.query_drop(statement)?;
        }
        Ok(Self::with(conn, opts, prefix))
    }

    fn with(conn: mysql::Conn, opts: mysql::Opts, prefix: &str) -> Self {
        Self {
            conn,
            opts,
            events: format!("{prefix}_events"),
            lock: format!("{prefix}_lock"),
            snapshots: format!("{prefix}_snapshots"),
        }
    }
}

/// A UUID as annals stores it in a text column: 32 hex digits.
fn hex(id: &Uuid) -> String {
    id.simple().to_string()
}

/// `INSERT INTO table (...) VALUES (?, ?, ?, ?), ...` for `n` rows.
fn insert_sql(table: &str, n: usize) -> String {
    let mut sql =
        format!("INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES ");
    for i in 0..n {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?)"
        });
    }
    sql
}

impl RawStore for MyStore {
    fn insert(&mut self, rows: &[Row]) -> Res<()> {
        let mut params = Vec::with_capacity(rows.len() * 4);
        for r in rows {
            params.push(Value::from(hex(&r.id)));
            params.push(Value::from(r.version));
            params.push(Value::from(r.topic));
            params.push(Value::from(r.state.as_slice()));
        }
        // One round trip for both, as annals sends them.
        let inserted = self
            .conn
            .query_drop(format!(
                "START TRANSACTION; SELECT id FROM {} WHERE id = 1 FOR UPDATE",
                self.lock
            ))
            .and_then(|()| {
                self.conn
                    .exec_drop(insert_sql(&self.events, rows.len()), params)
            });
        if let Err(e) = inserted {
            self.conn.query_drop("ROLLBACK")?;
            return Err(e.into());
        }
        self.conn.query_drop("COMMIT")?;
        Ok(())
    }

    fn select_events(&mut self, id: &Uuid, gt: u64) -> Res<Vec<Stored>> {
        Ok(self.conn.exec(
            format!(
                "SELECT originator_version, topic, state FROM {} \
                 WHERE originator_id = ? AND originator_version > ? ORDER BY originator_version",
                self.events
            ),
            (hex(id), gt),
        )?)
    }

    fn select_notifications(&mut self, start: u64, limit: usize) -> Res<Vec<Notif>> {
        Ok(self.conn.exec(
            format!(
                "SELECT notification_id, originator_id, originator_version, topic, state \
                 FROM {} WHERE notification_id >= ? ORDER BY notification_id LIMIT ?",
                self.events
            ),
            (start, limit as u64),
        )?)
    }

    fn insert_snapshot(&mut self, row: &Row) -> Res<()> {
        self.conn.exec_drop(
            insert_sql(&self.snapshots, 1),
            (hex(&row.id), row.version, row.topic, row.state.as_slice()),
        )?;
        Ok(())
    }

    fn newest_snapshot(&mut self, id: &Uuid) -> Res<Option<Stored>> {
        Ok(self.conn.exec_first(
            format!(
                "SELECT originator_version, topic, state FROM {} \
                 WHERE originator_id = ? ORDER BY originator_version DESC LIMIT 1",
                self.snapshots
            ),
            (hex(id),),
        )?)
    }

    fn count(&mut self) -> Res<u64> {
        let n: Option<u64> = self
            .conn
            .query_first(format!("SELECT COUNT(*) FROM {}", self.events))?;
        Ok(n.unwrap_or(0))
    }

    fn another(&self) -> Res<Self> {
        let conn = mysql::Conn::new(self.opts.clone())?;
        let prefix = self.events.trim_end_matches("_events").to_owned();
        Ok(Self::with(conn, self.opts.clone(), &prefix))
    }
}
