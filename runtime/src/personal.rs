//! Personal data: fields sealed with a key of their subject's own, so
//! that forgetting the subject ([`Application::forget`]) erases the key and
//! leaves every copy of the data unreadable (crypto-shredding), while the
//! events, their order and their hash chains stay as they were.
//!
//! The model marks what is personal: event arguments `#[personal]` (or
//! `#[personal(forgotten = expr)]`, the value a forgotten field reads as;
//! `Default::default()` otherwise), the subject `#[subject]` (an argument
//! naming whose data it is, such as a customer id; the aggregate's id when
//! none is marked), and, for snapshots, the aggregate's own fields
//! `#[personal]`. Only the marked fields are sealed; the rest of the event
//! stays readable (and compressed, and under the application's cipher if
//! one is set).
//!
//! Each subject's data key is made at its first save and kept in the store,
//! wrapped by the master key: `PERSONAL_DATA_KEY`, or `CIPHER_KEY` when that
//! is unset. A sealed field is stored as
//! `{"_personal_":{"subject":..,"key":..,"sealed":..}}`: the subject, the
//! key's id, and AES-GCM of the field's JSON bound to both.
//!
//! ```
//! use annals::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[aggregate]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct Patient {
//!     #[personal]
//!     name: String,
//!     visits: u32,
//! }
//!
//! #[aggregate]
//! impl Patient {
//!     #[event("Admitted")]
//!     pub fn admit(#[personal] name: String) -> Self {
//!         Patient { name, visits: 1 }
//!     }
//! }
//!
//! let app = Application::builder("Clinic")
//!     .personal_data_key(annals::cipher::create_key())
//!     .build()?;
//! let mut patient = Patient::admit("Ada Lovelace".into());
//! app.save(&mut patient)?;
//! let id = patient.id();
//! assert_eq!(app.get::<Patient>(id)?.name, "Ada Lovelace");
//!
//! // The right to erasure: the key goes, the events stay.
//! assert!(app.forget(&id.to_string())?);
//! let forgotten = app.get::<Patient>(id)?;
//! assert_eq!((forgotten.name.as_str(), forgotten.visits), ("", 1));
//! # Ok::<(), annals::Error>(())
//! ```
//!
//! [`Application::forget`]: crate::Application::forget

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cipher::Cipher;
use crate::error::{Error, Result};
use crate::persistence::keys::{KeyStore, StoredKey};
use crate::settings;

/// The key of a sealed field's object.
pub const SEALED_KEY: &str = "_personal_";

/// How many subjects' keys a process keeps in memory.
const CACHE_SIZE: usize = 10_000;

/// How long a key (or its absence) read from the store is trusted: a
/// subject forgotten by another process is forgotten here within it.
const KEY_TTL: Duration = Duration::from_secs(30);

/// The bytes of a key id.
const KEY_ID_LEN: usize = 8;

/// One subject's data key, unwrapped, with what each seal and open of it
/// needs made once.
struct DataKey {
    stored: StoredKey,
    cipher: Cipher,
    /// The associated data of its ciphertexts: subject and key id.
    associated: Vec<u8>,
    /// The key id as stored beside each ciphertext.
    key_hex: String,
    /// When it was read from the store (or made).
    read_at: Instant,
}

impl DataKey {
    fn new(stored: StoredKey, cipher: Cipher) -> Self {
        Self {
            associated: Self::associated(&stored.subject, &stored.key_id),
            key_hex: hex(&stored.key_id),
            read_at: Instant::now(),
            stored,
            cipher,
        }
    }

    /// The associated data of the key's wrapping by the master key: the
    /// fields' own, told apart.
    fn wrapping(subject: &str, key_id: &[u8]) -> Vec<u8> {
        let mut out = b"annals data key\0".to_vec();
        out.extend_from_slice(&Self::associated(subject, key_id));
        out
    }

    fn associated(subject: &str, key_id: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(subject.len() + 1 + key_id.len());
        out.extend_from_slice(subject.as_bytes());
        out.push(0);
        out.extend_from_slice(key_id);
        out
    }
}

/// What the cache knows of a subject.
#[derive(Clone)]
enum Known {
    /// Its key, and whether the store is known to hold it (a key made for
    /// a save is not, until a save that wrote it commits).
    Key(Arc<DataKey>, bool),
    /// No key: never made, or forgotten (as read at that instant).
    None(Instant),
}

