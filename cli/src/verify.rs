//! `verify`: hash chains, of one stream or of every stream in the log.

use std::collections::HashMap;

use annals::domain::EventHash;
use annals::persistence::EventQuery;
use annals::persistence::StoredEvent;
use annals::{Application, Error};
use serde::Serialize;

use crate::inspect::{each_notification, stream_events};
use crate::output::Output;
use crate::settings::Settings;
use crate::{Outcome, Result};

/// The first broken link of a stream.
#[derive(Debug, Serialize)]
struct Broken {
    id: String,
    version: u64,
    reason: String,
}

#[derive(Serialize)]
struct Verdict {
    intact: bool,
    streams: u64,
    events: u64,
    broken: Vec<Broken>,
}

/// Where one stream's check has got to.
#[derive(Default)]
struct Chain {
    version: Option<u64>,
    prev: Option<EventHash>,
    broken: bool,
}

impl Chain {
    /// Checks the next event of the stream; the first failure breaks it.
    fn check(&mut self, app: &Application, stored: &StoredEvent) -> Option<Broken> {
        if self.broken {
            return None;
        }
        let version = stored.originator_version;
        let failed = match self.version {
            Some(last) if version != last + 1 => Some(format!(
                "version {} is missing (the next stored version is {version})",
                last + 1
            )),
            _ => app
                .mapper()
                .check_link(stored, &mut self.prev)
                .err()
                .map(|e| match e {
                    Error::Integrity { message, .. } => message,
                    other => other.report().to_string(),
                }),
        };
        self.version = Some(version);
        failed.map(|reason| {
            self.broken = true;
            Broken {
                id: stored.originator_id.clone(),
                version,
                reason,
            }
        })
    }
}

pub fn verify(settings: &Settings, out: &Output, id: Option<&str>) -> Result<Outcome> {
    let app = settings.open()?;
    let mut verdict = Verdict {
        intact: true,
        streams: 0,
        events: 0,
        broken: Vec::new(),
    };
    match id {
        Some(id) => {
            let events = stream_events(settings, &app, id, &EventQuery::all())?;
            let bar = out.progress(events.len() as u64, "verifying");
            let mut chain = Chain::default();
            verdict.streams = 1;
            for stored in &events {
                bar.inc(1);
                verdict.events += 1;
                verdict.broken.extend(chain.check(&app, stored));
            }
            bar.finish_and_clear();
        }
        None => {
            // One pass over the log: each stream's events come in version
            // order, so each chain is checked as its events go by.
            let bar = out.progress(app.last_notification_id()?.unwrap_or(0), "verifying");
            let mut chains: HashMap<String, Chain> = HashMap::new();
            each_notification(&app, 1, &[], |n| {
                bar.set_position(n.id);
                verdict.events += 1;
                let chain = chains.entry(n.event.originator_id.clone()).or_default();
                verdict.broken.extend(chain.check(&app, &n.event));
                Ok(())
            })?;
            bar.finish_and_clear();
            verdict.streams = chains.len() as u64;
        }
    }
    verdict.intact = verdict.broken.is_empty();
    out.value(&verdict, || {
        let mut text = if verdict.intact {
            format!(
                "intact: {} events in {} streams",
                verdict.events, verdict.streams
            )
        } else {
            format!(
                "BROKEN: {} of {} streams ({} events checked)",
                verdict.broken.len(),
                verdict.streams,
                verdict.events
            )
        };
        for b in &verdict.broken {
            text.push_str(&format!(
                "\n  stream {} at version {}: {}",
                b.id, b.version, b.reason
            ));
        }
        text
    });
    Ok(if verdict.intact {
        Outcome::Done
    } else {
        Outcome::Broken
    })
}
