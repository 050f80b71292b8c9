//! `verify`: hash chains, of one stream or of every stream in the log,
//! and each stream's head against a list kept elsewhere.
//!
//! A chain shows a changed, removed or reordered event, but not events cut
//! from a stream's end: what is left is a whole chain. `--heads-out` writes
//! each stream's head (id, last version, last hash) so it can be kept
//! outside the store; `--heads` checks the store against such a list, so
//! a cut tail (or a stream gone) shows too.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use annals::domain::EventHash;
use annals::persistence::EventQuery;
use annals::persistence::StoredEvent;
use annals::{Application, Error};
use serde::{Deserialize, Serialize};

use crate::inspect::{each_notification, id_forms, stream_events};
use crate::output::{count, Output};
use crate::settings::Settings;
use crate::{io, CliError, Outcome, Result};

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
    /// Whether any event records a hash; when none does there is nothing
    /// to check (exit 4).
    hash_chained: bool,
    streams: u64,
    events: u64,
    /// Heads of `--heads` checked.
    heads_checked: u64,
    /// Streams ended for good (archived or deleted): a tombstone, no
    /// chain left to check, not broken.
    ended: u64,
    broken: Vec<Broken>,
}

/// A stream's head: what `--heads-out` writes and `--heads` reads, one
/// JSON object a line.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    id: String,
    version: u64,
    hash: String,
}

/// Where one stream's check has got to.
#[derive(Default)]
struct Chain {
    version: Option<u64>,
    prev: Option<EventHash>,
    broken: bool,
    /// Its first event records no hash.
    unchained: bool,
    /// A recorded head's version, and the hash found at it.
    recorded: Option<u64>,
    hash_at_recorded: Option<EventHash>,
}

/// Why an event failed its check.
enum Failure {
    /// It does not open with these settings (key, compression).
    Unopened(Error),
    /// Its link does not hold.
    Link(String),
}

impl Chain {
    /// Checks the next event of the stream; the first failure breaks it.
    fn check(&mut self, app: &Application, stored: &StoredEvent) -> Option<(Broken, Failure)> {
        if self.broken {
            return None;
        }
        let version = stored.originator_version;
        let first = self.version.is_none();
        let failed = match self.version {
            Some(last) if version != last + 1 => Some(Failure::Link(format!(
                "version {} is missing (the next stored version is {version})",
                last + 1
            ))),
            _ => match app.mapper().check_link(stored, &mut self.prev) {
                Ok(()) => None,
                Err(Error::Integrity { message, .. }) => {
                    if first && matches!(app.mapper().stored_hash(stored), Ok(None)) {
                        self.unchained = true;
                    }
                    Some(Failure::Link(message))
                }
                Err(e) => Some(Failure::Unopened(e)),
            },
        };
        self.version = Some(version);
        if failed.is_none() && self.recorded == Some(version) {
            self.hash_at_recorded = self.prev;
        }
        failed.map(|failure| {
            self.broken = true;
            let reason = match &failure {
                Failure::Link(message) => message.clone(),
                Failure::Unopened(e) => e.report().to_string(),
            };
            let broken = Broken {
                id: stored.originator_id.clone(),
                version,
                reason,
            };
            (broken, failure)
        })
    }
}

fn hex(hash: &EventHash) -> String {
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The heads in `path`, by stream id.
fn read_heads(path: &Path) -> Result<HashMap<String, Head>> {
    let file = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut heads = HashMap::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(format!("reading {}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let head: Head = serde_json::from_str(&line).map_err(|e| {
            CliError::Invalid(format!(
                "line {} of {} is not a head ({{\"id\", \"version\", \"hash\"}}): {e}",
                number + 1,
                path.display()
            ))
        })?;
        heads.insert(head.id.clone(), head);
    }
    Ok(heads)
}

