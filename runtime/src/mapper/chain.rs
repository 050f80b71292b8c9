//! Hash chains: each event's hash covers the one before it, so a changed,
//! removed or reordered event shows.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::{Mapper, Subject, HASH_KEY, HASH_SUFFIX};
use crate::domain::EventHash;
use crate::error::Result;
use crate::persistence::StoredEvent;

impl Mapper {
    /// The hash a stored event records (the events of a hash-chained
    /// stream do), not checked; `None` when its state has no `_hash`, as
    /// when the stream was written without hash chaining.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) when the state does not open;
    /// [`Error::Integrity`](crate::Error::Integrity) when its `_hash` is malformed (not 64 hex
    /// digits at the state's end) or the state is not a JSON object: that
    /// is damage, not a stream without a chain.
    pub fn stored_hash(&self, stored: &StoredEvent) -> Result<Option<EventHash>> {
        let json = self.plain_state(stored)?;
        match recorded_hash(stored, &json, Subject::UNTYPED) {
            Ok((hash, _)) => Ok(Some(hash)),
            Err(e) => {
                let absent =
                    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json)
                        .is_ok_and(|state| !state.contains_key("_hash"));
                if absent {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// SHA-256 of the previous hash (zeros for a stream's first event), the
/// event's stored id, version and topic, and its JSON state (without the
/// hash).
pub(super) fn link_hash(
    prev: Option<&EventHash>,
    originator_id: &str,
    version: u64,
    topic: &str,
    content: &[&[u8]],
) -> EventHash {
    let mut hasher = Sha256::new();
    hasher.update(prev.unwrap_or(&[0; 32]));
    hasher.update(originator_id.as_bytes());
    hasher.update([0]);
    hasher.update(version.to_be_bytes());
    hasher.update(topic.as_bytes());
    hasher.update([0]);
    for part in content {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Checks the hash a stored state ends with; returns it.
/// The hash `json` records, and where its `,"_hash":..` begins.
pub(super) fn recorded_hash(
    stored: &StoredEvent,
    json: &[u8],
    subject: Subject,
) -> Result<(EventHash, usize)> {
    let broken = |message: &str| subject.broken(stored, message);
    let cut = json
        .len()
        .checked_sub(HASH_SUFFIX)
        .filter(|cut| json[*cut..].starts_with(HASH_KEY) && json.ends_with(b"\"}"));
    let Some(cut) = cut else {
        return Err(broken(
            "it records no hash (was the stream written without hash chaining?)",
        ));
    };
    let recorded = from_hex(&json[cut + HASH_KEY.len()..json.len() - 2])
        .map_err(|_| broken("its recorded hash is not 64 hex digits"))?;
    Ok((recorded, cut))
}

pub(super) fn verify_link(
    stored: &StoredEvent,
    json: &[u8],
    prev: Option<&EventHash>,
    subject: Subject,
) -> Result<EventHash> {
    let broken = |message: &str| subject.broken(stored, message);
    let (recorded, cut) = recorded_hash(stored, json, subject)?;
    let expected = link_hash(
        prev,
        &stored.originator_id,
        stored.originator_version,
        &stored.topic,
        &[&json[..cut], b"}"],
    );
    if recorded != expected {
        return Err(broken(
            "its hash does not match: it, or an event before it, was changed, removed or reordered",
        ));
    }
    Ok(recorded)
}

pub(super) fn to_hex(hash: &EventHash) -> String {
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(super) fn from_hex(hex: &[u8]) -> std::result::Result<EventHash, String> {
    let bad = || {
        format!(
            "{:?} is not a 64-digit hex hash",
            String::from_utf8_lossy(hex)
        )
    };
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut hash = [0; 32];
    for (byte, pair) in hash.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(hash)
}
