//! The index of the log that a recorder has read: where each event is
//! (which save, which topic), not the events themselves, which stay in
//! their save objects and are read on demand. It is built from save
//! objects and from index segments: the positions of a run of saves,
//! without their states, written beside the log so that a process
//! starting cold reads a few segments rather than every save.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use annals_core::error::{Error, Result};
use annals_core::persistence::memory::{check_versions, key_stored_already, tracked_already};
use annals_core::persistence::{EventQuery, KeyedOutcome, StoredEvent, Tracking};

/// One save object, as the index keeps it and as a segment stores it:
/// each event's stream, version and topic, the tracking records and the
/// idempotency keys (one of each per save it holds: a group of saves
/// written together is one object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Positions {
    /// (stream, version, topic) of each event, in order.
    pub(crate) events: Vec<(String, u64, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tracking: Vec<(String, u64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) keys: Vec<String>,
}

/// An index segment: the positions of saves `first_save ..` (as many as
/// it holds), whose first event has notification id `first_id`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Segment {
    pub(crate) first_save: u64,
    pub(crate) first_id: u64,
    pub(crate) saves: Vec<Positions>,
    /// The token of the last save's object: with its first id and event
    /// count, what tells that the log holds the saves this segment says
    /// (not those of a log restored from an older copy, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_token: Option<String>,
}

impl Segment {
    /// The last save it covers (its first, for a segment of no saves,
    /// which `add_segment` refuses).
    pub(crate) fn last_save(&self) -> u64 {
        self.first_save + (self.saves.len() as u64).saturating_sub(1)
    }

    /// The notification id of its last save's first event.
    pub(crate) fn last_first_id(&self) -> u64 {
        let before: usize = self
            .saves
            .iter()
            .rev()
            .skip(1)
            .map(|save| save.events.len())
            .sum();
        self.first_id + before as u64
    }
}

/// The ids one application has tracked, and the greatest.
#[derive(Debug, Default)]
struct Tracked {
    ids: HashSet<u64>,
    max: u64,
}

/// Where each event of the log read so far is.
#[derive(Debug)]
pub(crate) struct Index {
    /// The notification id of each save's first event: save `n` at `n - 1`.
    firsts: Vec<u64>,
    /// Each event's topic, by notification id - 1, as an index into
    /// `topic_names` (a log has few topics and many events).
    topics: Vec<u32>,
    topic_names: Vec<String>,
    topic_ids: HashMap<String, u32>,
    /// Each stream's (version, notification id), by version.
    streams: HashMap<String, Vec<(u64, u64)>>,
    tracking: HashMap<String, Tracked>,
    /// Each idempotency key's save (its outcome is in that object).
    keys: HashMap<String, u64>,
    /// Saves per segment: a segment is due when the count of saves is a
    /// multiple of it.
    segment_saves: u64,
    /// The saves read one by one since the last multiple of
    /// `segment_saves`: the next segment, once whole.
    recent: Vec<Positions>,
}

impl Index {
    pub(crate) fn new(segment_saves: u64) -> Self {
        Self {
            firsts: Vec::new(),
            topics: Vec::new(),
            topic_names: Vec::new(),
            topic_ids: HashMap::new(),
            streams: HashMap::new(),
            tracking: HashMap::new(),
            keys: HashMap::new(),
            segment_saves: segment_saves.max(1),
            recent: Vec::new(),
        }
    }

    /// How many saves are read (the next is `saves() + 1`).
    pub(crate) fn saves(&self) -> u64 {
        self.firsts.len() as u64
    }

    /// The notification id the next save's first event takes.
    pub(crate) fn next_id(&self) -> u64 {
        self.topics.len() as u64 + 1
    }

    /// The first notification id of save `save` (read already).
    pub(crate) fn first_of(&self, save: u64) -> u64 {
        self.firsts[usize::try_from(save - 1).expect("a save read is indexed")]
    }

    /// The save holding notification `id`, and the event's place in it.
    pub(crate) fn locate(&self, id: u64) -> (u64, usize) {
        let after = self.firsts.partition_point(|&first| first <= id);
        let save = after as u64;
        let offset = usize::try_from(id - self.firsts[after - 1]).expect("a save's size fits");
        (save, offset)
    }

    /// The topic of notification `id`.
    pub(crate) fn topic(&self, id: u64) -> &str {
        &self.topic_names[self.topics[usize::try_from(id - 1).expect("an indexed id")] as usize]
    }