impl Known {
    /// Whether it was read from the store longer ago than [`KEY_TTL`]: a
    /// forget by another process reaches this one within that time.
    fn stale(&self) -> bool {
        match self {
            Known::Key(key, confirmed) => *confirmed && key.read_at.elapsed() > KEY_TTL,
            Known::None(at) => at.elapsed() > KEY_TTL,
        }
    }
}

/// An application's data keys: wrapped by the master key in its store,
/// unwrapped in a bounded cache.
pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    master: Cipher,
    previous: Vec<Cipher>,
    cache: Mutex<HashMap<String, Known>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

/// What re-wrapping the data keys did ([`Application::rotate_keys`](crate::Application::rotate_keys)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Keys that were wrapped by a previous master key and now are by the
    /// current one.
    pub rewrapped: u64,
    /// Keys that were wrapped by the current master key already.
    pub current: u64,
}

impl KeyRing {
    /// Keys in `store`, wrapped by `master`; `previous` master keys are
    /// accepted for unwrapping (during a rotation).
    pub(crate) fn new(store: Arc<dyn KeyStore>, master: Cipher, previous: Vec<Cipher>) -> Self {
        Self {
            store,
            master,
            previous,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        // Each change is one insert or remove: a panic cannot leave it torn.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, subject: &str, known: Known) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_SIZE && !cache.contains_key(subject) {
            // Bounded: keys are cheap to read again, and one select each.
            cache.retain(|_, k| matches!(k, Known::Key(_, false)));
        }
        cache.insert(subject.to_owned(), known);
    }

    /// The raw key `stored` wraps, and whether the current master key
    /// wraps it (not a previous one).
    fn unwrap_raw(&self, stored: &StoredKey) -> Result<(zeroize::Zeroizing<Vec<u8>>, bool)> {
        let associated = DataKey::wrapping(&stored.subject, &stored.key_id);
        std::iter::once(&self.master)
            .chain(&self.previous)
            .enumerate()
            .find_map(|(i, master)| {
                let raw = master.decrypt_bound(&stored.wrapped, &associated).ok()?;
                Some((zeroize::Zeroizing::new(raw), i == 0))
            })
            .ok_or_else(|| {
                Error::config(
                    settings::PERSONAL_DATA_KEY.name,
                    format!(
                        "the data key of subject {:?} does not open with the master key (nor any of \
                         PERSONAL_DATA_PREVIOUS_KEYS): a wrong key, or changed bytes",
                        stored.subject
                    ),
                )
            })
    }

    fn unwrap_key(&self, stored: StoredKey) -> Result<DataKey> {
        let (raw, _) = self.unwrap_raw(&stored)?;
        Ok(DataKey::new(stored, Cipher::new(&raw)?))
    }

    fn known(&self, subject: &str) -> Result<Known> {
        if let Some(known) = self.cache().get(subject).filter(|k| !k.stale()) {
            return Ok(known.clone());
        }
        let known = match self.store.select_key(subject)? {
            Some(stored) => Known::Key(Arc::new(self.unwrap_key(stored)?), true),
            None => Known::None(Instant::now()),
        };
        self.remember(subject, known.clone());
        Ok(known)
    }

    /// The key that seals `subject`'s data now: its stored key, or a new
    /// one, which the save that uses it writes.
    fn sealing_key(&self, subject: &str) -> Result<Arc<DataKey>> {
        let key = match self.known(subject)? {
            Known::Key(key, confirmed) => {
                if !confirmed {
                    NEW_KEYS.with(|keys| keys.borrow_mut().push(key.stored.clone()));
                }
                return Ok(key);
            }
            Known::None(_) => {
                let raw = zeroize::Zeroizing::new(rand_bytes::<32>());
                let key_id = rand_bytes::<KEY_ID_LEN>().to_vec();
                let associated = DataKey::wrapping(subject, &key_id);
                let stored = StoredKey {
                    subject: subject.to_owned(),
                    wrapped: self.master.encrypt_bound(&*raw, &associated)?,
                    key_id,
                };
                Arc::new(DataKey::new(stored, Cipher::new(&*raw)?))
            }
        };
        NEW_KEYS.with(|keys| keys.borrow_mut().push(key.stored.clone()));
        self.remember(subject, Known::Key(key.clone(), false));
        Ok(key)
    }

