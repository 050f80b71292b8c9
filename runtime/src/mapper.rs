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

use serde::Deserialize;

use crate::cipher::Cipher;
use crate::clock::Timestamp;
use crate::domain::{Aggregate, AggregateId, DomainEvent, Event, EventHash, EventInternals};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::persistence::StoredEvent;
use crate::personal::{self, KeyRing};
use std::sync::Arc;

mod chain;
mod compression;
mod python;
mod snapshot;

use chain::{link_hash, recorded_hash, to_hex, verify_link};
pub use compression::{Compressor, COMPRESSOR_TOPIC};

/// The largest state a compressed record may inflate to: 256 MiB.
pub const MAX_STATE: usize = 256 << 20;

/// The setting that chooses the codec.
// A copy of the setting's name, kept (hidden) for code written against it:
// the one documented name is `settings::CODEC`.
#[doc(hidden)]
pub const CODEC: &str = crate::settings::CODEC.name;

/// The topic of the Python library's snapshots of aggregates with UUID ids
/// (`Aggregate.Snapshot`); for other ids it is the aggregate's own
/// `{module}:{Class}.Snapshot`.
pub const PYTHON_SNAPSHOT_TOPIC: &str = "eventsourcing.domain:Snapshot";

/// The format events and snapshots are written in: annals' own (the
/// default), or the Python `eventsourcing` library's (9.5), for stores
/// shared with Python applications. Either codec reads both: a topic with a
/// `:` (`dogschool:Dog.Registered`) is the Python library's.
///
/// The Python codec writes Python's topics (the aggregate's
/// `#[aggregate(python = "module")]` and the event's name), the
/// transcoder's `{"_type_", "_data_"}` forms ([`crate::transcoding`]),
/// `originator_topic` in creation events, Python's snapshot shape, and
/// ciphertexts without associated data; it cannot chain hashes.
///
/// ```
/// use annals::env::Env;
/// use annals::mapper::Codec;
///
/// let env = Env::from_map("TrainingSchool", [("CODEC", "python")]);
/// assert_eq!(Codec::from_env(&env)?, Codec::Python);
/// let app = annals::Application::builder("TrainingSchool").codec(Codec::Python).build()?;
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// annals' own format.
    #[default]
    Annals,
    /// The Python `eventsourcing` library's format.
    Python,
}

impl Codec {
    /// The codec `CODEC` names: `annals` (the default) or `python`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable, for any other value.
    pub fn from_env(env: &Env) -> Result<Self> {
        match env.get(CODEC) {
            None => Ok(Codec::Annals),
            Some((var, value)) => match value.trim() {
                "annals" => Ok(Codec::Annals),
                "python" | "eventsourcing" => Ok(Codec::Python),
                other => Err(Error::config(
                    var,
                    format!("unknown codec {other:?}; expected \"annals\" or \"python\""),
                )),
            },
        }
    }
}

/// The variant of `A`'s events stored under `topic`, in annals' format or
/// the Python library's (`{A::PYTHON_TOPIC}.{event name}`).
pub fn variant_of<A: Aggregate>(topic: &str) -> Option<usize> {
    topic_variant::<A>(topic).0
}

/// The variant of `A`'s events stored under `topic`, and whether the topic
/// is the Python library's. An annals topic has no `:` (the macro refuses
/// one), so a topic that names a variant is known for annals' without the
/// search for `:` (~70 instructions an event, callgrind, W2).
fn topic_variant<A: Aggregate>(topic: &str) -> (Option<usize>, bool) {
    if let Some(variant) = A::Event::__variant_of(topic) {
        return (Some(variant), false);
    }
    if !is_python_topic(topic) {
        return (None, false);
    }
    let variant = A::PYTHON_TOPIC
        .and_then(|class| topic.strip_prefix(class)?.strip_prefix('.'))
        .and_then(|name| A::Event::NAMES.iter().position(|n| *n == name));
    (variant, true)
}

/// Whether `topic` is one the Python library writes (`module:Class...`).
///
/// ```
/// use annals::mapper::is_python_topic;
/// assert!(is_python_topic("dogschool:Dog.Registered"));
/// assert!(!is_python_topic("Dog.Registered"));
/// ```
pub fn is_python_topic(topic: &str) -> bool {
    // Tried: `memchr` (~114 instructions a call on a topic) and a byte
    // loop (~92) against this (~94): not worth a change (callgrind, W4).
    topic.contains(':')
}

