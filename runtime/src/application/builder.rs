//! [`ApplicationBuilder`]: an application's settings, in code or from the
//! environment, and the store they open.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use super::commands::{CommandLocks, RetryPolicy};
use super::SnapshotRule;
use super::{
    Application, AGGREGATE_CACHE_MAXSIZE, CIPHER_TOPIC, IS_HASH_CHAINING_ENABLED,
    IS_SNAPSHOTTING_ENABLED,
};
use crate::cipher::{self, Cipher};
use crate::domain::Aggregate;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::mapper::{Codec, Compressor, Mapper};
use crate::metrics::AppMetrics;
use crate::persistence::memory::MemoryRecorder;
#[cfg(feature = "mysql")]
use crate::persistence::mysql::MysqlConfig;
#[cfg(feature = "postgres")]
use crate::persistence::postgres::PostgresConfig;
#[cfg(feature = "sqlite")]
use crate::persistence::sqlite::SqliteConfig;
use crate::persistence::wake::Notifier;
use crate::persistence::{
    AggregateRecorder, Modules, Persistence, ProcessRecorder, Recorders, Store,
};
use crate::personal::KeyRing;
use crate::repository::{Cache, Repository, Snapshots};
use crate::settings;

/// Configures an [`Application`] in code, from the environment, or both
/// (settings made after [`from_env`](Self::from_env) win). `Debug` never
/// shows the cipher key.
///
/// Settings are checked by [`build`](Self::build): the builder's methods
/// never fail, and the first bad setting is `build`'s error.
///
/// ```
/// use annals::prelude::*;
/// use annals::mapper::Compressor;
///
/// let app = Application::builder("Kennel")
///     .sqlite(":memory:")                      // or .memory(), .postgres(config), .store(..)
///     .compressor(Some(Compressor::Zlib))      // zlib, then
///     .cipher_key(annals::cipher::create_key()) // AES-GCM
///     .hash_chain(true)
///     .cache(1_000)
///     .build()?;
/// assert_eq!(app.name(), "Kennel");
/// assert!(app.mapper().hash_chain());
/// # Ok::<(), annals::Error>(())
/// ```
#[must_use]
pub struct ApplicationBuilder {
    name: String,
    persistence: Persistence,
    modules: Modules,
    retry: RetryPolicy,
    compressor: Option<Compressor>,
    cipher_key: Option<(String, String)>,
    cipher_bound: bool,
    /// The master key of personal data's keys, and former ones.
    personal_key: Option<(String, String)>,
    previous_personal_keys: Option<(String, String)>,
    snapshotting: bool,
    intervals: HashMap<TypeId, u64>,
    snapshot_rule: SnapshotRule,
    cache_size: usize,
    hash_chain: bool,
    codec: Codec,
    errors: Vec<Error>,
}

