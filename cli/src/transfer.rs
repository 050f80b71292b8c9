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
//! **Which store an export came from.** Notification ids number one
//! store's log, so an import's position means something only for exports
//! of the same store. Each store has an identity: a random number kept in
//! its own tracking table (the record `annals store identity`, made by its
//! first export), so it needs no table of its own and works on every
//! store, Python's tables included; a copy of a store's files (a backup)
//! keeps it, an import into another store does not. The header carries it
//! (`store`).
//!
//! **Import** stores each batch of events with a tracking record (`annals
//! import of APP from store ID`, the batch's last notification id in the
//! export), as a follower's are, so a second run (or one after a kill) of
//! an export of the same store starts after the last batch stored. The
//! events it skips are trusted as imported before, not compared; only the
//! last of them is checked to be here as exported (else the export is of
//! a copy that went its own way, and it stops: `--compare` checks every
//! event instead). Past them, an event found already here is compared:
//! the same topic and state is skipped, other content
//! stops the import with an error naming the stream and version. Exports
//! without `store` (made before it) resume nowhere: every event is
//! compared.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use annals::mapper::Mapper;
use annals::persistence::{AggregateRecorder, EventQuery};
use annals::persistence::{StoredEvent, Tracking};
use annals::Application;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::inspect::{each_notification, state_json};
use crate::output::{count, Output};
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
        /// The exporting store's identity ([`store_identity`]); absent in
        /// exports made before it, and of stores it could not be given to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        store: Option<String>,
        /// The first notification id exported (`export --from`); absent
        /// when the export starts at the log's start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
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
    /// A subject's data key of personal data, as the store keeps it:
    /// wrapped by the master key (base64), so the copy's sealed fields
    /// open as the original's do; a forgotten subject has none.
    Key {
        subject: String,
        key_id: String,
        wrapped: String,
    },
    End {
        events: u64,
        snapshots: u64,
        tracking: u64,
        /// Absent in exports made before keys were exported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys: Option<u64>,
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
    /// The bytes as the importing store stores them, sealed and checked
    /// already (by the thread that parses an import): never written nor
    /// read.
    #[serde(skip)]
    Sealed(Vec<u8>),
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

/// The tracking record that holds a store's identity.
const IDENTITY: &str = "annals store identity";

/// The store's identity, given to it now if it has none: a random number
/// (below 2^63, as PostgreSQL's bigint) as the notification id of the
/// tracking record [`IDENTITY`]. Two exports giving one at once each
/// write theirs; the highest is the store's from then on (an import then
/// compares instead of resuming, which is slower, never wrong). `None`
/// when the store cannot be written (a read-only role, no tracking table
/// with `CREATE_TABLE=no`): the export then has no identity and its
/// import compares every event.
fn store_identity(app: &Application) -> Option<String> {
    let recorder = app.recorder();
    let given = || -> annals::Result<u64> {
        let id = recorder.max_tracking_id(IDENTITY)?;
        if id > 0 {
            return Ok(id);
        }
        let (random, _) = annals::Uuid::new_v4().as_u64_pair();
        let tracking = Tracking {
            application_name: IDENTITY.into(),
            notification_id: (random >> 1).max(1),
        };
        match recorder.insert_events_tracked(&[], &tracking) {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        recorder.max_tracking_id(IDENTITY)
    };
    match given() {
        Ok(id) => Some(format!("{id:016x}")),
        Err(e) => {
            eprintln!(
                "annals: the store has no identity and cannot be given one ({}): the export has none, so its import will compare every event",
                e.report()
            );
            None
        }
    }
}

#[derive(Serialize)]
struct Exported {
    events: u64,
    snapshots: u64,
    tracking: u64,
    keys: u64,
}

/// What `export` writes besides the events.
#[derive(Debug)]
pub(crate) struct ExportOptions {
    /// States decoded, not as stored.
    pub plain: bool,
    /// The upstream applications whose tracking positions to write.
    pub tracking: Vec<String>,
    /// Whether to write snapshots.
    pub snapshots: bool,
    /// The first notification id to write (inclusive).
    pub from: u64,
}

pub(crate) fn export(
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
    let store = store_identity(&app);
    write_line(
        &mut to,
        &Line::Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            application: settings.app().into(),
            store,
            from: (options.from > 1).then_some(options.from),
        },
    )?;
    let bar = out.progress(app.last_notification_id()?.unwrap_or(0), "exporting");
    bar.set_position(options.from.saturating_sub(1));
    let mut counts = Exported {
        events: 0,
        snapshots: 0,
        tracking: 0,
        keys: 0,
    };
    // Keys first: an import cut short after some events still opens them.
    if let Some(keys) = app.data_keys() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut after: Option<String> = None;
        loop {
            let page = keys.select_keys(after.as_deref(), 1_000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.subject.clone());
            for key in page {
                counts.keys += 1;
                write_line(
                    &mut to,
                    &Line::Key {
                        subject: key.subject,
                        key_id: b64.encode(&key.key_id),
                        wrapped: b64.encode(&key.wrapped),
                    },
                )?;
            }
        }
    }
    let mut streams: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    each_notification(&app, options.from, &[], |n| {
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
        if upstream == IDENTITY {
            continue;
        }
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
            keys: Some(counts.keys),
        },
    )?;
    to.flush().map_err(io("writing the export"))?;
    drop(to);
    if output.is_some() {
        out.value(&counts, || {
            format!(
                "exported {}, {}, {}, {}",
                count(counts.events, "event"),
                count(counts.snapshots, "snapshot"),
                count(counts.tracking, "tracking record"),
                count(counts.keys, "data key")
            )
        });
    }
    Ok(())
}

