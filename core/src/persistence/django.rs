//! What the SQL stores share to read and write `eventsourcing_django`'s
//! tables (`DJANGO_TABLES=yes`): the tables' names, the application name
//! as the package stores it, and the refusals.
//!
//! The package (eventsourcing_django 0.6, for eventsourcing 9.4) keeps every
//! application of a Django project in three tables, made by `python
//! manage.py migrate eventsourcing_django`: `stored_events` (`id`, the
//! notification id, shared by all applications, so each application's log
//! has gaps; `application_name`, `originator_id`, `originator_version`,
//! `topic`, `state`), `snapshots` (`uid`, then the same columns but `id`)
//! and `notification_tracking` (`uid`, `application_name`,
//! `upstream_application_name`, `notification_id`: a row per notification
//! processed). Django's migrations own them: annals never creates nor
//! alters them.

use crate::error::{Error, Result};
use crate::settings;

/// The events table.
pub const EVENTS: &str = "stored_events";
/// The snapshots table.
pub const SNAPSHOTS: &str = "snapshots";
/// The tracking table.
pub const TRACKING: &str = "notification_tracking";

/// The longest application name the tables hold (`varchar(32)`).
pub const MAX_APPLICATION_NAME: usize = 32;

/// Application `app_name`'s name as the package stores it (the Python
/// application's name, as given: `TrainingSchool`), checked to fit the
/// column and to go into SQL as a literal.
///
/// # Errors
///
/// [`Error::Config`] naming `DJANGO_TABLES` for an empty name, one longer
/// than 32 bytes, or one with a quote, a backslash or a control character.
///
/// ```
/// use annals_core::persistence::django;
///
/// assert_eq!(django::application_name("TrainingSchool")?, "TrainingSchool");
/// assert!(django::application_name("It's").is_err());
/// assert!(django::application_name(&"x".repeat(33)).is_err());
/// # Ok::<(), annals_core::Error>(())
/// ```
pub fn application_name(app_name: &str) -> Result<&str> {
    let bad = app_name.is_empty()
        || app_name.len() > MAX_APPLICATION_NAME
        || app_name
            .chars()
            .any(|c| c == '\'' || c == '\\' || c == '"' || c.is_control());
    if bad {
        return Err(Error::config(
            settings::DJANGO_TABLES.name,
            format!(
                "the application name {app_name:?} cannot be eventsourcing_django's \
                 application_name: 1 to {MAX_APPLICATION_NAME} bytes, no quotes, backslashes \
                 or control characters"
            ),
        ));
    }
    Ok(app_name)
}

/// The error of creating the tables (`annals migrate`, `create_tables`):
/// Django's migrations own them.
///
/// ```
/// let e = annals_core::persistence::django::not_ours();
/// assert!(e.to_string().contains("manage.py migrate eventsourcing_django"));
/// ```
pub fn not_ours() -> Error {
    Error::config(
        settings::DJANGO_TABLES.name,
        "eventsourcing_django's tables belong to Django's migrations: annals neither creates \
         nor alters them; run `python manage.py migrate eventsourcing_django` in the Django \
         project",
    )
}

/// The error of a database without the tables, naming the one missing.
///
/// ```
/// let e = annals_core::persistence::django::missing("stored_events");
/// assert!(e.to_string().contains("stored_events"));
/// ```
pub fn missing(table: &str) -> Error {
    Error::config(
        settings::DJANGO_TABLES.name,
        format!(
            "the table {table} of eventsourcing_django is missing: run `python manage.py migrate \
             eventsourcing_django` in the Django project (annals does not create Django's tables)"
        ),
    )
}

/// The error of an idempotency key under the Django layout, whose tables
/// have no place for one.
///
/// ```
/// let e = annals_core::persistence::django::no_keys();
/// assert!(e.to_string().contains("idempotency"));
/// ```
pub fn no_keys() -> Error {
    Error::config(
        settings::DJANGO_TABLES.name,
        "eventsourcing_django's tables have no place for idempotency keys: execute the \
         command without one, or use the application's own tables",
    )
}

/// The error of a DCB store under the Django layout: eventsourcing_django
/// has no DCB tables, and annals makes none of its own in the Django
/// project's database.
///
/// ```
/// let e = annals_core::persistence::django::no_dcb();
/// assert!(e.to_string().contains("DCB"));
/// ```
pub fn no_dcb() -> Error {
    Error::config(
        settings::DJANGO_TABLES.name,
        "eventsourcing_django's tables have no place for a DCB store (and annals makes no \
         tables of its own in them): open the DCB store without DJANGO_TABLES",
    )
}

/// What a store reading Django's tables is when asked to create its tables
/// (`annals migrate`, `ApplicationBuilder::migrate`): a store that refuses
/// to open, with [`not_ours`].
///
/// ```
/// use annals_core::persistence::{django::Migrations, Store};
///
/// let e = Migrations.open("TrainingSchool").err().expect("refused");
/// assert!(e.to_string().contains("migrate eventsourcing_django"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Migrations;

impl super::Store for Migrations {
    fn open(&self, _app_name: &str) -> Result<super::Recorders> {
        Err(not_ours())
    }

    fn name(&self) -> &'static str {
        "django"
    }
}
