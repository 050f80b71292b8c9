//! The data keys of personal data in the object store: one object a
//! subject, `{log}-keys/{name}` beside the events' log
//! (`{prefix}/{application}/events-keys/`), holding the subject, the key's
//! id and the wrapped key as JSON.
//!
//! An object's name is the hex of its subject's UTF-8 bytes, then
//! `.json`: any subject makes a valid name, and names sort as their
//! subjects do. The name must fit a file name on a directory store (255
//! bytes, with the temporary suffix of a write), so a subject is at most
//! [`MAX_SUBJECT_BYTES`] bytes.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use annals_core::bridge::block_on;
use annals_core::error::{Error, Result};
use annals_core::persistence::keys::{KeyStore, StoredKey};

/// The longest subject (bytes of UTF-8) the object store keeps a key
/// for: its object's name, twice as long in hex, must fit a file name.
pub const MAX_SUBJECT_BYTES: usize = 120;

/// The end of every key object's name.
const SUFFIX: &str = ".json";

/// How many times a write that finds the object changed under it looks
/// again (each time means another writer's write or erasure landed).
const MAX_RACES: usize = 100;

/// How many key objects are read at once for a page of keys.
const PARALLEL_READS: usize = 32;

/// A key object's JSON.
#[derive(Serialize, Deserialize)]
struct KeyObject {
    subject: String,
    /// Base64.
    key_id: String,
    /// Base64.
    wrapped: String,
}

/// The data keys of an application on an object store: one object a
/// subject under `{log}-keys/`, named by the hex of the subject's UTF-8
/// bytes then `.json` (any subject names an object, and names sort as
/// their subjects), holding the subject, the key's id and the wrapped key
/// as JSON. A subject is at most [`MAX_SUBJECT_BYTES`] bytes, so that a
/// name fits a file name on a directory. A first key is
/// written only if the subject has none (`PutMode::Create`, as saves
/// are); a re-wrap only over the object as it was read (`PutMode::Update`,
/// `If-Match` on S3 and Azure, and in memory), or, on a store that cannot
/// (a directory), over it after its key id is checked. There is no
/// transaction to write keys in with a save
/// ([`writes_in_saves`](KeyStore::writes_in_saves) is false): an
/// application writes a save's new keys first.
///
/// An erased key's object is deleted, not overwritten: on a bucket with
/// versioning, expire the noncurrent versions of `*-keys/` objects, or
/// the erased keys stay readable there.
///
/// An application on an [`ObjectConfig`](crate::ObjectConfig) opens one
/// itself; open one directly for a store built by hand.
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::keys::{KeyStore, StoredKey};
/// use annals_object_store::ObjectKeyStore;
/// use object_store::path::Path;
///
/// let store = Arc::new(object_store::memory::InMemory::new());
/// let keys = ObjectKeyStore::new(store, &Path::from("clinic/events"))?; // clinic/events-keys/
/// let key = StoredKey { subject: "patient-1".into(), key_id: vec![1; 8], wrapped: vec![7; 60] };
/// assert_eq!(keys.insert_key(&key)?, key);
/// assert_eq!(keys.select_keys(None, 10)?, [key]);
/// assert!(keys.delete_key("patient-1")?);
/// # Ok::<(), annals_core::Error>(())
/// ```
pub struct ObjectKeyStore {
    store: Arc<dyn ObjectStore>,
    /// `{log}-keys`.
    root: Path,
    /// The process's object store runtime.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for ObjectKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectKeyStore")
            .field("store", &self.store.to_string())
            .field("root", &self.root.as_ref())
            .finish_non_exhaustive()
    }
}

/// An object's name for `subject`.
fn name(subject: &str) -> String {
    use std::fmt::Write as _;
    let mut name = String::with_capacity(subject.len() * 2 + SUFFIX.len());
    for byte in subject.bytes() {
        let _ = write!(name, "{byte:02x}");
    }
    name.push_str(SUFFIX);
    name
}

