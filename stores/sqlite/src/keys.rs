//! The data keys of personal data, in the table `stored_data_keys` (or
//! `{prefix}_data_keys`): one row a subject, wrapped by the master key.

use std::sync::Arc;

use annals_core::persistence::keys::{other_key, KeyStore, StoredKey};
use annals_core::persistence::StoreTx;
use annals_core::Result;
use rusqlite::{Connection, OptionalExtension};

use super::connection::sqlite_error;
use super::recorder::Shared;

/// The statements of the keys table `table`.
#[derive(Debug)]
pub(super) struct KeySql {
    select: String,
    insert: String,
    delete: String,
    page: String,
    first_page: String,
    rewrap: String,
}

impl KeySql {
    pub(super) fn new(table: &str) -> Self {
        Self {
            select: format!("SELECT key_id, wrapped FROM {table} WHERE subject = ?1"),
            insert: format!(
                "INSERT INTO {table} (subject, key_id, wrapped) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (subject) DO NOTHING"
            ),
            delete: format!("DELETE FROM {table} WHERE subject = ?1"),
            page: format!(
                "SELECT subject, key_id, wrapped FROM {table} WHERE subject > ?1 ORDER BY subject LIMIT ?2"
            ),
            first_page: format!(
                "SELECT subject, key_id, wrapped FROM {table} ORDER BY subject LIMIT ?1"
            ),
            rewrap: format!(
                "UPDATE {table} SET wrapped = ?3 WHERE subject = ?1 AND key_id = ?2"
            ),
        }
    }

    /// The table, made with the store's other tables.
    pub(super) fn create(table: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (subject TEXT PRIMARY KEY, key_id BLOB NOT NULL, wrapped BLOB NOT NULL) WITHOUT ROWID"
        )
    }

    /// Inserts `key` unless its subject has one; the subject's key.
    fn insert(&self, conn: &Connection, key: &StoredKey) -> rusqlite::Result<StoredKey> {
        conn.prepare_cached(&self.insert)?
            .execute(rusqlite::params![key.subject, key.key_id, key.wrapped])?;
        let (key_id, wrapped) = conn
            .prepare_cached(&self.select)?
            .query_row([&key.subject], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(StoredKey {
            subject: key.subject.clone(),
            key_id,
            wrapped,
        })
    }
}

/// A SQLite database's data keys, on its recorder's connections.
pub struct SqliteKeyStore {
    pub(super) shared: Arc<Shared>,
    pub(super) sql: KeySql,
}

impl std::fmt::Debug for SqliteKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKeyStore").finish_non_exhaustive()
    }
}

fn row_key(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredKey> {
    Ok(StoredKey {
        subject: row.get(0)?,
        key_id: row.get(1)?,
        wrapped: row.get(2)?,
    })
}

impl KeyStore for SqliteKeyStore {
    fn select_key(&self, subject: &str) -> Result<Option<StoredKey>> {
        self.shared.read("reading a data key", |conn| {
            conn.prepare_cached(&self.sql.select)?
                .query_row([subject], |row| {
                    Ok(StoredKey {
                        subject: subject.to_owned(),
                        key_id: row.get(0)?,
                        wrapped: row.get(1)?,
                    })
                })
                .optional()
        })
    }

    fn insert_key(&self, key: &StoredKey) -> Result<StoredKey> {
        self.shared
            .write("writing a data key", |conn| self.sql.insert(conn, key))
    }

    fn delete_key(&self, subject: &str) -> Result<bool> {
        // Overwritten, not only unlinked, and the WAL emptied into the
        // file, so no page of the database keeps the wrapped key.
        let deleted = self.shared.write("erasing a data key", |conn| {
            conn.execute_batch("PRAGMA secure_delete = ON")?;
            let deleted = conn.prepare_cached(&self.sql.delete)?.execute([subject]);
            conn.execute_batch("PRAGMA secure_delete = OFF")?;
            deleted
        })?;
        self.shared.checkpoint()?;
        Ok(deleted > 0)
    }

    fn select_keys(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredKey>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.shared.read("reading data keys", |conn| match after {
            Some(after) => conn
                .prepare_cached(&self.sql.page)?
                .query_map(rusqlite::params![after, limit], row_key)?
                .collect(),
            None => conn
                .prepare_cached(&self.sql.first_page)?
                .query_map([limit], row_key)?
                .collect(),
        })
    }

    fn rewrap_key(&self, key: &StoredKey, wrapped: &[u8]) -> Result<bool> {
        let changed = self.shared.write("re-wrapping a data key", |conn| {
            conn.prepare_cached(&self.sql.rewrap)?
                .execute(rusqlite::params![key.subject, key.key_id, wrapped])
        })?;
        Ok(changed > 0)
    }

    fn writes_in_saves(&self) -> bool {
        true
    }

    fn insert_keys_in(&self, tx: &mut StoreTx<'_>, keys: &[StoredKey]) -> Result<()> {
        let conn = tx.get::<Connection>()?;
        for key in keys {
            let stored = self
                .sql
                .insert(conn, key)
                .map_err(|e| sqlite_error("writing a data key", &self.shared.config, e))?;
            if stored.key_id != key.key_id {
                return Err(other_key(&key.subject));
            }
        }
        Ok(())
    }
}