/// The Python topic of `A`, or the error that says how to give it one.
fn python_topic<A: Aggregate>(topic: &'static str) -> Result<&'static str> {
    A::PYTHON_TOPIC.ok_or_else(|| Error::Encode {
        topic,
        aggregate: A::NAME,
        source: format!(
            "the Python codec needs the Python module of {0}: #[aggregate(python = \"module\")] on `impl {0}`",
            A::NAME
        )
        .into(),
    })
}

/// Why stored bytes could not be turned back into state.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Decrypt(#[from] crate::cipher::DecryptError),
    #[error("cannot decompress (not zlib data: corrupt, or stored without compression): {0}")]
    Decompress(std::io::Error),
    /// No cipher is set and the bytes do not open as zlib data does: an
    /// encrypted state (its random nonce comes first).
    #[error("cannot decompress: the state does not begin as zlib data does, so it is probably encrypted, and no CIPHER_KEY is set")]
    NoCipherKey,
}

/// Encodes and decodes domain events and snapshots. An application has
/// one (`app.mapper()`), made from its settings; make one directly to read
/// or write rows by hand.
///
/// ```
/// use annals::mapper::{Compressor, Mapper};
/// use annals::cipher::{create_key, Cipher};
/// # use annals::prelude::*;
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Dog { pub name: String }
/// # #[aggregate]
/// # impl Dog {
/// #     #[event("Registered")]
/// #     pub fn register(name: String) -> Self { Dog { name } }
/// # }
///
/// let mapper = Mapper::new()
///     .with_compressor(Some(Compressor::Zlib))
///     .with_cipher(Some(Cipher::from_base64(&create_key())?));
/// let dog = Dog::register("Fido".into());
/// let stored = mapper.encode(&dog.pending_events()[0])?;
/// assert_eq!((stored.topic.as_str(), stored.originator_version), ("Dog.Registered", 1));
/// let event = mapper.decode::<Dog>(&stored)?;
/// assert!(matches!(event.event, DogEvent::Registered { name } if name == "Fido"));
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Mapper {
    compressor: Option<Compressor>,
    cipher: Option<Cipher>,
    /// Ciphertexts not bound to their event (the Python library's layout).
    unbound: bool,
    hash_chain: bool,
    codec: Codec,
    /// The data keys of personal fields.
    keys: Option<Arc<KeyRing>>,
}

/// serde_json reads nesting up to this depth (its recursion limit, 128):
/// a state nested deeper is refused at save, as it could never be read.
const MAX_DEPTH: usize = 127;

/// How deep `json` nests arrays and objects (strings skipped).
fn nesting(json: &[u8]) -> usize {
    // Most states cannot be deep: shorter than the limit, or fewer
    // openers than it in all.
    if json.len() <= MAX_DEPTH || memchr::memchr2_iter(b'{', b'[', json).count() <= MAX_DEPTH {
        return 0;
    }
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// What binds a ciphertext to its row: the stored id, version and topic,
/// each after its length as 8 big-endian bytes; the AES-GCM associated data
/// of every state annals encrypts (unless told not to:
/// [`Mapper::with_associated_data`]).
pub fn associated_data(originator_id: &str, version: u64, topic: &str) -> Vec<u8> {
    let mut data = vec![0; associated_len(originator_id, topic)];
    write_associated_data(&mut data, originator_id, version, topic);
    data
}

/// The length of [`associated_data`]: three lengths and the version, 8
/// bytes each, and the two strings.
fn associated_len(originator_id: &str, topic: &str) -> usize {
    32 + originator_id.len() + topic.len()
}

/// Writes [`associated_data`] into `out`, exactly
/// [`associated_len`] bytes long.
fn write_associated_data(out: &mut [u8], originator_id: &str, version: u64, topic: &str) {
    let mut at = 0;
    for part in [
        originator_id.as_bytes(),
        &version.to_be_bytes(),
        topic.as_bytes(),
    ] {
        out[at..at + 8].copy_from_slice(&(part.len() as u64).to_be_bytes());
        out[at + 8..at + 8 + part.len()].copy_from_slice(part);
        at += 8 + part.len();
    }
}

/// Calls `f` with [`associated_data`], built on the stack when it fits
/// (the mapper's own seal and open: the allocation and its copies were a
/// third of the cost of binding, ~700 instructions a row, callgrind W2
/// zlib-aes).
fn with_associated_data<R>(
    originator_id: &str,
    version: u64,
    topic: &str,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    const ON_STACK: usize = 256;
    let len = associated_len(originator_id, topic);
    if len > ON_STACK {
        return f(&associated_data(originator_id, version, topic));
    }
    let mut buf = [0u8; ON_STACK];
    write_associated_data(&mut buf[..len], originator_id, version, topic);
    f(&buf[..len])
}

/// Why a state could not be sealed.
#[derive(Debug, thiserror::Error)]
enum SealError {
    #[error(
        "its JSON nests {0} levels deep, more than the {MAX_DEPTH} it could be read back with"
    )]
    TooDeep(usize),
    #[error("cannot compress it: {0}")]
    Compress(std::io::Error),
    #[error("cannot encrypt it: {0}")]
    Encrypt(String),
}