/// Writes the heads to a temporary file beside `path`, synced, then
/// renamed over it: a failure partway leaves the previous heads whole.
fn write_heads(path: &Path, chains: &[(&String, &Chain)]) -> Result<()> {
    let context = || format!("writing {}", path.display());
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(io(context()))?;
    let mut to = BufWriter::new(temp);
    for (id, chain) in chains {
        let (Some(version), Some(hash)) = (chain.version, chain.prev) else {
            continue;
        };
        let head = Head {
            id: (*id).clone(),
            version,
            hash: hex(&hash),
        };
        let line = serde_json::to_string(&head)
            .map_err(|e| CliError::Invalid(format!("cannot write a head: {e}")))?;
        writeln!(to, "{line}").map_err(io(context()))?;
    }
    let temp = to.into_inner().map_err(|e| io(context())(e.into_error()))?;
    temp.as_file().sync_all().map_err(io(context()))?;
    temp.persist(path).map_err(|e| io(context())(e.error))?;
    // The rename itself survives a crash once the directory is synced.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(context()))
}

/// What `verify` is asked to do besides checking the chains.
#[derive(Debug, Default)]
pub(crate) struct Heads<'a> {
    /// A list of heads to check the streams against.
    pub check: Option<&'a Path>,
    /// Where to write the streams' heads, when intact.
    pub write: Option<&'a Path>,
}

