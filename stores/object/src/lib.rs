//! The object store: events in objects, through the `object_store` crate
//! (a local directory, memory, Amazon S3 with the `s3` feature, Azure Blob
//! Storage with the `azure` feature, or any `ObjectStore` a user builds).
//!
//! The store is a log of objects, one per save:
//! `{prefix}/{application}/events/{n:020}` holds every event of save `n`
//! and its tracking record, so a save is one object write and is wholly
//! there or not at all. A writer creates object `n + 1` only if it does not
//! exist (`PutMode::Create`, `If-None-Match: *` on S3 and Azure): of two
//! processes racing, one wins and the other reads what it wrote, checks its
//! events against it, and tries the next name. Nothing is read, then written,
//! unconditionally. Each recorder keeps an index of the log it has read
//! (where each event is, not the events, which it reads from their saves
//! when asked) and reads the objects added since before every query, so
//! it sees other processes' saves. Every [`SEGMENT_SAVES`] saves the index
//! of that run is written as one object beside the log
//! (`events-index/`): a process starting cold reads those and the saves
//! after the last, not every save. Snapshots are a second log under
//! `snapshots/`.
//! DCB events ([`ObjectConfig::open_dcb`], [`ObjectDcbRecorder`]) are a
//! third, under `dcb/`: one object per append, named by its first
//! position and decided by the same create-if-absent write.
//! The data keys of personal data ([`ObjectKeyStore`]) are one object a
//! subject under `events-keys/`, created if absent too.
//!
//! ```
//! use annals_core::persistence::{AggregateRecorder, EventQuery, Store, StoredEvent};
//! use annals_object_store::ObjectConfig;
//!
//! let dir = std::env::temp_dir().join(format!("annals-doc-{}", std::process::id()));
//! // `ApplicationBuilder::store(store)` in an application.
//! let store = ObjectConfig::location(dir.to_str().unwrap());
//! let row = StoredEvent {
//!     originator_id: "dog-1".into(),
//!     originator_version: 1,
//!     topic: "Dog.Registered".into(),
//!     state: br#"{"name":"Fido"}"#.to_vec(),
//! };
//! store.open("Kennel")?.events.insert_events(&[row.clone()])?;
//!
//! // Another recorder on the same directory (as another process would be).
//! let other = store.open("Kennel")?;
//! assert_eq!(other.events.select_events("dog-1", &EventQuery::all())?, [row]);
//! # std::fs::remove_dir_all(dir).ok();
//! # Ok::<(), annals_core::Error>(())
//! ```

mod dcb;
mod index;
mod keys;
mod recorder;

use std::fmt;
use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStore;

pub use dcb::ObjectDcbRecorder;
pub use keys::{ObjectKeyStore, MAX_SUBJECT_BYTES};
pub use recorder::{Compaction, ObjectRecorder, SEGMENT_SAVES};

use annals_core::bridge::SharedRuntime;
use annals_core::env::Env;
use annals_core::error::{Error, Result};
use annals_core::persistence::{Recorders, Store};
use annals_core::settings;

/// The runtime that runs every object store call of this process, for
/// every recorder and watcher of every store (one: see
/// `annals_core::bridge`).
static RUNTIME: SharedRuntime =
    SharedRuntime::new("annals-objects", "starting the object store's runtime");

fn runtime() -> Result<tokio::runtime::Handle> {
    RUNTIME.handle()
}

/// The setting that says where the objects are.
// A copy of the setting's name, kept (hidden) for code written against it:
// the one documented name is `settings::OBJECT_STORE_LOCATION`.
#[doc(hidden)]
pub const OBJECT_STORE_LOCATION: &str = settings::OBJECT_STORE_LOCATION.name;

/// Where the object store keeps its objects: a location
/// ([`location`](Self::location), `OBJECT_STORE_LOCATION`) or a store the
/// caller built ([`with_store`](Self::with_store)).
#[derive(Clone)]
pub struct ObjectConfig {
    target: Target,
    /// Whether a missing directory is created (`CREATE_TABLE`).
    pub create: bool,
}

