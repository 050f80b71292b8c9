//! Applications: the entry point that saves aggregates and gets them back.

use std::fmt;
use std::sync::Arc;

use crate::domain::{self, Aggregate, AggregateId};
use crate::env::{self, Env};
use crate::error::{Error, Result};
use crate::mapper::Mapper;
use crate::persistence::memory::MemoryRecorder;
#[cfg(feature = "postgres")]
use crate::persistence::postgres::{PostgresConfig, PostgresRecorder};
#[cfg(feature = "sqlite")]
use crate::persistence::sqlite::{SqliteConfig, SqliteRecorder};
use crate::persistence::{
    EventQuery, Notification, NotificationQuery, ProcessRecorder, StoredEvent,
};

/// An event-sourced application: a named store of aggregates.
///
/// `Send + Sync` and every method takes `&self`, so one application can be
/// shared by many threads (behind an `Arc`, or by reference in scoped
/// threads).
///
/// ```
/// use annals::prelude::*;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Counter { pub count: u32 }
///
/// #[aggregate]
/// impl Counter {
///     #[event("Started")]
///     pub fn start() -> Self { Counter { count: 0 } }
///     #[event("Incremented")]
///     pub fn increment(&mut self, by: u32) { self.count += by; }
/// }
///
/// let app = Application::builder("Counters").build()?;
/// let mut counter = Counter::start();
/// counter.increment(2);
/// app.save(&mut counter)?;
/// let copy: Counter = app.repository().get(counter.id())?;
/// assert_eq!((copy.count, copy.version()), (2, 2));
/// # Ok::<(), annals::Error>(())
/// ```
pub struct Application {
    name: String,
    recorder: Arc<dyn ProcessRecorder>,
    mapper: Arc<Mapper>,
    repository: Repository,
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// An application configured from environment variables (in memory when
    /// none is set). See [`ApplicationBuilder::from_env`].
    pub fn new(name: &str) -> Result<Self> {
        Self::builder(name).from_env()?.build()
    }

    /// A builder, to configure the application in code.
    pub fn builder(name: &str) -> ApplicationBuilder {
        ApplicationBuilder {
            name: name.to_owned(),
            persistence: Persistence::Memory,
        }
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stores the pending events of one aggregate (`&mut dog`) or of several
    /// (`(&mut dog, &mut cat)`, `&mut [dog1, dog2][..]`, `vec![&mut a, &mut
    /// b]`), atomically: all of them or none. On success the aggregates'
    /// pending events are cleared; on error nothing was stored and the
    /// pending events are kept. Returns the notification ids given to the
    /// stored events.
    pub fn save<S: Save>(&self, mut aggregates: S) -> Result<Vec<u64>> {
        let mut stored = Vec::new();
        aggregates.encode_pending(&self.mapper, &mut stored)?;
        if stored.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.recorder.insert_events(&stored)?;
        aggregates.clear_pending();
        Ok(ids)
    }

    /// The repository, to get aggregates back.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The application's recorder.
    pub fn recorder(&self) -> &Arc<dyn ProcessRecorder> {
        &self.recorder
    }

    /// The mapper that encodes and decodes this application's events.
    pub fn mapper(&self) -> &Mapper {
        &self.mapper
    }

    /// Up to `limit` notifications of this application's log, from id
    /// `start` on.
    pub fn notifications(&self, start: u64, limit: usize) -> Result<Vec<Notification>> {
        self.recorder
            .select_notifications(&NotificationQuery::new(start, limit))
    }
}

/// Where an application keeps its events.
#[derive(Clone)]
#[non_exhaustive]
pub enum Persistence {
    /// In memory (lost when the application is dropped).
    Memory,
    /// In a SQLite database.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConfig),
    /// In a PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(PostgresConfig),
    /// A recorder the caller made.
    Recorder(Arc<dyn ProcessRecorder>),
}

impl fmt::Debug for Persistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Persistence::Memory => f.write_str("Memory"),
            #[cfg(feature = "sqlite")]
            Persistence::Sqlite(config) => f.debug_tuple("Sqlite").field(config).finish(),
            #[cfg(feature = "postgres")]
            Persistence::Postgres(config) => f.debug_tuple("Postgres").field(config).finish(),
            Persistence::Recorder(_) => f.write_str("Recorder(..)"),
        }
    }
}

