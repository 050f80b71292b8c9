//! `export` and `import`: a store's rows as JSON lines, and back.
//!
//! The file is a header line, the events in log order, the snapshots, the
//! tracking records, and an end line with the counts (an export without
//! it was cut short). States are written as stored (base64), to be copied
//! byte for byte, or with `--plain` as the JSON they hold (a string), to be sealed
//! again with the importing store's compression and cipher; the JSON is
//! kept exactly, so hash chains still hold. Rows of either codec are
//! copied as they are: both codecs read both.
//!
//! Import is idempotent: each batch of events is stored with a tracking
//! record (`annals import of APP`, the batch's last notification id in
//! the export), as a follower's are, so a second run (or one after a kill)
//! starts after the last batch stored; events already in the store with
//! the same content are skipped, with other content refused.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use annals::persistence::EventQuery;
use annals::persistence::{StoredEvent, Tracking};
use annals::Application;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::inspect::{each_notification, state_json};
use crate::output::Output;
use crate::settings::Settings;
use crate::{io, CliError, Result};

/// What the first line says.
const FORMAT: &str = "annals-export";
const FORMAT_VERSION: u32 = 1;

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Header {
        format: String,
        version: u32,
        application: String,
    },
    Event {
        notification_id: u64,
        #[serde(flatten)]
        row: Row,
    },
    Snapshot {
        #[serde(flatten)]
        row: Row,
    },
    Tracking {
        application_name: String,
        notification_id: u64,
    },
    End {
        events: u64,
        snapshots: u64,
        tracking: u64,
    },
}

/// A stored row, with its state in one of two forms.
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    originator_id: String,
    originator_version: u64,
    topic: String,
    state: State,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// The bytes as stored, in base64.
    Stored(String),
    /// The JSON the state holds (decrypted, decompressed), as a string:
    /// its exact bytes, which a hash chain covers.
    Plain(String),
}

fn row(app: &Application, stored: StoredEvent, plain: bool) -> Result<Row> {
    let state = if plain {
        State::Plain(state_json(app, &stored)?.get().to_owned())
    } else {
        State::Stored(base64::engine::general_purpose::STANDARD.encode(&stored.state))
    };
    Ok(Row {
        originator_id: stored.originator_id,
        originator_version: stored.originator_version,
        topic: stored.topic,
        state,
    })
}

fn write_line(to: &mut impl Write, line: &Line) -> Result<()> {
    serde_json::to_writer(&mut *to, line)
        .map_err(|e| CliError::Invalid(format!("cannot write a line of the export: {e}")))?;
    to.write_all(b"\n").map_err(io("writing the export"))
}

#[derive(Serialize)]
struct Exported {
    events: u64,
    snapshots: u64,
    tracking: u64,
}

/// What `export` writes besides the events.
#[derive(Debug)]
pub struct ExportOptions {
    /// States decoded, not as stored.
    pub plain: bool,
    /// The upstream applications whose tracking positions to write.
    pub tracking: Vec<String>,
    /// Whether to write snapshots.
    pub snapshots: bool,
}