/// The topic an idempotency key's outcome is sealed under (its associated
/// data, with the key): no event's, which has a `.`.
const OUTCOME_TOPIC: &str = "idempotency key outcome";

/// `,"_hash":"` + 64 hex digits + `"}`: what a hash-chained state ends with.
const HASH_KEY: &[u8] = b",\"_hash\":\"";
const HASH_SUFFIX: usize = HASH_KEY.len() + 64 + 2;

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

    /// Whether each ciphertext is bound to its event (its stored id,
    /// version and topic as AES-GCM associated data; the default), so a
    /// state moved into another event does not decrypt. `false` writes and
    /// reads the Python library's unbound layout (and stores annals wrote
    /// before it bound them).
    pub fn with_associated_data(mut self, bound: bool) -> Self {
        self.unbound = !bound;
        self
    }

    /// Chains each stream's events by hash: every stored event records a
    /// hash of its own content and of the previous event's hash.
    pub fn with_hash_chain(mut self, on: bool) -> Self {
        self.hash_chain = on;
        self
    }

    /// Seals `#[personal]` fields with each subject's key from `keys`.
    pub(crate) fn with_keys(mut self, keys: Option<Arc<KeyRing>>) -> Self {
        self.keys = keys;
        self
    }

    /// The data keys of personal fields, if the application has them.
    pub(crate) fn keys(&self) -> Option<&Arc<KeyRing>> {
        self.keys.as_ref()
    }

    /// Runs `serialize` with the key of `subject` sealing personal fields
    /// when `personal`, refusing what cannot seal them.
    pub(crate) fn sealing<R>(
        &self,
        personal: bool,
        subject: impl FnOnce() -> String,
        topic: &'static str,
        aggregate: &'static str,
        serialize: impl FnOnce() -> R,
    ) -> Result<R> {
        if !personal {
            return Ok(serialize());
        }
        if self.codec == Codec::Python {
            return Err(Error::config(
                CODEC,
                format!(
                    "{topic} of {aggregate} has #[personal] fields, which the Python library \
                     cannot read: personal data needs annals' own codec (CODEC=annals)"
                ),
            ));
        }
        let Some(keys) = &self.keys else {
            return Err(Error::config(
                crate::settings::PERSONAL_DATA_KEY.name,
                format!(
                    "{topic} of {aggregate} has #[personal] fields: set PERSONAL_DATA_KEY (or \
                     CIPHER_KEY), the master key of the subjects' data keys, on a store that \
                     keeps them (memory, SQLite, PostgreSQL, MariaDB/MySQL, object)"
                ),
            ));
        };
        personal::sealing(keys, &subject(), serialize)
    }

    /// Whether streams are hash-chained.
    pub fn hash_chain(&self) -> bool {
        self.hash_chain
    }

    /// Writes events and snapshots in `codec`'s format (reading takes
    /// both).
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The format events and snapshots are written in.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// JSON in, the stored bytes of the row (id, version, topic) out.
    fn seal(
        &self,
        json: Vec<u8>,
        originator_id: &str,
        version: u64,
        topic: &str,
    ) -> std::result::Result<Vec<u8>, SealError> {
        let depth = nesting(&json);
        if depth > MAX_DEPTH {
            return Err(SealError::TooDeep(depth));
        }
        let compressed = match self.compressor {
            Some(c) => c.compress(&json).map_err(SealError::Compress)?,
            None => json,
        };
        match &self.cipher {
            // The Python library binds nothing.
            Some(cipher) if self.unbound || is_python_topic(topic) => cipher.encrypt(&compressed),
            Some(cipher) => with_associated_data(originator_id, version, topic, |associated| {
                cipher.encrypt_bound(&compressed, associated)
            }),
            None => Ok(compressed),
        }
        .map_err(|e| SealError::Encrypt(e.to_string()))
    }

    /// A stored row in, its JSON out.
    fn open<'a>(&self, stored: &'a StoredEvent) -> std::result::Result<Cow<'a, [u8]>, OpenError> {
        let state = &stored.state;
        let plain = match &self.cipher {
            Some(cipher) if self.unbound || is_python_topic(&stored.topic) => {
                Cow::Owned(cipher.decrypt(state)?)
            }
            Some(cipher) => Cow::Owned(with_associated_data(
                &stored.originator_id,
                stored.originator_version,
                &stored.topic,
                |associated| cipher.decrypt_bound(state, associated),
            )?),
            None => Cow::Borrowed(state.as_slice()),
        };
        Ok(match self.compressor {
            Some(c) => Cow::Owned(c.decompress(&plain).map_err(|e| {
                if self.cipher.is_none() && !Compressor::begins_stream(&plain) {
                    OpenError::NoCipherKey
                } else {
                    OpenError::Decompress(e)
                }
            })?),
            None => plain,
        })
    }

    /// The stored form of a domain event (the first of its stream's hash
    /// chain, if chaining is on; see [`encode_link`](Self::encode_link)).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when the event does not serialize; encryption
    /// errors.
    pub fn encode<A: Aggregate>(&self, domain_event: &DomainEvent<A>) -> Result<StoredEvent> {
        self.encode_link(domain_event, &mut None)
    }

    /// The stored form of a domain event that follows the event whose hash
    /// is `prev` in its stream; `prev` becomes this event's hash (when
    /// chaining is on).
    ///
    /// # Errors
    ///
    /// As [`encode`](Self::encode).
    pub fn encode_link<A: Aggregate>(
        &self,
        domain_event: &DomainEvent<A>,
        prev: &mut Option<EventHash>,
    ) -> Result<StoredEvent> {
        let topic = domain_event.topic();
        let python = self.codec == Codec::Python;
        let mut json = Vec::with_capacity(96);
        let event = &domain_event.event;
        self.sealing(
            event.__personal(),
            || {
                event
                    .__subject()
                    .unwrap_or_else(|| domain_event.originator_id.to_string())
            },
            topic,
            A::NAME,
            || {
                crate::transcoding::with_python(python, || {
                    event.__serialize(
                        &domain_event.header(),
                        &mut serde_json::Serializer::new(&mut json),
                    )
                })
            },
        )?
        .map_err(|e| Error::Encode {
            topic,
            aggregate: A::NAME,
            source: Box::new(e),
        })?;
        let originator_id = domain_event.originator_id.to_stored();
        let stored_topic = if python {
            if self.hash_chain {
                return Err(Error::Encode {
                    topic,
                    aggregate: A::NAME,
                    source: "the Python codec cannot chain hashes: the Python library would not read the hash".into(),
                });
            }
            let class = python_topic::<A>(topic)?;
            if domain_event.event.is_creation() {
                // Python rebuilds the aggregate from the class this names.
                let field = format!("\"originator_topic\":{},", serde_json::Value::from(class));
                json.splice(1..1, field.into_bytes());
                if json.ends_with(b",}") {
                    json.remove(json.len() - 2);
                }
            }
            Cow::Owned(format!("{class}.{}", domain_event.event.name()))
        } else {
            Cow::Borrowed(topic)
        };
        if self.hash_chain {
            let hash = link_hash(
                prev.as_ref(),
                &originator_id,
                domain_event.originator_version,
                topic,
                &[&json],
            );
            // `{...}` becomes `{...,"_hash":"<hex>"}`.
            json.pop();
            json.extend_from_slice(HASH_KEY);
            json.extend_from_slice(to_hex(&hash).as_bytes());
            json.extend_from_slice(b"\"}");
            *prev = Some(hash);
        }
        let version = domain_event.originator_version;
        let state = self
            .seal(json, &originator_id, version, &stored_topic)
            .map_err(|e| Error::Encode {
                topic,
                aggregate: A::NAME,
                source: Box::new(e),
            })?;
        Ok(StoredEvent {
            originator_id,
            originator_version: version,
            topic: stored_topic.into_owned(),
            state,
        })
    }

    /// The hash that a hash-chained event records (not checked: see
    /// [`decode_link`](Self::decode_link)), to check the event after it.
    ///
    /// # Errors
    ///
    /// The state does not open, or records no hash.
    pub fn recorded_hash<A: Aggregate>(&self, stored: &StoredEvent) -> Result<EventHash> {
        let json = self
            .open(stored)
            .map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
        recorded_hash(stored, &json, Subject::of::<A>()).map(|(hash, _)| hash)
    }

    /// The domain event of aggregate type `A` that `stored` holds (hashes,
    /// if any, are not checked; see [`decode_link`](Self::decode_link)).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`] for a topic that is not one of `A`'s;
    /// [`Error::Decode`] when the state does not decrypt, decompress or
    /// deserialize; [`Error::UnknownVersion`] for a version with no
    /// upcaster.
    pub fn decode<A: Aggregate>(&self, stored: &StoredEvent) -> Result<DomainEvent<A>> {
        self.decode_inner(stored, None, None)
    }

    /// The event `stored` holds, as whichever aggregate type of `V` its
    /// topic names (see [`AnyEvent`](macro@crate::AnyEvent)); hashes, if
    /// any, are not checked.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`] (naming `V`) for a topic of none of `V`'s
    /// types, unless `V` has an `#[other]` variant; as
    /// [`decode`](Self::decode).
    pub fn decode_any<V: crate::AnyEvent>(&self, stored: &StoredEvent) -> Result<V> {
        struct Stored<'a>(&'a Mapper, &'a StoredEvent);
        impl crate::any_event::Decoder for Stored<'_> {
            fn decode<A: Aggregate>(self) -> Result<DomainEvent<A>> {
                self.0.decode(self.1)
            }
        }
        V::__decode(&stored.topic, Stored(self, stored))
    }

    /// Like [`decode`](Self::decode), and when chaining is on, checks that
    /// the event's recorded hash is the hash of its content and of `prev`
    /// (the previous event's hash; `None` for a stream's first event), then
    /// sets `prev` to it. A broken link is an [`Error::Integrity`].
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode), and [`Error::Integrity`].
    pub fn decode_link<A: Aggregate>(
        &self,
        stored: &StoredEvent,
        prev: &mut Option<EventHash>,
    ) -> Result<DomainEvent<A>> {
        self.decode_inner(stored, self.hash_chain.then_some(prev), None)
    }

    /// [`decode_link`](Self::decode_link) of an event of the stream `id`
    /// (selected by it), whose stored id is then not parsed again.
    pub(crate) fn decode_replayed<A: Aggregate>(
        &self,
        id: &A::Id,
        stored: &StoredEvent,
        prev: &mut Option<EventHash>,
    ) -> Result<DomainEvent<A>> {
        self.decode_inner(stored, self.hash_chain.then_some(prev), Some(id))
    }

    fn decode_inner<A: Aggregate>(
        &self,
        stored: &StoredEvent,
        chain: Option<&mut Option<EventHash>>,
        id: Option<&A::Id>,
    ) -> Result<DomainEvent<A>> {
        let (variant, python) = topic_variant::<A>(&stored.topic);
        let variant = variant.ok_or_else(|| {
            let named = if python {
                stored.topic.rsplit_once('.')
            } else {
                stored.topic.split_once('.')
            };
            let named = named.map(|(name, _)| name);
            unknown_topic::<A>(&stored.topic, named)
        })?;
        let originator_id = match id {
            Some(id) => id.clone(),
            None => A::Id::from_stored(&stored.originator_id)
                .map_err(|e| decode_error::<A>(stored, e.into()))?,
        };
        let json = self
            .open(stored)
            .map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
        if let Some(prev) = chain {
            *prev = Some(verify_link(
                stored,
                &json,
                prev.as_ref(),
                Subject::of::<A>(),
            )?);
        }
        let current = A::Event::VERSIONS[variant];
        let _python = crate::transcoding::PythonScope::new(python);
        let _keys = A::Event::__PERSONAL.then(|| personal::Opening::new(self.keys.as_ref()));
        let upcast_value = |mut value: serde_json::Value| {
            let from = stored_version(&value);
            upcast::<A>(&stored.topic, from, current, |v| {
                A::Event::__upcast(variant, v, &mut value)
            })?;
            A::Event::__deserialize(variant, value)
                .map_err(|e| decode_error::<A>(stored, Box::new(e)))
        };
        let (event, header, _) = if python {
            // Python's `_type_` forms of UUIDs and datetimes become what
            // serde expects; fields that say `with = "python"` read the rest.
            let mut value = json_object::<A>(stored, &json)?;
            crate::transcoding::plain_builtins(&mut value)
                .map_err(|e| decode_error::<A>(stored, e.into()))?;
            upcast_value(value)?
        } else if current > 1 {
            upcast_value(json_object::<A>(stored, &json)?)?
        } else {
            // Straight from the text; a state that records a
            // `class_version` (the derive sees every key) is read again
            // on the upcasting path, as is one that does not fit and may
            // be a newer version's (so the error says which). Searching
            // every text for the key first cost ~117 instructions an event
            // (callgrind, W2).
            let direct = json_text(&json).and_then(|text| {
                let mut deserializer = serde_json::Deserializer::from_str(text);
                A::Event::__deserialize(variant, &mut deserializer)
                    .and_then(|decoded| deserializer.end().map(|()| decoded))
            });
            match direct {
                Ok(decoded) if !decoded.2 => decoded,
                Err(e) if !has_class_version(&json) => {
                    return Err(decode_error::<A>(stored, Box::new(e)))
                }
                _ => upcast_value(json_object::<A>(stored, &json)?)?,
            }
        };
        Ok(DomainEvent {
            originator_id,
            originator_version: stored.originator_version,
            timestamp: header.timestamp,
            correlation_id: header.correlation_id,
            causation_id: header.causation_id,
            event,
        })
    }

    /// The JSON that a stored event or snapshot holds, decrypted and
    /// decompressed with this mapper's settings: for tools that know no
    /// aggregate type (the `annals` command line). The JSON is as written,
    /// in either codec, with its hash if the stream is chained.
    ///
    /// ```
    /// use annals::mapper::{Compressor, Mapper};
    /// use annals::persistence::StoredEvent;
    ///
    /// let zlib = Mapper::new().with_compressor(Some(Compressor::Zlib));
    /// let row = StoredEvent {
    ///     originator_id: "dog-1".into(),
    ///     originator_version: 1,
    ///     topic: "Dog.Registered".into(),
    ///     state: br#"{"name":"Fido"}"#.to_vec(),
    /// };
    /// let sealed = StoredEvent { state: zlib.seal_state(&row)?, ..row.clone() };
    /// assert_ne!(sealed.state, row.state);
    /// assert_eq!(zlib.plain_state(&sealed)?, row.state);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] (naming the stream and version) when the state
    /// does not decrypt or decompress. A tombstone's state (a stream
    /// ended for good: [`crate::ending`]) is plain JSON as stored, and
    /// is returned as it is.
    pub fn plain_state(&self, stored: &StoredEvent) -> Result<Vec<u8>> {
        if annals_core::ending::is_tombstone(&stored.topic) {
            // A tombstone is stored as plain JSON, whatever the settings.
            return Ok(stored.state.clone());
        }
        self.open(stored)
            .map(Cow::into_owned)
            .map_err(|e| Subject::UNTYPED.decode_error(stored, Box::new(e)))
    }

    /// The stored bytes of `plain`, whose state is plain JSON (from
    /// [`plain_state`](Self::plain_state)), compressed and encrypted with
    /// this mapper's settings: the inverse of `plain_state`, so a tool can
    /// move rows between stores whose settings differ. The JSON is not
    /// changed, so a hash chain still holds.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when the state is nested too deeply or does not
    /// compress or encrypt.
    pub fn seal_state(&self, plain: &StoredEvent) -> Result<Vec<u8>> {
        if annals_core::ending::is_tombstone(&plain.topic) {
            return Ok(plain.state.clone());
        }
        self.seal(
            plain.state.clone(),
            &plain.originator_id,
            plain.originator_version,
            &plain.topic,
        )
        .map_err(|e| Error::Encode {
            topic: "stored event",
            aggregate: "stream",
            source: Box::new(e),
        })
    }

    /// The stored form of `outcome`, the outcome of a command with
    /// idempotency key `key` (`Application::execute_once`): its JSON,
    /// compressed and encrypted as event states are, bound to the key
    /// (so an outcome moved to another key does not decrypt).
    pub(crate) fn seal_outcome<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        outcome: &T,
    ) -> Result<Vec<u8>> {
        let encode = |source: Box<dyn std::error::Error + Send + Sync>| Error::Encode {
            topic: OUTCOME_TOPIC,
            aggregate: std::any::type_name::<T>(),
            source,
        };
        let json = serde_json::to_vec(outcome).map_err(|e| encode(Box::new(e)))?;
        self.seal(json, key, 0, OUTCOME_TOPIC)
            .map_err(|e| encode(Box::new(e)))
    }

    /// The outcome stored with idempotency key `key`, opened and
    /// deserialized: the inverse of [`seal_outcome`](Self::seal_outcome).
    pub(crate) fn open_outcome<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        stored: Vec<u8>,
    ) -> Result<T> {
        let stored = StoredEvent {
            originator_id: key.to_owned(),
            originator_version: 0,
            topic: OUTCOME_TOPIC.to_owned(),
            state: stored,
        };
        let decode = |source: Box<dyn std::error::Error + Send + Sync>| Error::Decode {
            topic: OUTCOME_TOPIC.to_owned(),
            aggregate: std::any::type_name::<T>(),
            id: format!("{key:?}"),
            version: 0,
            source,
        };
        let json = self.open(&stored).map_err(|e| decode(Box::new(e)))?;
        serde_json::from_slice(&json).map_err(|e| decode(Box::new(e)))
    }

    /// Checks one link of a hash-chained stream whose type is not known:
    /// that `stored`'s recorded hash is the hash of its content and of
    /// `prev` (the previous event's hash; `None` for the first event),
    /// then sets `prev` to it. Errors name the stream as `stream <id>`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when the state does not open;
    /// [`Error::Integrity`] when the link does not hold.
    pub fn check_link(&self, stored: &StoredEvent, prev: &mut Option<EventHash>) -> Result<()> {
        let json = self.plain_state(stored)?;
        *prev = Some(verify_link(stored, &json, prev.as_ref(), Subject::UNTYPED)?);
        Ok(())
    }

    /// The metadata of a stored event, whatever its type.
    ///
    /// # Errors
    ///
    /// The state does not decrypt, decompress or parse.
    pub fn header(&self, stored: &StoredEvent) -> Result<crate::domain::Header> {
        #[derive(Deserialize)]
        struct Fields {
            // Either codec's form: Python's is `{"_type_": "datetime_iso", ..}`.
            #[serde(deserialize_with = "crate::clock::stored::deserialize")]
            timestamp: Timestamp,
            #[serde(default)]
            correlation_id: Option<uuid::Uuid>,
            #[serde(default)]
            causation_id: Option<uuid::Uuid>,
        }
        let error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Decode {
            topic: stored.topic.clone(),
            aggregate: "(any)",
            id: stored.originator_id.clone(),
            version: stored.originator_version,
            source,
        };
        let json = self.open(stored).map_err(|e| error(Box::new(e)))?;
        let fields: Fields = serde_json::from_slice(&json).map_err(|e| error(Box::new(e)))?;
        Ok(crate::domain::Header {
            timestamp: fields.timestamp,
            correlation_id: fields.correlation_id,
            causation_id: fields.causation_id,
        })
    }
}

