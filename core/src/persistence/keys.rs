//! [`KeyStore`]: where each subject's data key is kept, wrapped by the
//! master key, for personal data (crypto-shredding). Erasing a subject's
//! key makes every copy of its personal data unreadable: in the store, in
//! backups and in exports, while the events themselves stay as they were.
//!
//! A store holds the keys beside its events (SQLite's, PostgreSQL's and
//! MariaDB/MySQL's `data_keys` tables, the object store's `events-keys/`
//! objects, the memory store's map). The application wraps and
//! unwraps them; a store only ever sees the wrapped bytes.
//!
//! ```
//! use annals_core::persistence::keys::{KeyStore, MemoryKeyStore, StoredKey};
//!
//! let keys = MemoryKeyStore::default();
//! let first = StoredKey { subject: "customer-1".into(), key_id: vec![1; 8], wrapped: vec![7; 60] };
//! let other = StoredKey { key_id: vec![2; 8], ..first.clone() };
//! // The first key of a subject wins; a second writer is given it.
//! assert_eq!(keys.insert_key(&first)?, first);
//! assert_eq!(keys.insert_key(&other)?, first);
//! assert_eq!(keys.select_key("customer-1")?, Some(first));
//! assert!(keys.delete_key("customer-1")?);
//! assert_eq!(keys.select_key("customer-1")?, None);
//! # Ok::<(), annals_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::StoreTx;
use crate::error::Result;

/// One subject's data key, as stored: wrapped (encrypted) by the master
/// key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Whose key it is: an aggregate's id, or a person's (a customer id),
    /// as the model names it.
    pub subject: String,
    /// The key's own random id, written beside each ciphertext, so data
    /// sealed by a key that was forgotten is never opened by a later key
    /// of the same subject.
    pub key_id: Vec<u8>,
    /// The data key, encrypted by the master key.
    pub wrapped: Vec<u8>,
}

/// Where an application's data keys are kept. Object-safe; implemented by
/// the memory, SQLite, PostgreSQL, MariaDB/MySQL (each in the save's
/// transaction) and object stores (keys written before the save), each
/// handed to the application through
/// [`Recorders::keys`](super::Recorders::keys).
pub trait KeyStore: Send + Sync {
    /// The key of `subject`, if it has one.
    ///
    /// # Errors
    ///
    /// The store's.
    fn select_key(&self, subject: &str) -> Result<Option<StoredKey>>;

    /// Stores `key` unless its subject has a key already, and returns the
    /// subject's key: `key`, or the one that was there (another writer's),
    /// which the caller must use instead.
    ///
    /// # Errors
    ///
    /// The store's.
    fn insert_key(&self, key: &StoredKey) -> Result<StoredKey>;

    /// Erases the key of `subject`; whether it had one. Where the store
    /// can, the bytes are overwritten, not only unlinked (SQLite's
    /// `secure_delete`).
    ///
    /// # Errors
    ///
    /// The store's.
    fn delete_key(&self, subject: &str) -> Result<bool>;

    /// Up to `limit` keys whose subjects sort after `after` (all from the
    /// first when `None`), in subject order: for re-wrapping every key.
    ///
    /// # Errors
    ///
    /// The store's.
    fn select_keys(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredKey>>;

    /// Replaces the wrapped bytes of `key` (matched by subject and key id)
    /// with `wrapped`; whether it was still there.
    ///
    /// # Errors
    ///
    /// The store's.
    fn rewrap_key(&self, key: &StoredKey, wrapped: &[u8]) -> Result<bool>;

    /// Whether [`insert_keys_in`](Self::insert_keys_in) writes keys in a
    /// save's transaction. When not (the default), an application writes
    /// a save's new keys with [`insert_key`](Self::insert_key) first, one
    /// transaction each.
    fn writes_in_saves(&self) -> bool {
        false
    }

    /// Writes `keys` in the transaction of a save, `tx` (the store's own,
    /// lent as to a user's writes): each unless its subject has that key
    /// already. A subject with another key is an error, and the save
    /// stores nothing: the application seals again with the stored key.
    ///
    /// # Errors
    ///
    /// The store's; a subject with another key; the default's, an
    /// [`Error::Config`](crate::Error::Config) naming `PERSISTENCE_MODULE`.
    fn insert_keys_in(&self, tx: &mut StoreTx<'_>, keys: &[StoredKey]) -> Result<()> {
        let _ = (tx, keys);
        Err(super::tx::no_transaction(std::any::type_name::<Self>()))
    }
}

/// The error of a save that would give `subject` a second data key.
pub fn other_key(subject: &str) -> crate::Error {
    crate::Error::conflict(format!(
        "subject {subject:?} was given a data key by another writer meanwhile"
    ))
}

/// The memory store's keys: a map, lost with it.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    keys: Mutex<BTreeMap<String, StoredKey>>,
}

impl MemoryKeyStore {
    fn keys(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredKey>> {
        // A panic elsewhere cannot leave the map half-written: every
        // change below is one call on it.
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KeyStore for MemoryKeyStore {
    fn select_key(&self, subject: &str) -> Result<Option<StoredKey>> {
        Ok(self.keys().get(subject).cloned())
    }

    fn insert_key(&self, key: &StoredKey) -> Result<StoredKey> {
        Ok(self
            .keys()
            .entry(key.subject.clone())
            .or_insert_with(|| key.clone())
            .clone())
    }

    fn delete_key(&self, subject: &str) -> Result<bool> {
        Ok(self.keys().remove(subject).is_some())
    }

    fn select_keys(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredKey>> {
        let keys = self.keys();
        let range = match after {
            Some(after) => {
                keys.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => keys.range::<str, _>(..),
        };
        Ok(range.take(limit).map(|(_, k)| k.clone()).collect())
    }

    fn rewrap_key(&self, key: &StoredKey, wrapped: &[u8]) -> Result<bool> {
        match self.keys().get_mut(&key.subject) {
            Some(stored) if stored.key_id == key.key_id => {
                stored.wrapped = wrapped.to_vec();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
