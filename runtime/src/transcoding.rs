//! Values in the Python library's JSON: `{"_type_": NAME, "_data_": ...}`.
//!
//! The Python `eventsourcing` library's transcoder writes values that JSON
//! has no type for (UUIDs, datetimes, decimals, the user's own classes) as
//! a small object naming the type's *transcoding* and holding its data.
//! annals writes that form when an application uses the Python codec
//! (`annals::mapper::Codec::Python`), and reads it whichever codec
//! wrote it.
//!
//! A type takes part by implementing [`Transcoding`]; annals implements it
//! for [`Uuid`] (`uuid_hex`) and [`Timestamp`] (`datetime_iso`). A field
//! of such a type (or a `Vec`, `Option`, `HashMap` or `BTreeMap` of them),
//! an event argument or a field of an aggregate's struct, is written in
//! the Python form when it says so,
//! `#[serde(with = "annals::transcoding::python")]`; without it, it is
//! written as serde writes it (a UUID as a string, which Python reads as a
//! `str`). Reading needs nothing: the Python forms of UUIDs, datetimes and
//! decimals are read wherever serde expects their plain forms, and a
//! field with the attribute reads its own transcoding's form too.
//!
//! ```
//! use annals::transcoding::Transcoding;
//! # use annals::prelude::*;
//!
//! /// Python: `class MoneyAsDict(Transcoding): type = Money; name = "money"`.
//! #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
//! pub struct Money { pub cents: i64, pub currency: String }
//!
//! impl Transcoding for Money {
//!     const NAME: &'static str = "money";
//!     type Data = (i64, String);
//!     fn encode(&self) -> Self::Data { (self.cents, self.currency.clone()) }
//!     fn decode((cents, currency): Self::Data) -> Result<Self, String> {
//!         Ok(Money { cents, currency })
//!     }
//! }
//!
//! #[aggregate]
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
//! pub struct Account {
//!     #[serde(with = "annals::transcoding::python")]
//!     pub owner: Uuid,
//!     pub balance: i64,
//! }
//!
//! #[aggregate(python = "bank")]
//! impl Account {
//!     #[event("Opened")]
//!     pub fn open(owner: Uuid) -> Self { Account { owner, balance: 0 } }
//!     #[event("Deposited")]
//!     pub fn deposit(
//!         &mut self,
//!         #[serde(with = "annals::transcoding::python")] amount: Money,
//!     ) {
//!         self.balance += amount.cents;
//!     }
//! }
//!
//! let app = Application::builder("Bank").codec(annals::mapper::Codec::Python).build()?;
//! let mut account = Account::open(Uuid::new_v4());
//! account.deposit(Money { cents: 500, currency: "EUR".into() });
//! app.save(&mut account)?;
//! let stored = &app.notifications(1, 10)?[1].event;
//! assert_eq!(stored.topic, "bank:Account.Deposited");
//! let json = String::from_utf8(stored.state.clone()).unwrap();
//! assert!(json.contains(r#""amount":{"_type_":"money","_data_":[500,"EUR"]}"#), "{json}");
//! assert_eq!(app.get::<Account>(account.id())?.balance, 500);
//! # Ok::<(), annals::Error>(())
//! ```

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::clock::Timestamp;

/// A type the Python library's transcoder stores as
/// `{"_type_": NAME, "_data_": data}`: the Rust half of a Python
/// `Transcoding` (see the module for an example).
pub trait Transcoding: Sized {
    /// The transcoding's name, as the Python side registers it.
    const NAME: &'static str;
    /// What `_data_` holds.
    type Data: Serialize + DeserializeOwned;
    /// The value's data.
    fn encode(&self) -> Self::Data;
    /// The value from its data.
    ///
    /// # Errors
    ///
    /// The data does not make a value; the message says why.
    fn decode(data: Self::Data) -> Result<Self, String>;
}

impl Transcoding for Uuid {
    const NAME: &'static str = "uuid_hex";
    type Data = String;
    fn encode(&self) -> String {
        crate::domain::AggregateId::to_stored(self)
    }
    fn decode(data: String) -> Result<Self, String> {
        Uuid::parse_str(&data).map_err(|e| format!("{data:?} is not a UUID: {e}"))
    }
}

impl Transcoding for Timestamp {
    const NAME: &'static str = "datetime_iso";
    type Data = String;
    /// Python's `datetime.isoformat()` of a UTC time: microseconds (none
    /// when zero), `+00:00`.
    fn encode(&self) -> String {
        use chrono::Timelike;
        if self.nanosecond() / 1_000 == 0 {
            self.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
        } else {
            self.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
        }
    }
    fn decode(data: String) -> Result<Self, String> {
        crate::clock::stored::parse_iso(&data)
    }
}

thread_local! {
    /// Whether this thread is encoding or decoding in the Python codec.
    static PYTHON: Cell<bool> = const { Cell::new(false) };
}

/// Whether the value being encoded or decoded is in the Python codec.
pub(crate) fn python_mode() -> bool {
    PYTHON.with(Cell::get)
}