pub(crate) fn verify(
    settings: &Settings,
    out: &Output,
    id: Option<&str>,
    heads: &Heads<'_>,
) -> Result<Outcome> {
    let app = settings.open()?;
    let mut recorded = match heads.check {
        Some(path) => read_heads(path)?,
        None => HashMap::new(),
    };
    let single = match id {
        Some(id) => {
            // A stream whose head was recorded and whose events are all
            // gone is broken, not unknown.
            let recorded_as = id_forms(id)
                .into_iter()
                .find(|form| recorded.contains_key(form));
            let events = match stream_events(settings, &app, id, &EventQuery::all()) {
                Err(CliError::Invalid(_)) if recorded_as.is_some() => Vec::new(),
                found => found?,
            };
            // Only this stream's recorded head applies.
            let stored_id = events
                .first()
                .map(|first| first.originator_id.clone())
                .or(recorded_as);
            recorded.retain(|stored, _| Some(stored) == stored_id.as_ref());
            Some(events)
        }
        None => None,
    };
    let mut verdict = Verdict {
        intact: true,
        hash_chained: true,
        streams: 0,
        events: 0,
        heads_checked: 0,
        ended: 0,
        broken: Vec::new(),
    };
    let mut ended: std::collections::HashSet<String> = std::collections::HashSet::new();
    // The errors of streams whose first event does not open.
    let mut unopened: Vec<Error> = Vec::new();
    let mut chains: HashMap<String, Chain> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut check = |stored: &StoredEvent, verdict: &mut Verdict| {
        if annals::ending::is_tombstone(&stored.topic) {
            // Ended for good: its events are gone, and so is its chain.
            chains.remove(&stored.originator_id);
            order.retain(|id| *id != stored.originator_id);
            verdict.broken.retain(|b| b.id != stored.originator_id);
            ended.insert(stored.originator_id.clone());
            return;
        }
        verdict.events += 1;
        let chain = chains
            .entry(stored.originator_id.clone())
            .or_insert_with(|| {
                order.push(stored.originator_id.clone());
                Chain {
                    recorded: recorded.get(&stored.originator_id).map(|h| h.version),
                    ..Chain::default()
                }
            });
        let first = chain.version.is_none();
        if let Some((broken, failure)) = chain.check(&app, stored) {
            if let (Failure::Unopened(e), true) = (failure, first) {
                unopened.push(e);
            }
            verdict.broken.push(broken);
        }
    };
    match &single {
        Some(events) => {
            let bar = out.progress(events.len() as u64, "verifying");
            for stored in events {
                bar.inc(1);
                check(stored, &mut verdict);
            }
            bar.finish_and_clear();
        }
        None => {
            // One pass over the log: each stream's events come in version
            // order, so each chain is checked as its events go by.
            let bar = out.progress(app.last_notification_id()?.unwrap_or(0), "verifying");
            each_notification(&app, 1, &[], |n| {
                bar.set_position(n.id);
                check(&n.event, &mut verdict);
                Ok(())
            })?;
            bar.finish_and_clear();
        }
    }
    verdict.streams = chains.len() as u64;
    verdict.ended = ended.len() as u64;

    // No event opens: the settings are wrong, not the store.
    if verdict.events > 0 && unopened.len() as u64 == verdict.streams {
        let first = unopened.swap_remove(0);
        let keyed = settings
            .env()
            .get(annals::settings::CIPHER_KEY.name)
            .is_some();
        return Err(CliError::Invalid(if keyed {
            format!(
                "the key is wrong: no stream's first event opens with this CIPHER_KEY (or COMPRESSOR_TOPIC differs); nothing was verified ({})",
                first.report()
            )
        } else {
            format!(
                "no stream's first event opens with these settings; nothing was verified ({})",
                first.report()
            )
        }));
    }
    if verdict.streams > 0 && chains.values().all(|c| c.unchained) {
        verdict.hash_chained = false;
        verdict.intact = false;
        verdict.broken.clear();
        out.value(&verdict, || {
            format!(
                "not hash-chained: none of the {} records a hash (the store was written without IS_HASH_CHAINING_ENABLED=y), so there is nothing to verify",
                count(verdict.events, "event")
            )
        });
        return Ok(Outcome::NotChained);
    }

    // The recorded heads: a stream shorter than its head, or whose hash at
    // the head's version differs, lost or changed its last events.
    let mut recorded: Vec<Head> = recorded.into_values().collect();
    recorded.sort_by(|a, b| a.id.cmp(&b.id));
    for head in recorded {
        verdict.heads_checked += 1;
        let reason = match chains.get(&head.id) {
            // Archived or deleted since its head was recorded: ended, not
            // broken.
            None if ended.contains(&head.id) => None,
            None => {
                // A stream gone is a stream checked.
                verdict.streams += 1;
                Some((
                    1,
                    format!(
                        "the stream is gone: its recorded head is version {}",
                        head.version
                    ),
                ))
            }
            Some(chain) if chain.broken => None,
            Some(chain) => match chain.version {
                Some(last) if last < head.version => Some((
                    last + 1,
                    format!(
                        "its last events are missing: it ends at version {last}, and its recorded head is version {}",
                        head.version
                    ),
                )),
                _ if chain.hash_at_recorded.map(|h| hex(&h)) != Some(head.hash.to_lowercase()) => {
                    Some((
                        head.version,
                        "its hash differs from its recorded head's".to_owned(),
                    ))
                }
                _ => None,
            },
        };
        if let Some((version, reason)) = reason {
            verdict.broken.push(Broken {
                id: head.id,
                version,
                reason,
            });
        }
    }

    verdict.intact = verdict.broken.is_empty();
    if let Some(path) = heads.write {
        if !verdict.intact {
            return Err(CliError::Invalid(format!(
                "{} not written: the store is broken ({} broken)",
                path.display(),
                count(verdict.broken.len() as u64, "stream")
            )));
        }
        let listed: Vec<(&String, &Chain)> = order
            .iter()
            .filter_map(|id| chains.get(id).map(|c| (id, c)))
            .collect();
        write_heads(path, &listed)?;
    }
    out.value(&verdict, || {
        let mut text = if verdict.intact {
            let mut text = format!(
                "intact: {} in {}",
                count(verdict.events, "event"),
                count(verdict.streams, "stream")
            );
            if verdict.ended > 0 {
                let _ = write!(
                    text,
                    ", {} ended (archived or deleted)",
                    count(verdict.ended, "stream")
                );
            }
            if verdict.heads_checked > 0 {
                let _ = write!(
                    text,
                    ", {} as recorded",
                    count(verdict.heads_checked, "head")
                );
            } else {
                text.push_str(
                    " (a chain cannot show events cut from a stream's end: keep the heads with --heads-out FILE, check them with --heads FILE)",
                );
            }
            text
        } else {
            format!(
                "BROKEN: {} of {} ({} checked)",
                verdict.broken.len(),
                count(verdict.streams, "stream"),
                count(verdict.events, "event")
            )
        };
        for b in &verdict.broken {
            let _ = write!(
                text,
                "\n  stream {} at version {}: {}",
                b.id, b.version, b.reason
            );
        }
        text
    });
    Ok(if verdict.intact {
        Outcome::Done
    } else {
        Outcome::Broken
    })
}
