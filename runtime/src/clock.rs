//! The clock that stamps new domain events.
//!
//! Events are stamped with [`now`], which reads the system clock in UTC
//! unless a clock was set for the current thread, so a test can fix time
//! without touching other threads:
//!
//! ```
//! use annals::clock::{self, FixedClock};
//! let t = "2026-01-02T03:04:05Z".parse().unwrap();
//! let _guard = clock::set_thread_clock(FixedClock(t));
//! assert_eq!(clock::now(), t);
//! ```

use std::cell::RefCell;
use std::rc::Rc;

/// A UTC timestamp, as carried by every domain event.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// A source of timestamps.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// A clock that always says the same time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

impl<F: Fn() -> Timestamp> Clock for F {
    fn now(&self) -> Timestamp {
        self()
    }
}

thread_local! {
    static THREAD_CLOCK: RefCell<Option<Rc<dyn Clock>>> = const { RefCell::new(None) };
}

/// The current time: the thread's clock if one is set, else the system clock.
pub fn now() -> Timestamp {
    THREAD_CLOCK
        .with(|c| c.borrow().as_ref().map(|c| c.now()))
        .unwrap_or_else(chrono::Utc::now)
}

/// Sets the clock of the current thread until the returned guard is dropped
/// (then the previous clock is back).
pub fn set_thread_clock(clock: impl Clock + 'static) -> ClockGuard {
    let previous = THREAD_CLOCK.with(|c| c.borrow_mut().replace(Rc::new(clock)));
    ClockGuard { previous }
}

/// Restores the previous clock of the thread when dropped.
#[must_use = "the clock is reset when the guard is dropped"]
pub struct ClockGuard {
    previous: Option<Rc<dyn Clock>>,
}

impl std::fmt::Debug for ClockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockGuard").finish_non_exhaustive()
    }
}

impl Drop for ClockGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        THREAD_CLOCK.with(|c| *c.borrow_mut() = previous);
    }
}

/// The stored form of event timestamps: RFC 3339 in UTC with nanoseconds,
/// always 30 bytes (`2026-11-23T13:16:20.123456789Z`), written and read by
/// hand for the common layouts (chrono's general formatter and parser were
/// half the cost of encoding and decoding an event, by callgrind); any
/// other RFC 3339 timestamp (e.g. the Python library's `+00:00` with
/// microseconds) is read by chrono.
#[doc(hidden)]
pub mod stored {
    use chrono::{Datelike, NaiveDate, Timelike};
    use serde::{de, Deserializer, Serializer};

    use super::Timestamp;

    fn two(out: &mut [u8], at: usize, value: u32) {
        out[at] = b'0' + (value / 10 % 10) as u8;
        out[at + 1] = b'0' + (value % 10) as u8;
    }

    /// `ts` in the fixed layout.
    pub fn format(ts: &Timestamp) -> Option<[u8; 30]> {
        // Read off the naive form once: each accessor of a `DateTime`
        // adds its (zero) offset again first.
        let ts = ts.naive_utc();
        let year = u32::try_from(ts.year()).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        two(&mut out, 0, year / 100);
        two(&mut out, 2, year % 100);
        two(&mut out, 5, ts.month());
        two(&mut out, 8, ts.day());
        two(&mut out, 11, ts.hour());
        two(&mut out, 14, ts.minute());
        // A leap second is nanosecond >= 1e9: the generic path handles it.
        let nanos = ts.nanosecond();
        if nanos >= 1_000_000_000 {
            return None;
        }
        two(&mut out, 17, ts.second());
        let mut n = nanos;
        for i in (20..29).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        Some(out)
    }

    fn digits(bytes: &[u8]) -> Option<u32> {
        bytes.iter().try_fold(0u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    }

    /// A timestamp in the layout `format` writes, or with 0 to 9 fraction
    /// digits, ending in `Z`; `None` for anything else.
    pub fn parse_fast(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[b.len() - 1] != b'Z'
        {
            return None;
        }
        let nanos = match &b[19..b.len() - 1] {
            [] => 0,
            [b'.', fraction @ ..] if !fraction.is_empty() && fraction.len() <= 9 => {
                digits(fraction)? * 10u32.pow(9 - fraction.len() as u32)
            }
            _ => return None,
        };
        let date = NaiveDate::from_ymd_opt(
            i32::try_from(digits(&b[0..4])?).ok()?,
            digits(&b[5..7])?,
            digits(&b[8..10])?,
        )?;
        let time = date.and_hms_nano_opt(
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
            nanos,
        )?;
        Some(time.and_utc())
    }

    /// Serializes a timestamp in the fixed layout.
    pub fn serialize<S: Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        match format(ts) {
            // The layout is ASCII by construction.
            Some(bytes) => {
                serializer.serialize_str(std::str::from_utf8(&bytes).unwrap_or_default())
            }
            None => serde::Serialize::serialize(ts, serializer),
        }
    }

    /// Serializes a borrowed timestamp (for generated reference structs).
    pub fn serialize_ref<S: Serializer>(ts: &&Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(ts, serializer)
    }

    struct Visitor;

    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Timestamp;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp (or Python's datetime_iso)")
        }

