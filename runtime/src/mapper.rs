//! Converts domain events (and snapshots) to stored rows and back.
//!
//! A domain event's fields and timestamp become the stored `state` bytes:
//! compact JSON, then, if configured, zlib compression, then AES-GCM
//! encryption (compression first: ciphertext does not compress). Its
//! aggregate's id and version become the `originator_id` and
//! `originator_version` columns; its topic says which event it is.
//! Decoding is driven by the aggregate type, so a topic the type does not
//! know, bytes that do not decrypt, decompress or decode are errors that
//! name the topic and the aggregate.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Write;

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cipher::Cipher;
use crate::clock::Timestamp;
use crate::domain::{Aggregate, AggregateId, AggregateState, DomainEvent, Event};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::persistence::StoredEvent;

/// The setting that turns compression on.
pub const COMPRESSOR_TOPIC: &str = "COMPRESSOR_TOPIC";

/// How stored state is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compressor {
    /// zlib (deflate with a zlib header), as Python's `zlib.compress`.
    Zlib,
}

impl Compressor {
    /// The compressor that `COMPRESSOR_TOPIC` names: `zlib`, or the Python
    /// library's `eventsourcing.compressor:ZlibCompressor`.
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        let Some((var, topic)) = env.get(COMPRESSOR_TOPIC) else {
            return Ok(None);
        };
        match topic.trim() {
            "zlib" | "eventsourcing.compressor:ZlibCompressor" => Ok(Some(Compressor::Zlib)),
            other => Err(Error::config(
                var,
                format!("unknown compressor {other:?}; expected \"zlib\""),
            )),
        }
    }

    fn compress(self, data: &[u8]) -> Vec<u8> {
        // A deflate state is large (hundreds of KiB) and slow to set up:
        // each thread keeps one and resets it, instead of making one per
        // record (measured: about 10 µs per event before, see
        // docs/benchmarks.md).
        thread_local! {
            static ZLIB: RefCell<Compress> =
                RefCell::new(Compress::new(flate2::Compression::default(), true));
        }
        ZLIB.with(|z| {
            let mut z = z.borrow_mut();
            z.reset();
            let mut out = Vec::with_capacity(data.len() / 2 + 64);
            loop {
                let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX);
                let input = data.get(consumed..).unwrap_or_default();
                match z.compress_vec(input, &mut out, FlushCompress::Finish) {
                    Ok(Status::StreamEnd) => return out,
                    // Out of room: grow and go on.
                    Ok(_) => out.reserve(out.capacity().max(64)),
                    // Compressing in memory has no failure mode but a
                    // bug; fall back to a fresh encoder.
                    Err(_) => return fresh_compress(data),
                }
            }
        })
    }

    fn decompress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        thread_local! {
            static UNZLIB: RefCell<Decompress> = RefCell::new(Decompress::new(true));
        }
        UNZLIB.with(|z| {
            let mut z = z.borrow_mut();
            z.reset(true);
            let mut out = Vec::with_capacity(data.len() * 4 + 64);
            loop {
                let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX);
                let input = data.get(consumed..).unwrap_or_default();
                let before = (z.total_in(), z.total_out());
                let status = z
                    .decompress_vec(input, &mut out, FlushDecompress::None)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                match status {
                    Status::StreamEnd => return Ok(out),
                    _ if out.len() == out.capacity() => out.reserve(out.capacity()),
                    _ if (z.total_in(), z.total_out()) == before => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the zlib stream ends early",
                        ))
                    }
                    _ => {}
                }
            }
        })
    }
}

fn fresh_compress(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// Why stored bytes could not be turned back into state.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Decrypt(#[from] crate::cipher::DecryptError),
    #[error("cannot decompress (not zlib data: corrupt, or stored without compression): {0}")]
    Decompress(std::io::Error),
}

/// Encodes and decodes domain events and snapshots.
#[derive(Debug, Clone, Default)]
pub struct Mapper {
    compressor: Option<Compressor>,
    cipher: Option<Cipher>,
}

impl Mapper {
    /// A mapper that stores plain JSON.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compresses stored state.
    pub fn with_compressor(mut self, compressor: Option<Compressor>) -> Self {
        self.compressor = compressor;
        self
    }

    /// Encrypts stored state.
    pub fn with_cipher(mut self, cipher: Option<Cipher>) -> Self {
        self.cipher = cipher;
        self
    }

    /// JSON in, stored bytes out.
    fn seal(&self, json: Vec<u8>) -> Result<Vec<u8>> {
        let compressed = match self.compressor {
            Some(c) => c.compress(&json),
            None => json,
        };
        match &self.cipher {
            Some(cipher) => cipher.encrypt(&compressed),
            None => Ok(compressed),
        }
    }