    /// Checks a save before it is written: its events take no stored
    /// (stream, version) nor one twice, its tracking record and key are
    /// new.
    pub(crate) fn check(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: Option<&KeyedOutcome>,
    ) -> Result<()> {
        if let Some(outcome) = outcome.filter(|o| self.keys.contains_key(&o.key)) {
            return Err(key_stored_already(&outcome.key));
        }
        if let Some(tracking) =
            tracking.filter(|t| self.has_tracking_id(&t.application_name, t.notification_id))
        {
            return Err(tracked_already(tracking));
        }
        check_versions(events, |id, version| {
            self.streams
                .get(id)
                .is_some_and(|s| s.binary_search_by_key(&version, |&(v, _)| v).is_ok())
        })
    }

    /// Adds the next save, read from its object (whose token is `token`);
    /// returns its events' notification ids and, when it completes one,
    /// the segment of the saves before it.
    pub(crate) fn add(
        &mut self,
        save: Positions,
        token: Option<&str>,
    ) -> (Vec<u64>, Option<Segment>) {
        let number = self.saves() + 1;
        if (number - 1).is_multiple_of(self.segment_saves) {
            self.recent.clear();
        }
        let ids = self.index(&save, number);
        self.recent.push(save);
        let segment = (number.is_multiple_of(self.segment_saves)
            && self.recent.len() as u64 == self.segment_saves)
            .then(|| {
                let saves = std::mem::take(&mut self.recent);
                let first_save = number + 1 - saves.len() as u64;
                Segment {
                    first_save,
                    first_id: self.first_of(first_save),
                    saves,
                    last_token: token.map(str::to_owned),
                }
            });
        (ids, segment)
    }

    /// Adds a segment that starts at the next save: all of it, or nothing.
    ///
    /// # Errors
    ///
    /// It holds no saves, does not start there, or its saves take a
    /// (stream, version) twice or one already indexed: the caller reads
    /// the saves instead.
    pub(crate) fn add_segment(&mut self, segment: &Segment) -> Result<()> {
        let bad = |message: String| Error::persistence("reading an index segment", message);
        if segment.saves.is_empty() {
            return Err(bad("it holds no saves".into()));
        }
        if segment.first_save != self.saves() + 1 || segment.first_id != self.next_id() {
            return Err(bad(format!(
                "it starts at save {} (notification {}), where the index is at save {} (notification {})",
                segment.first_save,
                segment.first_id,
                self.saves() + 1,
                self.next_id()
            )));
        }
        let mut seen = HashSet::new();
        for (n, save) in (segment.first_save..).zip(&segment.saves) {
            let taken = save.events.iter().any(|(stream, version, _)| {
                !seen.insert((stream.as_str(), *version))
                    || self
                        .streams
                        .get(stream)
                        .is_some_and(|s| s.binary_search_by_key(version, |&(v, _)| v).is_ok())
            });
            if taken {
                return Err(bad(format!("save {n} repeats a stored version")));
            }
        }
        for save in &segment.saves {
            let number = self.saves() + 1;
            self.index(save, number);
        }
        self.recent.clear();
        Ok(())
    }

    fn index(&mut self, save: &Positions, number: u64) -> Vec<u64> {
        let first = self.next_id();
        self.firsts.push(first);
        let mut ids = Vec::with_capacity(save.events.len());
        for (stream, version, topic) in &save.events {
            let id = self.next_id();
            let topic = match self.topic_ids.get(topic) {
                Some(&t) => t,
                None => {
                    let t = u32::try_from(self.topic_names.len()).expect("fewer topics than u32");
                    self.topic_names.push(topic.clone());
                    self.topic_ids.insert(topic.clone(), t);
                    t
                }
            };
            self.topics.push(topic);
            // The id is copied for a new stream only.
            let versions = match self.streams.get_mut(stream) {
                Some(versions) => versions,
                None => self.streams.entry(stream.clone()).or_default(),
            };
            // Versions come in order, but a stream may be written out of
            // order across saves: keep them sorted.
            match versions.last() {
                Some(&(last, _)) if last > *version => {
                    let at = versions.partition_point(|&(v, _)| v < *version);
                    versions.insert(at, (*version, id));
                }
                _ => versions.push((*version, id)),
            }
            ids.push(id);
        }
        for (application, notification) in &save.tracking {
            let tracked = self.tracking.entry(application.clone()).or_default();
            tracked.ids.insert(*notification);
            tracked.max = tracked.max.max(*notification);
        }
        for key in &save.keys {
            self.keys.insert(key.clone(), number);
        }
        ids
    }