    /// The plaintext of a field sealed by key `key_id` of `subject`;
    /// `None` when that key is forgotten.
    fn open(&self, subject: &str, key_id: &[u8], sealed: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = match self.known(subject)? {
            Known::Key(key, _) if key.stored.key_id == key_id => key,
            // Not the key this process knows: the store's may be newer (the
            // subject forgotten and its key made again by another writer,
            // or another writer's first key won): read it again once.
            Known::Key(_, confirmed) => {
                let stored = match self.store.select_key(subject)? {
                    Some(stored) => Known::Key(Arc::new(self.unwrap_key(stored)?), true),
                    None => Known::None(Instant::now()),
                };
                // A key a save of this process is writing stays (the save
                // confirms or drops it); a stored one is brought up to date.
                if confirmed {
                    self.remember(subject, stored.clone());
                }
                match stored {
                    Known::Key(key, _) if key.stored.key_id == key_id => key,
                    // Forgotten, or forgotten and made again: not this
                    // data's key.
                    _ => return Ok(None),
                }
            }
            Known::None(_) => return Ok(None),
        };
        key.cipher
            .decrypt_bound(sealed, &key.associated)
            .map(Some)
            .map_err(|e| {
                Error::persistence(
                    format!("opening personal data of subject {subject:?}"),
                    e.to_string(),
                )
            })
    }

    /// Writes `keys` (made for a save) where the store cannot write them in
    /// the save's transaction; whether each was stored as given (false: a
    /// writer elsewhere made the subject's key first).
    pub(crate) fn insert_all(&self, keys: &[StoredKey]) -> Result<bool> {
        let mut all = true;
        for key in keys {
            let stored = self.store.insert_key(key)?;
            if stored.key_id != key.key_id {
                self.cache().remove(&key.subject);
                all = false;
            }
        }
        Ok(all)
    }

    /// The store's keys, to write `keys` in a save's transaction.
    pub(crate) fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// After a save that wrote `keys` committed: they are stored.
    pub(crate) fn confirm(&self, keys: &[StoredKey]) {
        let mut cache = self.cache();
        for key in keys {
            if let Some(Known::Key(known, confirmed)) = cache.get_mut(&key.subject) {
                if known.stored.key_id == key.key_id {
                    *confirmed = true;
                }
            }
        }
    }

    /// After a save that would have written `keys` failed: they are read
    /// from the store again (another writer's may be there).
    pub(crate) fn drop_unconfirmed(&self, keys: &[StoredKey]) {
        let mut cache = self.cache();
        for key in keys {
            if matches!(cache.get(&key.subject), Some(Known::Key(k, false)) if k.stored.key_id == key.key_id)
            {
                cache.remove(&key.subject);
            }
        }
    }

    /// Erases `subject`'s key; whether it had one.
    pub(crate) fn forget(&self, subject: &str) -> Result<bool> {
        let had = self.store.delete_key(subject)?;
        self.remember(subject, Known::None(Instant::now()));
        Ok(had)
    }

    /// Wraps every key by the current master key.
    pub(crate) fn rotate(&self) -> Result<Rotation> {
        let mut rotation = Rotation::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.select_keys(after.as_deref(), 1_000)?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.subject.clone());
            for stored in page {
                let (raw, current) = self.unwrap_raw(&stored)?;
                if current {
                    rotation.current += 1;
                    continue;
                }
                let associated = DataKey::wrapping(&stored.subject, &stored.key_id);
                let wrapped = self.master.encrypt_bound(&raw, &associated)?;
                // A key forgotten meanwhile stays forgotten.
                if self.store.rewrap_key(&stored, &wrapped)? {
                    rotation.rewrapped += 1;
                }
            }
        }
        self.cache().clear();
        Ok(rotation)
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use aes_gcm::aead::rand_core::RngCore;
    let mut out = [0; N];
    aes_gcm::aead::OsRng.fill_bytes(&mut out);
    out
}

