//! Mutations of bytes, of JSON trees and of rows.

use annals::json::{json, Value};
use annals::persistence::StoredEvent;
use annals::prelude::*;

use crate::corpus::string;

const INTERESTING_BYTES: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xc0, 0xc1, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xfe, 0xff, b'"', b'\\',
    b'{', b'}', b'[', b']', b',', b':', b'0', b'9', b'-', b'e', b'.', b' ',
];

/// Fragments that make JSON (or its neighbourhood) interesting.
const FRAGMENTS: &[&[u8]] = &[
    b"null",
    b"true",
    b"1e308",
    b"-1e308",
    b"1e309",
    b"1e-400",
    b"-0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"123456789012345678901234567890123456789",
    b"0.0000000000000000000000000000001",
    b"NaN",
    b"Infinity",
    b"\"\\ud800\"",
    b"\"\\udfff\\ud800\"",
    b"\"\\u0000\"",
    b"\"\xff\xfe\"",
    b"\"\xed\xa0\x80\"",
    b"\xc3",
    b"\"class_version\":",
    b"\"class_version\":0,",
    b"\"class_version\":4294967296,",
    b"\"_hash\":\"",
    b",\"_hash\":\"",
    b"\"timestamp\":",
    b"\"state\":",
    b"\"last_hash\":",
    b"2026-11-23T13:16:20.123456789Z",
    b"9999-12-31T23:59:60.999999999Z",
    b"0000-00-00T00:00:00Z",
    b"+275760-09-13T00:00:00Z",
    b"[[[[[[[[[[[[[[[[",
    b"]]]]]]]]",
    b"{\"\":{\"\":{\"\":",
    b"\x1f\x8b",
    b"\x78\x9c",
    b"\x78\xda",
];

/// A length for long runs: mostly short (a debug build decrypts slowly),
/// now and then long.
fn long(rng: &mut fastrand::Rng) -> usize {
    match rng.usize(..64) {
        0 => 100_000,
        1..=4 => 10_000,
        _ => rng.usize(..1_000),
    }
}

/// A byte-level mutation of `data`; `others` are other records' bytes of
/// the same layer, to splice from.
pub(crate) fn mutate_bytes(rng: &mut fastrand::Rng, data: &mut Vec<u8>, others: &[&[u8]]) {
    let choice = rng.usize(..13);
    let len = data.len();
    match choice {
        // Flip one to eight bits.
        0 if len > 0 => {
            for _ in 0..rng.usize(1..=8) {
                let at = rng.usize(..len);
                data[at] ^= 1 << rng.u8(..8);
            }
        }
        // Set a byte to an interesting or random value.
        1 if len > 0 => {
            let at = rng.usize(..len);
            data[at] = if rng.bool() {
                INTERESTING_BYTES[rng.usize(..INTERESTING_BYTES.len())]
            } else {
                rng.u8(..)
            };
        }
        // Truncate.
        2 => data.truncate(rng.usize(..=len)),
        // Extend with random bytes.
        3 => data.extend((0..rng.usize(1..64)).map(|_| rng.u8(..))),
        // Insert random or interesting bytes.
        4 => {
            let at = rng.usize(..=len);
            let insert: Vec<u8> = (0..rng.usize(1..16))
                .map(|_| INTERESTING_BYTES[rng.usize(..INTERESTING_BYTES.len())])
                .collect();
            data.splice(at..at, insert);
        }
        // Delete a range.
        5 if len > 0 => {
            let from = rng.usize(..len);
            let to = rng.usize(from..=len);
            data.drain(from..to);
        }
        // Duplicate a range.
        6 if len > 0 => {
            let from = rng.usize(..len);
            let to = rng.usize(from..=len.min(from + 64));
            let copy = data[from..to].to_vec();
            let at = rng.usize(..=data.len());
            data.splice(at..at, copy);
        }
        // Splice in a range of another record.
        7 if !others.is_empty() => {
            let other = others[rng.usize(..others.len())];
            let from = rng.usize(..=other.len());
            let to = rng.usize(from..=other.len());
            let at = rng.usize(..=len);
            let end = rng.usize(at..=len);
            data.splice(at..end, other[from..to].iter().copied());
        }
        // Another record's bytes whole, or its head with our tail.
        8 if !others.is_empty() => {
            let other = others[rng.usize(..others.len())];
            let cut = rng.usize(..=other.len().min(len));
            let mut mixed = other[..cut].to_vec();
            mixed.extend_from_slice(data.get(cut..).unwrap_or_default());
            *data = mixed;
        }
        // Random bytes.
        9 => *data = (0..rng.usize(..96)).map(|_| rng.u8(..)).collect(),
        // An interesting fragment, inserted or overwriting.
        10 => {
            let fragment = FRAGMENTS[rng.usize(..FRAGMENTS.len())];
            let at = rng.usize(..=len);
            let end = if rng.bool() { at } else { rng.usize(at..=len) };
            data.splice(at..end, fragment.iter().copied());
        }
        // Repeat a byte many times (long runs, deep nesting).
        11 => {
            let byte = [b'[', b'{', b'"', b'0', b'9', b' '][rng.usize(..6)];
            let count = [127, 128, 129, long(rng)][rng.usize(..4)];
            let at = rng.usize(..=len);
            data.splice(at..at, std::iter::repeat_n(byte, count));
        }
        // Empty.
        _ => data.clear(),
    }
}