    /// Stored bytes in, JSON out.
    fn open<'a>(&self, state: &'a [u8]) -> std::result::Result<Cow<'a, [u8]>, OpenError> {
        let plain = match &self.cipher {
            Some(cipher) => Cow::Owned(cipher.decrypt(state)?),
            None => Cow::Borrowed(state),
        };
        Ok(match self.compressor {
            Some(c) => Cow::Owned(c.decompress(&plain).map_err(OpenError::Decompress)?),
            None => plain,
        })
    }

    /// The stored form of a domain event.
    pub fn encode<A: Aggregate>(&self, domain_event: &DomainEvent<A>) -> Result<StoredEvent> {
        let topic = domain_event.topic();
        let mut json = Vec::with_capacity(64);
        domain_event
            .event
            .__serialize(
                &domain_event.timestamp,
                &mut serde_json::Serializer::new(&mut json),
            )
            .map_err(|e| Error::Encode {
                topic,
                aggregate: A::NAME,
                source: Box::new(e),
            })?;
        Ok(StoredEvent {
            originator_id: domain_event.originator_id.to_stored(),
            originator_version: domain_event.originator_version,
            topic: topic.to_owned(),
            state: self.seal(json)?,
        })
    }

    /// The domain event of aggregate type `A` that `stored` holds.
    pub fn decode<A: Aggregate>(&self, stored: &StoredEvent) -> Result<DomainEvent<A>> {
        let variant = A::Event::__variant_of(&stored.topic).ok_or_else(|| Error::UnknownTopic {
            topic: stored.topic.clone(),
            aggregate: A::NAME,
        })?;
        let originator_id = A::Id::from_stored(&stored.originator_id)
            .map_err(|e| decode_error::<A>(stored, e.into()))?;
        let json = self
            .open(&stored.state)
            .map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
        let mut deserializer = serde_json::Deserializer::from_slice(&json);
        let (event, timestamp) = A::Event::__deserialize(variant, &mut deserializer)
            .and_then(|decoded| deserializer.end().map(|()| decoded))
            .map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
        Ok(DomainEvent {
            originator_id,
            originator_version: stored.originator_version,
            timestamp,
            event,
        })
    }

    /// The stored form of a snapshot of `aggregate`: its serde state and
    /// metadata, under the topic `"{Aggregate}"`.
    pub fn encode_snapshot<A: Aggregate>(&self, aggregate: &A) -> Result<StoredEvent> {
        let snapshot = SnapshotRef {
            timestamp: aggregate.modified_on(),
            created_on: aggregate.created_on(),
            state: StateRef(aggregate),
        };
        let json = serde_json::to_vec(&snapshot).map_err(|e| Error::Encode {
            topic: A::NAME,
            aggregate: A::NAME,
            source: Box::new(e),
        })?;
        Ok(StoredEvent {
            originator_id: aggregate.id().to_stored(),
            originator_version: aggregate.version(),
            topic: A::NAME.to_owned(),
            state: self.seal(json)?,
        })
    }

    /// The aggregate that a stored snapshot holds, with its metadata.
    pub fn decode_snapshot<A: Aggregate>(&self, stored: &StoredEvent) -> Result<A> {
        if stored.topic != A::NAME {
            return Err(Error::UnknownTopic {
                topic: stored.topic.clone(),
                aggregate: A::NAME,
            });
        }
        let id = A::Id::from_stored(&stored.originator_id)
            .map_err(|e| decode_error::<A>(stored, e.into()))?;
        let json = self
            .open(&stored.state)
            .map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
        let snapshot: SnapshotOwned<A> =
            serde_json::from_slice(&json).map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
        let mut aggregate = snapshot.state.0;
        crate::domain::restore_meta(
            &mut aggregate,
            id,
            stored.originator_version,
            snapshot.created_on,
            snapshot.timestamp,
        );
        Ok(aggregate)
    }
}

fn decode_error<A: Aggregate>(
    stored: &StoredEvent,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> Error {
    Error::Decode {
        topic: stored.topic.clone(),
        aggregate: A::NAME,
        id: stored.originator_id.clone(),
        version: stored.originator_version,
        source,
    }
}

#[derive(Serialize)]
#[serde(bound = "")]
struct SnapshotRef<'a, A: AggregateState> {
    timestamp: Timestamp,
    created_on: Timestamp,
    state: StateRef<'a, A>,
}

struct StateRef<'a, A>(&'a A);

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
    state: StateOwned<A>,
}

struct StateOwned<A>(A);

impl<'de, A: AggregateState> Deserialize<'de> for StateOwned<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        A::__deserialize_state(deserializer).map(StateOwned)
    }
}