/// The Python codec on (or off) for this thread until dropped.
pub(crate) struct PythonScope(bool);

impl PythonScope {
    pub(crate) fn new(on: bool) -> Self {
        Self(PYTHON.with(|p| p.replace(on)))
    }
}

impl Drop for PythonScope {
    fn drop(&mut self) {
        PYTHON.with(|p| p.set(self.0));
    }
}

/// Runs `f` with the Python codec on (or off) for this thread.
pub(crate) fn with_python<R>(on: bool, f: impl FnOnce() -> R) -> R {
    let _scope = PythonScope::new(on);
    f()
}

/// A value in the Python form, for values that contain transcoded ones
/// (`Vec<Uuid>`, `Option<Timestamp>`, ...). Implemented for every
/// [`Transcoding`] and for the standard containers of them; not for users
/// to implement.
#[doc(hidden)]
pub trait Transcoded: Serialize + DeserializeOwned {
    /// Writes the value in the Python form.
    #[doc(hidden)]
    fn serialize_python<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;
    /// Reads the value from the Python form, or from the plain one.
    #[doc(hidden)]
    fn from_python(value: Value) -> Result<Self, String>;
}

/// `{"_type_": name, "_data_": data}`, when `value` is that; `Err` when it
/// is that form with a non-string name.
fn tagged(value: &Value) -> Option<(&str, &Value)> {
    let object = value.as_object().filter(|o| o.len() == 2)?;
    Some((object.get("_type_")?.as_str()?, object.get("_data_")?))
}

impl<T: Transcoding + Serialize + DeserializeOwned> Transcoded for T {
    fn serialize_python<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("_type_", T::NAME)?;
        map.serialize_entry("_data_", &self.encode())?;
        map.end()
    }

    fn from_python(value: Value) -> Result<Self, String> {
        match tagged(&value) {
            Some((name, data)) if name == T::NAME => {
                let data = T::Data::deserialize(data)
                    .map_err(|e| format!("the data of a {name:?} value: {e}"))?;
                T::decode(data)
            }
            Some((name, _)) => Err(format!(
                "a value transcoded as {name:?}, where {:?} was expected",
                T::NAME
            )),
            None => T::deserialize(value).map_err(|e| e.to_string()),
        }
    }
}

/// Serializes a borrowed value in the Python form.
struct Python<'a, T>(&'a T);

impl<T: Transcoded> Serialize for Python<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_python(serializer)
    }
}

impl<T: Transcoded> Transcoded for Option<T> {
    fn serialize_python<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Some(value) => serializer.serialize_some(&Python(value)),
            None => serializer.serialize_none(),
        }
    }
    fn from_python(value: Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            value => T::from_python(value).map(Some),
        }
    }
}

impl<T: Transcoded> Transcoded for Vec<T> {
    fn serialize_python<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for item in self {
            seq.serialize_element(&Python(item))?;
        }
        seq.end()
    }
    fn from_python(value: Value) -> Result<Self, String> {
        match value {
            Value::Array(items) => items.into_iter().map(T::from_python).collect(),
            other => Err(format!("expected a list, found {other}")),
        }
    }
}

macro_rules! maps {
    ($($map:ident: $($bound:path),+;)+) => {$(
        impl<K, V: Transcoded> Transcoded for $map<K, V>
        where
            K: Serialize + DeserializeOwned $(+ $bound)+,
        {
            fn serialize_python<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.len()))?;
                for (key, value) in self {
                    map.serialize_entry(key, &Python(value))?;
                }
                map.end()
            }
            fn from_python(value: Value) -> Result<Self, String> {
                let Value::Object(entries) = value else {
                    return Err(format!("expected a dict, found {value}"));
                };
                entries
                    .into_iter()
                    .map(|(key, value)| {
                        let key = K::deserialize(Value::String(key)).map_err(|e| e.to_string())?;
                        Ok((key, V::from_python(value)?))
                    })
                    .collect()
            }
        }
    )+};
}

maps! {
    HashMap: Eq, Hash;
    BTreeMap: Ord;
}

/// `#[serde(with = "annals::transcoding::python")]`: a field of an
/// aggregate's struct (or of any serde type in a stored event) written in
/// the Python form when the Python codec writes it, read from either form.
pub mod python {
    use super::{python_mode, Transcoded};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `value`: the Python form under the Python codec.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<T: Transcoded, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if python_mode() {
            value.serialize_python(serializer)
        } else {
            value.serialize(serializer)
        }
    }

    /// Deserializes a value from the Python form or the plain one.
    ///
    /// # Errors
    ///
    /// The input is neither.
    pub fn deserialize<'de, T: Transcoded, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        if python_mode() {
            let value = serde_json::Value::deserialize(deserializer)?;
            T::from_python(value).map_err(D::Error::custom)
        } else {
            T::deserialize(deserializer)
        }
    }
}

