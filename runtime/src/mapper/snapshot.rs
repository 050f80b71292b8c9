//! Snapshots: an aggregate's serde state and metadata under the topic
//! `"{Aggregate}"`, sealed as events are (the Python library's form is in
//! `python.rs`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::chain::{from_hex, to_hex};
use super::{
    decode_error, has_class_version, is_python_topic, json_object, json_text, stored_version,
    unknown_topic, upcast, Codec, Mapper,
};
use crate::clock::Timestamp;
use crate::domain::{Aggregate, AggregateId, AggregateState, EventInternals};
use crate::error::{Error, Result};
use crate::persistence::StoredEvent;

impl Mapper {
    /// The stored form of a snapshot of `aggregate`: its serde state and
    /// metadata, under the topic `"{Aggregate}"`.
    ///
    /// # Errors
    ///
    /// The aggregate cannot be snapshotted (its struct does not implement
    /// `Serialize` and `Deserialize`) or does not serialize; encryption
    /// errors.
    pub fn encode_snapshot<A: Aggregate>(&self, aggregate: &A) -> Result<StoredEvent> {
        if self.codec == Codec::Python {
            // Refused: the Python library cannot read a sealed field.
            self.sealing(A::__PERSONAL, String::new, A::NAME, A::NAME, || ())?;
            return self.encode_python_snapshot(aggregate);
        }
        let last_hash = aggregate.__meta().last_hash.as_ref().map(to_hex);
        let snapshot = SnapshotRef {
            timestamp: aggregate.modified_on(),
            created_on: aggregate.created_on(),
            class_version: (A::STATE_VERSION > 1).then_some(A::STATE_VERSION),
            last_hash,
            state: StateRef(aggregate),
        };
        let originator_id = aggregate.id().to_stored();
        if A::__PERSONAL && A::Event::__NAMED_SUBJECT && aggregate.__subject().is_none() {
            // Sealed under the aggregate's id, the snapshot would outlive a
            // forget of the subject its events name.
            return Err(Error::Encode {
                topic: A::NAME,
                aggregate: A::NAME,
                source: format!(
                    "{0}'s events name a #[subject], but its struct does not: mark the struct's \
                     field that holds the subject #[subject], so its snapshots' personal fields \
                     are sealed with that subject's key",
                    A::NAME
                )
                .into(),
            });
        }
        let json = self
            .sealing(
                A::__PERSONAL,
                || {
                    aggregate
                        .__subject()
                        .unwrap_or_else(|| aggregate.id().to_string())
                },
                A::NAME,
                A::NAME,
                || serde_json::to_vec(&snapshot),
            )?
            .map_err(|e| Error::Encode {
                topic: A::NAME,
                aggregate: A::NAME,
                source: Box::new(e),
            })?;
        let state = self
            .seal(json, &originator_id, aggregate.version(), A::NAME)
            .map_err(|e| Error::Encode {
                topic: A::NAME,
                aggregate: A::NAME,
                source: Box::new(e),
            })?;
        Ok(StoredEvent {
            originator_id,
            originator_version: aggregate.version(),
            topic: A::NAME.to_owned(),
            state,
        })
    }

    /// The aggregate that a stored snapshot holds, with its metadata.
    ///
    /// # Errors
    ///
    /// The state does not decrypt, decompress or deserialize; a snapshot
    /// version with no upcaster ([`Error::UnknownVersion`]).
    pub fn decode_snapshot<A: Aggregate>(&self, stored: &StoredEvent) -> Result<A> {
        if is_python_topic(&stored.topic) {
            return self.decode_python_snapshot(stored);
        }
        if stored.topic != A::NAME && !A::ALIASES.contains(&stored.topic.as_str()) {
            return Err(unknown_topic::<A>(&stored.topic, Some(&stored.topic)));
        }
        let id = A::Id::from_stored(&stored.originator_id)
            .map_err(|e| decode_error::<A>(stored, e.into()))?;
        let _keys = A::__PERSONAL.then(|| crate::personal::Opening::new(self.keys()));
        let json = self
            .open(stored)
            .map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
        let upcast_state = |json: &[u8]| -> Result<SnapshotOwned<A>> {
            let mut value = json_object::<A>(stored, json)?;
            let from = stored_version(&value);
            let object = value.as_object_mut().ok_or_else(|| {
                decode_error::<A>(stored, "a snapshot's state is not a JSON object".into())
            })?;
            let mut state = object.remove("state").unwrap_or_default();
            if !state.is_object() {
                return Err(decode_error::<A>(
                    stored,
                    "a snapshot's \"state\" is not a JSON object".into(),
                ));
            }
            upcast::<A>(&stored.topic, from, A::STATE_VERSION, |v| {
                A::__upcast_state(v, &mut state)
            })?;
            object.insert("state".into(), state);
            serde_json::from_value(value).map_err(|e| decode_error::<A>(stored, Box::new(e)))
        };
        let snapshot = if A::STATE_VERSION > 1 {
            upcast_state(&json)?
        } else {
            // Straight from the text; one that records a `class_version`
            // (a newer model's) is read again on the upcasting path, as is
            // one that does not fit and mentions it, so the error names
            // its version. Searching the text first cost a pass over the
            // whole state (240 KB in W4).
            match json_text(&json).and_then(serde_json::from_str::<SnapshotOwned<A>>) {
                Ok(snapshot) if snapshot.class_version.is_none() => snapshot,
                Err(e) if !has_class_version(&json) => {
                    return Err(decode_error::<A>(stored, Box::new(e)))
                }
                _ => upcast_state(&json)?,
            }
        };
        let last_hash = snapshot
            .last_hash
            .as_deref()
            .map(|hex| from_hex(hex.as_bytes()))
            .transpose()
            .map_err(|e| decode_error::<A>(stored, e.into()))?;
        let mut aggregate = snapshot.state.0;
        crate::domain::restore_meta(
            &mut aggregate,
            id,
            stored.originator_version,
            snapshot.created_on,
            snapshot.timestamp,
            last_hash,
        );
        Ok(aggregate)
    }
}

#[derive(Serialize)]
#[serde(bound = "")]
struct SnapshotRef<'a, A: AggregateState> {
    timestamp: Timestamp,
    created_on: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    class_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_hash: Option<String>,
    state: StateRef<'a, A>,
}

/// An aggregate's state, serialized by its `__serialize_state` (also for
/// the Python library's form).
pub(super) struct StateRef<'a, A>(pub(super) &'a A);

impl<A: AggregateState> Serialize for StateRef<'_, A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.__serialize_state(serializer)
    }
}

#[derive(Deserialize)]
#[serde(bound = "")]
struct SnapshotOwned<A: AggregateState> {
    timestamp: Timestamp,
    created_on: Timestamp,
    /// Whether the snapshot records a `class_version`, whatever its value
    /// (the upcasting path reads it).
    #[serde(default)]
    class_version: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    last_hash: Option<String>,
    state: StateOwned<A>,
}

struct StateOwned<A>(A);

impl<'de, A: AggregateState> Deserialize<'de> for StateOwned<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        A::__deserialize_state(deserializer).map(StateOwned)
    }
}