/// The streams ended in `app`'s store: those with a tombstone.
fn ended_streams(app: &Application) -> Result<HashSet<String>> {
    const PAGE: usize = 1_000;
    let mut ended = HashSet::new();
    let mut start = 1;
    loop {
        let page = app.select_notifications(
            &annals::persistence::NotificationQuery::new(start, PAGE)
                .topics([annals::ending::TOMBSTONE_TOPIC]),
        )?;
        let Some(last) = page.last() else {
            return Ok(ended);
        };
        start = last.id + 1;
        let full = page.len() == PAGE;
        ended.extend(page.into_iter().map(|n| n.event.originator_id));
        if !full {
            return Ok(ended);
        }
    }
}

/// A row as the importing store stores it.
fn sealed(app: &Application, row: Row, line: u64) -> Result<StoredEvent> {
    seal(app.mapper(), row, line)
}

/// A row as a store with `mapper` stores it: a stored state decoded and
/// checked to open with its settings, a plain one sealed.
fn seal(mapper: &Mapper, row: Row, line: u64) -> Result<StoredEvent> {
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
            if let Err(e) = mapper.plain_state(&stored) {
                return Err(CliError::Invalid(format!(
                    "line {line}: {}; the export holds states as another store stored them, with a cipher key or compression this store does not have: export with --plain to import them here",
                    e.report()
                )));
            }
        }
        State::Plain(json) => {
            stored.state = json.into_bytes();
            stored.state = mapper.seal_state(&stored)?;
        }
        State::Sealed(bytes) => stored.state = bytes,
    }
    Ok(stored)
}

#[derive(Serialize)]
struct Imported {
    events: u64,
    skipped: u64,
    snapshots: u64,
    tracking: u64,
    /// Data keys of personal data stored (or there already).
    keys: u64,
    /// The export's notification id this import resumed after (0: its
    /// start).
    resumed_after: u64,
    /// Nothing was stored: the counts are what an import would store.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
}

/// How `import` reads and stores.
#[derive(Debug)]
pub(crate) struct ImportOptions {
    /// Events stored per transaction.
    pub batch: u64,
    /// Compare every event, whatever was imported before.
    pub compare: bool,
    /// Check everything, store nothing.
    pub dry_run: bool,
    /// Store through the application's save path, not the bulk one.
    pub save_path: bool,
}

/// Whether `stored` is in `recorder` (events or snapshots) as given: the
/// same topic and state. `None` when that stream has no such version.
fn found_as(
    app: &Application,
    recorder: &(impl AggregateRecorder + ?Sized),
    stored: &StoredEvent,
) -> Result<Option<bool>> {
    let version = stored.originator_version;
    let mut query = EventQuery::all().up_to(version);
    if let Some(before) = version.checked_sub(1) {
        query = query.after(before);
    }
    let here = recorder.select_events(&stored.originator_id, &query)?;
    let Some(here) = here.first() else {
        return Ok(None);
    };
    Ok(Some(
        here.topic == stored.topic
            && app.mapper().plain_state(here)? == app.mapper().plain_state(stored)?,
    ))
}

