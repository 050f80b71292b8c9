//! The index of the log that a recorder has read: where each event is
//! (which save, which topic), not the events themselves, which stay in
//! their save objects and are read on demand. It is built from save
//! objects and from index segments: the positions of a run of saves,
//! without their states, written beside the log so that a process
//! starting cold reads a few segments rather than every save.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use serde::{Deserialize, Serialize};

use annals_core::error::{Error, Result};
use annals_core::persistence::memory::{check_versions, key_stored_already, tracked_already};
use annals_core::persistence::{EventQuery, KeyedOutcome, StoredEvent, Tracking};

/// One save object, as the index keeps it and as a segment stores it:
/// each event's stream, version and topic, the tracking records and the
/// idempotency keys (one of each per save it holds: a group of saves
/// written together is one object).
///
/// The strings are `S`: owned (`String`) where the index keeps them
/// (the saves of the next segment), borrowed from the bytes ([`Str`])
/// where a cold start parses a segment only to index it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
pub(crate) struct Positions<S = String> {
    /// (stream, version, topic) of each event, in order.
    pub(crate) events: Vec<(S, u64, S)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tracking: Vec<(S, u64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) keys: Vec<S>,
}

/// A string of a segment's JSON, borrowed from its bytes unless it has
/// escapes: a cold start parses ten thousand saves' ids and topics a
/// segment, and copying each would be most of the parse's memory.
#[derive(Debug, Deserialize)]
pub(crate) struct Str<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