#[derive(Clone)]
enum Target {
    Location(String),
    Store(Arc<dyn ObjectStore>, Path),
}

impl fmt::Debug for ObjectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Location(location) => f
                .debug_struct("ObjectConfig")
                .field("location", location)
                .finish_non_exhaustive(),
            Target::Store(store, prefix) => f
                .debug_struct("ObjectConfig")
                .field("store", &store.to_string())
                .field("prefix", &prefix.as_ref())
                .finish_non_exhaustive(),
        }
    }
}

impl ObjectConfig {
    /// Objects at `location`: a directory (`/var/lib/school` or
    /// `file:///var/lib/school`), `memory://` (this process only), with
    /// the `s3` feature `s3://bucket/prefix` (credentials, region and
    /// endpoint from object_store's `AWS_*` variables), or with the `azure`
    /// feature `az://container/prefix` (or `azure://`; the account, its
    /// credentials and endpoint from object_store's `AZURE_*` variables:
    /// `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, or
    /// `AZURE_STORAGE_USE_EMULATOR=true` with `AZURITE_BLOB_STORAGE_URL`
    /// for Azurite). The bucket or container must exist.
    pub fn location(location: &str) -> Self {
        Self {
            target: Target::Location(location.to_owned()),
            create: true,
        }
    }

    /// Objects in `store` under `prefix`: any `object_store` backend that
    /// supports `PutMode::Create`.
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            target: Target::Store(store, Path::from(prefix)),
            create: true,
        }
    }

    /// `OBJECT_STORE_LOCATION` and `CREATE_TABLE`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable: the location is missing or
    /// empty; `CREATE_TABLE` is not a yes/no flag.
    pub fn from_env(env: &Env) -> Result<Self> {
        let Some((var, location)) = env.get(OBJECT_STORE_LOCATION) else {
            return Err(Error::config(
                OBJECT_STORE_LOCATION,
                "the object store needs a location: a directory, memory://, s3://bucket/prefix or az://container/prefix",
            ));
        };
        if location.trim().is_empty() {
            return Err(Error::config(var, "the location is empty"));
        }
        let mut config = Self::location(location.trim());
        if let Some(create) = env.flag(settings::CREATE_TABLE.name)? {
            config.create = create;
        }
        Ok(config)
    }

    /// The store and the prefix the location names, and the directory
    /// when it is one.
    fn resolve(&self) -> Result<(Arc<dyn ObjectStore>, Path, Option<std::path::PathBuf>)> {
        let location = match &self.target {
            Target::Store(store, prefix) => return Ok((store.clone(), prefix.clone(), None)),
            Target::Location(location) => location.as_str(),
        };
        let bad = |message: String| Error::config(OBJECT_STORE_LOCATION, message);
        if location == "memory://" || location == "memory:" {
            return Ok((
                Arc::new(object_store::memory::InMemory::new()),
                Path::default(),
                None,
            ));
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            let (store, prefix) = s3(location, rest)?;
            return Ok((store, prefix, None));
        }
        if let Some(rest) = ["az://", "azure://"]
            .iter()
            .find_map(|scheme| location.strip_prefix(scheme))
        {
            let (store, prefix) = azure(location, rest)?;
            return Ok((store, prefix, None));
        }
        if let Some((scheme, _)) = location.split_once("://") {
            if scheme != "file" {
                return Err(bad(format!(
                    "{location:?}: unknown scheme {scheme:?}; expected a directory, file://, memory://, s3:// or az://"
                )));
            }
        }
        let dir = std::path::PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
        if !dir.is_dir() {
            if !self.create {
                return Err(bad(format!(
                    "{} is not a directory (CREATE_TABLE=no: it is not created)",
                    dir.display()
                )));
            }
            create_dir_synced(&dir).map_err(|e| {
                Error::persistence(format!("creating the directory {}", dir.display()), e)
            })?;
        }
        // A save acknowledged is durable, as SQLite's synchronous=FULL: the
        // file is synced before it is linked to its name, the directory
        // after (and every directory the write creates).
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| Error::persistence(format!("opening the directory {}", dir.display()), e))?
            .with_fsync(true);
        Ok((Arc::new(store), Path::default(), Some(dir)))
    }
}