fn other_content(stored: &StoredEvent, what: &str) -> CliError {
    CliError::Invalid(format!(
        "{what} {} version {} is in this store already, with other content: the import stops here (the batches before this one are stored, nothing of this one; nothing was merged into the one here)",
        stored.originator_id, stored.originator_version
    ))
}

/// Reads an export into the store. With `compare`, every event is
/// compared with the store's, whatever was imported from the export's
/// store before; with `dry_run`, everything is read and checked as for an
/// import, and nothing is stored.
pub(crate) fn import(
    settings: &Settings,
    out: &Output,
    input: Option<&Path>,
    options: &ImportOptions,
) -> Result<()> {
    let app = settings.open_with_snapshots()?;
    let (reader, len): (Box<dyn Read + Send>, u64) = match input {
        Some(path) => {
            let file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            (Box::new(file), len)
        }
        None => (Box::new(std::io::stdin()), 0),
    };
    let bar = out.progress(len, "importing (bytes)");
    // Lines are read and parsed on a thread of their own, a chunk at a
    // time, while this one stores: parsing took about half of an import's
    // time on SQLite.
    let parsed = parse_lines(reader, bar.clone(), app.mapper().clone());
    let mut chunk: std::vec::IntoIter<Result<Line>> = Vec::new().into_iter();
    let mut next = || -> Result<Option<Line>> {
        loop {
            if let Some(line) = chunk.next() {
                return line.map(Some);
            }
            match parsed.recv() {
                Ok(more) => chunk = more.into_iter(),
                // The end of the export (the thread stops after an error,
                // which it sends first).
                Err(_) => return Ok(None),
            }
        }
    };
    let (source, store, from) = match next()? {
        Some(Line::Header {
            format,
            version,
            application,
            store,
            from,
        }) if format == FORMAT => {
            if version != FORMAT_VERSION {
                return Err(CliError::Invalid(format!(
                    "the export is of format version {version}; this annals reads version {FORMAT_VERSION}"
                )));
            }
            (application, store, from.unwrap_or(1))
        }
        _ => {
            return Err(CliError::Invalid(
                "line 1 is not the header of an annals export".into(),
            ))
        }
    };
    // Positions are kept per exporting store; an export that does not say
    // which store it came from is compared event by event.
    let mut marker = store.map(|store| format!("annals import of {source} from store {store}"));
    let done = match (&marker, options.compare) {
        (Some(marker), false) => app.recorder().max_tracking_id(marker)?,
        _ => 0,
    };
    if from > done.saturating_add(1) && marker.is_some() {
        // A position past the events this export leaves out would say
        // they were imported: none is kept, and a later import of them
        // compares each event instead.
        eprintln!(
            "annals: the export starts at notification {from}, and this store has that store's events up to {done} only: its position is not kept, so a later import of the events between compares them one by one"
        );
        marker = None;
    }
    let mut batches = Batches {
        app: &app,
        ended: ended_streams(&app)?,
        marker,
        options,
        pending: Vec::new(),
        last_id: 0,
        counts: Imported {
            events: 0,
            skipped: 0,
            snapshots: 0,
            tracking: 0,
            keys: 0,
            resumed_after: done,
            dry_run: options.dry_run,
        },
        seen: HashSet::new(),
    };
    let mut last_id = 0;
    let mut line_number = 1u64;
    let mut end = None;
    // The last event skipped as imported before, until it is checked.
    let mut last_skipped: Option<(StoredEvent, u64)> = None;
    let check_skipped = |last_skipped: &mut Option<(StoredEvent, u64)>| -> Result<()> {
        let Some((stored, notification_id)) = last_skipped.take() else {
            return Ok(());
        };
        if found_as(&app, &**app.recorder(), &stored)? != Some(true) {
            return Err(CliError::Invalid(format!(
                "this export's store was imported here up to its notification {done}, but its event {notification_id} ({} version {}) is not here as exported: the export is of a copy of that store that went its own way. Nothing was imported; import it with --compare, which compares every event",
                stored.originator_id, stored.originator_version
            )));
        }
        Ok(())
    };
    while let Some(line) = next()? {
        line_number += 1;
        if end.is_some() {
            return Err(CliError::Invalid(format!(
                "line {line_number} of the export follows its end line"
            )));
        }
        if !matches!(&line, Line::Event { notification_id, .. } if *notification_id <= done) {
            check_skipped(&mut last_skipped)?;
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
                if notification_id <= last_id || notification_id < from {
                    return Err(CliError::Invalid(format!(
                        "line {line_number}: notification {notification_id} comes after {}: the export's events are out of order",
                        last_id.max(from.saturating_sub(1))
                    )));
                }
                last_id = notification_id;
                if notification_id <= done {
                    batches.counts.skipped += 1;
                    last_skipped = Some((sealed(&app, row, line_number)?, notification_id));
                    continue;
                }
                batches.push(sealed(&app, row, line_number)?, notification_id)?;
            }
            Line::Snapshot { row } => {
                batches.flush()?;
                let stored = sealed(&app, row, line_number)?;
                batches.snapshot(stored)?;
            }
            Line::Tracking {
                application_name,
                notification_id,
            } => {
                batches.flush()?;
                if application_name == IDENTITY {
                    // Another store's identity is not this store's.
                    continue;
                }
                batches.tracking(Tracking {
                    application_name,
                    notification_id,
                })?;
            }
            Line::Key {
                subject,
                key_id,
                wrapped,
            } => {
                let key = imported_key(subject, &key_id, &wrapped, line_number)?;
                batches.counts.keys += 1;
                if !options.dry_run {
                    let keys = app.data_keys().ok_or_else(|| {
                        CliError::Invalid(format!(
                            "line {line_number}: the export holds data keys of personal data, \
                             and this store keeps none (PERSISTENCE_MODULE, DJANGO_TABLES)"
                        ))
                    })?;
                    let stored = keys.insert_key(&key)?;
                    if stored.key_id != key.key_id {
                        return Err(CliError::Invalid(format!(
                            "line {line_number}: subject {:?} has another data key in this \
                             store; its personal data here and in the export cannot both open",
                            key.subject
                        )));
                    }
                }
            }
            Line::End {
                events,
                snapshots,
                tracking,
                ..
            } => end = Some((events, snapshots, tracking)),
        }
    }
    check_skipped(&mut last_skipped)?;
    batches.flush()?;
    bar.finish_and_clear();
    let counts = batches.counts;
    let Some((events, _, _)) = end else {
        return Err(CliError::Invalid(format!(
            "the export ends at line {line_number} without its end line: it was cut short ({} {} so far; import the whole file again to finish)",
            count(counts.events, "event"),
            if options.dry_run { "would be imported" } else { "imported" }
        )));
    };
    if counts.events + counts.skipped != events {
        return Err(CliError::Invalid(format!(
            "the export's end line counts {}, and it holds {}",
            count(events, "event"),
            counts.events + counts.skipped
        )));
    }
    out.value(&counts, || {
        let resumed = if counts.resumed_after > 0 {
            format!(
                "; {} after notification {} of the export",
                if options.dry_run {
                    "would resume"
                } else {
                    "resumed"
                },
                counts.resumed_after
            )
        } else {
            String::new()
        };
        format!(
            "{} {} ({} already here), {}, {}, {}{resumed}{}",
            if options.dry_run {
                "would import"
            } else {
                "imported"
            },
            count(counts.events, "event"),
            counts.skipped,
            count(counts.snapshots, "snapshot"),
            count(counts.tracking, "tracking record"),
            count(counts.keys, "data key"),
            if options.dry_run {
                "; nothing was stored (--dry-run)"
            } else {
                ""
            }
        )
    });
    Ok(())
}