thread_local! {
    /// The subject and key that seal the event being serialized.
    static SEALING: RefCell<Option<Arc<DataKey>>> = const { RefCell::new(None) };
    /// The keys that open the events being deserialized.
    static OPENING: RefCell<Option<Arc<KeyRing>>> = const { RefCell::new(None) };
    /// The keys made (or not yet stored) for the save being encoded.
    static NEW_KEYS: RefCell<Vec<StoredKey>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `subject`'s key sealing personal fields.
pub(crate) fn sealing<R>(ring: &KeyRing, subject: &str, f: impl FnOnce() -> R) -> Result<R> {
    let key = ring.sealing_key(subject)?;
    let _sealing = Sealing(SEALING.with(|s| s.replace(Some(key))));
    Ok(f())
}

/// Puts back the key that sealed before, when dropped (also on a panic).
struct Sealing(Option<Arc<DataKey>>);

impl Drop for Sealing {
    fn drop(&mut self) {
        let previous = self.0.take();
        SEALING.with(|s| *s.borrow_mut() = previous);
    }
}

/// While it lives, `ring` opens personal fields on this thread.
pub(crate) struct Opening(Option<Arc<KeyRing>>);

impl Opening {
    pub(crate) fn new(ring: Option<&Arc<KeyRing>>) -> Self {
        Self(OPENING.with(|s| s.replace(ring.cloned())))
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        let previous = self.0.take();
        OPENING.with(|s| *s.borrow_mut() = previous);
    }
}

/// Runs `f` with `ring` opening personal fields.
#[cfg(test)]
fn opening<R>(ring: Option<&Arc<KeyRing>>, f: impl FnOnce() -> R) -> R {
    let _opening = Opening::new(ring);
    f()
}

/// Runs `f` (a save's encoding) and returns, with its result, the keys it
/// made or used that the store may not hold yet: the save writes them.
pub(crate) fn collecting_new_keys<R>(f: impl FnOnce() -> R) -> (R, Vec<StoredKey>) {
    /// Puts the previous collection back however `f` ends (a panic too),
    /// so keys of an encoding that panicked reach no other save.
    struct Restore(Option<Vec<StoredKey>>);
    impl Restore {
        fn finish(mut self) -> Vec<StoredKey> {
            let previous = self.0.take().unwrap_or_default();
            NEW_KEYS.with(|k| std::mem::replace(&mut *k.borrow_mut(), previous))
        }
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                NEW_KEYS.with(|k| *k.borrow_mut() = previous);
            }
        }
    }
    let restore = Restore(Some(NEW_KEYS.with(|k| k.take())));
    let out = f();
    let mut keys = restore.finish();
    // Each key once; two keys of one subject both stay, so the save
    // finds that only one can be stored (a conflict), instead of storing
    // one and data sealed with the other.
    keys.sort_by(|a, b| (&a.subject, &a.key_id).cmp(&(&b.subject, &b.key_id)));
    keys.dedup_by(|a, b| a.subject == b.subject && a.key_id == b.key_id);
    (out, keys)
}

/// A sealed field, as stored (and read: its strings borrowed from the
/// stored JSON where they can be).
#[derive(Serialize, Deserialize)]
struct Sealed<'a> {
    #[serde(borrow)]
    subject: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sealed: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "_personal_")]
    personal: Sealed<'a>,
}

/// Serializes a personal field: sealed with the key of the event's subject.
/// Called by the code `#[personal]` generates.
#[doc(hidden)]
pub fn serialize<T: Serialize + ?Sized, S: Serializer>(
    value: &T,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    SEALING.with(|slot| {
        let slot = slot.borrow();
        let Some(key) = slot.as_ref() else {
            return Err(S::Error::custom(
                "a #[personal] field is written only by an application's mapper, with the \
                 subject's data key",
            ));
        };
        let plain = serde_json::to_vec(value).map_err(S::Error::custom)?;
        let sealed = key
            .cipher
            .encrypt_bound(&plain, &key.associated)
            .map_err(S::Error::custom)?;
        let engine = base64::engine::general_purpose::STANDARD;
        Envelope {
            personal: Sealed {
                subject: key.stored.subject.as_str().into(),
                key: key.key_hex.as_str().into(),
                sealed: engine.encode(sealed).into(),
            },
        }
        .serialize(serializer)
    })
}