/// An event's timestamp as the generated code writes it
/// (`__private::header_timestamp`): the fixed RFC 3339 layout, or Python's
/// `datetime_iso` under the Python codec.
pub(crate) fn write_timestamp<S: Serializer>(
    ts: &Timestamp,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if python_mode() {
        ts.serialize_python(serializer)
    } else {
        crate::clock::stored::serialize(ts, serializer)
    }
}

/// Replaces every `{"_type_": "uuid_hex" | "datetime_iso" | "decimal_str",
/// "_data_": ...}` in `value` by its plain form (a UUID's hyphenated
/// string, an RFC 3339 string, the decimal's string), so that serde types
/// that know nothing of the Python form read a Python snapshot's state.
/// Other names are left for fields that read them (`with = "python"`).
pub(crate) fn plain_builtins(value: &mut Value) -> Result<(), String> {
    if let Some((name, data)) = tagged(value) {
        let plain = match name {
            "uuid_hex" => Uuid::from_python(value.clone())?.to_string(),
            "datetime_iso" => {
                let ts = Timestamp::from_python(value.clone())?;
                ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            }
            "decimal_str" => data
                .as_str()
                .ok_or_else(|| format!("a decimal_str value holds {data}, not a string"))?
                .to_owned(),
            _ => return Ok(()),
        };
        *value = Value::String(plain);
        return Ok(());
    }
    match value {
        Value::Array(items) => items.iter_mut().try_for_each(plain_builtins),
        Value::Object(entries) => entries.values_mut().try_for_each(plain_builtins),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_written_as_python_writes_them_and_read_in_any_offset() {
        let ts: Timestamp = "2026-12-01T12:00:00.123456789Z".parse().unwrap();
        assert_eq!(ts.encode(), "2026-12-01T12:00:00.123456+00:00");
        let whole: Timestamp = "2026-12-01T12:00:00.000000500Z".parse().unwrap();
        assert_eq!(whole.encode(), "2026-12-01T12:00:00+00:00");
        for s in [
            "2026-12-01T13:00:00.123456+01:00",
            "2026-12-01T12:00:00.123456",
            "2026-12-01T12:00:00.123456Z",
        ] {
            let read = Timestamp::decode(s.to_owned()).unwrap();
            assert_eq!(read.encode(), "2026-12-01T12:00:00.123456+00:00", "{s}");
        }
        assert!(Timestamp::decode("yesterday".into())
            .unwrap_err()
            .contains("\"yesterday\""));
    }

    #[test]
    fn containers_of_transcoded_values_round_trip_and_accept_the_plain_form() {
        let ids = vec![Some(Uuid::from_u128(1)), None];
        let mut json = Vec::new();
        ids.serialize_python(&mut serde_json::Serializer::new(&mut json))
            .unwrap();
        let json: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"_type_": "uuid_hex", "_data_": "00000000000000000000000000000001"}, null])
        );
        assert_eq!(Vec::<Option<Uuid>>::from_python(json).unwrap(), ids);
        let plain = serde_json::to_value(&ids).unwrap();
        assert_eq!(Vec::<Option<Uuid>>::from_python(plain).unwrap(), ids);
        let map: BTreeMap<String, Uuid> = [("a".to_owned(), Uuid::from_u128(2))].into();
        let mut json = Vec::new();
        map.serialize_python(&mut serde_json::Serializer::new(&mut json))
            .unwrap();
        let json: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(BTreeMap::<String, Uuid>::from_python(json).unwrap(), map);
    }

    #[test]
    fn a_value_of_another_transcoding_is_an_error_naming_both() {
        let value = serde_json::json!({"_type_": "decimal_str", "_data_": "1.5"});
        let err = Uuid::from_python(value).unwrap_err();
        assert!(
            err.contains("decimal_str") && err.contains("uuid_hex"),
            "{err}"
        );
        let bad = serde_json::json!({"_type_": "uuid_hex", "_data_": "nope"});
        assert!(Uuid::from_python(bad).unwrap_err().contains("\"nope\""));
    }

    #[test]
    fn builtins_become_plain_and_other_names_are_left() {
        let mut state = serde_json::json!({
            "owner": {"_type_": "uuid_hex", "_data_": "00000000000000000000000000000003"},
            "at": [{"_type_": "datetime_iso", "_data_": "2026-12-01T12:00:00+00:00"}],
            "price": {"_type_": "decimal_str", "_data_": "9.99"},
            "money": {"_type_": "money", "_data_": [1, "EUR"]},
        });
        plain_builtins(&mut state).unwrap();
        assert_eq!(state["owner"], "00000000-0000-0000-0000-000000000003");
        assert_eq!(state["at"][0], "2026-12-01T12:00:00Z");
        assert_eq!(state["price"], "9.99");
        assert_eq!(state["money"]["_type_"], "money");
    }

    #[test]
    fn the_mode_is_restored_after_use() {
        assert!(!python_mode());
        with_python(true, || {
            assert!(python_mode());
            with_python(false, || assert!(!python_mode()));
            assert!(python_mode());
        });
        assert!(!python_mode());
    }
}