/// Stored JSON that must be an object (upcasters index into it).
fn json_object<A: Aggregate>(stored: &StoredEvent, json: &[u8]) -> Result<serde_json::Value> {
    let value: serde_json::Value = json_text(json)
        .and_then(serde_json::from_str)
        .map_err(|e| decode_error::<A>(stored, Box::new(e)))?;
    if !value.is_object() {
        return Err(decode_error::<A>(
            stored,
            "the stored state is not a JSON object".into(),
        ));
    }
    Ok(value)
}

/// `json` as text, checked as UTF-8 in one pass: serde_json's `from_str`
/// then takes each string as it is, where `from_slice` checks each one
/// again (~300 instructions an event of W2, callgrind).
pub(crate) fn json_text(json: &[u8]) -> serde_json::Result<&str> {
    std::str::from_utf8(json)
        .map_err(|e| serde::de::Error::custom(format_args!("the stored JSON is not UTF-8: {e}")))
}

/// The `class_version` a stored state records (1 when it records none).
fn stored_version(value: &serde_json::Value) -> u32 {
    value
        .get("class_version")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(1)
}

/// Runs the upcasters from version `from` up to `current`.
fn upcast<A: Aggregate>(
    topic: &str,
    from: u32,
    current: u32,
    mut step: impl FnMut(u32) -> bool,
) -> Result<()> {
    if from > current {
        return Err(Error::UnknownVersion {
            topic: topic.to_owned(),
            aggregate: A::NAME,
            stored: from,
            known: current,
        });
    }
    for version in from..current {
        if !step(version) {
            return Err(Error::UnknownVersion {
                topic: topic.to_owned(),
                aggregate: A::NAME,
                stored: version,
                known: current,
            });
        }
    }
    Ok(())
}

