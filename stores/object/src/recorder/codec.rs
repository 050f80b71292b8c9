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
    /// A packed save's tombstone: the name of the pack that holds the
    /// save now (see `packs`), with no events here, so that a reader
    /// that knows no packs refuses the object rather than read it as
    /// empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    packed: Option<String>,
    /// A tombstone's count of the save's events: what an index segment
    /// is checked against without reading the pack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    packed_events: Option<usize>,
    /// A tombstone's pack's first notification id: what the pack is
    /// checked against when it is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pack_first_id: Option<u64>,
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
            packed: None,
            packed_events: None,
            pack_first_id: None,
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
            packed: None,
            packed_events: None,
            pack_first_id: None,
        },
    };
    serde_json::to_vec(&save).map_err(|e| Error::persistence("encoding a save", e))
}

/// Whether `error` or one of its causes says `code`.
pub(super) fn says(error: &(dyn std::error::Error + 'static), code: &str) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.to_string().contains(code))
}

/// The tombstone that replaces a packed save: the save's first id,
/// token and count of events, and the pack that holds it now (whose
/// first notification id is `pack_first_id`).
pub(super) fn encode_tombstone(
    first: u64,
    pack: &str,
    pack_first_id: u64,
    save: &Decoded,
) -> Result<Vec<u8>> {
    let tombstone = Save {
        first,
        events: None,
        tracking: None,
        key: None,
        token: save.token.clone(),
        saves: Vec::new(),
        packed: Some(pack.to_owned()),
        packed_events: Some(save.events.len()),
        pack_first_id: Some(pack_first_id),
    };
    serde_json::to_vec(&tombstone).map_err(|e| Error::persistence("encoding a tombstone", e))
}

/// A save object, read: a save, or the tombstone of a packed one.
pub(super) enum Object {
    Save(Decoded),
    Packed(Tombstone),
}

/// What a packed save's object still says of it.
pub(super) struct Tombstone {
    /// The pack's name (see `packs`).
    pub(super) pack: String,
    /// The pack's first notification id.
    pub(super) pack_first_id: u64,
    pub(super) events: usize,
    pub(super) token: Option<String>,
}

impl Object {
    /// The save's count of events and its token: what an index segment
    /// is checked against.
    pub(super) fn events_and_token(&self) -> (usize, Option<&str>) {
        match self {
            Self::Save(save) => (save.events.len(), save.token.as_deref()),
            Self::Packed(tombstone) => (tombstone.events, tombstone.token.as_deref()),
        }
    }
}

fn not_a_save(path: &Path, message: &str) -> Error {
    Error::persistence(
        format!("reading {path}"),
        format!("it is not a save annals wrote (corrupt, truncated or foreign): {message}"),
    )
}

/// The events, tracking record and token of the save object at `path`, whose
/// first event must have notification id `first`; a tombstone is refused.
pub(super) fn decode(path: &Path, bytes: &[u8], first: u64) -> Result<Decoded> {
    match decode_object(path, bytes, first)? {
        Object::Save(save) => Ok(save),
        Object::Packed(_) => Err(not_a_save(path, "it is a packed save's tombstone")),
    }
}

/// The save object at `path`, whose first event must have notification
/// id `first`: a save, or the tombstone of a packed one.
pub(super) fn decode_object(path: &Path, bytes: &[u8], first: u64) -> Result<Object> {
    let bad = |message: String| not_a_save(path, &message);
    let save: Save = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if save.first != first {
        return Err(bad(format!(
            "its first notification id is {}, where {first} was expected",
            save.first,
        )));
    }
    if let Some(pack) = save.packed {
        let (Some(events), Some(pack_first_id)) = (save.packed_events, save.pack_first_id) else {
            return Err(bad(
                "a tombstone without its count of events or its pack's first id".into(),
            ));
        };
        if save.events.is_some() || !save.saves.is_empty() {
            return Err(bad("a tombstone that holds events".into()));
        }
        return Ok(Object::Packed(Tombstone {
            pack,
            pack_first_id,
            events,
            token: save.token,
        }));
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
    Ok(Object::Save(decoded))
}

/// A pack: the save objects of saves `first_save ..`, as they were
/// stored, whose first event has notification id `first_id`.
#[derive(Serialize, Deserialize)]
struct Pack<'a> {
    first_save: u64,
    first_id: u64,
    #[serde(borrow)]
    saves: Vec<&'a serde_json::value::RawValue>,
}

/// A pack of the save objects `saves` (as stored) of saves `first_save
/// ..`, the first of which has notification id `first_id`.
///
/// # Errors
///
/// A save object is not JSON (it was decoded before: it is).
pub(super) fn encode_pack(
    first_save: u64,
    first_id: u64,
    saves: &[bytes::Bytes],
) -> Result<Vec<u8>> {
    let bad = |e: serde_json::Error| Error::persistence("encoding a pack", e);
    let saves = saves
        .iter()
        .map(|bytes| serde_json::from_slice::<&serde_json::value::RawValue>(bytes))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad)?;
    serde_json::to_vec(&Pack {
        first_save,
        first_id,
        saves,
    })
    .map_err(bad)
}

/// The saves of the pack at `path`, which must hold save `first_save`
/// and those after it, the first with notification id `first_id`.
pub(super) fn decode_pack(
    path: &Path,
    bytes: &[u8],
    first_save: u64,
    first_id: u64,
) -> Result<Vec<Decoded>> {
    let pack: Pack<'_> =
        serde_json::from_slice(bytes).map_err(|e| not_a_save(path, &e.to_string()))?;
    if (pack.first_save, pack.first_id) != (first_save, first_id) {
        return Err(Error::persistence(
            format!("reading {path}"),
            format!(
                "it holds saves from {} (notification {}), where save {first_save} (notification {first_id}) was expected",
                pack.first_save, pack.first_id
            ),
        ));
    }
    if first_id == 0 {
        return Err(not_a_save(path, "its first notification id is 0"));
    }
    let mut first = first_id;
    let mut saves = Vec::with_capacity(pack.saves.len());
    for raw in pack.saves {
        let save = decode(path, raw.get().as_bytes(), first)?;
        first = first
            .checked_add(save.events.len() as u64)
            .ok_or_else(|| not_a_save(path, "its notification ids run past the greatest"))?;
        saves.push(save);
    }
    Ok(saves)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn save(first: u64) -> String {
        format!(
            r#"{{"first":{first},"events":[{{"id":"dog","version":1,"topic":"T","state":""}}]}}"#
        )
    }

    /// A corrupt or hostile pack (and the tombstone that names it) is an
    /// error naming it, never a panic: ids that start at 0 or run past
    /// the greatest.
    #[test]
    fn a_pack_of_impossible_ids_is_an_error() {
        let path = Path::from("app/events-packs/x");
        let zero = format!(r#"{{"first_save":1,"first_id":0,"saves":[{}]}}"#, save(1));
        let err = decode_pack(&path, zero.as_bytes(), 1, 0)
            .err()
            .expect("an error");
        assert!(err.to_string().contains("app/events-packs/x"), "{err}");
        let max = u64::MAX;
        let past = format!(
            r#"{{"first_save":1,"first_id":{max},"saves":[{},{}]}}"#,
            save(max),
            save(0)
        );
        let err = decode_pack(&path, past.as_bytes(), 1, max)
            .err()
            .expect("an error");
        assert!(err.to_string().contains("app/events-packs/x"), "{err}");
        let err = decode_object(&path, save(1).as_bytes(), 0)
            .err()
            .expect("an error");
        assert!(err.to_string().contains("app/events-packs/x"), "{err}");
    }
}
