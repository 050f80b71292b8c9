//! A save object's stored form: one save's events, tracking record and
//! key, or a group's, as JSON (states and outcomes base64).

use base64::Engine as _;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::index::Positions;
use annals_core::error::{Error, Result};
use annals_core::persistence::{KeyedOutcome, StoredEvent, Tracking};

/// One save object, as stored: a save's events, tracking record and key,
/// or (`saves`) those of a group of saves written together.
#[derive(Serialize, Deserialize)]
struct Save {
    /// The notification id of the first event (the ids are consecutive).
    first: u64,
    /// A lone save's events; absent for a group, so that a reader that
    /// knows no groups refuses the object rather than read a part of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<Vec<Row>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracking: Option<TrackingRow>,
    /// The idempotency key of the request that made the save, and its
    /// outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyRow>,
    /// Random, one for each object (all its writes): what tells a
    /// writer's own object (a write that was stored but answered with an
    /// error, then retried) from another writer's save of the very same
    /// events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// A group's saves, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    saves: Vec<Part>,
}

/// One save of a group.
#[derive(Serialize, Deserialize)]
struct Part {
    events: Vec<Row>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracking: Option<TrackingRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyRow>,
}

/// A save to write: its events, tracking record and key.
#[derive(Clone, Copy)]
pub(super) struct Request<'a> {
    pub(super) events: &'a [StoredEvent],
    pub(super) tracking: Option<&'a Tracking>,
    pub(super) outcome: Option<&'a KeyedOutcome>,
}

#[derive(Serialize, Deserialize)]
struct Row {
    id: String,
    version: u64,
    topic: String,
    /// The stored state, base64.
    state: String,
}

#[derive(Serialize, Deserialize)]
struct TrackingRow {
    application: String,
    notification: u64,
}

#[derive(Serialize, Deserialize)]
struct KeyRow {
    key: String,
    /// The outcome, base64.
    outcome: String,
}

pub(super) fn encode(first: u64, group: &[Request<'_>], token: &str) -> Result<Vec<u8>> {
    let rows = |events: &[StoredEvent]| -> Vec<Row> {
        events
            .iter()
            .map(|e| Row {
                id: e.originator_id.clone(),
                version: e.originator_version,
                topic: e.topic.clone(),
                state: base64::engine::general_purpose::STANDARD.encode(&e.state),
            })
            .collect()
    };
    let tracking = |t: Option<&Tracking>| {
        t.map(|t| TrackingRow {
            application: t.application_name.clone(),
            notification: t.notification_id,
        })
    };
    let key = |o: Option<&KeyedOutcome>| {
        o.map(|o| KeyRow {
            key: o.key.clone(),
            outcome: base64::engine::general_purpose::STANDARD.encode(&o.outcome),
        })
    };
    let save = match group {
        // A lone save: the form every reader knows.
        [save] => Save {
            first,
            events: Some(rows(save.events)),
            tracking: tracking(save.tracking),
            key: key(save.outcome),
            token: Some(token.to_owned()),
            saves: Vec::new(),
        },
        group => Save {
            first,
            events: None,
            tracking: None,
            key: None,
            token: Some(token.to_owned()),
            saves: group
                .iter()
                .map(|save| Part {
                    events: rows(save.events),
                    tracking: tracking(save.tracking),
                    key: key(save.outcome),
                })
                .collect(),
        },
    };
    serde_json::to_vec(&save).map_err(|e| Error::persistence("encoding a save", e))
}

/// Whether `error` or one of its causes says `code`.
pub(super) fn says(error: &(dyn std::error::Error + 'static), code: &str) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.to_string().contains(code))
}

/// The events, tracking record and token of the save object at `path`, whose
/// first event must have notification id `first`.
pub(super) fn decode(path: &Path, bytes: &[u8], first: u64) -> Result<Decoded> {
    let bad = |message: String| {
        Error::persistence(
            format!("reading {path}"),
            format!("it is not a save annals wrote (corrupt, truncated or foreign): {message}"),
        )
    };
    let save: Save = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if save.first != first {
        return Err(bad(format!(
            "its first notification id is {}, where the saves before it end at {}",
            save.first,
            first - 1
        )));
    }
    let parts = match (save.events, save.saves) {
        (Some(events), saves) if saves.is_empty() => vec![Part {
            events,
            tracking: save.tracking,
            key: save.key,
        }],
        (None, saves) if !saves.is_empty() => saves,
        _ => {
            return Err(bad(
                "it holds neither one save's events nor a group's".into()
            ))
        }
    };
    let mut decoded = Decoded {
        events: Vec::new(),
        tracking: Vec::new(),
        outcomes: Vec::new(),
        token: save.token,
    };
    for part in parts {
        for row in part.events {
            let state = base64::engine::general_purpose::STANDARD
                .decode(&row.state)
                .map_err(|e| bad(format!("the state of {}@{}: {e}", row.id, row.version)))?;
            decoded.events.push(StoredEvent {
                originator_id: row.id,
                originator_version: row.version,
                topic: row.topic,
                state,
            });
        }
        decoded.tracking.extend(part.tracking.map(|t| Tracking {
            application_name: t.application,
            notification_id: t.notification,
        }));
        if let Some(k) = part.key {
            let outcome = base64::engine::general_purpose::STANDARD
                .decode(&k.outcome)
                .map_err(|e| bad(format!("the outcome of idempotency key {:?}: {e}", k.key)))?;
            decoded.outcomes.push(KeyedOutcome {
                key: k.key,
                outcome,
            });
        }
    }
    Ok(decoded)
}

/// A save object, read: the events of its saves, their tracking
/// records and outcomes.
pub(super) struct Decoded {
    pub(super) events: Vec<StoredEvent>,
    pub(super) tracking: Vec<Tracking>,
    pub(super) outcomes: Vec<KeyedOutcome>,
    /// The token of the writes that stored it (none before tokens).
    pub(super) token: Option<String>,
}

impl Decoded {
    /// What a group of saves written as one object holds.
    pub(super) fn of(group: &[Request<'_>], token: String) -> Self {
        Self {
            events: group
                .iter()
                .flat_map(|r| r.events.iter().cloned())
                .collect(),
            tracking: group.iter().filter_map(|r| r.tracking.cloned()).collect(),
            outcomes: group.iter().filter_map(|r| r.outcome.cloned()).collect(),
            token: Some(token),
        }
    }

    pub(super) fn positions(&self) -> Positions {
        Positions {
            events: self
                .events
                .iter()
                .map(|e| {
                    (
                        e.originator_id.clone(),
                        e.originator_version,
                        e.topic.clone(),
                    )
                })
                .collect(),
            tracking: self
                .tracking
                .iter()
                .map(|t| (t.application_name.clone(), t.notification_id))
                .collect(),
            keys: self.outcomes.iter().map(|o| o.key.clone()).collect(),
        }
    }
}