/// Whether a state records a `class_version` (so needs the upcasting
/// path). The searcher is built once: building it per call cost more than
/// the search (callgrind: ~800 instructions of a ~8,000-instruction get
/// per event).
fn has_class_version(json: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"class_version\""));
    FINDER.find(json).is_some()
}

/// A topic `A` does not know; `named` is the aggregate name it carries.
fn unknown_topic<A: Aggregate>(topic: &str, named: Option<&str>) -> Error {
    let owner = named
        .filter(|name| !name.is_empty() && *name != A::NAME && !A::ALIASES.contains(name))
        .map(str::to_owned);
    Error::UnknownTopic {
        topic: topic.to_owned(),
        aggregate: A::NAME,
        owner,
    }
}

/// `stored` as `A`'s id type displays it (UUIDs hyphenated), as every
/// error shows ids.
fn shown_id<A: Aggregate>(stored: &str) -> String {
    A::Id::from_stored(stored).map_or_else(|_| stored.to_owned(), |id| id.to_string())
}

/// Whose stream an error names: an aggregate type, or (for tools that
/// know no type) just "stream".
#[derive(Clone, Copy)]
struct Subject {
    aggregate: &'static str,
    shown_id: fn(&str) -> String,
}

impl Subject {
    fn of<A: Aggregate>() -> Self {
        Self {
            aggregate: A::NAME,
            shown_id: shown_id::<A>,
        }
    }

