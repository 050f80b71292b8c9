//! Choosing and opening the store, as the Python library's
//! `InfrastructureFactory` does: what `PERSISTENCE_MODULE` names, each
//! store's settings from the environment or from code, and the event,
//! snapshot and tracking recorders it opens.
//!
//! The built-in modules are listed in `MODULES` (in this module's source):
//! adding a store is its crate plus one entry there. A user crate adds its own with
//! [`register_module`], under a name of its choosing.
//!
//! ```
//! use std::sync::Arc;
//! use annals::env::Env;
//! use annals::persistence::memory::MemoryRecorder;
//! use annals::persistence::{register_module, Persistence, Recorders, Store};
//!
//! /// A store of the user's: here, memory under another name.
//! #[derive(Debug)]
//! struct Scratch;
//!
//! impl Store for Scratch {
//!     fn open(&self, _app_name: &str) -> annals::Result<Recorders> {
//!         Ok(Recorders::new(Arc::new(MemoryRecorder::new()), Arc::new(MemoryRecorder::new())))
//!     }
//! }
//!
//! register_module("scratch", |_env: &Env| Ok(Persistence::store(Scratch)))?;
//! let env = Env::from_map("Notes", [("PERSISTENCE_MODULE", "scratch")]);
//! let app = annals::Application::builder("Notes").with_env(&env)?.build()?;
//! assert_eq!(app.recorder().max_notification_id()?, 0);
//! # Ok::<(), annals::Error>(())
//! ```

use std::fmt;
use std::sync::{Arc, RwLock};

use super::memory::MemoryRecorder;
#[cfg(feature = "mysql")]
use super::mysql::MysqlConfig;
#[cfg(feature = "postgres")]
use super::postgres::PostgresConfig;
#[cfg(feature = "sqlite")]
use super::sqlite::SqliteConfig;
use super::{AggregateRecorder, MemoryStore, Modules, ProcessRecorder, Recorders, Store};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::settings;
use annals_core::persistence::trace::Traced;

/// Where an application keeps its events.
///
/// ```
/// use annals::Persistence;
///
/// let app = annals::Application::builder("Scratch")
///     .persistence(Persistence::Memory)
///     .build()?;
/// assert_eq!(app.name(), "Scratch");
/// # Ok::<(), annals::Error>(())
/// ```
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
    /// In a MariaDB or MySQL database.
    #[cfg(feature = "mysql")]
    Mysql(MysqlConfig),
    /// In any other [`Store`] (one of a user's own, or a newer built-in).
    Store(Arc<dyn Store>),
    /// A recorder the caller made (snapshots then stay in memory).
    Recorder(Arc<dyn ProcessRecorder>),
    /// Recorders the caller made, for events and for snapshots (e.g. those
    /// of another application, to share its store).
    Recorders(Arc<dyn ProcessRecorder>, Arc<dyn AggregateRecorder>),
}

impl fmt::Debug for Persistence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Persistence::Memory => f.write_str("Memory"),
            #[cfg(feature = "sqlite")]
            Persistence::Sqlite(config) => f.debug_tuple("Sqlite").field(config).finish(),
            #[cfg(feature = "postgres")]
            Persistence::Postgres(config) => f.debug_tuple("Postgres").field(config).finish(),
            #[cfg(feature = "mysql")]
            Persistence::Mysql(config) => f.debug_tuple("Mysql").field(config).finish(),
            Persistence::Store(store) => f.debug_tuple("Store").field(store).finish(),
            Persistence::Recorder(_) => f.write_str("Recorder(..)"),
            Persistence::Recorders(..) => f.write_str("Recorders(..)"),
        }
    }
}

impl Persistence {
    /// Whether it reads and writes eventsourcing_django's tables
    /// (`DJANGO_TABLES`), as far as it can tell (a store of the caller's
    /// own: no).
    pub(crate) fn uses_django_tables(&self) -> bool {
        match self {
            #[cfg(feature = "sqlite")]
            Persistence::Sqlite(config) => config.django_tables,
            #[cfg(feature = "postgres")]
            Persistence::Postgres(config) => config.django_tables,
            #[cfg(feature = "mysql")]
            Persistence::Mysql(config) => config.django_tables,
            _ => false,
        }
    }

    /// The same store, creating its missing tables whatever
    /// `CREATE_TABLE` says (for `ApplicationBuilder::migrate`); stores
    /// that always create (memory, the object store), a [`Store`] whose
    /// `creating_tables` says it cannot be told, and recorders the caller
    /// made are as they are.
    pub fn creating_tables(self) -> Self {
        match self {
            #[cfg(feature = "sqlite")]
            Persistence::Sqlite(config) if config.django_tables => {
                Persistence::Store(Arc::new(annals_core::persistence::django::Migrations))
            }
            #[cfg(feature = "sqlite")]
            Persistence::Sqlite(mut config) => {
                config.create_tables = true;
                Persistence::Sqlite(config)
            }
            #[cfg(feature = "postgres")]
            Persistence::Postgres(config) if config.django_tables => {
                Persistence::Store(Arc::new(annals_core::persistence::django::Migrations))
            }
            #[cfg(feature = "postgres")]
            Persistence::Postgres(mut config) => {
                config.create_tables = true;
                Persistence::Postgres(config)
            }
            #[cfg(feature = "mysql")]
            Persistence::Mysql(config) if config.django_tables => {
                Persistence::Store(Arc::new(annals_core::persistence::django::Migrations))
            }
            #[cfg(feature = "mysql")]
            Persistence::Mysql(mut config) => {
                config.create_tables = true;
                Persistence::Mysql(config)
            }
            Persistence::Store(store) => match store.creating_tables() {
                Some(creating) => Persistence::Store(creating),
                None => Persistence::Store(store),
            },
            other => other,
        }
    }
}