/// Deserializes a personal field: opens a sealed one with its subject's
/// key, or gives `forgotten()` when the key is gone; a plain value
/// (written before the field was marked) is read as it is. Called by the
/// code `#[personal]` generates.
#[doc(hidden)]
pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
    deserializer: D,
    forgotten: impl FnOnce() -> T,
) -> std::result::Result<T, D::Error> {
    let sealed = match deserializer.deserialize_any(FieldVisitor)? {
        Field::Plain(value) => return serde_json::from_value(value).map_err(D::Error::custom),
        Field::Sealed(sealed) => sealed,
    };
    let key_id = unhex(&sealed.key)
        .ok_or_else(|| D::Error::custom("a sealed personal field's key id is not hex"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed.sealed.as_bytes())
        .map_err(|_| D::Error::custom("a sealed personal field is not base64"))?;
    let opened = OPENING.with(|ring| {
        let ring = ring.borrow();
        let Some(ring) = ring.as_ref() else {
            return Err(D::Error::custom(format!(
                "personal data of subject {:?} is read only with the application's data keys: \
                 set PERSONAL_DATA_KEY (or CIPHER_KEY)",
                sealed.subject
            )));
        };
        ring.open(&sealed.subject, &key_id, &bytes)
            .map_err(D::Error::custom)
    })?;
    match opened {
        Some(plain) => serde_json::from_slice(&plain).map_err(D::Error::custom),
        None => Ok(forgotten()),
    }
}

/// A personal field as stored: its plain value (written before the field
/// was marked), or its sealed form, with the sealed form's strings
/// borrowed from the stored JSON where they can be.
enum Field<'de> {
    Plain(serde_json::Value),
    Sealed(Sealed<'de>),
}

/// A map key, borrowed when it can be.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
            fn visit_string<E: serde::de::Error>(
                self,
                v: String,
            ) -> std::result::Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Reads a [`Field`]: the sealed form without going through a
/// `serde_json::Value` (a field each event, on every read), anything else
/// as a `Value`.
struct FieldVisitor;

impl<'de> serde::de::Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a personal field: its value, or its sealed form")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Field<'de>, A::Error> {
        let Some(Key(first)) = map.next_key::<Key<'de>>()? else {
            return Ok(Field::Plain(serde_json::Value::Object(
                serde_json::Map::new(),
            )));
        };
        if first == SEALED_KEY {
            let sealed: Sealed<'de> = map.next_value()?;
            if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                return Err(serde::de::Error::custom(
                    "a sealed personal field has keys beside \"_personal_\"",
                ));
            }
            return Ok(Field::Sealed(sealed));
        }
        let mut object = serde_json::Map::new();
        object.insert(first.into_owned(), map.next_value()?);
        while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
            object.insert(key, value);
        }
        Ok(Field::Plain(serde_json::Value::Object(object)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Field<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Field::Plain(serde_json::Value::Array(items)))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Plain(v.into()))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Plain(v.into()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Plain(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Plain(v.into()))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Plain(v.into()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Plain(v.into()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Plain(serde_json::Value::Null))
    }
    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Plain(serde_json::Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Field<'de>, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Field::Plain)
    }
}