/// Creates `dir` and its missing parents, each made durable by syncing
/// the directory that holds it.
fn create_dir_synced(dir: &std::path::Path) -> std::io::Result<()> {
    let missing: Vec<&std::path::Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir)?;
    for created in missing {
        match created.parent() {
            Some(parent) if parent.as_os_str().is_empty() => sync_dir(std::path::Path::new("."))?,
            Some(parent) => sync_dir(parent)?,
            None => {}
        }
    }
    Ok(())
}

fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// From this many saves, stale temporary files are looked for in the
/// background (see [`Store::open`] for the object store).
const CLEAN_IN_BACKGROUND_FROM: u64 = 10_000;

/// How long a temporary file of a save stays untouched before it is taken
/// for a dead writer's (see [`remove_stale_temporaries`]).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Removes the temporary files (`{save}#{n}`) in `dir` whose save is
/// stored already and that no write has touched for [`STALE_AFTER`]: a
/// writer killed mid-save leaves its file, and nothing else ever removes
/// it.
///
/// Only once `{save}` exists: a save is published by hard-linking its
/// temporary file's *name* to the save's name, and temporary names are
/// reused. Were `{save}#1` removed while `{save}` is free, a stalled writer
/// could link a newer writer's `{save}#1` as its own save and acknowledge
/// it, its own events lost. Once `{save}` exists every link to it fails
/// (the writer then reads the save there), whichever file its temporary
/// name holds, so removing them loses nothing. The age spares a live
/// writer a needless failure. A file that cannot be removed (a read-only
/// store) is logged, not an error: reading needs no cleanup.
fn remove_stale_temporaries(dir: &std::path::Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot look for stale temporary files");
            return;
        }
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((save, n)) = name.to_str().and_then(|name| name.split_once('#')) else {
            continue;
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let number = |s: &str| s.len() == 20 && digits(s);
        // A save `{n:020}`, or an index segment `{first:020}-{last:020}`.
        let named = number(save)
            || save
                .split_once('-')
                .is_some_and(|(first, last)| number(first) && number(last));
        if !named || !digits(n) {
            continue;
        }
        if std::fs::symlink_metadata(dir.join(save)).is_err() {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| {
                now.duration_since(modified)
                    .is_ok_and(|age| age > STALE_AFTER)
            });
        if stale {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a stale temporary file")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a stale temporary file")
                }
            }
        }
    }
}

#[cfg(feature = "s3")]
fn s3(location: &str, rest: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::config(
            OBJECT_STORE_LOCATION,
            format!("{location:?} names no bucket; expected s3://bucket/prefix"),
        ));
    }
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry())
        // Create-if-absent is what keeps racing writers apart.
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .build()
        .map_err(|e| Error::persistence(format!("configuring S3 for {location}"), e))?;
    Ok((Arc::new(store), Path::from(prefix)))
}

#[cfg(not(feature = "s3"))]
fn s3(location: &str, _: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    Err(Error::config(
        OBJECT_STORE_LOCATION,
        format!("{location:?}: S3 needs annals' `s3` feature"),
    ))
}

/// How a cloud store retries: give up within seconds, not object_store's
/// default three minutes; a save that cannot be stored should say so
/// while the caller waits.
#[cfg(any(feature = "s3", feature = "azure"))]
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(15),
    }
}