/// The subject an object's name is for; `None` for a name that is not a
/// key object's.
fn subject_of(name: &str) -> Option<String> {
    let hex = name.strip_suffix(SUFFIX)?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            let pair = hex.get(i..i + 2)?;
            // Lower-case only: one name a subject.
            if pair.bytes().any(|b| b.is_ascii_uppercase()) {
                return None;
            }
            u8::from_str_radix(pair, 16).ok()
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

impl ObjectKeyStore {
    /// The keys of the log at `log` in `store` (`{prefix}/{application}/events`
    /// for an application's), kept under `{log}-keys/`.
    ///
    /// # Errors
    ///
    /// The object store's runtime cannot start.
    pub fn new(store: Arc<dyn ObjectStore>, log: &Path) -> Result<Self> {
        Ok(Self {
            store,
            root: Path::from(format!("{log}-keys")),
            runtime: super::runtime()?,
        })
    }

    fn block_on<F: std::future::Future + Send>(&self, future: F) -> F::Output
    where
        F::Output: Send,
    {
        block_on(&self.runtime, future)
    }

    fn path(&self, subject: &str) -> Path {
        self.root.clone().join(name(subject).as_str())
    }

    /// That `subject` can name an object (before anything is sent).
    fn check(&self, subject: &str) -> Result<()> {
        if subject.len() > MAX_SUBJECT_BYTES {
            return Err(Error::persistence(
                format!("storing the data key of a subject under {}", self.root),
                format!(
                    "the subject is {} bytes long (UTF-8), and an object's name holds at most \
                     {MAX_SUBJECT_BYTES}",
                    subject.len()
                ),
            ));
        }
        Ok(())
    }

    /// The key in the object at `path` (for `subject`) and its version,
    /// or `None` if there is no object.
    fn get(&self, path: &Path, subject: &str) -> Result<Option<(StoredKey, UpdateVersion)>> {
        let got = self.block_on(async {
            match self.store.get(path).await {
                Ok(got) => {
                    let version = UpdateVersion {
                        e_tag: got.meta.e_tag.clone(),
                        version: got.meta.version.clone(),
                    };
                    got.bytes().await.map(|bytes| Some((bytes, version)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        match got {
            Ok(Some((bytes, version))) => Ok(Some((decode(path, subject, &bytes)?, version))),
            Ok(None) => Ok(None),
            Err(e) => Err(Error::persistence(format!("reading {path}"), e)),
        }
    }

    /// Writes `key` over the object at `path`, unconditionally.
    fn overwrite(&self, path: &Path, key: &StoredKey) -> Result<()> {
        let put = self.block_on(self.store.put_opts(
            path,
            PutPayload::from(encode(key)),
            PutOptions::from(PutMode::Overwrite),
        ));
        put.map(|_| ())
            .map_err(|e| Error::persistence(format!("writing {path}"), e))
    }

    /// The subjects with keys after `after`, in order, with their objects.
    fn list(&self, after: Option<&str>) -> Result<Vec<(String, Path)>> {
        let root = &self.root;
        let depth = root.parts().count() + 1;
        let offset = after.map(|after| self.path(after));
        let listed = self.block_on(async {
            let mut list = match &offset {
                Some(offset) => self.store.list_with_offset(Some(root), offset),
                None => self.store.list(Some(root)),
            };
            let mut found = Vec::new();
            while let Some(item) =
                std::future::poll_fn(|cx| futures_core::Stream::poll_next(list.as_mut(), cx)).await
            {
                match item {
                    Ok(meta) => found.push(meta.location),
                    // A directory not made yet: no keys.
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(found)
        });
        let listed = listed.map_err(|e| Error::persistence(format!("listing {root}"), e))?;
        let mut subjects = Vec::with_capacity(listed.len());
        for location in listed {
            let subject = (location.parts().count() == depth)
                .then(|| location.filename().and_then(subject_of))
                .flatten()
                .ok_or_else(|| {
                    Error::persistence(
                        format!("listing {root}"),
                        format!(
                            "{location} is not a data key's object (named by the hex of its \
                             subject, then {SUFFIX}): remove it"
                        ),
                    )
                })?;
            // Listing from an offset may be done by the client, or not
            // at all: the offset is checked here too.
            if after.is_none_or(|after| subject.as_str() > after) {
                subjects.push((subject, location));
            }
        }
        // The order of a listing is the store's: sorted here.
        subjects.sort_unstable();
        Ok(subjects)
    }

    /// The keys in the objects at `paths` (of their subjects), read
    /// [`PARALLEL_READS`] at a time; an object erased meanwhile is left
    /// out.
    fn read_all(&self, paths: &[(String, Path)]) -> Result<Vec<StoredKey>> {
        let mut keys = Vec::with_capacity(paths.len());
        for batch in paths.chunks(PARALLEL_READS) {
            let got = self.block_on(async {
                let mut reads = tokio::task::JoinSet::new();
                for (i, (_, path)) in batch.iter().enumerate() {
                    let store = self.store.clone();
                    let path = path.clone();
                    reads.spawn(async move {
                        let got = match store.get(&path).await {
                            Ok(got) => got.bytes().await.map(Some),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        };
                        (
                            i,
                            got.map_err(|e| Error::persistence(format!("reading {path}"), e)),
                        )
                    });
                }
                let mut got = vec![None; batch.len()];
                while let Some(done) = reads.join_next().await {
                    let (i, bytes) =
                        done.map_err(|e| Error::persistence("reading data keys", e))?;
                    got[i] = bytes?;
                }
                Ok::<_, Error>(got)
            })?;
            for ((subject, path), bytes) in batch.iter().zip(got) {
                if let Some(bytes) = bytes {
                    keys.push(decode(path, subject, &bytes)?);
                }
            }
        }
        Ok(keys)
    }
}

fn encode(key: &StoredKey) -> Vec<u8> {
    let object = KeyObject {
        subject: key.subject.clone(),
        key_id: BASE64.encode(&key.key_id),
        wrapped: BASE64.encode(&key.wrapped),
    };
    // Strings only: nothing that can fail to serialize.
    serde_json::to_vec(&object).unwrap_or_default()
}

/// The key in `bytes`, the object at `path`, which must be `subject`'s.
fn decode(path: &Path, subject: &str, bytes: &[u8]) -> Result<StoredKey> {
    let bad = |why: String| Error::persistence(format!("reading {path}"), why);
    let object: KeyObject =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a data key's object: {e}")))?;
    if object.subject != subject {
        return Err(bad(format!(
            "the object holds the key of {:?}, not of {subject:?}, whose name it has \
             (renamed by hand?)",
            object.subject
        )));
    }
    let field = |name: &str, value: &str| {
        BASE64
            .decode(value)
            .map_err(|e| bad(format!("its {name} is not base64: {e}")))
    };
    Ok(StoredKey {
        key_id: field("key_id", &object.key_id)?,
        wrapped: field("wrapped", &object.wrapped)?,
        subject: object.subject,
    })
}

/// Whether `e` says the store cannot write conditionally.
fn unsupported(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }
    )
}

impl KeyStore for ObjectKeyStore {
    fn select_key(&self, subject: &str) -> Result<Option<StoredKey>> {
        if subject.len() > MAX_SUBJECT_BYTES {
            // Never stored (see `insert_key`).
            return Ok(None);
        }
        Ok(self.get(&self.path(subject), subject)?.map(|(key, _)| key))
    }

    /// Creates the subject's object only if it is absent; when it is
    /// there, the key in it is the subject's.
    fn insert_key(&self, key: &StoredKey) -> Result<StoredKey> {
        self.check(&key.subject)?;
        let path = self.path(&key.subject);
        let body = encode(key);
        for _ in 0..MAX_RACES {
            let put = self.block_on(self.store.put_opts(
                &path,
                PutPayload::from(body.clone()),
                PutOptions::from(PutMode::Create),
            ));
            match put {
                Ok(_) => return Ok(key.clone()),
                // Another writer's key, or this one's own write answered
                // with an error and retried by the client: either way,
                // the stored key is the subject's.
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => match self.get(&path, &key.subject)? {
                    Some((stored, _)) => return Ok(stored),
                    // Erased meanwhile, or (S3) another write of it is
                    // still under way: look again shortly.
                    None => std::thread::sleep(std::time::Duration::from_millis(20)),
                },
                Err(e) if unsupported(&e) => {
                    return Err(Error::persistence(
                        format!("writing {path}"),
                        format!(
                            "this object store cannot create an object only if it is absent, \
                             which keeps a subject to one data key: {e}"
                        ),
                    ))
                }
                Err(e) => return Err(Error::persistence(format!("writing {path}"), e)),
            }
        }
        Err(Error::persistence(
            format!("writing {path}"),
            format!(
                "the object was there and gone again {MAX_RACES} times: the subject's key is \
                 being made and erased by others meanwhile"
            ),
        ))
    }

    /// Deletes the subject's object, if there is one. Two erasures racing
    /// may both answer true.
    fn delete_key(&self, subject: &str) -> Result<bool> {
        if subject.len() > MAX_SUBJECT_BYTES {
            return Ok(false);
        }
        let path = self.path(subject);
        // Most stores answer a delete of nothing as a delete: a HEAD
        // first says whether there was a key.
        match self.block_on(self.store.head(&path)) {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(Error::persistence(format!("reading {path}"), e)),
        }
        match self.block_on(self.store.delete(&path)) {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::persistence(format!("deleting {path}"), e)),
        }
    }

    /// Lists the keys' objects (all those after `after`: a store lists
    /// in an order of its own, so they are sorted here), and reads the
    /// first `limit`.
    fn select_keys(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredKey>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut subjects = self.list(after)?;
        let mut keys = Vec::with_capacity(limit.min(subjects.len()));
        // Read a page's worth at a time: objects erased meanwhile are
        // made up for by the next.
        while keys.len() < limit && !subjects.is_empty() {
            let page: Vec<(String, Path)> = subjects
                .drain(..(limit - keys.len()).min(subjects.len()))
                .collect();
            keys.extend(self.read_all(&page)?);
        }
        Ok(keys)
    }

    /// Writes the re-wrapped key over the object only as it was read,
    /// with the same key id (`PutMode::Update`); where the store cannot
    /// write conditionally (a directory), over the object after its key
    /// id is checked, so a key erased and made again between the check
    /// and the write would be overwritten: re-wrap there while no subject
    /// is being forgotten.
    fn rewrap_key(&self, key: &StoredKey, wrapped: &[u8]) -> Result<bool> {
        if key.subject.len() > MAX_SUBJECT_BYTES {
            return Ok(false);
        }
        let path = self.path(&key.subject);
        for _ in 0..MAX_RACES {
            let Some((stored, version)) = self.get(&path, &key.subject)? else {
                return Ok(false);
            };
            if stored.key_id != key.key_id {
                return Ok(false);
            }
            let rewrapped = StoredKey {
                wrapped: wrapped.to_vec(),
                ..stored
            };
            if version.e_tag.is_none() && version.version.is_none() {
                self.overwrite(&path, &rewrapped)?;
                return Ok(true);
            }
            let put = self.block_on(self.store.put_opts(
                &path,
                PutPayload::from(encode(&rewrapped)),
                PutOptions::from(PutMode::Update(version)),
            ));
            match put {
                Ok(_) => return Ok(true),
                // Changed or erased since it was read: look again.
                Err(
                    object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
                ) => continue,
                Err(e) if unsupported(&e) => {
                    self.overwrite(&path, &rewrapped)?;
                    return Ok(true);
                }
                Err(e) => return Err(Error::persistence(format!("writing {path}"), e)),
            }
        }
        Err(Error::persistence(
            format!("re-wrapping the key in {path}"),
            format!("the object changed under each of {MAX_RACES} writes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{name, subject_of};

    #[test]
    fn names_are_hex_and_sort_as_their_subjects() {
        let subjects = ["", "a", "a ", "ab", "b", "é", "patient/1", "..", "a\u{0}b"];
        for subject in subjects {
            assert_eq!(subject_of(&name(subject)).as_deref(), Some(subject));
            assert!(name(subject)
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'.' || b.is_ascii_lowercase()));
        }
        let mut by_subject = subjects.to_vec();
        by_subject.sort_unstable();
        let mut by_name = subjects.to_vec();
        by_name.sort_unstable_by_key(|s| name(s));
        assert_eq!(by_subject, by_name);
    }

    #[test]
    fn other_names_are_no_subjects() {
        for other in ["61", "6.json", "6G.json", "61A2.json", "ff.json", "x"] {
            assert_eq!(subject_of(other), None, "{other}");
        }
    }
}
