//! The data keys of personal data, in the table `{name}_data_keys`: one
//! row a subject, wrapped by the master key.
//!
//! The subject is the primary key, a `VARBINARY(1020)`: compared byte for
//! byte and ordered as Rust orders strings (a `VARCHAR`'s collation pads
//! trailing spaces, which would make `"a"` and `"a "` one subject), and
//! within InnoDB's 3,072 bytes of index key. A subject of more than
//! [`MAX_SUBJECT_BYTES`] bytes of UTF-8 (every id of up to 255 characters
//! fits) is refused when its key is written, and has no key when read.

use annals_core::error::{Error, Result};
use annals_core::persistence::keys::{other_key, KeyStore, StoredKey};
use annals_core::persistence::StoreTx;
use mysql::prelude::Queryable;

use super::recorder::MysqlRecorder;

/// The longest subject (bytes of UTF-8) the keys table holds.
pub const MAX_SUBJECT_BYTES: usize = 1020;

/// How many times a key erased as soon as it was written is written
/// again.
const MAX_RACES: usize = 10;

/// A row of the keys table: subject, key id, wrapped key.
type KeyRow = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The statements of the keys table `table` (quoted).
#[derive(Debug)]
pub(crate) struct KeySql {
    /// `{name}_data_keys`, quoted, as shown in errors.
    pub(crate) table: String,
    pub(crate) create: String,
    select: String,
    insert: String,
    delete: String,
    page: String,
    first_page: String,
    rewrap: String,
}

impl KeySql {
    /// The statements of `table` (quoted), a table made with `options`.
    pub(crate) fn new(table: &str, options: &str) -> Self {
        Self {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 subject VARBINARY({MAX_SUBJECT_BYTES}) NOT NULL, \
                 key_id VARBINARY(255) NOT NULL, \
                 wrapped BLOB NOT NULL, \
                 PRIMARY KEY (subject)) {options}"
            ),
            // A locking read: the row as last committed, also inside a
            // save's transaction, whose snapshot may be older.
            select: format!("SELECT key_id, wrapped FROM {table} WHERE subject = ? FOR UPDATE"),
            // Nothing changes when the subject has a key: unlike
            // `INSERT IGNORE`, every other error is still an error.
            insert: format!(
                "INSERT INTO {table} (subject, key_id, wrapped) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE subject = subject"
            ),
            delete: format!("DELETE FROM {table} WHERE subject = ?"),
            page: format!(
                "SELECT subject, key_id, wrapped FROM {table} WHERE subject > ? \
                 ORDER BY subject LIMIT ?"
            ),
            first_page: format!(
                "SELECT subject, key_id, wrapped FROM {table} ORDER BY subject LIMIT ?"
            ),
            rewrap: format!("UPDATE {table} SET wrapped = ? WHERE subject = ? AND key_id = ?"),
            table: table.to_owned(),
        }
    }

    /// Inserts `key` unless its subject has one; the subject's key, or
    /// `None` when it was erased as soon as it was found (a `forget`
    /// racing this write, outside a transaction).
    fn try_insert(
        &self,
        conn: &mut mysql::Conn,
        key: &StoredKey,
    ) -> Result<Option<StoredKey>, mysql::Error> {
        conn.exec_drop(
            &self.insert,
            (
                key.subject.as_bytes(),
                key.key_id.as_slice(),
                key.wrapped.as_slice(),
            ),
        )?;
        let row =
            conn.exec_first::<(Vec<u8>, Vec<u8>), _, _>(&self.select, (key.subject.as_bytes(),))?;
        Ok(row.map(|(key_id, wrapped)| StoredKey {
            subject: key.subject.clone(),
            key_id,
            wrapped,
        }))
    }

    /// Inserts `key` unless its subject has one; the subject's key. In a
    /// save's transaction the row, once written or found, is locked till
    /// the commit; outside one, a row erased between the insert and the
    /// read is written again. `None`: erased every time.
    fn insert(
        &self,
        conn: &mut mysql::Conn,
        key: &StoredKey,
    ) -> Result<Option<StoredKey>, mysql::Error> {
        for _ in 0..MAX_RACES {
            if let Some(stored) = self.try_insert(conn, key)? {
                return Ok(Some(stored));
            }
        }
        Ok(None)
    }

    /// The error of an insert whose row was erased every time.
    fn erased(&self) -> Error {
        Error::persistence(
            format!("writing a data key ({})", self.table),
            format!(
                "the subject's key was erased as soon as written, {MAX_RACES} times: it is \
                 being forgotten by others meanwhile"
            ),
        )
    }

    /// That `subject` fits the table (before anything is sent).
    fn check(&self, subject: &str) -> Result<()> {
        if subject.len() > MAX_SUBJECT_BYTES {
            return Err(Error::persistence(
                format!("storing the data key of a subject in {}", self.table),
                format!(
                    "the subject is {} bytes long (UTF-8), and the column holds at most \
                     {MAX_SUBJECT_BYTES}",
                    subject.len()
                ),
            ));
        }
        Ok(())
    }
}