/// Azure Blob Storage: `rest` is `container/prefix`; the account, its
/// credentials and the endpoint (or the emulator) from `AZURE_*`.
/// Create-if-absent needs no setting there: `PutMode::Create` is
/// `If-None-Match: *`, and a name taken answers 409 (Azurite's
/// `BlobAlreadyExists`) or 412, both `AlreadyExists` from object_store.
#[cfg(feature = "azure")]
fn azure(location: &str, rest: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    use object_store::azure::MicrosoftAzureBuilder;
    let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if container.is_empty() {
        return Err(Error::config(
            OBJECT_STORE_LOCATION,
            format!("{location:?} names no container; expected az://container/prefix"),
        ));
    }
    let store = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_retry(retry())
        .build()
        .map_err(|e| Error::persistence(format!("configuring Azure for {location}"), e))?;
    Ok((Arc::new(store), Path::from(prefix)))
}

#[cfg(not(feature = "azure"))]
fn azure(location: &str, _: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    Err(Error::config(
        OBJECT_STORE_LOCATION,
        format!("{location:?}: Azure Blob Storage needs annals' `azure` feature"),
    ))
}

/// Where an application's objects are.
struct Application {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The directory, when the store is one.
    dir: Option<std::path::PathBuf>,
    /// The application's name as objects spell it.
    app: String,
}

impl ObjectConfig {
    /// The store, the application's root in it, the directory (when it
    /// is one) and the application's name as objects spell it.
    fn application(&self, app_name: &str) -> Result<Application> {
        let (store, prefix, dir) = self.resolve()?;
        let app = app_name.to_ascii_lowercase();
        if app.is_empty()
            || !app
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::config(
                OBJECT_STORE_LOCATION,
                format!("the application name {app_name:?} cannot name objects: use letters, digits, _ and -"),
            ));
        }
        let root = prefix.join(app.as_str());
        Ok(Application {
            store,
            root,
            dir,
            app,
        })
    }

    /// The DCB recorder of application `app_name`: its appends under
    /// `{prefix}/{application}/dcb` (see [`ObjectDcbRecorder`]), beside
    /// the application's events and snapshots.
    ///
    /// # Errors
    ///
    /// As [`Store::open`]: a bad location or application name, or a store
    /// that cannot be read.
    ///
    /// ```
    /// use annals_core::persistence::dcb::{DcbEvent, DcbQuery, DcbRecorder};
    /// use annals_object_store::ObjectConfig;
    ///
    /// let dcb = ObjectConfig::location("memory://").open_dcb("Courses")?;
    /// dcb.append(&[DcbEvent::new("CourseRegistered", vec![]).tags(["course-1"])], None)?;
    /// assert_eq!(dcb.read(&DcbQuery::all(), None, None)?.head, Some(1));
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn open_dcb(&self, app_name: &str) -> Result<ObjectDcbRecorder> {
        let Application {
            store,
            root,
            dir,
            app,
        } = self.application(app_name)?;
        if let Some(dir) = dir {
            remove_stale_temporaries(&dir.join(&app).join("dcb"));
        }
        ObjectDcbRecorder::open(store, root.join("dcb"))
    }

    /// Compacts application `app_name`'s events and snapshots: see
    /// [`ObjectRecorder::compact`]. Safe while the application runs, here
    /// or in other processes.
    ///
    /// # Errors
    ///
    /// As [`Store::open`], and as [`ObjectRecorder::compact`].
    ///
    /// ```
    /// use annals_object_store::ObjectConfig;
    ///
    /// let done = ObjectConfig::location("memory://").compact("Dogs")?;
    /// assert_eq!(done.saves, 0); // nothing old enough to pack
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn compact(&self, app_name: &str) -> Result<Compaction> {
        self.compact_with(app_name, &mut |_, _| Ok(()))
    }

    /// [`compact`](Self::compact), calling `packed` with each stream that
    /// has events in a packed run and its last version there (see
    /// [`ObjectRecorder::compact_with`]): where the application takes a
    /// snapshot of the aggregate.
    ///
    /// # Errors
    ///
    /// As [`compact`](Self::compact), and the first error `packed`
    /// returns.
    ///
    /// ```
    /// use annals_object_store::ObjectConfig;
    ///
    /// let config = ObjectConfig::location("memory://");
    /// let mut streams = 0;
    /// config.compact_with("Dogs", &mut |_stream, _version| {
    ///     streams += 1; // app.take_snapshot::<Dog>(stream.parse()?) in an application
    ///     Ok(())
    /// })?;
    /// assert_eq!(streams, 0);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn compact_with(
        &self,
        app_name: &str,
        packed: &mut dyn FnMut(&str, u64) -> Result<()>,
    ) -> Result<Compaction> {
        let Application { store, root, .. } = self.application(app_name)?;
        let events = ObjectRecorder::open(store.clone(), root.clone().join("events"))?
            .compact_with(packed)?;
        let snapshots = ObjectRecorder::open(store, root.join("snapshots"))?.compact()?;
        Ok(Compaction {
            packs: events.packs + snapshots.packs,
            saves: events.saves + snapshots.saves,
        })
    }
}