    const UNTYPED: Self = Self {
        aggregate: "stream",
        shown_id: str::to_owned,
    };

    fn broken(self, stored: &StoredEvent, message: &str) -> Error {
        Error::Integrity {
            aggregate: self.aggregate,
            id: (self.shown_id)(&stored.originator_id),
            version: stored.originator_version,
            message: message.to_owned(),
        }
    }

    fn decode_error(
        self,
        stored: &StoredEvent,
        source: Box<dyn std::error::Error + Send + Sync>,
    ) -> Error {
        Error::Decode {
            topic: stored.topic.clone(),
            aggregate: self.aggregate,
            id: (self.shown_id)(&stored.originator_id),
            version: stored.originator_version,
            source,
        }
    }
}

fn decode_error<A: Aggregate>(
    stored: &StoredEvent,
    source: Box<dyn std::error::Error + Send + Sync>,
) -> Error {
    Subject::of::<A>().decode_error(stored, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &[u8]) -> StoredEvent {
        StoredEvent {
            originator_id: "dog-1".into(),
            originator_version: 1,
            topic: "dogschool:Dog.Registered".into(),
            state: state.to_vec(),
        }
    }

    #[test]
    fn the_header_reads_pythons_timestamp_form() {
        let python = row(
            br#"{"timestamp":{"_type_":"datetime_iso","_data_":"2024-05-06T07:08:09.123456+00:00"},"name":"Fido"}"#,
        );
        let header = Mapper::new().header(&python).expect("Python's header");
        assert_eq!(
            header.timestamp.to_rfc3339(),
            "2024-05-06T07:08:09.123456+00:00"
        );
        let annals = row(br#"{"timestamp":"2024-05-06T07:08:09.123456000Z","name":"Fido"}"#);
        assert_eq!(
            Mapper::new()
                .header(&annals)
                .expect("annals' header")
                .timestamp,
            header.timestamp
        );
    }

    #[test]
    fn an_encrypted_state_read_without_a_key_says_the_key_is_missing() {
        let key = crate::cipher::create_key();
        let sealed_with = |mapper: &Mapper| {
            let plain = row(br#"{"timestamp":"2024-05-06T07:08:09Z"}"#);
            row(&mapper.seal_state(&plain).expect("seal"))
        };
        let zlib = Mapper::new().with_compressor(Some(Compressor::Zlib));
        let both = zlib
            .clone()
            .with_cipher(Some(Cipher::from_base64(&key).expect("a key")));
        let message = zlib
            .plain_state(&sealed_with(&both))
            .expect_err("no key")
            .report()
            .to_string();
        assert!(
            message.contains("encrypted") && message.contains("CIPHER_KEY"),
            "{message}"
        );
        // Compressed but not encrypted, and damaged: not about a key.
        let mut damaged = sealed_with(&zlib);
        damaged.state.truncate(damaged.state.len() / 2);
        let message = zlib
            .plain_state(&damaged)
            .expect_err("damaged")
            .report()
            .to_string();
        assert!(!message.contains("CIPHER_KEY"), "{message}");
    }

    #[test]
    fn only_an_absent_hash_is_unchained() {
        let mapper = Mapper::new();
        let unchained = row(br#"{"timestamp":"2024-05-06T07:08:09Z"}"#);
        assert_eq!(mapper.stored_hash(&unchained).expect("no hash"), None);
        for damaged in [
            &br#"{"timestamp":"2024-05-06T07:08:09Z","_hash":"00ff"}"#[..],
            br#"{"_hash":"zz","timestamp":"2024-05-06T07:08:09Z"}"#,
            br#"{"timestamp":"2024-05-06T07:08:09Z","_hash":"#,
        ] {
            let error = mapper
                .stored_hash(&row(damaged))
                .expect_err("a malformed hash is damage");
            assert!(
                matches!(error, Error::Integrity { .. }),
                "{}",
                error.report()
            );
        }
    }

    proptest::proptest! {
        /// The associated data, on the stack and on the heap (both sides
        /// of the stack buffer's size), is each part after its length as
        /// 8 big-endian bytes.
        #[test]
        fn associated_data_is_each_part_after_its_length(
            id in ".{0,160}",
            version: u64,
            topic in ".{0,160}",
        ) {
            let mut expected = Vec::new();
            for part in [id.as_bytes(), &version.to_be_bytes(), topic.as_bytes()] {
                expected.extend_from_slice(&(part.len() as u64).to_be_bytes());
                expected.extend_from_slice(part);
            }
            let on_stack = with_associated_data(&id, version, &topic, <[u8]>::to_vec);
            proptest::prop_assert_eq!(&on_stack, &expected);
            proptest::prop_assert_eq!(associated_data(&id, version, &topic), expected);
        }
    }
}
