//! `followers`: the upstream applications this store keeps tracking
//! records for, each one's position, and its lag behind its leader when
//! the leader's log can be read.

use serde::Serialize;

use crate::args::Global;
use crate::output::Output;
use crate::settings::Settings;
use crate::{CliError, Result};

/// The tracking record of a store's identity (see `transfer`): not a
/// follower's.
const IDENTITY: &str = "annals store identity";

/// How the names of `import`'s positions begin (see `transfer`).
const IMPORT: &str = "annals import of ";

/// One upstream application, as `followers` shows it.
#[derive(Debug, Serialize)]
struct Follower {
    /// The upstream application's name, as tracked.
    upstream: String,
    /// The highest notification id of it processed here.
    position: u64,
    /// The leader's highest notification id, when its log could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader_position: Option<u64>,
    /// How many of the leader's notifications are past the position.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<u64>,
    /// Why the lag is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown: Option<String>,
}

/// `--leader-set`'s settings for `upstream`: each UPSTREAM:NAME=VALUE whose
/// UPSTREAM it is, as NAME=VALUE.
fn leader_sets(upstream: &str, leader_set: &[String]) -> Result<Vec<String>> {
    let mut sets = Vec::new();
    for item in leader_set {
        let Some((name, setting)) = item.split_once(':') else {
            return Err(CliError::Usage(format!(
                "--leader-set {item:?}: expected UPSTREAM:NAME=VALUE"
            )));
        };
        if !setting.contains('=') {
            return Err(CliError::Usage(format!(
                "--leader-set {item:?}: expected UPSTREAM:NAME=VALUE"
            )));
        }
        if name == upstream {
            sets.push(setting.to_owned());
        }
    }
    Ok(sets)
}

/// The value of setting `name` as `settings` give it to their application.
fn value(settings: &Settings, name: &str) -> Option<String> {
    settings.env().get(name).map(|(_, value)| value)
}

/// Whether `leader`'s settings name the very tables of `follower`'s: the
/// same SQLite file without a table prefix of its own (one application a
/// file, as Python's), or a memory store (another process's cannot be
/// read).
fn same_tables(follower: &Settings, leader: &Settings) -> Option<&'static str> {
    let module = value(leader, "PERSISTENCE_MODULE")
        .unwrap_or_else(|| "memory".into())
        .trim()
        .to_ascii_lowercase();
    match module.as_str() {
        "memory" | "eventsourcing.popo" | "popo" => Some(
            "the leader's store is in memory, in its own process: name its store with --leader-set",
        ),
        "sqlite" | "eventsourcing.sqlite" => {
            let django = value(leader, "DJANGO_TABLES").is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "y" | "yes" | "t" | "true" | "on" | "1"
                )
            });
            let same = ["PERSISTENCE_MODULE", "SQLITE_DBNAME", "SQLITE_TABLE_PREFIX"]
                .iter()
                .all(|name| value(follower, name) == value(leader, name));
            (same && !django).then_some(
                "the leader's tables would be this application's own (one application a SQLite file without SQLITE_TABLE_PREFIX): name its file with --leader-set UPSTREAM:SQLITE_DBNAME=FILE",
            )
        }
        _ => None,
    }
}

/// The leader's highest notification id, or why it cannot be had.
fn leader_position(
    follower: &Settings,
    global: &Global,
    upstream: &str,
    leader_set: &[String],
) -> Result<std::result::Result<u64, String>> {
    if upstream.starts_with(IMPORT) {
        return Ok(Err(
            "the position of `annals import` in another store's log (read its export's end line)"
                .to_owned(),
        ));
    }
    let mut leader_global = global.clone();
    leader_global.app = Some(upstream.to_owned());
    // Never create the leader's tables: read them if they are there.
    leader_global.set.push("CREATE_TABLE=no".into());
    leader_global.set.extend(leader_sets(upstream, leader_set)?);
    let leader = match Settings::new(&leader_global) {
        Ok(leader) => leader,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Some(why) = same_tables(follower, &leader) {
        return Ok(Err(why.to_owned()));
    }
    let opened = leader.open().map_err(|e| e.to_string());
    Ok(opened.and_then(|app| {
        app.recorder()
            .max_notification_id()
            .map_err(|e| e.report().to_string())
    }))
}

/// Lists each follower of the application's store: its upstream
/// application, its position and its lag.
pub(crate) fn followers(
    settings: &Settings,
    global: &Global,
    out: &Output,
    leader_set: &[String],
) -> Result<()> {
    // Each --leader-set checked, even for an upstream not tracked.
    leader_sets("", leader_set)?;
    let app = settings.open()?;
    let recorder = app.recorder();
    let mut shown = 0;
    for upstream in recorder.tracked_applications()? {
        if upstream == IDENTITY {
            continue;
        }
        let position = recorder.max_tracking_id(&upstream)?;
        let leader = leader_position(settings, global, &upstream, leader_set)?;
        let follower = match leader {
            Ok(leader) => Follower {
                upstream,
                position,
                leader_position: Some(leader),
                lag: Some(leader.saturating_sub(position)),
                unknown: None,
            },
            Err(why) => Follower {
                upstream,
                position,
                leader_position: None,
                lag: None,
                unknown: Some(why),
            },
        };
        shown += 1;
        out.value(&follower, || match (follower.lag, &follower.unknown) {
            (Some(lag), _) => format!(
                "{}\tposition {}\tleader at {}\tlag {lag}",
                follower.upstream,
                follower.position,
                follower.leader_position.unwrap_or(0)
            ),
            (None, why) => format!(
                "{}\tposition {}\tlag unknown: {}",
                follower.upstream,
                follower.position,
                why.as_deref().unwrap_or("the leader's log cannot be read")
            ),
        });
    }
    if shown == 0 && !out.is_json() {
        out.value(&(), || {
            format!(
                "{} follows no application (no tracking records)",
                settings.app()
            )
        });
    }
    Ok(())
}