/// Any line's fields, read in one pass: serde's internally tagged enum
/// (`Line`, with its flattened rows) buffers each line whole before it
/// reads it, which cost about a third of an import's time.
#[derive(Deserialize)]
struct Fields {
    kind: String,
    notification_id: Option<u64>,
    originator_id: Option<String>,
    originator_version: Option<u64>,
    topic: Option<String>,
    state: Option<State>,
    application_name: Option<String>,
    format: Option<String>,
    version: Option<u32>,
    application: Option<String>,
    store: Option<String>,
    from: Option<u64>,
    events: Option<u64>,
    snapshots: Option<u64>,
    tracking: Option<u64>,
    keys: Option<u64>,
    subject: Option<String>,
    key_id: Option<String>,
    wrapped: Option<String>,
}

/// One line of an export, as `Line` reads it (the same lines accepted,
/// the same fields required).
fn parse_line(text: &str) -> std::result::Result<Line, String> {
    let mut f: Fields = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let kind = std::mem::take(&mut f.kind);
    let missing = |field: &str| format!("missing field `{field}` of a {kind} line");
    let row = |f: Fields| -> std::result::Result<Row, String> {
        Ok(Row {
            originator_id: f.originator_id.ok_or_else(|| missing("originator_id"))?,
            originator_version: f
                .originator_version
                .ok_or_else(|| missing("originator_version"))?,
            topic: f.topic.ok_or_else(|| missing("topic"))?,
            state: f.state.ok_or_else(|| missing("state"))?,
        })
    };
    Ok(match kind.as_str() {
        "event" => Line::Event {
            notification_id: f
                .notification_id
                .ok_or_else(|| missing("notification_id"))?,
            row: row(f)?,
        },
        "snapshot" => Line::Snapshot { row: row(f)? },
        "tracking" => Line::Tracking {
            application_name: f
                .application_name
                .ok_or_else(|| missing("application_name"))?,
            notification_id: f
                .notification_id
                .ok_or_else(|| missing("notification_id"))?,
        },
        "header" => Line::Header {
            format: f.format.ok_or_else(|| missing("format"))?,
            version: f.version.ok_or_else(|| missing("version"))?,
            application: f.application.ok_or_else(|| missing("application"))?,
            store: f.store,
            from: f.from,
        },
        "key" => Line::Key {
            subject: f.subject.ok_or_else(|| missing("subject"))?,
            key_id: f.key_id.ok_or_else(|| missing("key_id"))?,
            wrapped: f.wrapped.ok_or_else(|| missing("wrapped"))?,
        },
        "end" => Line::End {
            events: f.events.ok_or_else(|| missing("events"))?,
            snapshots: f.snapshots.ok_or_else(|| missing("snapshots"))?,
            tracking: f.tracking.ok_or_else(|| missing("tracking"))?,
            keys: f.keys,
        },
        other => {
            return Err(format!(
                "unknown kind {other:?}: expected header, event, snapshot, tracking, key or end"
            ))
        }
    })
}