/// A MariaDB/MySQL database's data keys (the `{name}_data_keys` table),
/// on its recorder's pool; keys written in a save go in the save's
/// transaction. An application opens one itself, with its recorder
/// ([`MysqlRecorder::key_store`]).
///
/// ```no_run
/// use annals_core::persistence::keys::{KeyStore, StoredKey};
/// use annals_mysql::{MysqlConfig, MysqlRecorder};
///
/// let recorder = MysqlRecorder::open(&MysqlConfig::new("test"), "clinic")?;
/// let keys = recorder.key_store().expect("annals' own tables keep keys");
/// let key = StoredKey { subject: "patient-1".into(), key_id: vec![1; 8], wrapped: vec![7; 60] };
/// assert_eq!(keys.insert_key(&key)?.subject, "patient-1");
/// assert!(keys.delete_key("patient-1")?);
/// # Ok::<(), annals_core::Error>(())
/// ```
pub struct MysqlKeyStore {
    pub(crate) recorder: MysqlRecorder,
}

impl std::fmt::Debug for MysqlKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlKeyStore")
            .field("table", &self.sql().table)
            .finish_non_exhaustive()
    }
}

impl MysqlKeyStore {
    fn sql(&self) -> &KeySql {
        &self.recorder.sql().keys
    }
}

/// A row as a stored key.
fn to_key((subject, key_id, wrapped): KeyRow, table: &str) -> Result<StoredKey> {
    let subject = String::from_utf8(subject).map_err(|e| {
        Error::persistence(
            format!("reading data keys ({table})"),
            format!("a subject is not UTF-8 (written by hand?): {e}"),
        )
    })?;
    Ok(StoredKey {
        subject,
        key_id,
        wrapped,
    })
}

impl KeyStore for MysqlKeyStore {
    fn select_key(&self, subject: &str) -> Result<Option<StoredKey>> {
        if subject.len() > MAX_SUBJECT_BYTES {
            // Never stored (see `insert_key`).
            return Ok(None);
        }
        let sql = self.sql();
        let row = self
            .recorder
            .read("reading a data key", &sql.table, |conn| {
                conn.conn
                    .exec_first::<(Vec<u8>, Vec<u8>), _, _>(&sql.select, (subject.as_bytes(),))
            })?;
        Ok(row.map(|(key_id, wrapped)| StoredKey {
            subject: subject.to_owned(),
            key_id,
            wrapped,
        }))
    }

    fn insert_key(&self, key: &StoredKey) -> Result<StoredKey> {
        let sql = self.sql();
        sql.check(&key.subject)?;
        self.recorder
            .read("writing a data key", &sql.table, |conn| {
                sql.insert(&mut conn.conn, key)
            })?
            .ok_or_else(|| sql.erased())
    }

    fn delete_key(&self, subject: &str) -> Result<bool> {
        if subject.len() > MAX_SUBJECT_BYTES {
            return Ok(false);
        }
        let sql = self.sql();
        self.recorder
            .read("erasing a data key", &sql.table, |conn| {
                conn.conn.exec_drop(&sql.delete, (subject.as_bytes(),))?;
                Ok(conn.conn.affected_rows() > 0)
            })
    }

    fn select_keys(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredKey>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = self.sql();
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let rows = self
            .recorder
            .read("reading data keys", &sql.table, |conn| match after {
                Some(after) => conn
                    .conn
                    .exec::<KeyRow, _, _>(&sql.page, (after.as_bytes(), limit)),
                None => conn.conn.exec::<KeyRow, _, _>(&sql.first_page, (limit,)),
            })?;
        rows.into_iter()
            .map(|row| to_key(row, &sql.table))
            .collect()
    }

    fn rewrap_key(&self, key: &StoredKey, wrapped: &[u8]) -> Result<bool> {
        if key.subject.len() > MAX_SUBJECT_BYTES {
            return Ok(false);
        }
        let sql = self.sql();
        let changed = self
            .recorder
            .read("re-wrapping a data key", &sql.table, |conn| {
                conn.conn.exec_drop(
                    &sql.rewrap,
                    (wrapped, key.subject.as_bytes(), key.key_id.as_slice()),
                )?;
                Ok(conn.conn.affected_rows() > 0)
            })?;
        if changed {
            return Ok(true);
        }
        // The server counts rows changed, not rows matched: the same
        // bytes again change nothing, yet the key is there as it was.
        Ok(self
            .select_key(&key.subject)?
            .is_some_and(|k| k.key_id == key.key_id && k.wrapped == wrapped))
    }

    fn writes_in_saves(&self) -> bool {
        true
    }

    fn insert_keys_in(&self, tx: &mut StoreTx<'_>, keys: &[StoredKey]) -> Result<()> {
        let sql = self.sql();
        for key in keys {
            sql.check(&key.subject)?;
        }
        let conn = tx.get_mut::<mysql::Conn>()?;
        for key in keys {
            let stored = sql
                .insert(conn, key)
                .map_err(|e| self.recorder.db_error("writing a data key", &sql.table, e))?
                .ok_or_else(|| sql.erased())?;
            if stored.key_id != key.key_id {
                return Err(other_key(&key.subject));
            }
        }
        Ok(())
    }
}
