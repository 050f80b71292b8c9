//! Reading a store: `streams`, `events`, `log`, `info`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use annals::log::{NotificationLogReader, Stopper};
use annals::persistence::EventQuery;
use annals::persistence::{Notification, StoredEvent};
use annals::Application;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::output::{count, Output};
use crate::settings::{is_secret, Settings};
use crate::{CliError, Result};

/// The stored forms `id` may have: as given, and for a UUID both its
/// hyphenated form and the plain hex that SQLite stores.
pub(crate) fn id_forms(id: &str) -> Vec<String> {
    let mut forms = vec![id.to_owned()];
    if let Ok(uuid) = id.parse::<annals::Uuid>() {
        for form in [uuid.simple().to_string(), uuid.hyphenated().to_string()] {
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
}

/// The events of stream `id` (in whichever of its forms is stored).
pub(crate) fn stream_events(
    settings: &Settings,
    app: &Application,
    id: &str,
    query: &EventQuery,
) -> Result<Vec<StoredEvent>> {
    for form in id_forms(id) {
        if !app
            .recorder()
            .select_events(&form, &EventQuery::all().limit(1))?
            .is_empty()
        {
            return Ok(app.recorder().select_events(&form, query)?);
        }
    }
    Err(CliError::Invalid(format!(
        "there is no stream {id:?} in {}",
        settings.app()
    )))
}

/// Calls `each` with every notification from `from` (of `topics`, if
/// any), read a page at a time by the library's log reader.
pub(crate) fn each_notification(
    app: &Application,
    from: u64,
    topics: &[String],
    mut each: impl FnMut(Notification) -> Result<()>,
) -> Result<()> {
    let reader = NotificationLogReader::new(app).topics(topics.iter().cloned());
    for notification in reader.read(from) {
        each(notification?)?;
    }
    Ok(())
}

/// The JSON a stored state holds, exactly as written.
pub(crate) fn state_json(app: &Application, stored: &StoredEvent) -> Result<Box<RawValue>> {
    let plain = app.mapper().plain_state(stored)?;
    let text = String::from_utf8(plain).map_err(|_| not_json(stored, "it is not UTF-8"))?;
    RawValue::from_string(text).map_err(|e| not_json(stored, &e.to_string()))
}

fn not_json(stored: &StoredEvent, why: &str) -> CliError {
    CliError::Invalid(format!(
        "the state of {} version {} ({}) is not JSON: {why}",
        stored.originator_id, stored.originator_version, stored.topic
    ))
}

/// One stream, as `streams` shows it.
#[derive(Serialize)]
struct Stream {
    id: String,
    version: u64,
    events: u64,
    last_notification_id: u64,
    /// When its last event happened; `None` when the state does not open
    /// with these settings.
    last_time: Option<String>,
    /// How it was ended for good (`archived to LOCATION`, `deleted`), if
    /// it was: its last event is a tombstone.
    #[serde(skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
}

pub(crate) fn streams(settings: &Settings, out: &Output) -> Result<()> {
    let app = settings.open()?;
    let total = app.last_notification_id()?.unwrap_or(0);
    let bar = out.progress(total, "reading the log");
    let mut order: Vec<String> = Vec::new();
    let mut last: HashMap<String, (u64, Notification)> = HashMap::new();
    each_notification(&app, 1, &[], |n| {
        bar.set_position(n.id);
        match last.get_mut(&n.event.originator_id) {
            Some((count, seen)) => {
                *count += 1;
                *seen = n;
            }
            None => {
                order.push(n.event.originator_id.clone());
                last.insert(n.event.originator_id.clone(), (1, n));
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    // Streams whose last event does not open with these settings, and
    // those whose last event opens but holds no timestamp annals reads.
    let (mut unreadable, mut untimed) = (0u64, 0u64);
    let mut untimed_why = None;
    for id in order {
        let Some((events, n)) = last.remove(&id) else {
            continue;
        };
        let tombstone = annals::ending::is_tombstone(&n.event.topic)
            .then(|| annals::ending::Tombstone::from_stored(&n.event).ok())
            .flatten();
        let ended = tombstone.as_ref().map(|t| match &t.to {
            Some(to) => format!("archived to {to}"),
            None => "deleted".to_owned(),
        });
        let last_time = match app.mapper().header(&n.event) {
            _ if tombstone.is_some() => tombstone.map(|t| t.at),
            Ok(header) => Some(header.timestamp.to_rfc3339()),
            Err(e) => {
                if app.mapper().plain_state(&n.event).is_ok() {
                    untimed += 1;
                    untimed_why.get_or_insert_with(|| e.report().to_string());
                } else {
                    unreadable += 1;
                }
                None
            }
        };
        let stream = Stream {
            id,
            version: n.event.originator_version,
            events,
            last_notification_id: n.id,
            last_time,
            ended,
        };
        out.value(&stream, || {
            let mut text = format!(
                "{}  version {}  {}  last at {}",
                stream.id,
                stream.version,
                count(stream.events, "event"),
                stream.last_time.as_deref().unwrap_or("?")
            );
            if let Some(ended) = &stream.ended {
                text.push_str(&format!("  ended: {ended}"));
            }
            text
        });
    }
    if unreadable > 0 {
        eprintln!(
            "annals: the last event of {} does not open with these settings (CIPHER_KEY, COMPRESSOR_TOPIC?), so their times are unknown",
            count(unreadable, "stream")
        );
    }
    if let Some(why) = untimed_why {
        eprintln!(
            "annals: the last event of {} opens but holds no timestamp annals reads, so their times are unknown (the first: {why})",
            count(untimed, "stream")
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct Event<'a> {
    originator_id: &'a str,
    originator_version: u64,
    topic: &'a str,
    state: Box<RawValue>,
}

pub(crate) fn events(
    settings: &Settings,
    out: &Output,
    id: &str,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<()> {
    let app = settings.open()?;
    let mut query = EventQuery::all();
    if let Some(from) = from {
        query = query.after(from.saturating_sub(1));
    }
    if let Some(to) = to {
        query = query.up_to(to);
    }
    let events = stream_events(settings, &app, id, &query)?;
    for stored in &events {
        let event = Event {
            originator_id: &stored.originator_id,
            originator_version: stored.originator_version,
            topic: &stored.topic,
            state: state_json(&app, stored)?,
        };
        out.value(&event, || {
            format!(
                "{:>6}  {}  {}",
                event.originator_version,
                event.topic,
                event.state.get()
            )
        });
    }
    Ok(())
}

#[derive(Serialize)]
struct Logged<'a> {
    id: u64,
    #[serde(flatten)]
    event: Event<'a>,
}

fn show(app: &Application, out: &Output, n: &Notification) -> Result<()> {
    let logged = Logged {
        id: n.id,
        event: Event {
            originator_id: &n.event.originator_id,
            originator_version: n.event.originator_version,
            topic: &n.event.topic,
            state: state_json(app, &n.event)?,
        },
    };
    out.value(&logged, || {
        format!(
            "{:>8}  {} v{}  {}  {}",
            logged.id,
            logged.event.originator_id,
            logged.event.originator_version,
            logged.event.topic,
            logged.event.state.get()
        )
    });
    Ok(())
}

pub(crate) fn log(
    settings: &Settings,
    out: &Output,
    from: u64,
    limit: Option<usize>,
    follow: bool,
    topics: &[String],
) -> Result<()> {
    let app = settings.open()?;
    let limit = limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(());
    }
    if follow {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        // The subscription reads the history, then waits on the store's
        // wake-up (LISTEN/NOTIFY on PostgreSQL) for new events.
        let subscription = app.subscribe(from.max(1), &topics)?;
        stop_on_signal(subscription.stopper())?;
        for (shown, n) in subscription.enumerate() {
            show(&app, out, &n?)?;
            if shown + 1 >= limit {
                break;
            }
        }
        return Ok(());
    }
    // Pages no larger than what is asked for.
    let reader = NotificationLogReader::new(&app)
        .page_size(limit.min(1_000))
        .topics(topics.iter().cloned());
    for n in reader.read(from).take(limit) {
        show(&app, out, &n?)?;
    }
    Ok(())
}

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP (ctrlc's `termination` feature)
/// stop `stopper`'s subscription, so the
/// command ends as after its last event, with exit code 0; a second one
/// exits at once (a store that does not answer).
fn stop_on_signal(stopper: Stopper) -> Result<()> {
    on_signal(move || stopper.stop())
}

/// Ctrl-C, SIGTERM and SIGHUP call `stop` (as [`stop_on_signal`]); a
/// second one exits at once.
pub(crate) fn on_signal(stop: impl Fn() + Send + 'static) -> Result<()> {
    let asked = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if asked.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        stop();
    })
    .map_err(|e| CliError::Invalid(format!("cannot handle Ctrl-C, SIGTERM and SIGHUP: {e}")))
}

#[derive(Serialize)]
struct Info {
    application: String,
    events: u64,
    streams: u64,
    state_bytes: u64,
    last_notification_id: Option<u64>,
    settings: Vec<SettingInEffect>,
}

#[derive(Serialize)]
struct SettingInEffect {
    name: &'static str,
    /// The value, `"(set)"` for a secret, or the default.
    value: String,
    /// Where it came from: the variable's name as found, or "default".
    from: String,
}

pub(crate) fn info(settings: &Settings, out: &Output) -> Result<()> {
    let app = settings.open()?;
    let last_notification_id = app.last_notification_id()?;
    let bar = out.progress(last_notification_id.unwrap_or(0), "counting");
    let (mut events, mut state_bytes) = (0u64, 0u64);
    let mut streams: HashMap<String, ()> = HashMap::new();
    each_notification(&app, 1, &[], |n| {
        bar.set_position(n.id);
        events += 1;
        state_bytes += n.event.state.len() as u64;
        streams.entry(n.event.originator_id).or_insert(());
        Ok(())
    })?;
    bar.finish_and_clear();
    let env = settings.env();
    let in_effect = annals::settings::ALL
        .iter()
        .filter_map(|s| {
            let (value, from) = match env.get(s.name) {
                Some((from, _)) if is_secret(s.name) => ("(set)".to_owned(), from),
                Some((from, value)) => (value, from),
                None => (s.default?.to_owned(), "default".to_owned()),
            };
            Some(SettingInEffect {
                name: s.name,
                value,
                from,
            })
        })
        .collect();
    let info = Info {
        application: settings.app().to_owned(),
        events,
        streams: streams.len() as u64,
        state_bytes,
        last_notification_id,
        settings: in_effect,
    };
    out.value(&info, || {
        let mut text = format!(
            "{}: {} in {}, {} of state, last notification {}\nsettings in effect:",
            info.application,
            count(info.events, "event"),
            count(info.streams, "stream"),
            count(info.state_bytes, "byte"),
            info.last_notification_id
                .map_or("none".to_owned(), |n| n.to_string())
        );
        for s in &info.settings {
            text.push_str(&format!("\n  {} = {}  ({})", s.name, s.value, s.from));
        }
        text
    });
    Ok(())
}