    /// The notification ids of stream `stream`'s events that `query`
    /// selects, in its order.
    pub(crate) fn stream(&self, stream: &str, query: &EventQuery) -> Vec<u64> {
        let Some(versions) = self.streams.get(stream) else {
            return Vec::new();
        };
        let lo = query
            .gt
            .map_or(0, |gt| versions.partition_point(|&(v, _)| v <= gt));
        let hi = query.lte.map_or(versions.len(), |lte| {
            versions.partition_point(|&(v, _)| v <= lte)
        });
        if lo >= hi {
            return Vec::new();
        }
        let range = &versions[lo..hi];
        let limit = query.limit.unwrap_or(usize::MAX);
        if query.desc {
            range.iter().rev().take(limit).map(|&(_, id)| id).collect()
        } else {
            range.iter().take(limit).map(|&(_, id)| id).collect()
        }
    }

    /// The save holding idempotency key `key`'s outcome.
    pub(crate) fn key(&self, key: &str) -> Option<u64> {
        self.keys.get(key).copied()
    }

    pub(crate) fn max_tracking_id(&self, application: &str) -> u64 {
        self.tracking.get(application).map_or(0, |t| t.max)
    }

    pub(crate) fn has_tracking_id(&self, application: &str, id: u64) -> bool {
        self.tracking
            .get(application)
            .is_some_and(|t| t.ids.contains(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(events: &[(&str, u64)]) -> Positions {
        Positions {
            events: events
                .iter()
                .map(|&(s, v)| (s.to_owned(), v, format!("T{v}")))
                .collect(),
            ..Positions::default()
        }
    }

    /// A segment is the saves since the last multiple, once whole; added
    /// to a fresh index it gives the same positions as the saves.
    #[test]
    fn segments_hold_what_their_saves_give() {
        let mut index = Index::new(2);
        let (ids, segment) = index.add(save(&[("a", 1), ("b", 1)]), None);
        assert_eq!((ids, segment.is_none()), (vec![1, 2], true));
        let (ids, segment) = index.add(save(&[("a", 2)]), Some("t2"));
        assert_eq!(ids, [3]);
        let segment = segment.expect("two saves make a segment");
        assert_eq!(
            (segment.last_first_id(), segment.last_token.as_deref()),
            (3, Some("t2"))
        );
        assert_eq!(
            (segment.first_save, segment.first_id, segment.last_save()),
            (1, 1, 2)
        );

        let mut other = Index::new(2);
        other.add_segment(&segment).expect("it starts at save 1");
        assert_eq!(other.saves(), 2);
        assert_eq!(other.stream("a", &EventQuery::all()), [1, 3]);
        assert_eq!(other.locate(3), (2, 0));
        assert_eq!(other.locate(2), (1, 1));
        assert_eq!(other.topic(3), "T2");
        // A segment that does not start at the next save is refused.
        assert!(other.add_segment(&segment).is_err());
        // One that repeats a version is refused whole: nothing of it is
        // indexed.
        let mut twice = Index::new(2);
        let repeating = Segment {
            saves: vec![save(&[("c", 1)]), save(&[("c", 1)])],
            ..segment
        };
        assert!(twice.add_segment(&repeating).is_err());
        assert_eq!(
            (twice.saves(), twice.stream("c", &EventQuery::all()).len()),
            (0, 0)
        );
        let empty = Segment {
            first_save: 0,
            saves: Vec::new(),
            ..repeating
        };
        assert!(twice.add_segment(&empty).is_err());
    }

    /// A stream written out of version order across saves stays sorted.
    #[test]
    fn versions_stay_sorted() {
        let mut index = Index::new(100);
        index.add(save(&[("a", 3)]), None);
        index.add(save(&[("a", 1)]), None);
        index.add(save(&[("a", 2)]), None);
        assert_eq!(index.stream("a", &EventQuery::all()), [2, 3, 1]);
        let desc = EventQuery {
            desc: true,
            limit: Some(2),
            ..EventQuery::all()
        };
        assert_eq!(index.stream("a", &desc), [1, 3]);
    }
}

/// The index's memory a save, measured by hand (not a check: RSS is
/// noisy): `cargo test --release -p annals-object-store --lib
/// index_memory -- --ignored --nocapture`. A million saves of one new
/// stream with two events each; docs/benchmarks.md has the result.
#[cfg(test)]
mod index_memory {
    use super::*;

    fn rss_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .expect("this process's status")
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    #[ignore = "a measurement, run by hand"]
    fn bytes_a_save() {
        let before = rss_kb();
        let mut index = Index::new(1000);
        for _ in 0..1_000_000u64 {
            let id = uuid::Uuid::new_v4().to_string();
            index.add(
                Positions {
                    events: vec![
                        (id.clone(), 1, "Dog.Registered".into()),
                        (id, 2, "Dog.TrickAdded".into()),
                    ],
                    ..Positions::default()
                },
                None,
            );
        }
        eprintln!("{} bytes a save", (rss_kb() - before) * 1024 / 1_000_000);
    }
}