pub fn export(
    settings: &Settings,
    out: &Output,
    output: Option<&Path>,
    options: &ExportOptions,
) -> Result<()> {
    let plain = options.plain;
    let app = if options.snapshots {
        settings.open_with_snapshots()?
    } else {
        settings.open()?
    };
    let mut to: Box<dyn Write> = match output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).map_err(io(format!("creating {}", path.display())))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    write_line(
        &mut to,
        &Line::Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            application: settings.app().into(),
        },
    )?;
    let bar = out.progress(app.last_notification_id()?.unwrap_or(0), "exporting");
    let mut counts = Exported {
        events: 0,
        snapshots: 0,
        tracking: 0,
    };
    let mut streams: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    each_notification(&app, 1, &[], |n| {
        bar.set_position(n.id);
        if seen.insert(n.event.originator_id.clone()) {
            streams.push(n.event.originator_id.clone());
        }
        counts.events += 1;
        let line = Line::Event {
            notification_id: n.id,
            row: row(&app, n.event, plain)?,
        };
        write_line(&mut to, &line)
    })?;
    bar.finish_and_clear();
    if let Some(snapshots) = app.snapshots() {
        for id in &streams {
            for stored in snapshots.recorder().select_events(id, &EventQuery::all())? {
                counts.snapshots += 1;
                let row = row(&app, stored, plain)?;
                write_line(&mut to, &Line::Snapshot { row })?;
            }
        }
    }
    for upstream in &options.tracking {
        let position = app.recorder().max_tracking_id(upstream)?;
        if position > 0 {
            counts.tracking += 1;
            let line = Line::Tracking {
                application_name: upstream.clone(),
                notification_id: position,
            };
            write_line(&mut to, &line)?;
        }
    }
    write_line(
        &mut to,
        &Line::End {
            events: counts.events,
            snapshots: counts.snapshots,
            tracking: counts.tracking,
        },
    )?;
    to.flush().map_err(io("writing the export"))?;
    drop(to);
    if output.is_some() {
        out.value(&counts, || {
            format!(
                "exported {} events, {} snapshots, {} tracking records",
                counts.events, counts.snapshots, counts.tracking
            )
        });
    }
    Ok(())
}

/// A row as the importing store stores it.
fn sealed(app: &Application, row: Row, line: u64) -> Result<StoredEvent> {
    let mut stored = StoredEvent {
        originator_id: row.originator_id,
        originator_version: row.originator_version,
        topic: row.topic,
        state: Vec::new(),
    };
    match row.state {
        State::Stored(base64) => {
            stored.state = base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map_err(|e| {
                    CliError::Invalid(format!("line {line}: the state is not base64: {e}"))
                })?;
            // Copied byte for byte: only if this store can read them.
            if let Err(e) = app.mapper().plain_state(&stored) {
                return Err(CliError::Invalid(format!(
                    "line {line}: {}; the export holds states as another store stored them, with a cipher key or compression this store does not have: export with --plain to import them here",
                    e.report()
                )));
            }
        }
        State::Plain(json) => {
            stored.state = json.into_bytes();
            stored.state = app.mapper().seal_state(&stored)?;
        }
    }
    Ok(stored)
}

#[derive(Serialize)]
struct Imported {
    events: u64,
    skipped: u64,
    snapshots: u64,
    tracking: u64,
}