/// [`deserialize`], forgotten as `T::default()`.
#[doc(hidden)]
pub fn deserialize_default<'de, T: DeserializeOwned + Default, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<T, D::Error> {
    deserialize(deserializer, T::default)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::keys::MemoryKeyStore;

    fn ring() -> KeyRing {
        KeyRing::new(
            Arc::new(MemoryKeyStore::default()),
            Cipher::new(&[1; 32]).unwrap(),
            Vec::new(),
        )
    }

    #[test]
    fn a_sealed_field_opens_until_its_subject_is_forgotten() {
        let ring = Arc::new(ring());
        let json = sealing(&ring, "ada", || serde_json::to_string(&Field("Ada")))
            .unwrap()
            .unwrap();
        assert!(!json.contains("Ada"), "{json}");
        let (_, new) = collecting_new_keys(|| ());
        assert!(new.is_empty());
        assert!(ring
            .insert_all(&[ring.sealing_key("ada").unwrap().stored.clone()])
            .unwrap());
        let read = |ring: &Arc<KeyRing>| {
            opening(Some(ring), || {
                let mut de = serde_json::Deserializer::from_str(&json);
                deserialize::<String, _>(&mut de, || "<forgotten>".to_owned())
            })
        };
        assert_eq!(read(&ring).unwrap(), "Ada");
        assert!(ring.forget("ada").unwrap());
        assert_eq!(read(&ring).unwrap(), "<forgotten>");
        // Without keys at all, a sealed field is an error, not forgotten.
        let mut de = serde_json::Deserializer::from_str(&json);
        assert!(deserialize::<String, _>(&mut de, String::new).is_err());
    }

    #[test]
    fn a_panic_while_sealing_leaves_no_key_sealing_or_collected() {
        let ring = ring();
        let (outer, keys) = collecting_new_keys(|| {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                collecting_new_keys(|| {
                    sealing(&ring, "ada", || -> () { panic!("a Serialize that panics") })
                })
            }));
            assert!(panicked.is_err());
            // Outside any scope again: a personal field is refused, not
            // sealed with the key of the save that panicked.
            serde_json::to_string(&Field("Ada"))
        });
        assert!(outer.is_err(), "{outer:?}");
        assert!(
            keys.is_empty(),
            "the panicked save's keys leaked: {}",
            keys.len()
        );
    }

    #[test]
    fn a_key_made_again_elsewhere_opens_what_it_sealed() {
        let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::default());
        let ring_in = |store: &Arc<dyn KeyStore>| {
            Arc::new(KeyRing::new(
                store.clone(),
                Cipher::new(&[1; 32]).unwrap(),
                Vec::new(),
            ))
        };
        let (reader, writer) = (ring_in(&store), ring_in(&store));
        let seal = |ring: &Arc<KeyRing>| {
            let (json, keys) = collecting_new_keys(|| {
                sealing(ring, "ada", || serde_json::to_string(&Field("Ada")))
                    .unwrap()
                    .unwrap()
            });
            assert!(ring.insert_all(&keys).unwrap());
            ring.confirm(&keys);
            json
        };
        let read = |ring: &Arc<KeyRing>, json: &str| {
            opening(Some(ring), || {
                let mut de = serde_json::Deserializer::from_str(json);
                deserialize::<String, _>(&mut de, || "<forgotten>".to_owned()).unwrap()
            })
        };
        let first = seal(&writer);
        assert_eq!(read(&reader, &first), "Ada");
        // Another process forgets the subject, and a new save makes its
        // key again: this reader's cached key is not the new data's.
        assert!(writer.forget("ada").unwrap());
        let second = seal(&writer);
        assert_eq!(read(&reader, &second), "Ada");
        assert_eq!(read(&reader, &first), "<forgotten>");
    }

    #[test]
    fn reading_another_key_keeps_the_key_a_save_is_writing() {
        let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::default());
        let master = || Cipher::new(&[1; 32]).unwrap();
        let (ours, theirs) = (
            Arc::new(KeyRing::new(store.clone(), master(), Vec::new())),
            Arc::new(KeyRing::new(store.clone(), master(), Vec::new())),
        );
        let seal = |ring: &Arc<KeyRing>| {
            sealing(ring, "ada", || serde_json::to_string(&Field("Ada")))
                .unwrap()
                .unwrap()
        };
        let key_of = |json: &str| {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            value[SEALED_KEY]["key"].as_str().unwrap().to_owned()
        };
        let ((first, second), keys) = collecting_new_keys(|| {
            // A save of ours seals with a key not stored yet ...
            let first = seal(&ours);
            // ... meanwhile another writer's key is stored and read here
            // (it opens: the store's key) ...
            let (json, theirs_new) = collecting_new_keys(|| seal(&theirs));
            assert!(theirs.insert_all(&theirs_new).unwrap());
            let read = opening(Some(&ours), || {
                let mut de = serde_json::Deserializer::from_str(&json);
                deserialize::<String, _>(&mut de, String::new).unwrap()
            });
            assert_eq!(read, "Ada");
            // ... and the save's next field is sealed with the same key.
            (first, seal(&ours))
        });
        assert_eq!(key_of(&first), key_of(&second));
        assert_eq!(keys.len(), 1, "one key for the whole save");
        assert_eq!(hex(&keys[0].key_id), key_of(&first));
    }

    #[test]
    fn a_save_sealed_with_two_keys_of_one_subject_collects_both() {
        let ring = ring();
        let ((), keys) = collecting_new_keys(|| {
            let seal = || {
                sealing(&ring, "ada", || serde_json::to_string(&Field("Ada")))
                    .unwrap()
                    .unwrap()
            };
            seal();
            // Another save of this process failed meanwhile and dropped
            // the key both were using: this one's next field gets another.
            let (_, used) = collecting_new_keys(seal);
            ring.drop_unconfirmed(&used);
            seal();
        });
        assert_eq!(keys.len(), 2, "both keys reach the save");
        // Written, the second loses to the first: the save retries.
        assert!(!ring.insert_all(&keys).unwrap());
    }

    struct Field(&'static str);
    impl Serialize for Field {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            serialize(self.0, s)
        }
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 15, 255])), Some(vec![0, 15, 255]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