/// Reads a module's settings from the environment.
pub type FromEnv = fn(&Env) -> Result<Persistence>;

/// A module `PERSISTENCE_MODULE` can name.
struct Module {
    /// Its names: annals' own first, then the Python library's.
    names: &'static [&'static str],
    from_env: FromEnv,
}

/// The built-in modules: one entry per store.
const MODULES: &[Module] = &[
    Module {
        names: &["memory", "popo", "eventsourcing.popo"],
        from_env: |_| Ok(Persistence::Memory),
    },
    #[cfg(feature = "sqlite")]
    Module {
        names: &["sqlite", "eventsourcing.sqlite"],
        from_env: |env| Ok(Persistence::Sqlite(SqliteConfig::from_env(env)?)),
    },
    #[cfg(feature = "postgres")]
    Module {
        names: &["postgres", "postgresql", "eventsourcing.postgres"],
        from_env: |env| Ok(Persistence::Postgres(PostgresConfig::from_env(env)?)),
    },
    #[cfg(feature = "mysql")]
    Module {
        names: &["mysql", "mariadb"],
        from_env: |env| Ok(Persistence::Mysql(MysqlConfig::from_env(env)?)),
    },
    #[cfg(feature = "object-store")]
    Module {
        names: &["object", "object_store"],
        from_env: |env| {
            Ok(Persistence::Store(Arc::new(
                super::object::ObjectConfig::from_env(env)?,
            )))
        },
    },
];

/// Modules registered by user crates.
static REGISTERED: RwLock<Vec<(String, FromEnv)>> = RwLock::new(Vec::new());

/// Registers a persistence module for the whole process:
/// `PERSISTENCE_MODULE=name` then selects the store that `from_env` makes
/// from the application's settings. Names are compared without case.
///
/// Prefer a [`Modules`] value given to the builder
/// (`ApplicationBuilder::modules`): the caller owns it, and two tests (or
/// two parts of a program) cannot clash over a name.
///
/// # Errors
///
/// `name` is empty or already names a module (built-in or registered).
#[deprecated(note = "give the builder a `persistence::Modules` with `ApplicationBuilder::modules`")]
pub fn register_module(name: &str, from_env: FromEnv) -> Result<()> {
    let name = name.trim().to_ascii_lowercase();
    let var = settings::PERSISTENCE_MODULE.name;
    if name.is_empty() {
        return Err(Error::config(var, "a persistence module needs a name"));
    }
    let mut registered = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if is_built_in(&name) || registered.iter().any(|(n, _)| *n == name) {
        return Err(Error::config(
            var,
            format!("the persistence module {name:?} is already registered"),
        ));
    }
    registered.push((name, from_env));
    Ok(())
}

/// Every module name known: annals' own first, then `modules`, then the
/// process's registered ones.
fn module_names(modules: &Modules) -> Vec<String> {
    let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    MODULES
        .iter()
        .map(|m| m.names[0].to_owned())
        .chain(modules.names().map(str::to_owned))
        .chain(registered.iter().map(|(n, _)| n.clone()))
        .collect()
}

/// Whether `name` is a built-in module's (which a caller's cannot take).
pub(crate) fn is_built_in(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    MODULES.iter().any(|m| m.names.contains(&name.as_str()))
}

impl Persistence {
    /// In `store`.
    pub fn store(store: impl Store + 'static) -> Self {
        Persistence::Store(Arc::new(store))
    }