impl AsRef<str> for Str<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An index segment: the positions of saves `first_save ..` (as many as
/// it holds), whose first event has notification id `first_id`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
pub(crate) struct Segment<S = String> {
    pub(crate) first_save: u64,
    pub(crate) first_id: u64,
    pub(crate) saves: Vec<Positions<S>>,
    /// The token of the last save's object: with its first id and event
    /// count, what tells that the log holds the saves this segment says
    /// (not those of a log restored from an older copy, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_token: Option<String>,
}

impl<S> Segment<S> {
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

/// A stream's name (or an idempotency key) as the index keeps it: a
/// 128-bit keyed hash, two SipHash values under keys drawn at random for
/// each process (`RandomState`), so no one can craft names that collide.
/// Two names of a million streams collide with odds of about n² / 2¹²⁹,
/// some 1e-27: far below a disk's undetected errors. (The two hashers'
/// keys are related, as std draws them on a thread, so the second also
/// hashes a domain tag; with secret keys that is as good as independent.)
type Key = [u64; 2];

#[derive(Debug, Default)]
struct Hasher {
    first: RandomState,
    second: RandomState,
}

impl Hasher {
    fn key(&self, name: &str) -> Key {
        [
            self.first.hash_one(name),
            self.second.hash_one((0x5eed_u16, name)),
        ]
    }
}

/// Versions at most this go into runs; greater ones into
/// [`Streams::overflow`].
const VERSION_MASK: u64 = (1 << 48) - 1;
/// The longest run: its length - 1 takes the high 16 bits.
const MAX_RUN: u64 = 1 << 16;
/// Runs that `Streams::fresh` holds before they go, sorted, into a level.
const FLUSH_RUNS: usize = 8_192;
/// The most runs a merge makes a level of (4 MB): the transient memory of
/// a merge stays bounded.
const MAX_LEVEL: usize = 131_072;

/// Consecutive versions of one stream with consecutive notification ids
/// (a save's events of one stream, usually): 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    key: Key,
    /// The first version in the low 48 bits, the length - 1 in the high 16.
    version_len: u64,
    first_id: u64,
}

impl Run {
    fn new(key: Key, version: u64, first_id: u64) -> Self {
        debug_assert!(version <= VERSION_MASK);
        Self {
            key,
            version_len: version,
            first_id,
        }
    }

    fn version(&self) -> u64 {
        self.version_len & VERSION_MASK
    }

    fn len(&self) -> u64 {
        (self.version_len >> 48) + 1
    }

    fn last_version(&self) -> u64 {
        self.version() + self.len() - 1
    }

    fn order(&self) -> (Key, u64) {
        (self.key, self.version())
    }

    /// Takes `version` with id `id` on, if it follows this run's last.
    fn extend(&mut self, version: u64, id: u64) -> bool {
        let follows = self.len() < MAX_RUN
            && version <= VERSION_MASK
            && self.last_version().checked_add(1) == Some(version)
            && self.first_id + self.len() == id;
        if follows {
            self.version_len += 1 << 48;
        }
        follows
    }
}

/// The runs of one stream that may hold versions in `(gt, lte]`, of
/// `runs`, one stream's sorted by version.
fn overlapping(runs: &[Run], gt: Option<u64>, lte: Option<u64>) -> &[Run] {
    let lo = gt.map_or(0, |gt| runs.partition_point(|r| r.last_version() <= gt));
    let hi = lte.map_or(runs.len(), |lte| {
        runs.partition_point(|r| r.version() <= lte)
    });
    &runs[lo..hi.max(lo)]
}

/// Whether `runs` (one stream's, sorted by version) hold `version`.
fn holds(runs: &[Run], version: u64) -> bool {
    let after = runs.partition_point(|r| r.version() <= version);
    after > 0 && runs[after - 1].last_version() >= version
}

/// A stream's runs in a level (sorted by key, then version).
fn of_key(level: &[Run], key: Key) -> &[Run] {
    let lo = level.partition_point(|r| r.key < key);
    let hi = lo + level[lo..].partition_point(|r| r.key == key);
    &level[lo..hi]
}

/// Merges two levels into one, of exactly their size: the larger grows
/// in place (a large allocation grows without a copy) and takes the
/// other's runs from the back, so no third vector is made.
fn merge(a: Vec<Run>, b: Vec<Run>) -> Vec<Run> {
    let (mut into, from) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let (mut i, mut j) = (into.len(), from.len());
    into.reserve_exact(from.len());
    into.resize(i + j, Run::new([0; 2], 0, 0));
    let mut k = into.len();
    while j > 0 {
        k -= 1;
        if i > 0 && into[i - 1].order() > from[j - 1].order() {
            into[k] = into[i - 1];
            i -= 1;
        } else {
            into[k] = from[j - 1];
            j -= 1;
        }
    }
    into
}

/// Which streams may have runs: a Bloom filter of their keys, so that a
/// stream that has none (a new aggregate: the most common save) is known
/// to have none without a binary search of every level, each a few cache
/// misses (a million streams are eight levels; a cold start checks every
/// event of every segment: 9.7 s at a million saves without it). The keys
/// are random (keyed hashes), so their halves serve as the filter's two
/// hashes; about 16 bits a key, 4 probes: under 1% false positives.
#[derive(Debug, Default)]
struct Bloom {
    bits: Vec<u64>,
    keys: usize,
}

impl Bloom {
    const PROBES: u64 = 4;
    const BITS_A_KEY: usize = 16;

    fn probes(&self, key: Key) -> impl Iterator<Item = (usize, u64)> {
        let mask = (self.bits.len() as u64 * 64).wrapping_sub(1);
        (0..Self::PROBES).map(move |i| {
            let bit = key[0].wrapping_add(i.wrapping_mul(key[1] | 1)) & mask;
            ((bit / 64) as usize, 1 << (bit % 64))
        })
    }

    fn may_hold(&self, key: Key) -> bool {
        !self.bits.is_empty()
            && self
                .probes(key)
                .all(|(word, bit)| self.bits[word] & bit != 0)
    }

    /// Sets `key`'s bits; false when the filter is full and must be made
    /// again, larger, from every key (see `Streams::grow_bloom`).
    fn insert(&mut self, key: Key) -> bool {
        if self.bits.is_empty() || self.keys * Self::BITS_A_KEY >= self.bits.len() * 64 {
            return false;
        }
        let probes: Vec<(usize, u64)> = self.probes(key).collect();
        for (word, bit) in probes {
            self.bits[word] |= bit;
        }
        self.keys += 1;
        true
    }

    /// An empty filter with room for `keys` keys (a power of two of bits).
    fn with_room(keys: usize) -> Self {
        let bits = (keys.max(1024) * Self::BITS_A_KEY).next_power_of_two();
        Self {
            bits: vec![0; bits / 64],
            keys: 0,
        }
    }
}

/// Each stream's (version, notification id), as runs: the recent ones in
/// a small map, the others in sorted levels of bounded size.
#[derive(Debug)]
struct Streams {
    /// The keys of the streams that have runs (or may: see [`Bloom`]).
    bloom: Bloom,
    /// The runs since the last flush, by stream, each stream's sorted by
    /// version.
    fresh: HashMap<Key, Vec<Run>>,
    fresh_runs: usize,
    /// Sorted by key then version; a stream's runs may be spread over
    /// levels and `fresh`.
    levels: Vec<Vec<Run>>,
    /// (stream, version) → id for versions beyond 48 bits.
    overflow: BTreeMap<(Key, u64), u64>,
    flush_runs: usize,
    max_level: usize,
}

impl Streams {
    fn new(flush_runs: usize, max_level: usize) -> Self {
        Self {
            bloom: Bloom::default(),
            fresh: HashMap::new(),
            fresh_runs: 0,
            levels: Vec::new(),
            overflow: BTreeMap::new(),
            flush_runs: flush_runs.max(1),
            max_level,
        }
    }

    fn holds(&self, key: Key, version: u64) -> bool {
        if !self.bloom.may_hold(key) {
            return false;
        }
        if version > VERSION_MASK {
            return self.overflow.contains_key(&(key, version));
        }
        self.fresh
            .get(&key)
            .is_some_and(|runs| holds(runs, version))
            || self
                .levels
                .iter()
                .any(|level| holds(of_key(level, key), version))
    }

    fn add(&mut self, key: Key, version: u64, id: u64) {
        if !self.bloom.may_hold(key) && !self.bloom.insert(key) {
            self.grow_bloom(key);
        }
        if version > VERSION_MASK {
            self.overflow.insert((key, version), id);
            return;
        }
        // Most streams have one run here: room for one, not Vec's four.
        let runs = self
            .fresh
            .entry(key)
            .or_insert_with(|| Vec::with_capacity(1));
        if runs.last_mut().is_some_and(|last| last.extend(version, id)) {
            return;
        }
        // Versions come in order, but a stream may be written out of
        // order across saves: keep them sorted.
        let at = runs.partition_point(|r| r.version() <= version);
        runs.insert(at, Run::new(key, version, id));
        self.fresh_runs += 1;
        if self.fresh_runs >= self.flush_runs {
            self.flush();
        }
    }

    /// Makes the Bloom filter again with room for twice the streams, from
    /// every stream's key and `new`'s.
    fn grow_bloom(&mut self, new: Key) {
        let mut bloom = Bloom::with_room(2 * self.bloom.keys);
        let keys = self
            .levels
            .iter()
            .flat_map(|level| level.iter().map(|run| run.key))
            .chain(self.fresh.keys().copied())
            .chain(self.overflow.keys().map(|&(key, _)| key))
            .chain([new]);
        for key in keys {
            // Each stream once, though its runs may be many.
            if !bloom.may_hold(key) {
                let inserted = bloom.insert(key);
                debug_assert!(inserted, "room for every key");
            }
        }
        self.bloom = bloom;
    }

    /// Moves `fresh` into a new level, and merges levels of like size
    /// (as a binary counter counts) while the merged one stays at most
    /// `max_level` runs.
    fn flush(&mut self) {
        let mut level = Vec::with_capacity(self.fresh_runs);
        for (_, runs) in self.fresh.drain() {
            level.extend(runs);
        }
        level.sort_unstable_by_key(Run::order);
        self.fresh_runs = 0;
        self.levels.push(level);
        while let [.., a, b] = &self.levels[..] {
            if a.len() > b.len() || a.len() + b.len() > self.max_level {
                break;
            }
            let b = self.levels.pop().expect("two levels");
            let a = self.levels.pop().expect("two levels");
            self.levels.push(merge(a, b));
        }
    }

    /// The ids of stream `key`'s events that `query` selects, in its order.
    fn select(&self, key: Key, query: &EventQuery) -> Vec<u64> {
        if !self.bloom.may_hold(key) {
            return Vec::new();
        }
        let (gt, lte) = (query.gt, query.lte);
        if gt.zip(lte).is_some_and(|(gt, lte)| gt >= lte) {
            return Vec::new();
        }
        // (first version, length, first id) of the selected part of each
        // run that holds a selected version.
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        let fresh = self.fresh.get(&key).map_or(&[][..], Vec::as_slice);
        for run in self
            .levels
            .iter()
            .flat_map(|level| overlapping(of_key(level, key), gt, lte))
            .chain(overlapping(fresh, gt, lte))
        {
            let first = gt.map_or(run.version(), |gt| run.version().max(gt.saturating_add(1)));
            let last = lte.map_or(run.last_version(), |lte| run.last_version().min(lte));
            if first <= last {
                runs.push((
                    first,
                    last - first + 1,
                    run.first_id + (first - run.version()),
                ));
            }
        }
        let lo = gt.map_or(VERSION_MASK + 1, |gt| {
            gt.saturating_add(1).max(VERSION_MASK + 1)
        });
        let hi = lte.unwrap_or(u64::MAX);
        if lo <= hi {
            runs.extend(
                self.overflow
                    .range((key, lo)..=(key, hi))
                    .map(|(&(_, version), &id)| (version, 1, id)),
            );
        }
        runs.sort_unstable();
        let limit = query.limit.unwrap_or(usize::MAX);
        let events = |&(version, len, first_id): &(u64, u64, u64)| {
            (0..len).map(move |i| (version + i, first_id + i))
        };
        if query.desc {
            runs.iter()
                .rev()
                .flat_map(|run| events(run).rev())
                .take(limit)
                .map(|(_, id)| id)
                .collect()
        } else {
            runs.iter()
                .flat_map(events)
                .take(limit)
                .map(|(_, id)| id)
                .collect()
        }
    }
}

/// Each event's topic, as an index into the topic names: 2 bytes an
/// event while there are at most 65,536 topics, 4 beyond.
#[derive(Debug)]
enum Topics {
    Few(Vec<u16>),
    Many(Vec<u32>),
}

impl Topics {
    fn len(&self) -> usize {
        match self {
            Self::Few(topics) => topics.len(),
            Self::Many(topics) => topics.len(),
        }
    }

    fn get(&self, at: usize) -> usize {
        match self {
            Self::Few(topics) => usize::from(topics[at]),
            Self::Many(topics) => topics[at] as usize,
        }
    }

    fn push(&mut self, topic: u32) {
        if let Self::Few(topics) = self {
            match u16::try_from(topic) {
                Ok(topic) => return topics.push(topic),
                Err(_) => *self = Self::Many(topics.iter().map(|&t| u32::from(t)).collect()),
            }
        }
        if let Self::Many(topics) = self {
            topics.push(topic);
        }
    }
}

/// Saves a block of [`Firsts`] holds.
const BLOCK: usize = 4_096;

/// The notification id of each save's first event: a base every
/// [`BLOCK`] saves and a 4-byte offset from it a save (or 8-byte ids, if
/// a block ever spans more than 2³² events).
#[derive(Debug)]
enum Firsts {
    Blocks { bases: Vec<u64>, offsets: Vec<u32> },
    Plain(Vec<u64>),
}

impl Firsts {
    fn len(&self) -> usize {
        match self {
            Self::Blocks { offsets, .. } => offsets.len(),
            Self::Plain(firsts) => firsts.len(),
        }
    }

    fn get(&self, at: usize) -> u64 {
        match self {
            Self::Blocks { bases, offsets } => bases[at / BLOCK] + u64::from(offsets[at]),
            Self::Plain(firsts) => firsts[at],
        }
    }

    fn push(&mut self, first: u64) {
        if let Self::Blocks { bases, offsets } = self {
            if offsets.len().is_multiple_of(BLOCK) {
                bases.push(first);
            }
            let base = *bases.last().expect("a block");
            match u32::try_from(first - base) {
                Ok(offset) => return offsets.push(offset),
                Err(_) => {
                    let plain = (0..offsets.len())
                        .map(|at| bases[at / BLOCK] + u64::from(offsets[at]))
                        .collect();
                    *self = Self::Plain(plain);
                }
            }
        }
        if let Self::Plain(firsts) = self {
            firsts.push(first);
        }
    }

    /// How many saves start at or before `id`.
    fn at_or_before(&self, id: u64) -> usize {
        match self {
            Self::Blocks { bases, offsets } => {
                let blocks = bases.partition_point(|&base| base <= id);
                if blocks == 0 {
                    return 0;
                }
                let start = (blocks - 1) * BLOCK;
                let end = (start + BLOCK).min(offsets.len());
                let base = bases[blocks - 1];
                start + offsets[start..end].partition_point(|&o| base + u64::from(o) <= id)
            }
            Self::Plain(firsts) => firsts.partition_point(|&first| first <= id),
        }
    }
}

/// The ids one application has tracked, as disjoint ranges (contiguous
/// tracking, the usual, costs one), and the greatest.
#[derive(Debug, Default)]
struct Tracked {
    /// First → last (inclusive) of each range; no two touch.
    ranges: BTreeMap<u64, u64>,
    max: u64,
}

impl Tracked {
    fn contains(&self, id: u64) -> bool {
        self.ranges
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &last)| last >= id)
    }

    fn insert(&mut self, id: u64) {
        self.max = self.max.max(id);
        let before = self.ranges.range(..=id).next_back().map(|(&f, &l)| (f, l));
        if before.is_some_and(|(_, last)| last >= id) {
            return;
        }
        let after = id.checked_add(1).and_then(|next| self.ranges.remove(&next));
        let last = after.unwrap_or(id);
        match before {
            Some((first, prev)) if prev.checked_add(1) == Some(id) => {
                self.ranges.insert(first, last);
            }
            _ => {
                self.ranges.insert(id, last);
            }
        }
    }
}