        /// The Python library's form: `{"_type_": "datetime_iso", "_data_": "..."}`.
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Timestamp, A::Error> {
            let (mut kind, mut data) = (None::<String>, None::<String>);
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "_type_" => kind = Some(map.next_value()?),
                    "_data_" => data = Some(map.next_value()?),
                    other => {
                        return Err(de::Error::custom(format!(
                        "a timestamp object has a key {other:?}; expected only _type_ and _data_"
                    )))
                    }
                }
            }
            match (kind.as_deref(), data) {
                (Some("datetime_iso"), Some(data)) => parse_iso(&data).map_err(de::Error::custom),
                (kind, _) => Err(de::Error::custom(format!(
                    "expected {{\"_type_\": \"datetime_iso\", \"_data_\": ..}} for a timestamp, found _type_ {kind:?}"
                ))),
            }
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
            parse_fast(s).map_or_else(
                || {
                    chrono::DateTime::parse_from_rfc3339(s)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|e| E::custom(format!("{s:?} is not an RFC 3339 timestamp: {e}")))
                },
                Ok,
            )
        }
    }

    /// Deserializes a timestamp (fast for the fixed layout), or the Python
    /// library's `{"_type_": "datetime_iso", "_data_": ...}`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        deserializer.deserialize_any(Visitor)
    }

    /// A datetime as Python writes it (`isoformat()`: any offset, 0-6
    /// fraction digits; a naive one is taken as UTC) or as RFC 3339.
    ///
    /// # Errors
    ///
    /// It is neither; the message shows it.
    pub fn parse_iso(s: &str) -> Result<Timestamp, String> {
        if let Some(ts) = parse_fast(s) {
            return Ok(ts);
        }
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .map(|t| t.and_utc())
            })
            .map_err(|e| format!("{s:?} is not an ISO 8601 datetime: {e}"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde::de::Visitor as _;

        #[test]
        fn the_fixed_layout_round_trips_and_agrees_with_chrono() {
            for s in [
                "2026-11-23T13:16:20.123456789Z",
                "1999-01-01T00:00:00.000000000Z",
                "2024-02-29T23:59:59.999999999Z",
            ] {
                let ts = parse_fast(s).unwrap();
                assert_eq!(ts, chrono::DateTime::parse_from_rfc3339(s).unwrap());
                assert_eq!(&format(&ts).unwrap(), s.as_bytes());
            }
            for (s, nanos) in [
                ("2026-11-23T13:16:20Z", 0),
                ("2026-11-23T13:16:20.5Z", 500_000_000),
                ("2026-11-23T13:16:20.123456Z", 123_456_000),
            ] {
                assert_eq!(parse_fast(s).unwrap().nanosecond(), nanos, "{s}");
            }
        }

        proptest::proptest! {
            /// The hand-written layout, against chrono's for every
            /// timestamp it writes (years 0 to 9999, any nanosecond).
            #[test]
            fn the_fixed_layout_is_chronos_rfc_3339_and_parses_back(
                secs in -62_167_219_200i64..253_402_300_800,
                nanos in 0u32..1_000_000_000,
            ) {
                let ts = chrono::DateTime::from_timestamp(secs, nanos).unwrap();
                let written = format(&ts).unwrap();
                let text = std::str::from_utf8(&written).unwrap();
                let chrono = ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                proptest::prop_assert_eq!(text, chrono.as_str());
                proptest::prop_assert_eq!(parse_fast(text), Some(ts));
            }
        }

        proptest::proptest! {
            /// Near-layout text (out-of-range fields, leap seconds, short,
            /// long and broken fractions): the fast path reads what chrono
            /// reads, as chrono does, and leaves to chrono only the leap
            /// second and fractions past nanoseconds.
            #[test]
            fn the_fast_path_agrees_with_chrono(
                (y, mo, d) in (0u32..10_000, 0u32..14, 0u32..33),
                (h, mi, sec) in (0u32..25, 0u32..61, 0u32..62),
                fraction in "(\\.[0-9x]{0,10})?",
            ) {
                let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{fraction}Z");
                let chrono = chrono::DateTime::parse_from_rfc3339(&s).ok();
                let fast = parse_fast(&s);
                if fast.is_some() {
                    proptest::prop_assert_eq!(fast.map(|t| t.fixed_offset()), chrono, "{}", s);
                } else {
                    let left_to_chrono = sec == 60 || fraction.len() > 10;
                    proptest::prop_assert!(chrono.is_none() || left_to_chrono, "{}", s);
                }
            }
        }

        #[test]
        fn other_layouts_go_to_chrono_and_bad_ones_are_refused() {
            for s in [
                "2026-11-23T13:16:20.709002+00:00",
                "2026-02-30T00:00:00Z",
                "2026-11-23 13:16:20Z",
                "2026-11-23T13:16:20.1234567890Z",
                "x",
            ] {
                assert!(parse_fast(s).is_none(), "{s}");
            }
            let ts = Visitor
                .visit_str::<serde::de::value::Error>("2026-11-23T13:16:20.709002+00:00")
                .unwrap();
            assert_eq!(ts.nanosecond(), 709_002_000);
            assert!(Visitor
                .visit_str::<serde::de::value::Error>("2026-02-30T00:00:00Z")
                .is_err());
        }
    }
}
