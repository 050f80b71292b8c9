//! The PostgreSQL baseline: the postgres crate alone.

use uuid::Uuid;

use super::{Notif, RawStore, Row, Stored};
use crate::workload::Res;

/// Plain `postgres`: the same DDL as annals; each write transaction takes
/// `LOCK TABLE ... IN EXCLUSIVE MODE` and sends `NOTIFY`, as annals does.
pub(crate) struct PgStore {
    client: postgres::Client,
    config: postgres::Config,
    table: String,
    insert: postgres::Statement,
    select: postgres::Statement,
    notifications: postgres::Statement,
    insert_snapshot: postgres::Statement,
    newest_snapshot: postgres::Statement,
}

impl PgStore {
    /// Drops and creates tables `{prefix}_events` and `{prefix}_snapshots`.
    pub(crate) fn create(config: postgres::Config, prefix: &str) -> Res<Self> {
        let mut client = config.connect(postgres::NoTls)?;
        client.batch_execute(&format!(
            "DROP TABLE IF EXISTS {prefix}_events, {prefix}_snapshots;
             CREATE TABLE {prefix}_events (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version));
             CREATE UNIQUE INDEX {prefix}_events_notification_id_idx ON {prefix}_events (notification_id ASC);
             CREATE TABLE {prefix}_snapshots (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, PRIMARY KEY (originator_id, originator_version));"
        ))?;
        Self::connect(client, config, prefix)
    }

    fn connect(mut client: postgres::Client, config: postgres::Config, prefix: &str) -> Res<Self> {
        let e = format!("{prefix}_events");
        let s = format!("{prefix}_snapshots");
        Ok(Self {
            insert: client.prepare(&format!(
                "INSERT INTO {e} (originator_id, originator_version, topic, state) \
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[]) \
                 RETURNING notification_id"
            ))?,
            select: client.prepare(&format!(
                "SELECT originator_version, topic, state FROM {e} \
                 WHERE originator_id = $1 AND originator_version > $2 ORDER BY originator_version"
            ))?,
            notifications: client.prepare(&format!(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {e} \
                 WHERE notification_id >= $1 ORDER BY notification_id LIMIT $2"
            ))?,
            insert_snapshot: client.prepare(&format!(
                "INSERT INTO {s} (originator_id, originator_version, topic, state) VALUES ($1, $2, $3, $4)"
            ))?,
            newest_snapshot: client.prepare(&format!(
                "SELECT originator_version, topic, state FROM {s} \
                 WHERE originator_id = $1 ORDER BY originator_version DESC LIMIT 1"
            ))?,
            client,
            config,
            table: e,
        })
    }
}

fn pg_stored(row: &postgres::Row) -> Stored {
    (row.get::<_, i64>(0) as u64, row.get(1), row.get(2))
}

impl RawStore for PgStore {
    fn insert(&mut self, rows: &[Row]) -> Res<()> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let versions: Vec<i64> = rows.iter().map(|r| r.version as i64).collect();
        let topics: Vec<&str> = rows.iter().map(|r| r.topic).collect();
        let states: Vec<&[u8]> = rows.iter().map(|r| r.state.as_slice()).collect();
        self.client.batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE",
            self.table
        ))?;
        let inserted = self
            .client
            .query(&self.insert, &[&ids, &versions, &topics, &states]);
        if let Err(e) = inserted {
            self.client.batch_execute("ROLLBACK")?;
            return Err(e.into());
        }
        self.client
            .batch_execute(&format!("NOTIFY {}; COMMIT", self.table))?;
        Ok(())
    }

    fn select_events(&mut self, id: &Uuid, gt: u64) -> Res<Vec<Stored>> {
        let rows = self.client.query(&self.select, &[id, &(gt as i64)])?;
        Ok(rows.iter().map(pg_stored).collect())
    }

    fn select_notifications(&mut self, start: u64, limit: usize) -> Res<Vec<Notif>> {
        let rows = self
            .client
            .query(&self.notifications, &[&(start as i64), &(limit as i64)])?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0) as u64,
                    r.get::<_, Uuid>(1).simple().to_string(),
                    r.get::<_, i64>(2) as u64,
                    r.get(3),
                    r.get(4),
                )
            })
            .collect())
    }

    fn insert_snapshot(&mut self, row: &Row) -> Res<()> {
        self.client.execute(
            &self.insert_snapshot,
            &[&row.id, &(row.version as i64), &row.topic, &row.state],
        )?;
        Ok(())
    }

    fn newest_snapshot(&mut self, id: &Uuid) -> Res<Option<Stored>> {
        let rows = self.client.query(&self.newest_snapshot, &[id])?;
        Ok(rows.first().map(pg_stored))
    }

    fn count(&mut self) -> Res<u64> {
        let n: i64 = self
            .client
            .query_one(&format!("SELECT COUNT(*) FROM {}", self.table), &[])?
            .get(0);
        Ok(n as u64)
    }

    fn another(&self) -> Res<Self> {
        let client = self.config.connect(postgres::NoTls)?;
        let prefix = self.table.trim_end_matches("_events").to_owned();
        Self::connect(client, self.config.clone(), &prefix)
    }
}
