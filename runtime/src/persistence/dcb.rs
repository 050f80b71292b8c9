//! Dynamic consistency boundaries (DCB): the store API of the crate
//! `annals-core` (see [`annals_core::persistence::dcb`]: events with
//! tags in one sequence, read by query, appended on a condition), and
//! [`open`], which opens the DCB store the settings name.

pub use annals_core::persistence::dcb::*;

use std::sync::Arc;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::settings;

/// The DCB store of application `app_name` that `PERSISTENCE_MODULE`
/// names (`memory` when unset), with that store's own settings from
/// `env`:
///
/// | module | recorder | settings |
/// |---|---|---|
/// | `memory` (`popo`, `eventsourcing.popo`) | [`MemoryDcbRecorder`], new and empty at each call | none |
/// | `sqlite` (`eventsourcing.sqlite`; feature `sqlite`) | `SqliteDcbRecorder`: tables `dcb_events`, `dcb_tags` | `SQLITE_DBNAME`, `SQLITE_TABLE_PREFIX`, ... |
/// | `postgres` (`postgresql`, `eventsourcing.postgres`; feature `postgres`) | `PostgresDcbRecorder`: Python's `<app>_events_tt_main` | `POSTGRES_*` |
/// | `object` (`object_store`; feature `object-store`) | `ObjectDcbRecorder`: `{prefix}/{app}/dcb/` | `OBJECT_STORE_LOCATION` |
/// | `umadb` (feature `umadb`) | `UmaDbRecorder` | `UMADB_URI`, `UMADB_API_KEY`, `UMADB_CA_PATH` |
///
/// Each call opens a new recorder (and, for the servers, new
/// connections): open once and share the `Arc`.
///
/// # Errors
///
/// [`Error::Config`] naming `PERSISTENCE_MODULE` for a module that has no
/// DCB store (another name, or one of the caller's
/// [`Modules`](super::Modules)) or whose feature is off, and naming the
/// setting for a missing or bad one; [`Error::Persistence`] when the
/// store cannot be opened.
///
/// ```
/// use annals::env::Env;
/// use annals::persistence::dcb::{self, DcbEvent, DcbQuery};
///
/// let env = Env::from_map("Courses", [("PERSISTENCE_MODULE", "sqlite"), ("SQLITE_DBNAME", ":memory:")]);
/// let store = dcb::open("Courses", &env)?;
/// store.append(&[DcbEvent::new("CourseRegistered", vec![]).tags(["course-1"])], None)?;
/// assert_eq!(store.read(&DcbQuery::all(), None, None)?.head, Some(1));
///
/// let cassandra = Env::from_map("Courses", [("PERSISTENCE_MODULE", "cassandra")]);
/// assert!(dcb::open("Courses", &cassandra).unwrap_err().to_string().contains("no DCB store"));
/// # Ok::<(), annals::Error>(())
/// ```
pub fn open(app_name: &str, env: &Env) -> Result<Arc<dyn DcbRecorder>> {
    let var = settings::PERSISTENCE_MODULE.name;
    let (found, module) = env
        .get(var)
        .unwrap_or_else(|| (var.to_owned(), "memory".to_owned()));
    let module = module.trim().to_ascii_lowercase();
    let _ = app_name; // every store's but memory's, if its feature is on
    let needs = |feature: &str| {
        Error::config(
            found.clone(),
            format!("the {module:?} DCB store needs annals' `{feature}` feature"),
        )
    };
    let _ = &needs; // every feature's off branch
    match module.as_str() {
        "memory" | "popo" | "eventsourcing.popo" => Ok(Arc::new(MemoryDcbRecorder::new())),
        "sqlite" | "eventsourcing.sqlite" => {
            #[cfg(feature = "sqlite")]
            {
                let config = super::sqlite::SqliteConfig::from_env(env)?;
                Ok(Arc::new(super::sqlite::SqliteDcbRecorder::open(config)?))
            }
            #[cfg(not(feature = "sqlite"))]
            Err(needs("sqlite"))
        }
        "postgres" | "postgresql" | "eventsourcing.postgres" => {
            #[cfg(feature = "postgres")]
            {
                let config = super::postgres::PostgresConfig::from_env(env)?;
                Ok(Arc::new(super::postgres::PostgresDcbRecorder::open(
                    &config, app_name,
                )?))
            }
            #[cfg(not(feature = "postgres"))]
            Err(needs("postgres"))
        }
        "object" | "object_store" => {
            #[cfg(feature = "object-store")]
            {
                let config = super::object::ObjectConfig::from_env(env)?;
                Ok(Arc::new(config.open_dcb(app_name)?))
            }
            #[cfg(not(feature = "object-store"))]
            Err(needs("object-store"))
        }
        "umadb" => {
            #[cfg(feature = "umadb")]
            {
                let config = super::umadb::UmaDbConfig::from_env(env)?;
                Ok(Arc::new(super::umadb::UmaDbRecorder::open(&config)?))
            }
            #[cfg(not(feature = "umadb"))]
            Err(needs("umadb"))
        }
        _ => Err(Error::config(
            found.clone(),
            format!(
                "the persistence module {module:?} has no DCB store; expected one of: memory, sqlite, postgres, object, umadb"
            ),
        )),
    }
}
