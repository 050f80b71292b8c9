//! Snapshots in the Python library's layout (the Python codec).

use super::snapshot::StateRef;
use super::{decode_error, json_object, python_topic, upcast, Mapper, PYTHON_SNAPSHOT_TOPIC};
use crate::clock::Timestamp;
use crate::domain::{Aggregate, AggregateId};
use crate::error::{Error, Result};
use crate::persistence::StoredEvent;

impl Mapper {
    /// Python's snapshot: `{"timestamp", "topic": the class, "state": the
    /// fields with "_created_on", "_modified_on" (and "class_version")}`.
    ///
    /// Its topic is the class Python's `take_snapshot` would use: for UUID
    /// ids ([`AggregateId::IS_UUID`]) `eventsourcing.domain:Snapshot`
    /// (`Aggregate.Snapshot`), whose
    /// Python class takes UUIDs only; for any other id the aggregate's own
    /// `{class}.Snapshot`, whose state (taken from an aggregate that is not
    /// an `Aggregate`) also holds `_id`, `_version` and `_pending_events`.
    pub(super) fn encode_python_snapshot<A: Aggregate>(
        &self,
        aggregate: &A,
    ) -> Result<StoredEvent> {
        use crate::transcoding::Transcoded;
        let error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Encode {
            topic: PYTHON_SNAPSHOT_TOPIC,
            aggregate: A::NAME,
            source,
        };
        let class = python_topic::<A>(PYTHON_SNAPSHOT_TOPIC)?;
        let uuid_ids = <A::Id as AggregateId>::IS_UUID;
        let topic = if uuid_ids {
            PYTHON_SNAPSHOT_TOPIC.to_owned()
        } else {
            format!("{class}.Snapshot")
        };
        let python_value = |ts: Timestamp| -> Result<serde_json::Value> {
            let mut json = Vec::new();
            ts.serialize_python(&mut serde_json::Serializer::new(&mut json))
                .and_then(|()| serde_json::from_slice(&json))
                .map_err(|e| error(Box::new(e)))
        };
        let mut state =
            crate::transcoding::with_python(true, || serde_json::to_value(StateRef(aggregate)))
                .map_err(|e| error(Box::new(e)))?;
        let Some(fields) = state.as_object_mut() else {
            return Err(error(
                "the aggregate's state is not a JSON object, as Python's snapshot state must be"
                    .into(),
            ));
        };
        fields.insert("_created_on".into(), python_value(aggregate.created_on())?);
        fields.insert(
            "_modified_on".into(),
            python_value(aggregate.modified_on())?,
        );
        if !uuid_ids {
            // What Python's snapshot of a non-`Aggregate` holds; its
            // `mutate` sets them again, so they are written only to match.
            fields.insert("_id".into(), aggregate.id().to_stored().into());
            fields.insert("_version".into(), aggregate.version().into());
            fields.insert(
                "_pending_events".into(),
                serde_json::Value::Array(Vec::new()),
            );
        }
        if A::STATE_VERSION > 1 {
            fields.insert("class_version".into(), A::STATE_VERSION.into());
        }
        let snapshot = serde_json::json!({
            "timestamp": python_value(aggregate.modified_on())?,
            "topic": class,
            "state": state,
        });
        let json = serde_json::to_vec(&snapshot).map_err(|e| error(Box::new(e)))?;
        let originator_id = aggregate.id().to_stored();
        let state = self
            .seal(json, &originator_id, aggregate.version(), &topic)
            .map_err(|e| error(Box::new(e)))?;
        Ok(StoredEvent {
            originator_id,
            originator_version: aggregate.version(),
            topic,
            state,
        })
    }

    pub(super) fn decode_python_snapshot<A: Aggregate>(&self, stored: &StoredEvent) -> Result<A> {
        let bad = |message: String| decode_error::<A>(stored, message.into());
        let id = A::Id::from_stored(&stored.originator_id)
            .map_err(|e| decode_error::<A>(stored, e.into()))?;
        let json = self
            .open(stored)
            .map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
        let mut snapshot = json_object::<A>(stored, &json)?;
        let class = snapshot.get("topic").and_then(serde_json::Value::as_str);
        if class.is_none() || class != A::PYTHON_TOPIC {
            let class = class.unwrap_or("(none)").to_owned();
            return Err(Error::UnknownTopic {
                topic: format!("{} of {class}", stored.topic),
                aggregate: A::NAME,
                owner: Some(class),
            });
        }
        let Some(serde_json::Value::Object(mut state)) =
            snapshot.as_object_mut().and_then(|s| s.remove("state"))
        else {
            return Err(bad(
                "a Python snapshot's \"state\" is not a JSON object".into()
            ));
        };
        let mut timestamp = |key: &str| -> Result<Timestamp> {
            let value = state
                .remove(key)
                .ok_or_else(|| bad(format!("a Python snapshot's state has no {key:?}")))?;
            <Timestamp as crate::transcoding::Transcoded>::from_python(value)
                .map_err(|e| bad(format!("its {key:?}: {e}")))
        };
        let (created_on, modified_on) = (timestamp("_created_on")?, timestamp("_modified_on")?);
        // Python's snapshots of aggregates with string ids hold these too;
        // the row's columns say the same.
        for key in ["_id", "_version", "_pending_events"] {
            state.remove(key);
        }
        let from = state
            .remove("class_version")
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1);
        let mut state = serde_json::Value::Object(state);
        crate::transcoding::plain_builtins(&mut state).map_err(bad)?;
        upcast::<A>(&stored.topic, from, A::STATE_VERSION, |v| {
            A::__upcast_state(v, &mut state)
        })?;
        let mut aggregate =
            crate::transcoding::with_python(true, || A::__deserialize_state(state).map(|s: A| s))
                .map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
        crate::domain::restore_meta(
            &mut aggregate,
            id,
            stored.originator_version,
            created_on,
            modified_on,
            None,
        );
        Ok(aggregate)
    }
}