/// Reads an export into the store.
pub fn import(settings: &Settings, out: &Output, input: Option<&Path>, batch: u64) -> Result<()> {
    let app = settings.open_with_snapshots()?;
    let (reader, len): (Box<dyn Read>, u64) = match input {
        Some(path) => {
            let file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            (Box::new(file), len)
        }
        None => (Box::new(std::io::stdin().lock()), 0),
    };
    let bar = out.progress(len, "importing (bytes)");
    let mut lines = BufReader::new(reader).lines();
    let mut number = 0u64;
    let mut next = || -> Result<Option<Line>> {
        let Some(text) = lines.next() else {
            return Ok(None);
        };
        number += 1;
        let text = text.map_err(io(format!("reading line {number} of the export")))?;
        bar.inc(text.len() as u64 + 1);
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CliError::Invalid(format!("line {number} of the export: {e}")))
    };
    let source = match next()? {
        Some(Line::Header {
            format,
            version,
            application,
        }) if format == FORMAT => {
            if version != FORMAT_VERSION {
                return Err(CliError::Invalid(format!(
                    "the export is of format version {version}; this annals reads version {FORMAT_VERSION}"
                )));
            }
            application
        }
        _ => {
            return Err(CliError::Invalid(
                "line 1 is not the header of an annals export".into(),
            ))
        }
    };
    let marker = format!("annals import of {source}");
    let done = app.recorder().max_tracking_id(&marker)?;
    let mut counts = Imported {
        events: 0,
        skipped: 0,
        snapshots: 0,
        tracking: 0,
    };
    let mut pending: Vec<StoredEvent> = Vec::new();
    let mut last_id = 0;
    let mut line_number = 1u64;
    let mut end = None;
    while let Some(line) = next()? {
        line_number += 1;
        if end.is_some() {
            return Err(CliError::Invalid(format!(
                "line {line_number} of the export follows its end line"
            )));
        }
        match line {
            Line::Header { .. } => {
                return Err(CliError::Invalid(format!(
                    "line {line_number} of the export is a second header"
                )))
            }
            Line::Event {
                notification_id,
                row,
            } => {
                if notification_id <= last_id {
                    return Err(CliError::Invalid(format!(
                        "line {line_number}: notification {notification_id} comes after {last_id}: the export's events are out of order"
                    )));
                }
                last_id = notification_id;
                if notification_id <= done {
                    counts.skipped += 1;
                    continue;
                }
                pending.push(sealed(&app, row, line_number)?);
                if pending.len() as u64 >= batch {
                    store_batch(&app, &mut pending, &marker, last_id, &mut counts)?;
                }
            }
            Line::Snapshot { row } => {
                store_batch(&app, &mut pending, &marker, last_id, &mut counts)?;
                let Some(snapshots) = app.snapshots() else {
                    continue;
                };
                let stored = sealed(&app, row, line_number)?;
                match snapshots.recorder().insert_events(&[stored]) {
                    Ok(_) => counts.snapshots += 1,
                    // Imported before.
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Line::Tracking {
                application_name,
                notification_id,
            } => {
                store_batch(&app, &mut pending, &marker, last_id, &mut counts)?;
                let tracking = Tracking {
                    application_name,
                    notification_id,
                };
                match app.recorder().insert_events_tracked(&[], &tracking) {
                    Ok(_) => counts.tracking += 1,
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Line::End {
                events,
                snapshots,
                tracking,
            } => end = Some((events, snapshots, tracking)),
        }
    }
    store_batch(&app, &mut pending, &marker, last_id, &mut counts)?;
    bar.finish_and_clear();
    let Some((events, _, _)) = end else {
        return Err(CliError::Invalid(format!(
            "the export ends at line {line_number} without its end line: it was cut short ({} events imported so far; import the whole file again to finish)",
            counts.events
        )));
    };
    if counts.events + counts.skipped != events {
        return Err(CliError::Invalid(format!(
            "the export's end line counts {events} events, and it holds {}",
            counts.events + counts.skipped
        )));
    }
    out.value(&counts, || {
        format!(
            "imported {} events ({} were already here), {} snapshots, {} tracking records",
            counts.events, counts.skipped, counts.snapshots, counts.tracking
        )
    });
    Ok(())
}

/// Stores `pending` with the tracking record of `last_id`, in one
/// transaction; on a conflict (events already here), one by one.
fn store_batch(
    app: &Application,
    pending: &mut Vec<StoredEvent>,
    marker: &str,
    last_id: u64,
    counts: &mut Imported,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let tracking = Tracking {
        application_name: marker.to_owned(),
        notification_id: last_id,
    };
    match app.recorder().insert_events_tracked(pending, &tracking) {
        Ok(_) => {
            counts.events += pending.len() as u64;
            pending.clear();
            return Ok(());
        }
        Err(e) if e.is_conflict() => {}
        Err(e) => return Err(e.into()),
    }
    for stored in pending.drain(..) {
        let version = stored.originator_version;
        let mut query = EventQuery::all().up_to(version);
        if let Some(before) = version.checked_sub(1) {
            query = query.after(before);
        }
        let here = app
            .recorder()
            .select_events(&stored.originator_id, &query)?;
        match here.first() {
            Some(here) => {
                let same = here.topic == stored.topic
                    && app.mapper().plain_state(here)? == app.mapper().plain_state(&stored)?;
                if !same {
                    return Err(CliError::Invalid(format!(
                        "{} version {version} is in this store already, with other content: the import stops here (the export's earlier events are stored)",
                        stored.originator_id
                    )));
                }
                counts.skipped += 1;
            }
            None => {
                app.recorder()
                    .insert_events(std::slice::from_ref(&stored))?;
                counts.events += 1;
            }
        }
    }
    match app.recorder().insert_events_tracked(&[], &tracking) {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