impl Persistence {
    /// The persistence that `PERSISTENCE_MODULE` names (`memory`, `sqlite`,
    /// `postgres`, or the Python library's module names), with its
    /// settings from `env`; `None` when the variable is not set.
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        let Some((var, module)) = env.get(env::PERSISTENCE_MODULE) else {
            return Ok(None);
        };
        let module = module.trim().to_ascii_lowercase();
        let module = module.strip_prefix("eventsourcing.").unwrap_or(&module);
        Ok(Some(match module {
            "memory" | "popo" => Persistence::Memory,
            #[cfg(feature = "sqlite")]
            "sqlite" => Persistence::Sqlite(SqliteConfig::from_env(env)?),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Persistence::Postgres(PostgresConfig::from_env(env)?),
            other => {
                return Err(Error::config(
                    var,
                    format!(
                        "unknown persistence module {other:?}; expected one of: {}",
                        MODULES.join(", ")
                    ),
                ))
            }
        }))
    }

    fn open(self, app_name: &str) -> Result<Arc<dyn ProcessRecorder>> {
        Ok(match self {
            Persistence::Memory => Arc::new(MemoryRecorder::new()),
            #[cfg(feature = "sqlite")]
            Persistence::Sqlite(config) => Arc::new(SqliteRecorder::open(config)?),
            #[cfg(feature = "postgres")]
            Persistence::Postgres(config) => Arc::new(PostgresRecorder::open(&config, app_name)?),
            Persistence::Recorder(recorder) => {
                let _ = app_name;
                recorder
            }
        })
    }
}

/// The persistence modules this build has.
const MODULES: &[&str] = &[
    "memory",
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
];

/// Configures an [`Application`] in code, from the environment, or both
/// (settings made after [`from_env`](Self::from_env) win).
#[derive(Debug)]
#[must_use]
pub struct ApplicationBuilder {
    name: String,
    persistence: Persistence,
}

impl ApplicationBuilder {
    /// Reads the settings from the process environment (see [`crate::env`]).
    pub fn from_env(self) -> Result<Self> {
        let env = Env::from_process(&self.name);
        self.with_env(&env)
    }

    /// Reads the settings from `env`.
    pub fn with_env(mut self, env: &Env) -> Result<Self> {
        if let Some(persistence) = Persistence::from_env(env)? {
            self.persistence = persistence;
        }
        Ok(self)
    }

    /// Keeps events in memory.
    pub fn memory(mut self) -> Self {
        self.persistence = Persistence::Memory;
        self
    }

    /// Keeps events in the SQLite database `dbname` (a file path or
    /// `:memory:`), with default settings.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(self, dbname: impl Into<String>) -> Self {
        self.persistence(Persistence::Sqlite(SqliteConfig::new(dbname)))
    }

    /// Keeps events in PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn postgres(self, config: PostgresConfig) -> Self {
        self.persistence(Persistence::Postgres(config))
    }

    /// Keeps events where `persistence` says.
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// Keeps events in the given recorder.
    pub fn recorder(self, recorder: Arc<dyn ProcessRecorder>) -> Self {
        self.persistence(Persistence::Recorder(recorder))
    }

    /// The application.
    pub fn build(self) -> Result<Application> {
        let recorder = self.persistence.open(&self.name)?;
        let mapper = Arc::new(Mapper::new());
        Ok(Application {
            repository: Repository {
                recorder: recorder.clone(),
                mapper: mapper.clone(),
            },
            name: self.name,
            recorder,
            mapper,
        })
    }
}