/// A key line's key, its bytes decoded.
fn imported_key(
    subject: String,
    key_id: &str,
    wrapped: &str,
    line: u64,
) -> Result<annals::persistence::keys::StoredKey> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes = |what: &str, text: &str| {
        b64.decode(text).map_err(|_| {
            CliError::Invalid(format!("line {line}: the data key's {what} is not base64"))
        })
    };
    Ok(annals::persistence::keys::StoredKey {
        key_id: bytes("id", key_id)?,
        wrapped: bytes("wrapped bytes", wrapped)?,
        subject,
    })
}

/// `line` with its row (if any) sealed as the importing store stores it
/// (see [`seal`]), here on the parsing thread; the first line (the
/// header, whose absence the importing thread names) as it is.
fn presealed(mapper: &Mapper, line: Line, number: u64) -> Result<Line> {
    let seal_row = |row: Row| -> Result<Row> {
        let stored = seal(mapper, row, number)?;
        Ok(Row {
            originator_id: stored.originator_id,
            originator_version: stored.originator_version,
            topic: stored.topic,
            state: State::Sealed(stored.state),
        })
    };
    Ok(match line {
        Line::Event {
            notification_id,
            row,
        } if number > 1 => Line::Event {
            notification_id,
            row: seal_row(row)?,
        },
        Line::Snapshot { row } if number > 1 => Line::Snapshot {
            row: seal_row(row)?,
        },
        other => other,
    })
}

/// Lines parsed at once, handed over together.
const PARSED_CHUNK: usize = 1024;

/// Reads and parses the lines of `reader` on a thread of its own, sending
/// them in chunks of [`PARSED_CHUNK`] (a few chunks ahead, at most); an
/// error is the last item it sends. It stops when the receiver is dropped.
fn parse_lines(
    reader: Box<dyn Read + Send>,
    bar: indicatif::ProgressBar,
    mapper: Mapper,
) -> std::sync::mpsc::Receiver<Vec<Result<Line>>> {
    let (send, receive) = std::sync::mpsc::sync_channel(8);
    std::thread::spawn(move || {
        let mut lines = BufReader::with_capacity(1 << 20, reader).lines();
        let mut number = 0u64;
        let mut chunk = Vec::with_capacity(PARSED_CHUNK);
        for text in lines.by_ref() {
            number += 1;
            let line = match text {
                Err(e) => Err(io(format!("reading line {number} of the export"))(e)),
                Ok(text) => {
                    bar.inc(text.len() as u64 + 1);
                    parse_line(&text)
                        .map_err(|e| CliError::Invalid(format!("line {number} of the export: {e}")))
                        .and_then(|line| presealed(&mapper, line, number))
                }
            };
            let failed = line.is_err();
            chunk.push(line);
            if failed || chunk.len() == PARSED_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(PARSED_CHUNK));
                if send.send(full).is_err() || failed {
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = send.send(chunk);
        }
    });
    receive
}