/// A value of another type (or a hostile one of the same type).
fn hostile_value(rng: &mut fastrand::Rng, depth: usize) -> Value {
    match rng.usize(..16) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(f64::MAX),
        5 => json!(-0.0),
        6 => json!(rng.u32(..)),
        7 => json!(rng.i64(..)),
        8 => Value::String(string(rng)),
        9 => Value::String("x".repeat(long(rng))),
        10 => json!("2026-11-23T13:16:20.123456789Z"),
        11 => json!(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{}Z",
            rng.u32(..10_000),
            rng.u32(..14),
            rng.u32(..33),
            rng.u32(..26),
            rng.u32(..62),
            rng.u32(..62),
            rng.u32(..)
        )),
        12 if depth < 4 => Value::Array(
            (0..rng.usize(..4))
                .map(|_| hostile_value(rng, depth + 1))
                .collect(),
        ),
        13 if depth < 4 => Value::Object(
            (0..rng.usize(..4))
                .map(|_| (string(rng), hostile_value(rng, depth + 1)))
                .collect(),
        ),
        14 => {
            // Nested deeper than serde_json reads (128), or just under.
            let depth = [126, 127, 128, 200][rng.usize(..4)];
            (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
        }
        _ => json!(Uuid::from_u128(rng.u128(..)).to_string()),
    }
}

/// A mutable reference to a random node of `value`.
fn random_node<'a>(rng: &mut fastrand::Rng, value: &'a mut Value) -> &'a mut Value {
    let descend = rng.usize(..3) > 0;
    let len = match value {
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        _ => 0,
    };
    if !descend || len == 0 {
        return value;
    }
    let index = rng.usize(..len);
    match value {
        Value::Array(items) => random_node(rng, &mut items[index]),
        Value::Object(map) => {
            let child = map.values_mut().nth(index).expect("in range");
            random_node(rng, child)
        }
        other => other,
    }
}

/// A mutation of the JSON tree of `json` (valid JSON), written back.
pub(crate) fn mutate_json(rng: &mut fastrand::Rng, json: &[u8]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(json).ok()?;
    for _ in 0..rng.usize(1..4) {
        let node = random_node(rng, &mut value);
        match rng.usize(..6) {
            // Replace with a value of another type.
            0..=2 => *node = hostile_value(rng, 0),
            // Remove a key or an item.
            3 => match node {
                Value::Object(map) if !map.is_empty() => {
                    let key = map.keys().nth(rng.usize(..map.len())).cloned();
                    if let Some(key) = key {
                        map.remove(&key);
                    }
                }
                Value::Array(items) if !items.is_empty() => {
                    items.remove(rng.usize(..items.len()));
                }
                _ => *node = Value::Null,
            },
            // Add a key: unknown, or one the codec reads.
            4 => {
                if let Value::Object(map) = node {
                    let key = [
                        "class_version",
                        "_hash",
                        "timestamp",
                        "state",
                        "last_hash",
                        "created_on",
                        "correlation_id",
                        "causation_id",
                        "unknown",
                    ][rng.usize(..9)];
                    map.insert(key.to_owned(), hostile_value(rng, 0));
                } else {
                    *node = json!({});
                }
            }
            // Wrap in an array or object.
            _ => {
                let inner = node.take();
                *node = if rng.bool() {
                    json!([inner])
                } else {
                    json!({ "state": inner })
                };
            }
        }
    }
    let mut out = serde_json::to_vec(&value).ok()?;
    // Sometimes keep the chain's hash suffix shape with a damaged hash.
    if rng.usize(..4) == 0 {
        out.pop();
        out.extend_from_slice(b",\"_hash\":\"");
        let digits: &[u8] = b"0123456789abcdefABCDEFg\xc3\xa9";
        out.extend((0..64).map(|_| digits[rng.usize(..digits.len())]));
        out.extend_from_slice(b"\"}");
    }
    Some(out)
}

/// A mutation of the row's topic, version or id.
pub(crate) fn mutate_row(rng: &mut fastrand::Rng, row: &mut StoredEvent) {
    const TOPICS: &[&str] = &[
        "Pet",
        "Pet.Adopted",
        "Pet.Tagged",
        "Pet.Weighed",
        "Pet.Owned",
        "Pet.Scored",
        "Pet.Collared",
        "Pet.Left",
        "Cat",
        "Kitten",
        "Cat.Born",
        "Kitten.Born",
        "Cat.Napped",
        "",
        ".",
        "Pet.",
        ".Adopted",
        "Pet.Adopted.",
        "pet.adopted",
        "Pet.Ädopted",
        "Pet\u{0}.Adopted",
        "🐕.🐕",
    ];
    match rng.usize(..3) {
        0 => {
            row.topic = if rng.usize(..4) > 0 {
                TOPICS[rng.usize(..TOPICS.len())].to_owned()
            } else {
                let mut bytes = row.topic.clone().into_bytes();
                mutate_bytes(rng, &mut bytes, &[]);
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
        1 => {
            row.originator_version = match rng.usize(..5) {
                0 => 0,
                1 => u64::MAX,
                2 => row.originator_version.wrapping_add(1),
                3 => row.originator_version.wrapping_sub(1),
                _ => rng.u64(..),
            }
        }
        _ => {
            let uuid = Uuid::from_u128(rng.u128(..));
            row.originator_id = match rng.usize(..8) {
                0 => String::new(),
                1 => uuid.simple().to_string(),
                2 => uuid.hyphenated().to_string(),
                3 => uuid.braced().to_string(),
                4 => uuid.urn().to_string(),
                5 => row.originator_id.to_uppercase(),
                6 => "🐕".repeat(rng.usize(..40)),
                _ => {
                    let mut bytes = row.originator_id.clone().into_bytes();
                    mutate_bytes(rng, &mut bytes, &[]);
                    String::from_utf8_lossy(&bytes).into_owned()
                }
            }
        }
    }
}
