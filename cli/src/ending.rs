//! `archive` and `delete`: streams ended for good. The events of a stream
//! are copied to an archive store as stored (archive only), then removed,
//! and a tombstone takes their place in the log, which keeps its order.

use annals::application::{Archive, EndedStream};
use annals::persistence::EventQuery;
use annals::Application;
use serde_json::json;

use crate::inspect::id_forms;
use crate::output::{count, Output};
use crate::settings::Settings;
use crate::{CliError, Result};

/// Where `archive --to` copies to: a SQLite file (`FILE` or
/// `sqlite:FILE`), a PostgreSQL database (`postgres:DBNAME`) or a
/// MariaDB/MySQL one (`mysql:DBNAME`), their servers and users from the
/// same settings (POSTGRES_*, MYSQL_*) as the application's; the tables
/// are annals' own, named after the application, created if missing.
fn archive_settings(settings: &Settings, to: &str) -> Result<Settings> {
    let (module, name_setting, name) = match to.split_once(':') {
        Some(("sqlite", file)) => ("sqlite", "SQLITE_DBNAME", file),
        Some(("postgres", db)) => ("postgres", "POSTGRES_DBNAME", db),
        Some(("mysql", db)) => ("mysql", "MYSQL_DBNAME", db),
        // A Windows drive (C:\..) or a file name with a colon: a file.
        _ => ("sqlite", "SQLITE_DBNAME", to),
    };
    if name.is_empty() {
        return Err(CliError::Usage(format!(
            "--to {to:?}: name the archive: FILE, sqlite:FILE, postgres:DBNAME or mysql:DBNAME"
        )));
    }
    Ok(settings.overridden(&[
        ("PERSISTENCE_MODULE", module),
        (name_setting, name),
        ("CREATE_TABLE", "yes"),
        // The archive's own tables, even when the application shares a
        // Django project's.
        ("DJANGO_TABLES", "no"),
    ]))
}

/// The stored form of stream `id` that has events (a UUID may be stored
/// plain or hyphenated).
fn stored_id(settings: &Settings, app: &Application, id: &str) -> Result<String> {
    for form in id_forms(id) {
        if !app
            .recorder()
            .select_events(&form, &EventQuery::all().descending().limit(1))?
            .is_empty()
        {
            return Ok(form);
        }
    }
    Err(CliError::Invalid(format!(
        "there is no stream {id:?} in {}",
        settings.app()
    )))
}

fn report(out: &Output, verb: &str, ended: &EndedStream) {
    out.value(
        &json!({
            "id": ended.id,
            "ended": verb,
            "to": ended.tombstone.to,
            "removed": ended.removed,
            "copied": ended.copied,
            "tombstone_version": ended.version,
            "at": ended.tombstone.at,
        }),
        || {
            let mut text = format!(
                "{verb} stream {}: {} removed, a tombstone at version {}",
                ended.id,
                count(ended.removed as u64, "event"),
                ended.version
            );
            if let Some(to) = &ended.tombstone.to {
                text.push_str(&format!(
                    " (copied to {to}: {} by this run)",
                    count(ended.copied as u64, "event")
                ));
            }
            text
        },
    );
}

/// `annals archive ID --to LOCATION`.
pub(crate) fn archive(settings: &Settings, out: &Output, id: &str, to: &str) -> Result<()> {
    let target = archive_settings(settings, to)?;
    let app = settings.open_with_snapshots()?;
    let stored = stored_id(settings, &app, id)?;
    let vault = target.open()?;
    let archive = Archive::new(to, vault.recorder().clone());
    let ended = app.archive_stream(stored, &archive)?;
    report(out, "archived", &ended);
    Ok(())
}

/// `annals delete ID --yes`.
pub(crate) fn delete(settings: &Settings, out: &Output, id: &str, yes: bool) -> Result<()> {
    if !yes {
        return Err(CliError::Usage(format!(
            "delete removes the events of stream {id} for good (no copy is kept; `annals archive` keeps one): add --yes to do it"
        )));
    }
    let app = settings.open_with_snapshots()?;
    let stored = stored_id(settings, &app, id)?;
    let ended = app.delete_stream(stored)?;
    report(out, "deleted", &ended);
    Ok(())
}
