//! The data keys of personal data, in the table `{name}_data_keys`: one
//! row a subject, wrapped by the master key.

use annals_core::persistence::keys::{other_key, KeyStore, StoredKey};
use annals_core::persistence::StoreTx;
use annals_core::Result;
use postgres::types::Type;

use super::PostgresRecorder;
use crate::pool::StepError;

/// The statements of the keys table `table` (qualified and quoted).
#[derive(Debug)]
pub(crate) struct KeySql {
    pub(crate) create: String,
    pub(crate) missing: String,
    select: String,
    insert: String,
    delete: String,
    page: String,
    rewrap: String,
}

impl KeySql {
    pub(crate) fn new(table: &str, options: &str) -> Self {
        Self {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                     subject text NOT NULL, \
                     key_id bytea NOT NULL, \
                     wrapped bytea NOT NULL, \
                     PRIMARY KEY (subject)) {options}"
            ),
            missing: format!("SELECT to_regclass('{table}') IS NULL"),
            select: format!("SELECT key_id, wrapped FROM {table} WHERE subject = $1"),
            // One statement: the key inserted, or the one there. A key
            // committed while this one waited is in neither (the select's
            // snapshot is older): no row, and the caller reads again.
            insert: format!(
                "WITH inserted AS (INSERT INTO {table} (subject, key_id, wrapped) \
                 VALUES ($1, $2, $3) ON CONFLICT (subject) DO NOTHING \
                 RETURNING key_id, wrapped) \
                 SELECT key_id, wrapped FROM inserted \
                 UNION ALL (SELECT key_id, wrapped FROM {table} WHERE subject = $1) LIMIT 1"
            ),
            delete: format!("DELETE FROM {table} WHERE subject = $1"),
            page: format!(
                "SELECT subject, key_id, wrapped FROM {table} \
                 WHERE $1::text IS NULL OR subject > $1 ORDER BY subject LIMIT $2"
            ),
            rewrap: format!("UPDATE {table} SET wrapped = $3 WHERE subject = $1 AND key_id = $2"),
        }
    }

    /// Inserts `key` unless its subject has one; the subject's key (`None`:
    /// one committed meanwhile, not yet visible). Typed parameters: one
    /// round trip, where an unnamed statement takes three (a save that
    /// makes a key pays for them).
    fn insert(
        &self,
        client: &mut postgres::Client,
        key: &StoredKey,
    ) -> std::result::Result<Option<StoredKey>, postgres::Error> {
        let rows = client.query_typed(
            self.insert.as_str(),
            &[
                (&key.subject, Type::TEXT),
                (&key.key_id, Type::BYTEA),
                (&key.wrapped, Type::BYTEA),
            ],
        )?;
        rows.first()
            .map(|row| {
                Ok(StoredKey {
                    subject: key.subject.clone(),
                    key_id: row.try_get(0)?,
                    wrapped: row.try_get(1)?,
                })
            })
            .transpose()
    }
}

/// A PostgreSQL database's data keys, on its recorder's pool.
pub struct PostgresKeyStore {
    pub(super) recorder: PostgresRecorder,
}

impl std::fmt::Debug for PostgresKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresKeyStore").finish_non_exhaustive()
    }
}

impl PostgresKeyStore {
    fn sql(&self) -> &KeySql {
        // Made for every recorder of annals' own tables.
        &self.recorder.sql.keys
    }
}

impl KeyStore for PostgresKeyStore {
    fn select_key(&self, subject: &str) -> Result<Option<StoredKey>> {
        self.recorder.read("reading a data key", |conn| {
            let row = conn
                .client
                .query_opt(self.sql().select.as_str(), &[&subject])?;
            row.map(|row| {
                Ok(StoredKey {
                    subject: subject.to_owned(),
                    key_id: row.try_get(0)?,
                    wrapped: row.try_get(1)?,
                })
            })
            .transpose()
            .map_err(StepError::Db)
        })
    }

    fn insert_key(&self, key: &StoredKey) -> Result<StoredKey> {
        let stored = self.recorder.read("writing a data key", |conn| {
            Ok(self.sql().insert(&mut conn.client, key)?)
        })?;
        match stored {
            Some(stored) => Ok(stored),
            // Another writer's, committed while this insert waited.
            None => self
                .select_key(&key.subject)?
                .ok_or_else(|| other_key(&key.subject)),
        }
    }

    fn delete_key(&self, subject: &str) -> Result<bool> {
        self.recorder.read("erasing a data key", |conn| {
            let deleted = conn
                .client
                .execute(self.sql().delete.as_str(), &[&subject])?;
            Ok(deleted > 0)
        })
    }

    fn select_keys(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredKey>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.recorder.read("reading data keys", |conn| {
            conn.client
                .query(self.sql().page.as_str(), &[&after, &limit])?
                .iter()
                .map(|row| {
                    Ok(StoredKey {
                        subject: row.try_get(0)?,
                        key_id: row.try_get(1)?,
                        wrapped: row.try_get(2)?,
                    })
                })
                .collect::<std::result::Result<_, postgres::Error>>()
                .map_err(StepError::Db)
        })
    }

    fn rewrap_key(&self, key: &StoredKey, wrapped: &[u8]) -> Result<bool> {
        self.recorder.read("re-wrapping a data key", |conn| {
            let changed = conn.client.execute(
                self.sql().rewrap.as_str(),
                &[&key.subject, &key.key_id, &wrapped],
            )?;
            Ok(changed > 0)
        })
    }

    fn writes_in_saves(&self) -> bool {
        true
    }

    fn insert_keys_in(&self, tx: &mut StoreTx<'_>, keys: &[StoredKey]) -> Result<()> {
        let client = tx.get_mut::<postgres::Client>()?;
        for key in keys {
            let stored = self
                .sql()
                .insert(client, key)
                .map_err(|e| self.recorder.db_error("writing a data key", e))?;
            if stored.is_none_or(|stored| stored.key_id != key.key_id) {
                return Err(other_key(&key.subject));
            }
        }
        Ok(())
    }
}