/// Where each event of the log read so far is.
#[derive(Debug)]
pub(crate) struct Index {
    hasher: Hasher,
    firsts: Firsts,
    /// Each event's topic, by notification id - 1, as an index into
    /// `topic_names` (a log has few topics and many events).
    topics: Topics,
    topic_names: Vec<String>,
    topic_ids: HashMap<String, u32>,
    streams: Streams,
    tracking: HashMap<String, Tracked>,
    /// Each idempotency key's save (its outcome is in that object, which
    /// holds the key itself: the recorder matches it there).
    keys: HashMap<Key, u64>,
    /// Saves per segment: a segment is due when the count of saves is a
    /// multiple of it.
    segment_saves: u64,
    /// The saves read one by one since the last multiple of
    /// `segment_saves`: the next segment, once whole.
    recent: Vec<Positions>,
}

impl Index {
    pub(crate) fn new(segment_saves: u64) -> Self {
        Self::with_levels(segment_saves, FLUSH_RUNS, MAX_LEVEL)
    }

    /// An index whose streams flush `flush_runs` runs at a time into
    /// levels of at most `max_level` (small ones, in tests, to exercise
    /// them).
    fn with_levels(segment_saves: u64, flush_runs: usize, max_level: usize) -> Self {
        Self {
            hasher: Hasher::default(),
            firsts: Firsts::Blocks {
                bases: Vec::new(),
                offsets: Vec::new(),
            },
            topics: Topics::Few(Vec::new()),
            topic_names: Vec::new(),
            topic_ids: HashMap::new(),
            streams: Streams::new(flush_runs, max_level),
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
        self.firsts
            .get(usize::try_from(save - 1).expect("a save read is indexed"))
    }

    /// The save holding notification `id`, and the event's place in it.
    pub(crate) fn locate(&self, id: u64) -> (u64, usize) {
        let after = self.firsts.at_or_before(id);
        let save = after as u64;
        let offset = usize::try_from(id - self.firsts.get(after - 1)).expect("a save's size fits");
        (save, offset)
    }

    /// The topic of notification `id`.
    pub(crate) fn topic(&self, id: u64) -> &str {
        &self.topic_names[self
            .topics
            .get(usize::try_from(id - 1).expect("an indexed id"))]
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
        if let Some(outcome) = outcome.filter(|o| self.key(&o.key).is_some()) {
            return Err(key_stored_already(&outcome.key));
        }
        if let Some(tracking) =
            tracking.filter(|t| self.has_tracking_id(&t.application_name, t.notification_id))
        {
            return Err(tracked_already(tracking));
        }
        check_versions(events, |id, version| {
            self.streams.holds(self.hasher.key(id), version)
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
    pub(crate) fn add_segment<S: AsRef<str>>(&mut self, segment: &Segment<S>) -> Result<()> {
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
                let key = self.hasher.key(stream.as_ref());
                !seen.insert((key, *version)) || self.streams.holds(key, *version)
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

    fn index<S: AsRef<str>>(&mut self, save: &Positions<S>, number: u64) -> Vec<u64> {
        let first = self.next_id();
        self.firsts.push(first);
        let mut ids = Vec::with_capacity(save.events.len());
        for (stream, version, topic) in &save.events {
            let id = self.next_id();
            let topic = topic.as_ref();
            let topic = match self.topic_ids.get(topic) {
                Some(&t) => t,
                None => {
                    let t = u32::try_from(self.topic_names.len()).expect("fewer topics than u32");
                    self.topic_names.push(topic.to_owned());
                    self.topic_ids.insert(topic.to_owned(), t);
                    t
                }
            };
            self.topics.push(topic);
            self.streams
                .add(self.hasher.key(stream.as_ref()), *version, id);
            ids.push(id);
        }
        for (application, notification) in &save.tracking {
            let application = application.as_ref();
            let tracked = match self.tracking.get_mut(application) {
                Some(tracked) => tracked,
                None => self.tracking.entry(application.to_owned()).or_default(),
            };
            tracked.insert(*notification);
        }
        for key in &save.keys {
            self.keys.insert(self.hasher.key(key.as_ref()), number);
        }
        ids
    }

    /// The notification ids of stream `stream`'s events that `query`
    /// selects, in its order.
    pub(crate) fn stream(&self, stream: &str, query: &EventQuery) -> Vec<u64> {
        self.streams.select(self.hasher.key(stream), query)
    }

    /// The save holding idempotency key `key`'s outcome.
    pub(crate) fn key(&self, key: &str) -> Option<u64> {
        self.keys.get(&self.hasher.key(key)).copied()
    }

    pub(crate) fn max_tracking_id(&self, application: &str) -> u64 {
        self.tracking.get(application).map_or(0, |t| t.max)
    }

    pub(crate) fn has_tracking_id(&self, application: &str, id: u64) -> bool {
        self.tracking
            .get(application)
            .is_some_and(|t| t.contains(id))
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

    /// The filter of streams grows as streams come (from room for 1,024
    /// to 8,192 and more), and never forgets one: every stream of a few
    /// thousand is found, in levels and in the recent map, by its events
    /// and by the check of a version it has.
    #[test]
    fn every_stream_is_found_as_the_filter_grows() {
        // Small levels, so that most streams are in them when it grows.
        let mut index = Index::with_levels(1000, 64, 1024);
        let streams: Vec<String> = (0..5_000).map(|n| format!("s{n}")).collect();
        for stream in &streams {
            index.add(save(&[(stream, 1), (stream, 2)]), None);
        }
        assert!(index.streams.bloom.bits.len() * 64 >= 5_000 * Bloom::BITS_A_KEY);
        for (n, stream) in streams.iter().enumerate() {
            let first = 2 * n as u64 + 1;
            assert_eq!(index.stream(stream, &EventQuery::all()), [first, first + 1]);
            let again = [annals_core::testing::contract::event(stream, 2, "T")];
            assert!(
                index.check(&again, None, None).is_err(),
                "{stream}@2 is stored"
            );
        }
        assert!(index.stream("never", &EventQuery::all()).is_empty());
        let new = [annals_core::testing::contract::event("never", 1, "T")];
        assert!(index.check(&new, None, None).is_ok());
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

/// The compact index against a model of what it keeps (maps of strings
/// and sets), over random saves; and its edges (long runs, versions
/// beyond 48 bits, many topics, wide blocks, tracking ranges).
#[cfg(test)]
mod compact {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    /// What the index answers, kept plainly.
    #[derive(Default)]
    struct Model {
        events: BTreeMap<(String, u64), u64>,
        topics: Vec<String>,
        firsts: Vec<u64>,
        tracking: HashMap<String, BTreeSet<u64>>,
        keys: HashMap<String, u64>,
    }

    impl Model {
        fn conflicts(&self, save: &Positions) -> bool {
            let mut seen = HashSet::new();
            save.events
                .iter()
                .any(|(s, v, _)| !seen.insert((s, v)) || self.events.contains_key(&(s.clone(), *v)))
                || save
                    .tracking
                    .iter()
                    .any(|(a, id)| self.tracking.get(a).is_some_and(|ids| ids.contains(id)))
                || save.keys.iter().any(|k| self.keys.contains_key(k))
        }

        fn add(&mut self, save: &Positions) {
            let first = self.topics.len() as u64 + 1;
            self.firsts.push(first);
            for (stream, version, topic) in &save.events {
                let id = self.topics.len() as u64 + 1;
                self.topics.push(topic.clone());
                self.events.insert((stream.clone(), *version), id);
            }
            for (app, id) in &save.tracking {
                self.tracking.entry(app.clone()).or_default().insert(*id);
            }
            for key in &save.keys {
                self.keys.insert(key.clone(), self.firsts.len() as u64);
            }
        }

        fn stream(&self, stream: &str, query: &EventQuery) -> Vec<u64> {
            let selected = self
                .events
                .range((stream.to_owned(), 0)..=(stream.to_owned(), u64::MAX))
                .filter(|((_, v), _)| query.gt.is_none_or(|gt| *v > gt))
                .filter(|((_, v), _)| query.lte.is_none_or(|lte| *v <= lte))
                .map(|(_, &id)| id);
            let limit = query.limit.unwrap_or(usize::MAX);
            if query.desc {
                selected.rev().take(limit).collect()
            } else {
                selected.take(limit).collect()
            }
        }

        /// Checks that `index` answers as the model does.
        fn agrees(&self, index: &Index, queries: &[(usize, EventQuery)]) {
            assert_eq!(index.saves(), self.firsts.len() as u64);
            assert_eq!(index.next_id(), self.topics.len() as u64 + 1);
            for (n, &first) in (1..).zip(&self.firsts) {
                assert_eq!(index.first_of(n), first);
            }
            for id in 1..=self.topics.len() as u64 {
                let save = self.firsts.partition_point(|&f| f <= id);
                let offset = (id - self.firsts[save - 1]) as usize;
                assert_eq!(index.locate(id), (save as u64, offset), "locate {id}");
                assert_eq!(index.topic(id), self.topics[id as usize - 1]);
            }
            for (stream, query) in queries {
                let stream = STREAMS[*stream];
                assert_eq!(
                    index.stream(stream, query),
                    self.stream(stream, query),
                    "{stream} {query:?}"
                );
            }
            for stream in STREAMS {
                assert_eq!(
                    index.stream(stream, &EventQuery::all()),
                    self.stream(stream, &EventQuery::all())
                );
            }
            // Every stored version is taken; a few unstored ones are not.
            for (stream, version) in self.events.keys() {
                let event = [stored(stream, *version)];
                assert!(
                    index.check(&event, None, None).is_err(),
                    "{stream} {version}"
                );
                for near in [version.wrapping_sub(1), version.wrapping_add(1)] {
                    if !self.events.contains_key(&(stream.clone(), near)) {
                        let event = [stored(stream, near)];
                        assert!(index.check(&event, None, None).is_ok(), "{stream} {near}");
                    }
                }
            }
            for app in APPS {
                let ids = self.tracking.get(app);
                assert_eq!(
                    index.max_tracking_id(app),
                    ids.and_then(|ids| ids.last().copied()).unwrap_or(0)
                );
                for id in 0..=TRACKED + 1 {
                    assert_eq!(
                        index.has_tracking_id(app, id),
                        ids.is_some_and(|ids| ids.contains(&id)),
                        "{app} {id}"
                    );
                }
            }
            for k in 0..KEYS {
                let key = format!("k{k}");
                assert_eq!(index.key(&key), self.keys.get(&key).copied(), "{key}");
            }
        }
    }

    const STREAMS: [&str; 6] = ["a", "b", "c", "d", "e", "never"];
    const APPS: [&str; 2] = ["up", "other"];
    const TRACKED: u64 = 60;
    const KEYS: u64 = 20;

    fn stored(stream: &str, version: u64) -> StoredEvent {
        StoredEvent {
            originator_id: stream.to_owned(),
            originator_version: version,
            topic: "T".into(),
            state: Vec::new(),
        }
    }

    fn version() -> impl Strategy<Value = u64> {
        prop_oneof![
            6 => 0u64..40,
            1 => (VERSION_MASK - 3)..(VERSION_MASK + 3),
            1 => (u64::MAX - 8)..(u64::MAX - 4),
        ]
    }

    /// A save: runs of consecutive versions of streams "a".."e", maybe a
    /// tracking record and a key.
    fn positions() -> impl Strategy<Value = Positions> {
        (
            prop::collection::vec((0..5usize, version(), 1..5u64, 0..3u8), 0..4),
            prop::option::weighted(0.3, (0..APPS.len(), 0..=TRACKED)),
            prop::option::weighted(0.2, 0..KEYS),
        )
            .prop_map(|(runs, tracking, key)| Positions {
                events: runs
                    .into_iter()
                    .flat_map(|(stream, first, len, topic)| {
                        (first..first + len)
                            .map(move |v| (STREAMS[stream].to_owned(), v, format!("T{topic}")))
                    })
                    .collect(),
                tracking: tracking
                    .map(|(app, id)| (APPS[app].to_owned(), id))
                    .into_iter()
                    .collect(),
                keys: key.map(|k| format!("k{k}")).into_iter().collect(),
            })
    }

    fn query() -> impl Strategy<Value = (usize, EventQuery)> {
        let bound = || prop::option::of(version());
        (
            0..STREAMS.len(),
            bound(),
            bound(),
            any::<bool>(),
            prop::option::of(0..8usize),
        )
            .prop_map(|(stream, gt, lte, desc, limit)| {
                (
                    stream,
                    EventQuery {
                        gt,
                        lte,
                        desc,
                        limit,
                    },
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Saves added one by one, and the same through segments, give
        /// what the model gives; a save that conflicts is refused by
        /// `check`, one that does not is let through.
        #[test]
        fn answers_as_the_model(
            saves in prop::collection::vec(positions(), 1..150),
            queries in prop::collection::vec(query(), 0..40),
            flush_runs in 1..6usize,
            max_level in prop::sample::select(vec![1usize, 2, 8, 16, 1_000]),
        ) {
            let mut model = Model::default();
            let mut index = Index::with_levels(3, flush_runs, max_level);
            let mut by_segments = Index::with_levels(3, flush_runs, max_level);
            let mut added = Vec::new();
            for save in saves {
                let events: Vec<StoredEvent> =
                    save.events.iter().map(|(s, v, _)| stored(s, *v)).collect();
                let tracking = save.tracking.first().map(|(a, id)| Tracking {
                    application_name: a.clone(),
                    notification_id: *id,
                });
                let outcome = save.keys.first().map(|k| KeyedOutcome {
                    key: k.clone(),
                    outcome: Vec::new(),
                });
                let checked = index.check(&events, tracking.as_ref(), outcome.as_ref());
                prop_assert_eq!(checked.is_err(), model.conflicts(&save), "{:?}", save);
                if checked.is_err() {
                    continue;
                }
                model.add(&save);
                let (ids, segment) = index.add(save.clone(), None);
                let first = model.firsts.last().copied().unwrap_or(1);
                prop_assert_eq!(ids, (first..first + save.events.len() as u64).collect::<Vec<_>>());
                added.push(save);
                if let Some(segment) = segment {
                    by_segments.add_segment(&segment).expect("a segment of checked saves");
                }
            }
            for save in &added[by_segments.saves() as usize..] {
                by_segments.add(save.clone(), None);
            }
            // A segment that repeats a stored version is refused whole.
            if let Some(((stream, version), _)) = model.events.iter().next() {
                let saves = by_segments.saves();
                let repeating = Segment {
                    first_save: saves + 1,
                    first_id: by_segments.next_id(),
                    saves: vec![
                        Positions {
                            events: vec![("fresh".into(), 1, "T".into())],
                            ..Positions::default()
                        },
                        Positions {
                            events: vec![(stream.clone(), *version, "T".into())],
                            ..Positions::default()
                        },
                    ],
                    last_token: None,
                };
                prop_assert!(by_segments.add_segment(&repeating).is_err());
                prop_assert_eq!(by_segments.saves(), saves);
                prop_assert!(by_segments.stream("fresh", &EventQuery::all()).is_empty());
            }
            // Merges keep levels within their bound (a flush may make
            // one larger than a small bound).
            for levels in [&index.streams.levels, &by_segments.streams.levels] {
                prop_assert!(levels.iter().all(|l| l.len() <= max_level.max(flush_runs)));
            }
            model.agrees(&index, &queries);
            model.agrees(&by_segments, &queries);
        }
    }

    /// Versions beyond 48 bits, runs across that edge and runs longer
    /// than 65,536 are kept, and the long run is split, not refused.
    #[test]
    fn big_versions_and_long_runs() {
        let mut index = Index::new(1_000_000);
        let edge: Vec<u64> = (VERSION_MASK - 2..=VERSION_MASK + 2).collect();
        let save = |stream: &str, versions: &[u64]| Positions {
            events: versions
                .iter()
                .map(|&v| (stream.to_owned(), v, "T".to_owned()))
                .collect(),
            ..Positions::default()
        };
        index.add(save("edge", &edge), None);
        index.add(save("edge", &[u64::MAX]), None);
        assert_eq!(index.stream("edge", &EventQuery::all()), [1, 2, 3, 4, 5, 6]);
        let query = EventQuery {
            gt: Some(VERSION_MASK - 1),
            lte: Some(VERSION_MASK + 1),
            desc: true,
            limit: None,
        };
        assert_eq!(index.stream("edge", &query), [4, 3]);
        assert_eq!(
            index.stream("edge", &EventQuery::all().after(VERSION_MASK + 2)),
            [6]
        );
        for &v in edge.iter().chain([&u64::MAX]) {
            assert!(index.check(&[stored("edge", v)], None, None).is_err());
        }
        assert!(index
            .check(&[stored("edge", u64::MAX - 1)], None, None)
            .is_ok());

        let long: Vec<u64> = (1..=70_000).collect();
        index.add(save("long", &long), None);
        let ids: Vec<u64> = (7..7 + 70_000).collect();
        assert_eq!(index.stream("long", &EventQuery::all()), ids);
        let across = EventQuery {
            gt: Some(65_530),
            lte: Some(65_540),
            ..EventQuery::all()
        };
        assert_eq!(index.stream("long", &across), ids[65_530..65_540]);
        for v in [1, 65_536, 65_537, 70_000] {
            assert!(index.check(&[stored("long", v)], None, None).is_err());
        }
        assert!(index.check(&[stored("long", 70_001)], None, None).is_ok());
        // Two runs: 65,536 and the rest.
        let key = index.hasher.key("long");
        assert_eq!(index.streams.fresh[&key].len(), 2);
    }

    /// Tracked ids in any order make disjoint ranges, merged when they
    /// touch: a thousand contiguous ids are one range.
    #[test]
    fn tracking_ranges_merge() {
        let mut index = Index::new(100);
        let track = |index: &mut Index, id: u64| {
            index.add(
                Positions {
                    tracking: vec![("up".into(), id)],
                    ..Positions::default()
                },
                None,
            );
        };
        // 1..=1000, shuffled (337 and 1000 share no factor).
        for i in 0..1000u64 {
            track(&mut index, i * 337 % 1000 + 1);
        }
        let tracked = &index.tracking["up"];
        assert_eq!(
            tracked
                .ranges
                .iter()
                .map(|(&f, &l)| (f, l))
                .collect::<Vec<_>>(),
            [(1, 1000)]
        );
        assert_eq!(index.max_tracking_id("up"), 1000);
        assert!(index.has_tracking_id("up", 1) && index.has_tracking_id("up", 1000));
        assert!(!index.has_tracking_id("up", 0) && !index.has_tracking_id("up", 1001));
        // Gaps stay gaps until filled; the ends of u64 are ids like others.
        for id in [1005, 1003, u64::MAX, 0] {
            track(&mut index, id);
        }
        let ranges = |index: &Index| {
            index.tracking["up"]
                .ranges
                .iter()
                .map(|(&f, &l)| (f, l))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ranges(&index),
            [(0, 1000), (1003, 1003), (1005, 1005), (u64::MAX, u64::MAX)]
        );
        assert!(!index.has_tracking_id("up", 1004));
        track(&mut index, 1004);
        track(&mut index, 1001);
        assert_eq!(
            ranges(&index),
            [(0, 1001), (1003, 1005), (u64::MAX, u64::MAX)]
        );
        assert_eq!(index.max_tracking_id("up"), u64::MAX);
    }

    /// More than 65,536 topics widen the topics to u32, keeping each.
    #[test]
    fn many_topics() {
        let mut index = Index::new(1_000_000);
        let n = 70_000u64;
        index.add(
            Positions {
                events: (1..=n).map(|v| ("s".into(), v, format!("T{v}"))).collect(),
                ..Positions::default()
            },
            None,
        );
        assert!(matches!(index.topics, Topics::Many(_)));
        for id in [1, 65_536, 65_537, n] {
            assert_eq!(index.topic(id), format!("T{id}"));
        }
    }

    /// Saves' first ids: in blocks of offsets, across blocks and empty
    /// saves, and plain once a block would span more than u32.
    #[test]
    fn firsts_in_blocks() {
        let mut index = Index::new(1_000_000);
        let mut firsts = Vec::new();
        for n in 0..3 * BLOCK as u64 + 5 {
            let events = (0..n % 4).map(|v| (format!("s{n}"), v, "T".to_owned()));
            firsts.push(index.next_id());
            index.add(
                Positions {
                    events: events.collect(),
                    ..Positions::default()
                },
                None,
            );
        }
        for (n, &first) in (1..).zip(&firsts) {
            assert_eq!(index.first_of(n), first);
        }
        for id in 1..index.next_id() {
            let save = firsts.partition_point(|&f| f <= id);
            assert_eq!(
                index.locate(id),
                (save as u64, (id - firsts[save - 1]) as usize)
            );
        }

        let mut wide = Firsts::Blocks {
            bases: Vec::new(),
            offsets: Vec::new(),
        };
        let ids = [1, 5, 5, 1 << 33, (1 << 33) + 2];
        for id in ids {
            wide.push(id);
        }
        assert!(matches!(wide, Firsts::Plain(_)));
        assert_eq!(
            (0..ids.len()).map(|at| wide.get(at)).collect::<Vec<_>>(),
            ids
        );
        assert_eq!(wide.at_or_before(1 << 33), 4);
        assert_eq!(wide.at_or_before(6), 3);
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
        status_kb("VmRSS:")
    }

    fn status_kb(field: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .expect("this process's status")
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    #[ignore = "a measurement, run by hand"]
    fn bytes_a_save() {
        let before = rss_kb();
        let started = std::time::Instant::now();
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
        let elapsed = started.elapsed();
        eprintln!("{} bytes a save", (rss_kb() - before) * 1024 / 1_000_000);
        eprintln!("a million saves added in {elapsed:.2?}");
        eprintln!(
            "the process's peak RSS: {} MB (at the start: {} MB)",
            status_kb("VmHWM:") / 1024,
            before / 1024
        );
    }
}