impl Store for ObjectConfig {
    fn name(&self) -> &'static str {
        "object"
    }

    /// The application's events, snapshots and data keys (under
    /// `events-keys/`: see [`ObjectKeyStore`]).
    fn open(&self, app_name: &str) -> Result<Recorders> {
        let Application {
            store,
            root,
            dir,
            app,
        } = self.application(app_name)?;
        let log = root.clone().join("events");
        let keys = ObjectKeyStore::new(store.clone(), &log)?;
        let events = ObjectRecorder::open(store.clone(), log)?;
        let snapshots = ObjectRecorder::open(store, root.join("snapshots"))?;
        if let Some(dir) = dir {
            let logs = [
                "events",
                "snapshots",
                "events-index",
                "snapshots-index",
                "events-packs",
                "snapshots-packs",
            ]
            .map(|log| dir.join(&app).join(log));
            let clean = move || logs.iter().for_each(|log| remove_stale_temporaries(log));
            // Looking for them reads every name in the directory (0.7 s
            // for a million saves): a large store does it on a thread of
            // its own, so the open does not wait for it.
            if events.saves() < CLEAN_IN_BACKGROUND_FROM {
                clean();
            } else if let Err(e) = std::thread::Builder::new()
                .name("annals-objects-cleanup".into())
                .spawn(clean)
            {
                tracing::warn!(error = %e, "cannot start the cleanup of stale temporary files");
            }
        }
        Ok(Recorders::new(Arc::new(events), Arc::new(snapshots)).with_keys(Arc::new(keys)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory store is object_store's with `with_fsync(true)`: each
    /// save's file synced before its link, its directory after. The flag
    /// shows nowhere but in the store's `Debug`.
    #[test]
    fn a_directory_store_syncs_what_it_writes() {
        let dir = std::env::temp_dir().join(format!("annals-fsync-{}", uuid::Uuid::new_v4()));
        let (store, _, made) = ObjectConfig::location(dir.to_str().expect("a UTF-8 path"))
            .resolve()
            .expect("a directory store");
        assert_eq!(made.as_deref(), Some(dir.as_path()));
        let described = format!("{store:?}");
        assert!(described.contains("fsync: true"), "{described}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Without the `azure` feature an Azure location is an error naming
    /// the feature, in either spelling of its scheme.
    #[cfg(not(feature = "azure"))]
    #[test]
    fn an_azure_location_needs_the_azure_feature() {
        for location in ["az://annals/school", "azure://annals/school"] {
            let err = ObjectConfig::location(location)
                .resolve()
                .map(|_| ())
                .expect_err("an Azure location without the feature");
            let message = err.to_string();
            assert!(message.contains(OBJECT_STORE_LOCATION), "{message}");
            assert!(message.contains("`azure` feature"), "{message}");
            assert!(message.contains(location), "{message}");
        }
    }

    /// An Azure location must name its container.
    #[cfg(feature = "azure")]
    #[test]
    fn an_azure_location_names_a_container() {
        for location in ["az://", "az:///school", "azure://"] {
            let err = ObjectConfig::location(location)
                .resolve()
                .map(|_| ())
                .expect_err("an Azure location without a container");
            assert!(err.to_string().contains("names no container"), "{err}");
        }
    }
}