impl fmt::Debug for ApplicationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationBuilder")
            .field("name", &self.name)
            .field("persistence", &self.persistence)
            .field("modules", &self.modules)
            .field("compressor", &self.compressor)
            .field("cipher_key", &self.cipher_key.as_ref().map(|_| "***"))
            .field(
                "personal_data_key",
                &self.personal_key.as_ref().map(|_| "***"),
            )
            .field("snapshotting", &self.snapshotting)
            .field("snapshot_rule", &self.snapshot_rule)
            .field("cache_size", &self.cache_size)
            .field("hash_chain", &self.hash_chain)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl ApplicationBuilder {
    /// The builder of [`Application::builder`]: memory, no codec options.
    pub(super) fn new(name: &str) -> Self {
        ApplicationBuilder {
            name: name.to_owned(),
            persistence: Persistence::Memory,
            modules: Modules::new(),
            retry: RetryPolicy::default(),
            compressor: None,
            cipher_key: None,
            cipher_bound: true,
            personal_key: None,
            previous_personal_keys: None,
            snapshotting: false,
            intervals: HashMap::new(),
            snapshot_rule: SnapshotRule::Last,
            cache_size: 0,
            hash_chain: false,
            codec: Codec::Annals,
            errors: Vec::new(),
        }
    }

    /// Reads the settings from the process environment (see [`crate::env`]
    /// and [`with_env`](Self::with_env)).
    ///
    /// # Errors
    ///
    /// As [`with_env`](Self::with_env).
    pub fn from_env(self) -> Result<Self> {
        let env = Env::from_process(&self.name);
        self.with_env(&env)
    }

    /// Reads the settings as Python's `DogSchool(env={...})` does: from
    /// the process environment with `vars` over it (see
    /// [`Env::over_process`] and [`with_env`](Self::with_env)).
    ///
    /// ```
    /// use annals::prelude::*;
    ///
    /// let app = Application::builder("School")
    ///     .env([("PERSISTENCE_MODULE", "sqlite"), ("SQLITE_DBNAME", ":memory:")])?
    ///     .build()?;
    /// assert_eq!(app.last_notification_id()?, None);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`with_env`](Self::with_env).
    pub fn env<I, K, V>(self, vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env = Env::over_process(&self.name, vars);
        self.with_env(&env)
    }

    /// Reads the settings from `env`: `PERSISTENCE_MODULE` and the store's
    /// settings, `COMPRESSOR_TOPIC`, `CIPHER_KEY` (and `CIPHER_TOPIC`),
    /// `IS_SNAPSHOTTING_ENABLED`, `AGGREGATE_CACHE_MAXSIZE`,
    /// `IS_HASH_CHAINING_ENABLED` (the table is [`settings::ALL`]). Settings
    /// `env` does not have keep the builder's values.
    ///
    /// ```
    /// use annals::env::Env;
    /// use annals::prelude::*;
    ///
    /// let env = Env::from_map("Kennel", [
    ///     ("PERSISTENCE_MODULE", "sqlite"),
    ///     ("KENNEL_SQLITE_DBNAME", ":memory:"), // the prefixed name wins
    ///     ("SQLITE_DBNAME", "elsewhere.db"),
    ///     ("IS_HASH_CHAINING_ENABLED", "yes"),
    /// ]);
    /// let app = Application::builder("Kennel").with_env(&env)?.build()?;
    /// assert!(app.mapper().hash_chain());
    ///
    /// let bad = Env::from_map("Kennel", [("AGGREGATE_CACHE_MAXSIZE", "lots")]);
    /// let err = Application::builder("Kennel").with_env(&bad).unwrap_err();
    /// assert!(matches!(err, annals::Error::Config { setting, .. } if setting == "AGGREGATE_CACHE_MAXSIZE"));
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable as it was found: an unknown
    /// `PERSISTENCE_MODULE`, a store setting that is missing
    /// (`SQLITE_DBNAME`, `POSTGRES_DBNAME`) or bad, an unknown
    /// `COMPRESSOR_TOPIC` or `CIPHER_TOPIC`, a value that does not parse (a
    /// number, a yes/no flag). A bad `CIPHER_KEY` is found by
    /// [`build`](Self::build).
    pub fn with_env(mut self, env: &Env) -> Result<Self> {
        if let Some(persistence) = Persistence::from_env_with(env, &self.modules)? {
            self.persistence = persistence;
        }
        if let Some(compressor) = Compressor::from_env(env)? {
            self.compressor = Some(compressor);
        }
        if let Some((var, topic)) = env.get(CIPHER_TOPIC) {
            cipher::check_topic(&var, &topic)?;
        }
        if let Some(key) = env.get(cipher::CIPHER_KEY) {
            self.cipher_key = Some(key);
        }
        if let Some(key) = env.get(settings::PERSONAL_DATA_KEY.name) {
            self.personal_key = Some(key);
        }
        if let Some(keys) = env.get(settings::PERSONAL_DATA_PREVIOUS_KEYS.name) {
            self.previous_personal_keys = Some(keys);
        }
        if let Some(bound) = env.flag(settings::CIPHER_ASSOCIATED_DATA.name)? {
            self.cipher_bound = bound;
        }
        if let Some(enabled) = env.flag(IS_SNAPSHOTTING_ENABLED)? {
            self.snapshotting = enabled;
        }
        if let Some(size) = env.parse::<usize>(AGGREGATE_CACHE_MAXSIZE)? {
            self.cache_size = size;
        }
        if let Some(on) = env.flag(IS_HASH_CHAINING_ENABLED)? {
            self.hash_chain = on;
        }
        if env.get(crate::mapper::CODEC).is_some() {
            self.codec = Codec::from_env(env)?;
        }
        Ok(self)
    }

    /// Keeps events in memory (the default): shorthand for
    /// `.store(MemoryStore)`.
    pub fn memory(self) -> Self {
        self.persistence(Persistence::Memory)
    }

    /// Keeps events in the SQLite database `dbname` (a file path or
    /// `:memory:`), with default settings: shorthand for
    /// `.store(SqliteConfig::new(dbname))` (for other settings, give a
    /// [`SqliteConfig`] to [`store`](Self::store)). The database is opened
    /// by [`build`](Self::build).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// # pub struct Dog { pub name: String, pub tricks: Vec<String> }
    /// # #[aggregate]
    /// # impl Dog {
    /// #     #[event("Registered")]
    /// #     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
    /// #     #[event("TrickAdded")]
    /// #     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
    /// # }
    /// let app = Application::builder("Kennel").sqlite(":memory:").build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// app.save(&mut dog)?;
    /// assert_eq!(app.get::<Dog>(dog.id())?.name, "Fido");
    /// # Ok::<(), annals::Error>(())
    /// ```
    #[cfg(feature = "sqlite")]
    pub fn sqlite(self, dbname: impl Into<String>) -> Self {
        self.persistence(Persistence::Sqlite(SqliteConfig::new(dbname)))
    }

    /// Keeps events in PostgreSQL, in tables named after the application
    /// (`kennel_events`, ...): shorthand for `.store(config)`. The server is connected to, and the tables
    /// created, by [`build`](Self::build).
    ///
    /// ```no_run
    /// use annals::persistence::postgres::PostgresConfig;
    /// use annals::prelude::*;
    ///
    /// let mut config = PostgresConfig::new("test"); // 127.0.0.1:5432, user postgres
    /// config.pool_size = 10;
    /// let app = Application::builder("Kennel").postgres(config).build()?;
    /// # Ok::<(), annals::Error>(())
    /// ```
    #[cfg(feature = "postgres")]
    pub fn postgres(self, config: PostgresConfig) -> Self {
        self.persistence(Persistence::Postgres(config))
    }

    /// Keeps events in MariaDB or MySQL, in tables named after the
    /// application (`kennel_events`, ...): shorthand for `.store(config)`.
    /// The server is connected to, and the tables created, by
    /// [`build`](Self::build).
    ///
    /// ```no_run
    /// use annals::persistence::mysql::MysqlConfig;
    /// use annals::prelude::*;
    ///
    /// let config = MysqlConfig::new("test"); // 127.0.0.1:3306, user root
    /// let app = Application::builder("Kennel").mysql(config).build()?;
    /// # Ok::<(), annals::Error>(())
    /// ```
    #[cfg(feature = "mysql")]
    pub fn mysql(self, config: MysqlConfig) -> Self {
        self.persistence(Persistence::Mysql(config))
    }

    /// Keeps events in `store` (a store of the user's own, or any built-in
    /// store's settings: `SqliteConfig`, `PostgresConfig`, `ObjectConfig`,
    /// `MemoryStore`): the one way to choose a store in code, as
    /// `PERSISTENCE_MODULE` is from the environment ([`with_env`](Self::with_env));
    /// the methods above are shorthands for it. It is
    /// opened by [`build`](Self::build). See [`Store`] for a store of one's
    /// own.
    ///
    /// ```
    /// use annals::persistence::sqlite::SqliteConfig;
    /// use annals::prelude::*;
    ///
    /// let mut config = SqliteConfig::new(":memory:");
    /// config.table_prefix = Some("kennel".into()); // kennel_events, ...
    /// let app = Application::builder("Kennel").store(config).build()?;
    /// assert_eq!(app.last_notification_id()?, None);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn store(self, store: impl Store + 'static) -> Self {
        self.persistence(Persistence::store(store))
    }

    /// The caller's own persistence modules, which `PERSISTENCE_MODULE`
    /// may then name beside the built-in ones (give them before
    /// [`with_env`](Self::with_env) or [`from_env`](Self::from_env), which
    /// read it). A name a built-in module has is an error of
    /// [`build`](Self::build).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use annals::env::Env;
    /// use annals::persistence::{MemoryStore, Modules, Store};
    /// use annals::prelude::*;
    ///
    /// /// A store of the user's (here, memory under another name).
    /// fn scratch(_env: &Env) -> annals::Result<Arc<dyn Store>> {
    ///     Ok(Arc::new(MemoryStore))
    /// }
    ///
    /// let modules = Modules::new().with("scratch", scratch)?;
    /// let env = Env::from_map("Notes", [("PERSISTENCE_MODULE", "scratch")]);
    /// let app = Application::builder("Notes").modules(modules).with_env(&env)?.build()?;
    /// assert_eq!(app.recorder().max_notification_id()?, 0);
    ///
    /// let taken = Modules::new().with("memory", scratch)?;
    /// assert!(Application::builder("Notes").modules(taken).build().is_err());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn modules(mut self, modules: Modules) -> Self {
        for name in modules.names() {
            if crate::persistence::factory::is_built_in(name) {
                self.errors.push(Error::config(
                    settings::PERSISTENCE_MODULE.name,
                    format!("the persistence module {name:?} is annals' own: name yours otherwise"),
                ));
            }
        }
        self.modules = modules;
        self
    }

    /// Keeps events where `persistence` says (what
    /// [`Persistence::from_env`] read, for instance).
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// Keeps events in the given recorder (snapshots then stay in memory):
    /// not a kind of store but one already open, used as it is (not
    /// wrapped in the tracing decorator).
    pub fn recorder(self, recorder: Arc<dyn ProcessRecorder>) -> Self {
        self.persistence(Persistence::Recorder(recorder))
    }

    /// Keeps events and snapshots in the stores of `other`: a second
    /// application on the same data. Snapshotting is on if it is on in
    /// `other`; other settings, such as the cipher key, are not copied.
    pub fn stores_of(mut self, other: &Application) -> Self {
        self.snapshotting = other.snapshots().is_some();
        let snapshots = other.snapshots().map_or_else(
            || Arc::new(MemoryRecorder::new()) as Arc<dyn AggregateRecorder>,
            |s| s.recorder().clone(),
        );
        self.persistence(Persistence::Recorders(other.recorder().clone(), snapshots))
    }

    /// Compresses the state of stored events and snapshots (`None`: no
    /// compression). Events stored compressed are read only by an
    /// application that compresses too.
    ///
    /// ```
    /// use annals::mapper::Compressor;
    /// use annals::prelude::*;
    ///
    /// let app = Application::builder("Kennel").compressor(Some(Compressor::Zlib)).build()?;
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn compressor(mut self, compressor: Option<Compressor>) -> Self {
        self.compressor = compressor;
        self
    }

    /// Encrypts the state of stored events and snapshots with AES-GCM under
    /// `key` (base64 of 16, 24 or 32 bytes; see [`cipher::create_key`]). A
    /// bad key makes [`build`](Self::build) fail, naming `CIPHER_KEY`.
    ///
    /// ```
    /// use annals::prelude::*;
    ///
    /// let key = annals::cipher::create_key(); // keep it: without it the events are unreadable
    /// let app = Application::builder("Kennel").cipher_key(key).build()?;
    ///
    /// let err = Application::builder("Kennel").cipher_key("c2hvcnQ=").build().unwrap_err();
    /// assert!(matches!(err, annals::Error::Config { setting, .. } if setting == "CIPHER_KEY"));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn cipher_key(mut self, key: impl Into<String>) -> Self {
        self.cipher_key = Some((cipher::CIPHER_KEY.to_owned(), key.into()));
        self
    }

    /// The master key that wraps each subject's data key, for
    /// `#[personal]` fields (see [`crate::personal`]): base64 of 16, 24 or
    /// 32 bytes (`PERSONAL_DATA_KEY`). Without it, the cipher key serves
    /// ([`cipher_key`](Self::cipher_key)); without either, a save of a
    /// personal field is refused. It does not encrypt whole events.
    ///
    /// ```
    /// use annals::Application;
    ///
    /// let app = Application::builder("Clinic")
    ///     .personal_data_key(annals::cipher::create_key())
    ///     .build()?;
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn personal_data_key(mut self, key: impl Into<String>) -> Self {
        self.personal_key = Some((settings::PERSONAL_DATA_KEY.name.to_owned(), key.into()));
        self
    }

    /// Former master keys of the data keys, accepted for reading while
    /// [`Application::rotate_keys`] wraps every data key by the current one
    /// (`PERSONAL_DATA_PREVIOUS_KEYS`, comma-separated).
    ///
    /// ```
    /// use annals::Application;
    ///
    /// let (old, new) = (annals::cipher::create_key(), annals::cipher::create_key());
    /// let app = Application::builder("Clinic")
    ///     .personal_data_key(new)
    ///     .previous_personal_data_keys([old])
    ///     .build()?;
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn previous_personal_data_keys<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        keys: I,
    ) -> Self {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        self.previous_personal_keys = Some((
            settings::PERSONAL_DATA_PREVIOUS_KEYS.name.to_owned(),
            keys.join(","),
        ));
        self
    }

    /// Whether each ciphertext is bound to its event (the default: a state
    /// moved into another event does not decrypt); `false` for the Python
    /// library's layout and for stores annals wrote before it bound them
    /// (`CIPHER_ASSOCIATED_DATA`).
    pub fn cipher_associated_data(mut self, bound: bool) -> Self {
        self.cipher_bound = bound;
        self
    }

    /// Turns the snapshot store on or off.
    pub fn snapshotting(mut self, enabled: bool) -> Self {
        self.snapshotting = enabled;
        self
    }

    /// Takes a snapshot of aggregates of type `A` every `interval` events,
    /// when they are saved: a save that brings an aggregate's count of
    /// events to or past a multiple of `interval` (5, 10, ... for 5)
    /// takes one, at the save's last version (so a save of versions 1 to
    /// 12 with an interval of 5 takes one, at 12). For Python's rule, a
    /// snapshot at each multiple reached (5 and 10), set
    /// [`SnapshotRule::EachMultiple`] with
    /// [`snapshot_rule`](Self::snapshot_rule). Turns snapshotting on.
    /// `A`'s struct must derive `Serialize` and `Deserialize`: if it does
    /// not, or `interval` is 0, [`build`](Self::build) fails
    /// ([`Error::Config`]).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// # pub struct Dog { pub name: String, pub tricks: Vec<String> }
    /// # #[aggregate]
    /// # impl Dog {
    /// #     #[event("Registered")]
    /// #     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
    /// #     #[event("TrickAdded")]
    /// #     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
    /// # }
    /// let app = Application::builder("Kennel").snapshot_every::<Dog>(2).build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// dog.add_trick("sit".into());
    /// dog.add_trick("roll over".into());
    /// app.save(&mut dog)?; // versions 1 to 3: past the 2nd event
    /// let snapshots = app.snapshots().expect("snapshot_every turns snapshots on");
    /// assert_eq!(snapshots.versions::<Dog>(dog.id())?, [3]);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn snapshot_every<A: Aggregate>(mut self, interval: u64) -> Self {
        if !A::SNAPSHOTS {
            self.errors.push(Error::config(
                "snapshot interval",
                format!(
                    "{} cannot be snapshotted: derive Serialize and Deserialize on it",
                    A::NAME
                ),
            ));
        } else if interval == 0 {
            self.errors.push(Error::config(
                "snapshot interval",
                format!("the snapshot interval of {} must be at least 1", A::NAME),
            ));
        }
        self.intervals.insert(TypeId::of::<A>(), interval);
        self.snapshotting = true;
        self
    }

    /// Where a save that reaches snapshot intervals takes its snapshots
    /// (see [`snapshot_every`](Self::snapshot_every)):
    /// [`SnapshotRule::Last`] by default.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// # pub struct Dog { pub name: String, pub tricks: Vec<String> }
    /// # #[aggregate]
    /// # impl Dog {
    /// #     #[event("Registered")]
    /// #     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
    /// #     #[event("TrickAdded")]
    /// #     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
    /// # }
    /// use annals::application::SnapshotRule;
    ///
    /// let app = Application::builder("Kennel")
    ///     .snapshot_every::<Dog>(5)
    ///     .snapshot_rule(SnapshotRule::EachMultiple)
    ///     .build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// for i in 0..11 {
    ///     dog.add_trick(format!("trick {i}"));
    /// }
    /// app.save(&mut dog)?; // versions 1 to 12
    /// let snapshots = app.snapshots().expect("snapshot_every turns snapshots on");
    /// assert_eq!(snapshots.versions::<Dog>(dog.id())?, [5, 10]);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn snapshot_rule(mut self, rule: SnapshotRule) -> Self {
        self.snapshot_rule = rule;
        self
    }

    /// Chains each stream's events by hash (see [`Application::verify`],
    /// and [`Verification`](super::Verification) for an example). Turn it on for new stores:
    /// events stored without it have no hash.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// let app = Application::builder("Kennel").hash_chain(true).build()?;
    /// assert!(app.mapper().hash_chain());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn hash_chain(mut self, on: bool) -> Self {
        self.hash_chain = on;
        self
    }

    /// Writes events and snapshots in `codec`'s format: annals' own (the
    /// default) or the Python library's, for a store shared with Python
    /// applications (see [`Codec`] and `docs/howto/python.md`). Both are
    /// read whichever is chosen.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// use annals::mapper::Codec;
    /// let app = Application::builder("TrainingSchool").codec(Codec::Python).build()?;
    /// assert_eq!(app.mapper().codec(), Codec::Python);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// How [`Application::execute`] retries a command that conflicted
    /// with another process (the default: [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Keeps up to `max_size` aggregates in an LRU cache (0: no cache).
    /// Aggregates whose struct does not derive `Clone` are not cached.
    /// [`get`](Application::get) then replays only the events stored
    /// after the cached copy (another process's saves are still seen).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// # pub struct Dog { pub name: String, pub tricks: Vec<String> }
    /// # #[aggregate]
    /// # impl Dog {
    /// #     #[event("Registered")]
    /// #     pub fn register(name: String) -> Self { Dog { name, tricks: Vec::new() } }
    /// #     #[event("TrickAdded")]
    /// #     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
    /// # }
    /// let app = Application::builder("Kennel").cache(100).build()?;
    /// let mut dog = Dog::register("Fido".into());
    /// app.save(&mut dog)?; // cached
    /// let copy: Dog = app.get(dog.id())?; // from the cache: a copy
    /// assert_eq!(copy.name, "Fido");
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn cache(mut self, max_size: usize) -> Self {
        self.cache_size = max_size;
        self
    }

    /// Creates (or upgrades: a single-row tracking table gets its
    /// migration row, a sequence behind its rows is moved on) every table
    /// the application's store uses, whatever `CREATE_TABLE` says, and
    /// closes it: the migrate step of a deployment that runs with
    /// `CREATE_TABLE=no`. Run it for each application of a system (its
    /// followers included) before starting them. The SQL itself is
    /// `PostgresConfig::ddl` and `SqliteConfig::ddl`.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// let dir = std::env::temp_dir().join(format!("annals-migrate-{}", Uuid::new_v4()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let file = dir.join("school.db").to_string_lossy().into_owned();
    /// let env = annals::env::Env::from_map("School", [
    ///     ("PERSISTENCE_MODULE", "sqlite"),
    ///     ("SQLITE_DBNAME", file.as_str()),
    ///     ("CREATE_TABLE", "no"),
    /// ]);
    /// Application::builder("School").with_env(&env)?.migrate()?;
    /// let app = Application::builder("School").with_env(&env)?.build()?;
    /// assert_eq!(app.last_notification_id()?, None); // the tables are there
    /// # std::fs::remove_dir_all(dir).ok();
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn migrate(mut self) -> Result<()> {
        self.persistence = self.persistence.creating_tables();
        self.build().map(drop)
    }

    /// The application: opens the store (creating its tables unless told
    /// not to) and checks every setting.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for the first bad setting: a bad cipher key
    /// (naming `CIPHER_KEY`), a snapshot interval of 0 or for a type that
    /// cannot be snapshotted, a bad store setting (a SQLite table prefix, a
    /// PostgreSQL application name too long for its table names);
    /// [`Error::Persistence`] when the store cannot be opened or prepared
    /// (a file that cannot be opened, a server that cannot be reached).
    pub fn build(mut self) -> Result<Application> {
        if !self.errors.is_empty() {
            return Err(self.errors.swap_remove(0));
        }
        let named = |(var, key): &(String, String)| {
            Cipher::from_base64(key).map_err(|e| match e {
                Error::Config { message, .. } => Error::Config {
                    setting: var.clone(),
                    message,
                },
                other => other,
            })
        };
        let cipher = self.cipher_key.as_ref().map(named).transpose()?;
        let master = self
            .personal_key
            .as_ref()
            .map(named)
            .transpose()?
            .or_else(|| cipher.clone());
        let previous = match &self.previous_personal_keys {
            Some((var, keys)) => keys
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(|k| named(&(var.clone(), k.to_owned())))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        if self.codec != Codec::Python && self.persistence.uses_django_tables() {
            return Err(Error::config(
                settings::DJANGO_TABLES.name,
                "eventsourcing_django's tables are read by Django's Python applications, which \
                 cannot read annals' own codec: set CODEC=python",
            ));
        }
        if self.codec == Codec::Python && self.hash_chain {
            return Err(Error::config(
                IS_HASH_CHAINING_ENABLED,
                "the Python codec (CODEC=python) cannot chain hashes: the Python library would not read them; turn one of them off",
            ));
        }
        let Recorders {
            events: recorder,
            snapshots: snapshot_recorder,
            keys,
        } = self.persistence.open(&self.name)?;
        // Without a master key, or a store to keep them, there are no data
        // keys: a save of a personal field says which is missing.
        let data_keys = keys.clone();
        let keys = keys
            .zip(master)
            .map(|(store, master)| Arc::new(KeyRing::new(store, master, previous)));
        let mapper = Arc::new(
            Mapper::new()
                .with_codec(self.codec)
                .with_compressor(self.compressor)
                .with_cipher(cipher)
                .with_associated_data(self.cipher_bound)
                .with_hash_chain(self.hash_chain)
                .with_keys(keys),
        );
        let snapshots = self
            .snapshotting
            .then(|| Snapshots::new(snapshot_recorder, mapper.clone()));
        // Registered now, in the recorder installed now (see `metrics`).
        crate::metrics::describe();
        Ok(Application {
            repository: Repository {
                recorder: recorder.clone(),
                mapper,
                snapshots,
                cache: NonZeroUsize::new(self.cache_size).map(Cache::new),
                metrics: AppMetrics::new(&self.name),
            },
            name: self.name,
            recorder,
            intervals: self.intervals,
            snapshot_rule: self.snapshot_rule,
            notifier: Notifier::default(),
            commands: CommandLocks::default(),
            retry: self.retry,
            data_keys,
        })
    }
}