/// Where an import's rows go: batches of events, each stored with the
/// position reached in one transaction, or (dry run) only checked.
struct Batches<'a> {
    app: &'a Application,
    /// The streams ended here (archived or deleted): none of their events
    /// is imported again.
    ended: HashSet<String>,
    /// The tracking record's name for the position reached, if kept.
    marker: Option<String>,
    options: &'a ImportOptions,
    pending: Vec<StoredEvent>,
    /// The export's notification id of the last event pending.
    last_id: u64,
    counts: Imported,
    /// (Dry run) the events that would be stored, to find one given twice.
    seen: HashSet<(String, u64)>,
}

impl Batches<'_> {
    /// Adds the event at `notification_id` of the export; stores the batch
    /// when it is full. A dry run checks it at once.
    fn push(&mut self, stored: StoredEvent, notification_id: u64) -> Result<()> {
        if self.ended.contains(&stored.originator_id)
            && !annals::ending::is_tombstone(&stored.topic)
        {
            // Its tombstone does not stop the insert (the versions it
            // replaced are free): refused, or the stream would live again.
            return Err(CliError::Invalid(format!(
                "stream {} version {} was archived or deleted in this store: its events are not imported again; the import stops there, nothing of its batch stored",
                stored.originator_id, stored.originator_version
            )));
        }
        if self.options.dry_run {
            return self.check(stored);
        }
        self.pending.push(stored);
        self.last_id = notification_id;
        if self.pending.len() as u64 >= self.options.batch {
            self.flush()?;
        }
        Ok(())
    }

    /// (Dry run) what an import would do with `stored`: skip it (here
    /// already), stop (here with other content, or twice in the export),
    /// or store it.
    fn check(&mut self, stored: StoredEvent) -> Result<()> {
        match found_as(self.app, &**self.app.recorder(), &stored)? {
            Some(true) => self.counts.skipped += 1,
            Some(false) => return Err(other_content(&stored, "stream")),
            None => {
                let key = (stored.originator_id, stored.originator_version);
                if !self.seen.contains(&key) {
                    self.seen.insert(key);
                } else {
                    return Err(CliError::Invalid(format!(
                        "stream {} version {} is in the export twice: an import stops there",
                        key.0, key.1
                    )));
                }
                self.counts.events += 1;
            }
        }
        Ok(())
    }

    /// Stores `events` with `tracking`, by the bulk path or the save path.
    fn store(&self, events: &[StoredEvent], tracking: Option<&Tracking>) -> annals::Result<()> {
        let recorder = self.app.recorder();
        if !self.options.save_path {
            return recorder.import_events(events, tracking).map(drop);
        }
        match tracking {
            Some(tracking) => recorder.insert_events_tracked(events, tracking).map(drop),
            None if events.is_empty() => Ok(()),
            None => recorder.insert_events(events).map(drop),
        }
    }

    /// Stores the pending events with the tracking record of the last one
    /// (under the marker, if any) in one transaction. On a conflict
    /// (nothing of it stored), the events found here are compared: one
    /// with other content stops the import, storing nothing of the batch;
    /// the same ones are skipped and the rest stored, again in one
    /// transaction with the position.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() || self.options.dry_run {
            return Ok(());
        }
        let tracking = self.marker.as_ref().map(|marker| Tracking {
            application_name: marker.clone(),
            notification_id: self.last_id,
        });
        match self.store(&self.pending, tracking.as_ref()) {
            Ok(()) => {
                self.counts.events += self.pending.len() as u64;
                self.pending.clear();
                return Ok(());
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
        let recorder = self.app.recorder();
        let mut missing = Vec::with_capacity(self.pending.len());
        let mut here = 0;
        for stored in self.pending.drain(..) {
            match found_as(self.app, &**recorder, &stored)? {
                Some(true) => here += 1,
                Some(false) => return Err(other_content(&stored, "stream")),
                None => missing.push(stored),
            }
        }
        // The position, unless it is here already (an earlier import, or
        // a later position with --compare).
        let tracking = match tracking {
            Some(t) if !recorder.has_tracking_id(&t.application_name, t.notification_id)? => {
                Some(t)
            }
            _ => None,
        };
        self.store(&missing, tracking.as_ref()).map_err(|e| {
            if e.is_conflict() {
                CliError::Invalid(format!(
                    "{}; the import stops at the batch that ends at notification {} of the export, none of which was stored",
                    e.report(),
                    self.last_id
                ))
            } else {
                e.into()
            }
        })?;
        self.counts.events += missing.len() as u64;
        self.counts.skipped += here;
        Ok(())
    }

    /// Stores a snapshot, unless the same one is here (a dry run only
    /// checks).
    fn snapshot(&mut self, stored: StoredEvent) -> Result<()> {
        let Some(snapshots) = self.app.snapshots() else {
            return Ok(());
        };
        let recorder = snapshots.recorder();
        if self.options.dry_run {
            match found_as(self.app, &**recorder, &stored)? {
                Some(true) => {}
                Some(false) => return Err(other_content(&stored, "the snapshot of")),
                None => self.counts.snapshots += 1,
            }
            return Ok(());
        }
        match recorder.insert_events(std::slice::from_ref(&stored)) {
            Ok(_) => self.counts.snapshots += 1,
            // Imported before, or taken here: the same one is fine.
            Err(e) if e.is_conflict() => {
                if found_as(self.app, &**recorder, &stored)? == Some(false) {
                    return Err(other_content(&stored, "the snapshot of"));
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Stores an upstream application's tracking record, unless it is
    /// here (a dry run only checks).
    fn tracking(&mut self, tracking: Tracking) -> Result<()> {
        let recorder = self.app.recorder();
        if self.options.dry_run {
            if !recorder.has_tracking_id(&tracking.application_name, tracking.notification_id)? {
                self.counts.tracking += 1;
            }
            return Ok(());
        }
        match recorder.insert_events_tracked(&[], &tracking) {
            Ok(_) => self.counts.tracking += 1,
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of line, as `export` writes it, reads back the same.
    #[test]
    fn each_line_reads_back_as_written() {
        let row = || Row {
            originator_id: "dog-1".into(),
            originator_version: 2,
            topic: "Dog.TrickAdded".into(),
            state: State::Plain("{\"trick\":\"sit\"}".into()),
        };
        let lines = [
            Line::Header {
                format: FORMAT.into(),
                version: FORMAT_VERSION,
                application: "School".into(),
                store: Some("00ff".into()),
                from: Some(4),
            },
            Line::Event {
                notification_id: 7,
                row: row(),
            },
            Line::Snapshot { row: row() },
            Line::Tracking {
                application_name: "Orders".into(),
                notification_id: 3,
            },
            Line::Key {
                subject: "customer-1".into(),
                key_id: "AQIDBAUGBwg=".into(),
                wrapped: "c2VhbGVk".into(),
            },
            Line::End {
                events: 1,
                snapshots: 1,
                tracking: 1,
                keys: Some(1),
            },
        ];
        for line in &lines {
            let text = serde_json::to_string(line).expect("written");
            let read = parse_line(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(format!("{read:?}"), format!("{line:?}"));
        }
    }

    #[test]
    fn a_bad_line_is_an_error_naming_what_is_wrong() {
        let missing = parse_line(r#"{"kind":"event","notification_id":1,"topic":"T"}"#)
            .expect_err("no stream");
        assert!(
            missing.contains("originator_id") && missing.contains("event"),
            "{missing}"
        );
        let unknown = parse_line(r#"{"kind":"nonsense"}"#).expect_err("unknown kind");
        assert!(unknown.contains("nonsense"), "{unknown}");
        assert!(parse_line("not json").is_err());
        assert!(parse_line(r#"{"notification_id":1}"#).is_err(), "no kind");
        let negative = parse_line(
            r#"{"kind":"event","notification_id":-1,"originator_id":"a","originator_version":1,"topic":"T","state":{"plain":"{}"}}"#,
        );
        assert!(negative.is_err(), "a negative id");
    }
}