    /// The persistence that `PERSISTENCE_MODULE` names (`memory`, `sqlite`,
    /// `postgres`, `mysql` (or `mariadb`; feature `mysql`), the Python
    /// library's module names `eventsourcing.popo`, `eventsourcing.sqlite`
    /// and `eventsourcing.postgres`, or a registered
    /// module; in any case), with its settings from `env`; `None` when the
    /// variable is not set.
    ///
    /// # Errors
    ///
    /// An unknown module, or a missing or bad setting of the module's.
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        Self::from_env_with(env, &Modules::new())
    }

    /// As [`from_env`](Self::from_env), where `PERSISTENCE_MODULE` may
    /// also name one of `modules` (the caller's own stores).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use annals::env::Env;
    /// use annals::persistence::{MemoryStore, Modules, Persistence, Store};
    ///
    /// let modules = Modules::new().with("scratch", |_| Ok(Arc::new(MemoryStore) as Arc<dyn Store>))?;
    /// let env = Env::from_map("Notes", [("PERSISTENCE_MODULE", "scratch")]);
    /// assert!(matches!(Persistence::from_env_with(&env, &modules)?, Some(Persistence::Store(_))));
    /// assert!(Persistence::from_env(&env).is_err()); // unknown without them
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_with(env: &Env, modules: &Modules) -> Result<Option<Self>> {
        let Some((var, module)) = env.get(settings::PERSISTENCE_MODULE.name) else {
            return Ok(None);
        };
        let module = module.trim().to_ascii_lowercase();
        let module = module.as_str();
        if let Some(m) = MODULES.iter().find(|m| m.names.contains(&module)) {
            return (m.from_env)(env).map(Some);
        }
        if let Some(open) = modules.get(module) {
            return open(env).map(|store| Some(Persistence::Store(store)));
        }
        let registered = REGISTERED
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(name, _)| name == module)
            .map(|(_, from_env)| *from_env);
        match registered {
            Some(from_env) => from_env(env).map(Some),
            None => Err(Error::config(
                var,
                format!(
                    "unknown persistence module {module:?}; expected one of: {}",
                    module_names(modules).join(", ")
                ),
            )),
        }
    }

    /// Opens the event store and the snapshot store of application
    /// `app_name`.
    ///
    /// # Errors
    ///
    /// The store cannot be reached or prepared.
    pub fn open(self, app_name: &str) -> Result<Recorders> {
        let (store, recorders) = match self {
            Persistence::Memory => (MemoryStore.name(), MemoryStore.open(app_name)?),
            #[cfg(feature = "sqlite")]
            Persistence::Sqlite(config) => (config.name(), config.open(app_name)?),
            #[cfg(feature = "postgres")]
            Persistence::Postgres(config) => (config.name(), config.open(app_name)?),
            #[cfg(feature = "mysql")]
            Persistence::Mysql(config) => (config.name(), config.open(app_name)?),
            Persistence::Store(store) => (store.name(), store.open(app_name)?),
            // Recorders the caller made are used as they are (those of
            // another application are traced already).
            Persistence::Recorder(events) => {
                return Ok(Recorders::new(events, Arc::new(MemoryRecorder::new())))
            }
            Persistence::Recorders(events, snapshots) => {
                return Ok(Recorders::new(events, snapshots))
            }
        };
        // One tracing decorator for every store it opens, a user's too.
        let events = Arc::new(Traced::new(store, recorders.events));
        let traced = Recorders::new(events, recorders.snapshots);
        Ok(match recorders.keys {
            Some(keys) => traced.with_keys(keys),
            None => traced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_modules_name_the_variable_and_the_choices() {
        let env = Env::from_map("App", [("APP_PERSISTENCE_MODULE", "cassandra")]);
        let err = Persistence::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("APP_PERSISTENCE_MODULE"), "{err}");
        assert!(err.contains("cassandra") && err.contains("memory"), "{err}");
    }

    #[test]
    fn the_python_librarys_module_names_select_the_same_stores() {
        let module = |name: &str| {
            let env = Env::from_map(
                "App",
                [("PERSISTENCE_MODULE", name), ("SQLITE_DBNAME", ":memory:")],
            );
            Persistence::from_env(&env).map(|p| format!("{p:?}"))
        };
        for (python, ours) in [
            ("eventsourcing.popo", "memory"),
            ("eventsourcing.sqlite", "sqlite"),
            (" EventSourcing.SQLite ", "sqlite"),
        ] {
            assert_eq!(
                module(python).expect(python),
                module(ours).expect(ours),
                "{python}"
            );
        }
        #[cfg(feature = "postgres")]
        {
            let env = Env::from_map(
                "App",
                [
                    ("PERSISTENCE_MODULE", "eventsourcing.postgres"),
                    ("POSTGRES_DBNAME", "d"),
                ],
            );
            assert!(matches!(
                Persistence::from_env(&env),
                Ok(Some(Persistence::Postgres(_)))
            ));
        }
        // Only the Python library's own module names: no other name with
        // its package in front.
        for other in [
            "eventsourcing.memory",
            "eventsourcing.postgresql",
            "eventsourcing",
        ] {
            let err = module(other).expect_err(other);
            assert!(
                matches!(&err, Error::Config { setting, .. } if setting == "PERSISTENCE_MODULE"),
                "{other}: {err}"
            );
        }
    }

    #[test]
    #[allow(deprecated)]
    fn registered_modules_are_selected_and_names_are_not_taken_twice() {
        register_module("factory_test", |_| Ok(Persistence::Memory)).expect("register");
        let env = Env::from_map("App", [("PERSISTENCE_MODULE", "Factory_Test")]);
        assert!(matches!(
            Persistence::from_env(&env),
            Ok(Some(Persistence::Memory))
        ));
        assert!(register_module("factory_test", |_| Ok(Persistence::Memory)).is_err());
        assert!(register_module("memory", |_| Ok(Persistence::Memory)).is_err());
        assert!(register_module(" ", |_| Ok(Persistence::Memory)).is_err());
    }
}
