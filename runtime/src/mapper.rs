//! Converts domain events to stored events and back.
//!
//! A domain event's fields and timestamp become the stored `state` bytes
//! (compact JSON); its aggregate's id and version become the
//! `originator_id` and `originator_version` columns; its topic says which
//! event it is. Decoding is driven by the aggregate type, so a topic the
//! type does not know, or state bytes that do not decode, are errors that
//! name the topic and the aggregate.

use crate::domain::{Aggregate, AggregateId, DomainEvent, Event};
use crate::error::{Error, Result};
use crate::persistence::StoredEvent;

/// Encodes and decodes domain events.
#[derive(Debug, Clone, Default)]
pub struct Mapper {
    _private: (),
}

impl Mapper {
    /// A mapper that stores events as JSON.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored form of a domain event.
    pub fn encode<A: Aggregate>(&self, domain_event: &DomainEvent<A>) -> Result<StoredEvent> {
        let topic = domain_event.topic();
        let mut state = Vec::with_capacity(64);
        let mut serializer = serde_json::Serializer::new(&mut state);
        domain_event
            .event
            .__serialize(&domain_event.timestamp, &mut serializer)
            .map_err(|e| Error::Encode {
                topic,
                aggregate: A::NAME,
                source: Box::new(e),
            })?;
        Ok(StoredEvent {
            originator_id: domain_event.originator_id.to_stored(),
            originator_version: domain_event.originator_version,
            topic: topic.to_owned(),
            state,
        })
    }

    /// The domain event of aggregate type `A` that `stored` holds.
    pub fn decode<A: Aggregate>(&self, stored: &StoredEvent) -> Result<DomainEvent<A>> {
        let decode_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Decode {
            topic: stored.topic.clone(),
            aggregate: A::NAME,
            id: stored.originator_id.clone(),
            version: stored.originator_version,
            source,
        };
        let variant = A::Event::__variant_of(&stored.topic).ok_or_else(|| Error::UnknownTopic {
            topic: stored.topic.clone(),
            aggregate: A::NAME,
        })?;
        let originator_id =
            A::Id::from_stored(&stored.originator_id).map_err(|e| decode_error(e.into()))?;
        let mut deserializer = serde_json::Deserializer::from_slice(&stored.state);
        let (event, timestamp) = A::Event::__deserialize(variant, &mut deserializer)
            .and_then(|decoded| deserializer.end().map(|()| decoded))
            .map_err(|e| decode_error(Box::new(e)))?;
        Ok(DomainEvent {
            originator_id,
            originator_version: stored.originator_version,
            timestamp,
            event,
        })
    }
}