/// Gets aggregates back from their stored events.
pub struct Repository {
    recorder: Arc<dyn ProcessRecorder>,
    mapper: Arc<Mapper>,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository").finish_non_exhaustive()
    }
}

impl Repository {
    /// The current state of aggregate `id`. [`Error::NotFound`] when it has
    /// no events or was discarded.
    pub fn get<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<A> {
        self.load(&id.into(), None)
    }

    /// The state of aggregate `id` as it was at `version`.
    /// [`Error::NotFound`] when it did not exist yet, or was discarded by
    /// then.
    pub fn get_at<A: Aggregate>(&self, id: impl Into<A::Id>, version: u64) -> Result<A> {
        self.load(&id.into(), Some(version))
    }

    /// Whether aggregate `id` exists (stored and not discarded).
    pub fn contains<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<bool> {
        match self.get::<A>(id) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn load<A: Aggregate>(&self, id: &A::Id, version: Option<u64>) -> Result<A> {
        let mut query = EventQuery::all();
        query.lte = version;
        let stored = self.recorder.select_events(&id.to_stored(), &query)?;
        let mut aggregate: Option<A> = None;
        for event in &stored {
            aggregate = Some(domain::replay(aggregate, self.mapper.decode(event)?)?);
        }
        aggregate
            .filter(|a| !a.is_discarded())
            .ok_or_else(|| Error::NotFound {
                aggregate: A::NAME,
                id: id.to_string(),
            })
    }
}

/// One or several aggregates that [`Application::save`] stores together.
pub trait Save {
    /// Appends the stored form of every pending event to `out`.
    fn encode_pending(&self, mapper: &Mapper, out: &mut Vec<StoredEvent>) -> Result<()>;
    /// Forgets the pending events (they are stored).
    fn clear_pending(&mut self);
}

fn encode_aggregate<A: Aggregate>(
    aggregate: &A,
    mapper: &Mapper,
    out: &mut Vec<StoredEvent>,
) -> Result<()> {
    for event in aggregate.pending_events() {
        out.push(mapper.encode(event)?);
    }
    Ok(())
}

impl<A: Aggregate> Save for &mut A {
    fn encode_pending(&self, mapper: &Mapper, out: &mut Vec<StoredEvent>) -> Result<()> {
        encode_aggregate(&**self, mapper, out)
    }
    fn clear_pending(&mut self) {
        self.__meta_mut().take_pending();
    }
}

impl<A: Aggregate> Save for &mut [A] {
    fn encode_pending(&self, mapper: &Mapper, out: &mut Vec<StoredEvent>) -> Result<()> {
        self.iter()
            .try_for_each(|a| encode_aggregate(a, mapper, out))
    }
    fn clear_pending(&mut self) {
        for a in self.iter_mut() {
            a.__meta_mut().take_pending();
        }
    }
}

impl<S: Save> Save for Vec<S> {
    fn encode_pending(&self, mapper: &Mapper, out: &mut Vec<StoredEvent>) -> Result<()> {
        self.iter().try_for_each(|s| s.encode_pending(mapper, out))
    }
    fn clear_pending(&mut self) {
        self.iter_mut().for_each(Save::clear_pending);
    }
}

macro_rules! save_tuple {
    ($($s:ident $i:tt),+) => {
        impl<$($s: Save),+> Save for ($($s,)+) {
            fn encode_pending(&self, mapper: &Mapper, out: &mut Vec<StoredEvent>) -> Result<()> {
                $(self.$i.encode_pending(mapper, out)?;)+
                Ok(())
            }
            fn clear_pending(&mut self) {
                $(self.$i.clear_pending();)+
            }
        }
    };
}

save_tuple!(S0 0, S1 1);
save_tuple!(S0 0, S1 1, S2 2);
save_tuple!(S0 0, S1 1, S2 2, S3 3);
save_tuple!(S0 0, S1 1, S2 2, S3 3, S4 4);
save_tuple!(S0 0, S1 1, S2 2, S3 3, S4 4, S5 5);
