//! The object store's recorder: a log of save objects, and the index of
//! it that this process has read.
//!
//! A save's tracking record and idempotency key are in its object, so the
//! create-if-absent write that decides the save decides them too: a
//! writer that loses the race for a name reads the winner's save and
//! checks its own key and tracking record against it before it tries the
//! next name.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::index::{Index, Positions, Segment};
use annals_core::error::{Error, Result};
use annals_core::persistence::wake::{Signal, Watch};
use annals_core::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, KeyedOutcome, Notification,
    NotificationQuery, ProcessRecorder, StoredEvent, Tracking,
};

/// Saves per index segment, by default: a cold start reads one segment
/// object for each this many saves, and the saves after the last one.
pub const SEGMENT_SAVES: u64 = 1000;

/// The most saves a merged index segment holds: a cold start holds one
/// segment's parse at a time beside the index, so larger ones would cost
/// memory (a segment of a million saves is about 300 MB parsed) for few
/// requests saved (a million saves is a hundred segments of this size).
const MERGED_SAVES: u64 = 10_000;

/// How many decoded save objects a recorder keeps: the events it reads
/// are read from their saves, and the saves it has just written or read
/// are the likeliest to be read next.
const CACHED_SAVES: usize = 4096;

/// How many objects a recorder reads at once when it reads many (a cold
/// start, a page of the log).
const PARALLEL_READS: usize = 32;

/// The recorder of the object store (see [the module](super)): events,
/// the log and tracking records in one object per save.
pub struct ObjectRecorder {
    store: Arc<dyn ObjectStore>,
    /// Where the save objects are: `{root}/{n:020}`.
    root: Path,
    /// Where the index segments are: `{root}-index/{first:020}-{last:020}`.
    segments: Path,
    /// The process's object store runtime (see [`super::runtime`]).
    runtime: tokio::runtime::Handle,
    index: Mutex<Index>,
    /// Save objects read or written, decoded, by number.
    cache: Mutex<lru::LruCache<u64, Arc<Decoded>>>,
    /// Saves waiting for the writer (the index's lock).
    queue: Mutex<Vec<Arc<Queued>>>,
    /// Wakes the queued saves (with `queue`'s lock) when the writer is let
    /// go.
    wake: std::sync::Condvar,
    /// How many saves wait on `wake`: a release wakes only when some do.
    waiting: AtomicUsize,
    /// Saves per index segment (of the first level: see `merge_segments`).
    segment_saves: u64,
    /// Index segments found at open that do not hold what the log holds
    /// (unreadable, or of saves the log does not have): written again,
    /// over, when this process makes their saves' segment.
    stale: Mutex<std::collections::HashSet<Path>>,
}

impl std::fmt::Debug for ObjectRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRecorder")
            .field("store", &self.store.to_string())
            .field("root", &self.root.as_ref())
            .finish_non_exhaustive()
    }
}

/// One save object, as stored: a save's events, tracking record and key,
/// or (`saves`) those of a group of saves written together.
#[derive(Serialize, Deserialize)]
struct Save {
    /// The notification id of the first event (the ids are consecutive).
    first: u64,
    /// A lone save's events; absent for a group, so that a reader that
    /// knows no groups refuses the object rather than read a part of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<Vec<Row>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracking: Option<TrackingRow>,
    /// The idempotency key of the request that made the save, and its
    /// outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyRow>,
    /// Random, one for each object (all its writes): what tells a
    /// writer's own object (a write that was stored but answered with an
    /// error, then retried) from another writer's save of the very same
    /// events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// A group's saves, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    saves: Vec<Part>,
}

/// One save of a group.
#[derive(Serialize, Deserialize)]
struct Part {
    events: Vec<Row>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracking: Option<TrackingRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyRow>,
}

impl Queued {
    fn of(
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: Option<&KeyedOutcome>,
    ) -> Self {
        Self {
            events: events.to_vec(),
            tracking: tracking.cloned(),
            outcome: outcome.cloned(),
            result: Mutex::new(None),
        }
    }
}

/// How a queued save's wait ended.
enum Waited<'a> {
    /// Another save wrote it: its result.
    Settled(Result<Vec<u64>>),
    /// The writer is free: this save writes the queue.
    Leading(IndexGuard<'a>),
}

/// The index's lock, held: the writer. Letting it go wakes the queued
/// saves, so that one written by the save that held it returns at once,
/// and one not yet written can write the queue.
struct IndexGuard<'a> {
    guard: Option<MutexGuard<'a, Index>>,
    recorder: &'a ObjectRecorder,
}

impl std::ops::Deref for IndexGuard<'_> {
    type Target = Index;

    fn deref(&self) -> &Index {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for IndexGuard<'_> {
    fn deref_mut(&mut self) -> &mut Index {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for IndexGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if self.recorder.waiting.load(Ordering::SeqCst) > 0 {
            // Under the queue's lock: a save between its look at the
            // writer and its wait holds it, so it cannot miss this.
            let _queue = self.recorder.queue();
            self.recorder.wake.notify_all();
        }
    }
}

/// Settles every queued save of a group still unsettled when dropped: a
/// writer that panics while it writes them leaves none waiting for a
/// result, and none is written twice (whether the object landed is
/// unknown).
struct SettleOnUnwind<'a>(&'a [Arc<Queued>]);

impl Drop for SettleOnUnwind<'_> {
    fn drop(&mut self) {
        for queued in self.0 {
            let mut result = queued.result();
            if result.is_none() {
                *result = Some(Err(Error::persistence(
                    "saving to the object store",
                    "the save writing this one's group panicked: whether it was stored is unknown",
                )));
            }
        }
    }
}

/// A save to write: its events, tracking record and key.
#[derive(Clone, Copy)]
struct Request<'a> {
    events: &'a [StoredEvent],
    tracking: Option<&'a Tracking>,
    outcome: Option<&'a KeyedOutcome>,
}

/// A save that waits for the writer: whichever save holds it writes every
/// queued one, in one object (see `ObjectRecorder::save`).
struct Queued {
    events: Vec<StoredEvent>,
    tracking: Option<Tracking>,
    outcome: Option<KeyedOutcome>,
    /// Set by the save that wrote it, before that lets go of the writer.
    result: Mutex<Option<Result<Vec<u64>>>>,
}

impl Queued {
    fn request(&self) -> Request<'_> {
        Request {
            events: &self.events,
            tracking: self.tracking.as_ref(),
            outcome: self.outcome.as_ref(),
        }
    }

    fn result(&self) -> MutexGuard<'_, Option<Result<Vec<u64>>>> {
        self.result.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Serialize, Deserialize)]
struct Row {
    id: String,
    version: u64,
    topic: String,
    /// The stored state, base64.
    state: String,
}

#[derive(Serialize, Deserialize)]
struct TrackingRow {
    application: String,
    notification: u64,
}

#[derive(Serialize, Deserialize)]
struct KeyRow {
    key: String,
    /// The outcome, base64.
    outcome: String,
}

/// How often a watcher looks for the next save object (a HEAD request).
pub(crate) const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

pub(crate) use annals_core::bridge::block_on;

/// How many lost races in a row a save tolerates before it gives up: each
/// lost race means another writer stored a save, so this bounds only a
/// pathological churn.
pub(crate) const MAX_RACES: usize = 10_000;

impl ObjectRecorder {
    /// A recorder of the saves under `root` in `store`, with an index
    /// segment every [`SEGMENT_SAVES`] saves; reads what is there.
    ///
    /// # Errors
    ///
    /// The runtime cannot start; the store cannot be read; an object under
    /// `root` is not a save (named in the error).
    pub fn open(store: Arc<dyn ObjectStore>, root: Path) -> Result<Self> {
        Self::open_with(store, root, SEGMENT_SAVES)
    }

    /// [`open`](Self::open), with an index segment every `segment_saves`
    /// saves. Processes sharing a log should agree on it: a segment of
    /// another size is still read, but each writes its own.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(store: Arc<dyn ObjectStore>, root: Path, segment_saves: u64) -> Result<Self> {
        let segments = Path::from(format!("{root}-index"));
        let recorder = Self {
            store,
            root,
            segments,
            runtime: super::runtime()?,
            index: Mutex::new(Index::new(segment_saves)),
            segment_saves: segment_saves.max(1),
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CACHED_SAVES).expect("not zero"),
            )),
            queue: Mutex::new(Vec::new()),
            wake: std::sync::Condvar::new(),
            waiting: AtomicUsize::new(0),
            stale: Mutex::new(std::collections::HashSet::new()),
        };
        let made = {
            let mut index = recorder.lock();
            recorder.load_segments(&mut index)?;
            recorder.read_tail(&mut index)?
        };
        recorder.write_segments(made);
        Ok(recorder)
    }

    /// How many save objects the index has read.
    pub(crate) fn saves(&self) -> u64 {
        self.lock().saves()
    }

    fn block_on<F: Future + Send>(&self, future: F) -> F::Output
    where
        F::Output: Send,
    {
        block_on(&self.runtime, future)
    }

    fn path(&self, save: u64) -> Path {
        self.root.clone().join(format!("{save:020}").as_str())
    }

    fn lock(&self) -> IndexGuard<'_> {
        // Every change to the index is applied whole after its checks.
        IndexGuard {
            guard: Some(self.index.lock().unwrap_or_else(|e| e.into_inner())),
            recorder: self,
        }
    }

    fn cache(&self) -> MutexGuard<'_, lru::LruCache<u64, Arc<Decoded>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index, with every save stored so far read into it.
    fn caught_up(&self) -> Result<IndexGuard<'_>> {
        let mut index = self.lock();
        self.read_new(&mut index)?;
        Ok(index)
    }

    /// The error of listing `prefix` at open, naming a missing bucket or
    /// container: S3 answers a GET in a missing bucket with the same 404
    /// as a missing object (Azure in a missing container likewise), which
    /// would make the bucket read as an empty store.
    fn open_error(&self, e: &object_store::Error) -> Error {
        let context = format!("opening {} in {}", self.root, self.store);
        // S3's documented error code, in the body its 404 carries.
        if says(e, "NoSuchBucket") {
            return Error::persistence(context, format!("the bucket does not exist: {e}"));
        }
        // Azure's, in the body of its 404 (and Azurite's).
        if says(e, "ContainerNotFound") {
            return Error::persistence(context, format!("the container does not exist: {e}"));
        }
        Error::persistence(context, e.to_string())
    }

    /// Reads the index segments that cover the log from its first save
    /// on (at each start the longest), 32 at once. The chain ends before a
    /// segment that cannot be read or parsed, or that names other saves;
    /// then at the last segment that holds what the log holds (its last
    /// save is there, with the first id, event count and token the
    /// segment says: one GET, or a few by halving when the log is not the
    /// one the segments were made from). Each segment is added whole or
    /// not at all. The saves after the chain are read instead, and the
    /// segments passed over are marked stale, to be written again.
    fn load_segments(&self, index: &mut Index) -> Result<()> {
        let listed = self.block_on(async {
            let mut list = self.store.list(Some(&self.segments));
            let mut names = Vec::new();
            while let Some(item) =
                std::future::poll_fn(|cx| futures_core::Stream::poll_next(list.as_mut(), cx)).await
            {
                match item {
                    Ok(meta) => names.push(meta.location),
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(names)
        });
        let names = listed.map_err(|e| self.open_error(&e))?;
        let mut ranges: Vec<(u64, u64, Path)> = names
            .iter()
            .filter_map(|path| {
                let (first, last) = path.filename()?.split_once('-')?;
                let number = |s: &str| (s.len() == 20).then(|| s.parse::<u64>().ok()).flatten();
                let (first, last) = (number(first)?, number(last)?);
                (first >= 1 && last >= first).then(|| (first, last, path.clone()))
            })
            .collect();
        ranges.sort_by_key(|&(first, last, _)| (first, std::cmp::Reverse(last)));
        let mut chain = Vec::new();
        let mut next = 1;
        for (first, last, path) in ranges {
            if first == next {
                chain.push((first, last, path));
                next = last + 1;
            }
        }
        // The longest prefix of the chain that the log holds: a segment
        // holds only if every one before it does (saves are never
        // rewritten), so the last is checked, then halves.
        let mut checked: Option<(usize, Segment)> = None;
        let mut holds_at = |k: usize| -> bool {
            let (first, last, path) = &chain[k - 1];
            match self.read_segment(path, *first, *last) {
                Ok(segment) => {
                    let holds = self.holds(&segment);
                    if holds {
                        checked = Some((k - 1, segment));
                    }
                    holds
                }
                Err(e) => {
                    tracing::warn!(segment = %path, error = %e.report(), "an index segment is unusable: the saves it covers are read instead");
                    false
                }
            }
        };
        let mut keep = chain.len();
        if keep > 0 && !holds_at(keep) {
            let (mut good, mut bad) = (0, keep - 1);
            while bad > good {
                let middle = good + (bad - good).div_ceil(2);
                if holds_at(middle) {
                    good = middle;
                } else {
                    bad = middle - 1;
                }
            }
            keep = good;
        }
        // Then the segments, read and added a batch at a time (at most 32
        // objects and about 50,000 saves: a cold start holds one batch of
        // them beside the index, not all).
        let mut used = std::collections::HashSet::new();
        let mut at = 0;
        'add: while at < keep {
            let mut end = at;
            let mut saves = 0;
            while end < keep && end - at < PARALLEL_READS && (end == at || saves < 50_000) {
                saves += chain[end].1 - chain[end].0 + 1;
                end += 1;
            }
            let wanted: Vec<usize> = (at..end)
                .filter(|&k| checked.as_ref().is_none_or(|(c, _)| *c != k))
                .collect();
            let paths: Vec<Path> = wanted.iter().map(|&k| chain[k].2.clone()).collect();
            let mut fetched = match self.fetch(&paths) {
                Ok(fetched) => wanted
                    .into_iter()
                    .zip(fetched)
                    .collect::<std::collections::HashMap<_, _>>(),
                Err(e) => {
                    tracing::warn!(error = %e.report(), "cannot read index segments: the saves they cover are read instead");
                    break;
                }
            };
            for (k, (first, last, path)) in chain.iter().enumerate().take(end).skip(at) {
                let segment = match checked.take_if(|(c, _)| *c == k) {
                    Some((_, segment)) => Ok(segment),
                    None => fetched
                        .remove(&k)
                        .flatten()
                        .ok_or_else(|| Error::persistence(format!("reading {path}"), "it is gone"))
                        .and_then(|bytes| Self::parse_segment(path, &bytes, *first, *last)),
                };
                if let Err(e) = segment.and_then(|segment| index.add_segment(&segment)) {
                    tracing::warn!(segment = %path, error = %e.report(), "an index segment is unusable: the saves it covers are read instead");
                    break 'add;
                }
                used.insert(path.clone());
            }
            at = end;
        }
        let mut stale = self.stale();
        for path in names {
            if !used.contains(&path) {
                stale.insert(path);
            }
        }
        Ok(())
    }

    /// The index segment at `path`, which its name says holds saves
    /// `first` to `last`.
    fn read_segment(&self, path: &Path, first: u64, last: u64) -> Result<Segment> {
        let bytes = self
            .read(path)?
            .ok_or_else(|| Error::persistence(format!("reading {path}"), "it is gone"))?;
        Self::parse_segment(path, &bytes, first, last)
    }

    fn parse_segment(path: &Path, bytes: &[u8], first: u64, last: u64) -> Result<Segment> {
        let segment: Segment = serde_json::from_slice(bytes)
            .map_err(|e| Error::persistence(format!("reading {path}"), e))?;
        if segment.saves.is_empty() || (segment.first_save, segment.last_save()) != (first, last) {
            return Err(Error::persistence(
                format!("reading {path}"),
                "it holds other saves than its name says",
            ));
        }
        Ok(segment)
    }

    /// Whether the log holds `segment`'s last save as the segment says it.
    fn holds(&self, segment: &Segment) -> bool {
        let last = segment.last_save();
        let path = self.path(last);
        let read = self.read(&path).and_then(|bytes| {
            bytes
                .map(|bytes| decode(&path, &bytes, segment.last_first_id()))
                .transpose()
        });
        match read {
            Ok(Some(save)) => {
                let events = segment.saves.last().map_or(0, |s| s.events.len());
                let holds = save.events.len() == events
                    && (segment.last_token.is_none() || save.token == segment.last_token);
                if !holds {
                    tracing::warn!(save = %path, "an index segment does not match the log's save: it is passed over");
                }
                holds
            }
            Ok(None) => {
                tracing::warn!(save = %path, "an index segment covers a save the log does not have: it is passed over");
                false
            }
            Err(e) => {
                tracing::warn!(save = %path, error = %e, "cannot check an index segment against its last save: it is passed over");
                false
            }
        }
    }

    fn stale(&self) -> MutexGuard<'_, std::collections::HashSet<Path>> {
        self.stale.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the saves after those in `index` at open: finds the last by
    /// probing ahead (1, 2, 4, ... saves on, then halving: a few requests
    /// for any length of log), then reads them many at once. Returns the
    /// index segments the saves completed, for the caller to write.
    fn read_tail(&self, index: &mut Index) -> Result<Vec<Segment>> {
        let start = index.saves() + 1;
        let mut made = Vec::new();
        if self.exists(start)? {
            let (mut present, mut absent) = (start, start + 1);
            while self.exists(absent)? {
                present = absent;
                absent = start + 2 * (absent - start);
            }
            while absent - present > 1 {
                let middle = present + (absent - present) / 2;
                if self.exists(middle)? {
                    present = middle;
                } else {
                    absent = middle;
                }
            }
            let numbers: Vec<u64> = (start..=present).collect();
            'batches: for batch in numbers.chunks(PARALLEL_READS) {
                let paths: Vec<Path> = batch.iter().map(|&n| self.path(n)).collect();
                for (path, bytes) in paths.iter().zip(self.fetch(&paths)?) {
                    // A save removed meanwhile would end the log here; the
                    // sequential read below says what follows.
                    let Some(bytes) = bytes else {
                        break 'batches;
                    };
                    let save = decode(path, &bytes, index.next_id())?;
                    made.extend(self.add_read(index, save));
                }
            }
        }
        if index.saves() == 0 {
            // Nothing stored: a listing tells a missing bucket from an
            // empty one (see `open_error`).
            self.check_exists()?;
        }
        self.read_new(index)?;
        Ok(made)
    }

    /// That the store can list `root`, for an empty log (see
    /// [`open_error`](Self::open_error)).
    fn check_exists(&self) -> Result<()> {
        let listed = self.block_on(async {
            let mut list = self.store.list(Some(&self.root));
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(list.as_mut(), cx)).await
        });
        match listed {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(self.open_error(&e)),
        }
    }

    /// Whether save `save` is stored (a HEAD request).
    fn exists(&self, save: u64) -> Result<bool> {
        let path = self.path(save);
        match self.block_on(self.store.head(&path)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::persistence(format!("reading {path}"), e)),
        }
    }

    /// The objects at `paths`, read at once (`None` where there is none).
    fn fetch(&self, paths: &[Path]) -> Result<Vec<Option<bytes::Bytes>>> {
        if let [path] = paths {
            return Ok(vec![self.read(path)?]);
        }
        self.block_on(async {
            let mut reads = tokio::task::JoinSet::new();
            for (i, path) in paths.iter().enumerate() {
                let store = self.store.clone();
                let path = path.clone();
                reads.spawn(async move {
                    let got = match store.get(&path).await {
                        Ok(got) => got.bytes().await.map(Some),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    };
                    (
                        i,
                        got.map_err(|e| Error::persistence(format!("reading {path}"), e)),
                    )
                });
            }
            let mut got = vec![None; paths.len()];
            while let Some(done) = reads.join_next().await {
                let (i, bytes) = done.map_err(|e| Error::persistence("reading objects", e))?;
                got[i] = bytes?;
            }
            Ok(got)
        })
    }

    /// The object at `path`, or `None` if there is none.
    fn read(&self, path: &Path) -> Result<Option<bytes::Bytes>> {
        self.block_on(async {
            match self.store.get(path).await {
                Ok(got) => got.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| Error::persistence(format!("reading {path}"), e))
    }

    /// Adds the next save, read from its object, to the index and the
    /// cache; the segment it completes, if any.
    fn add_read(&self, index: &mut Index, save: Decoded) -> Option<Segment> {
        let number = index.saves() + 1;
        let (_, segment) = index.add(save.positions(), save.token.as_deref());
        self.cache().put(number, Arc::new(save));
        segment
    }

    /// Reads the saves after those in `index`, until the first missing.
    fn read_new(&self, index: &mut Index) -> Result<()> {
        loop {
            let path = self.path(index.saves() + 1);
            let Some(bytes) = self.read(&path)? else {
                return Ok(());
            };
            let save = decode(&path, &bytes, index.next_id())?;
            // The segment is written by the process that stored the save
            // that completed it, or by the next to open the log.
            let _ = self.add_read(index, save);
        }
    }

    /// Writes index segments, each only if absent (a segment's content
    /// follows from the log, so two processes write the same), but over a
    /// stale one (see `stale`). A failure is logged: the saves stay the
    /// truth, and are read instead.
    fn write_segments(&self, segments: Vec<Segment>) {
        for batch in segments.chunks(PARALLEL_READS) {
            let mut writes: Vec<(Path, Vec<u8>, PutMode)> = Vec::new();
            for segment in batch {
                let path = self.segments.clone().join(
                    format!("{:020}-{:020}", segment.first_save, segment.last_save()).as_str(),
                );
                match serde_json::to_vec(segment) {
                    Ok(body) => {
                        let mode = if self.stale().remove(&path) {
                            PutMode::Overwrite
                        } else {
                            PutMode::Create
                        };
                        writes.push((path, body, mode));
                    }
                    Err(e) => {
                        tracing::warn!(segment = %path, error = %e, "cannot encode an index segment");
                    }
                }
            }
            self.block_on(async {
                let mut puts = tokio::task::JoinSet::new();
                for (path, body, mode) in writes {
                    let store = self.store.clone();
                    puts.spawn(async move {
                        let options = PutOptions::from(mode);
                        match store.put_opts(&path, PutPayload::from(body), options).await {
                            Ok(_)
                            | Err(object_store::Error::AlreadyExists { .. })
                            | Err(object_store::Error::Precondition { .. }) => {}
                            Err(e) => {
                                tracing::warn!(segment = %path, error = %e, "cannot write an index segment: a cold start reads its saves instead");
                            }
                        }
                    });
                }
                while puts.join_next().await.is_some() {}
            });
        }
        for segment in &segments {
            self.merge_segments(segment.last_save());
        }
    }

    fn segment_path(&self, first: u64, last: u64) -> Path {
        self.segments
            .clone()
            .join(format!("{first:020}-{last:020}").as_str())
    }

    /// Merges segments into larger ones, ten to one: when save `last`
    /// ends a run of 10 segments of a level (of `segment_saves` saves,
    /// then ten times that, up to [`MERGED_SAVES`]), the segment of the
    /// run is written (read from the ten, create-if-absent). A cold start
    /// takes the longest segment at each start, so it reads one object
    /// per [`MERGED_SAVES`] saves rather than one per `segment_saves`. A run that cannot be read whole
    /// is logged and left: the ten still serve.
    fn merge_segments(&self, last: u64) {
        let mut size = self.segment_saves;
        while let Some(run) = size
            .checked_mul(10)
            .filter(|run| *run <= MERGED_SAVES && last.is_multiple_of(*run))
        {
            let first = last - run + 1;
            let paths: Vec<Path> = (0..10)
                .map(|j| {
                    let from = first + j * size;
                    self.segment_path(from, from + size - 1)
                })
                .collect();
            let merged = self.fetch(&paths).and_then(|parts| {
                let mut merged: Option<Segment> = None;
                for (path, bytes) in paths.iter().zip(parts) {
                    let bytes = bytes.ok_or_else(|| {
                        Error::persistence(format!("reading {path}"), "it is not there")
                    })?;
                    let part: Segment = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::persistence(format!("reading {path}"), e))?;
                    merged = Some(match merged {
                        None => part,
                        Some(mut merged) => {
                            let next_id = merged.first_id
                                + merged
                                    .saves
                                    .iter()
                                    .map(|s| s.events.len() as u64)
                                    .sum::<u64>();
                            if part.first_save != merged.last_save() + 1 || part.first_id != next_id
                            {
                                return Err(Error::persistence(
                                    format!("reading {path}"),
                                    "it does not follow the segment before it",
                                ));
                            }
                            merged.saves.extend(part.saves);
                            merged.last_token = part.last_token;
                            merged
                        }
                    });
                }
                Ok(merged.expect("ten parts"))
            });
            match merged {
                Ok(merged) => {
                    let path = self.segment_path(first, last);
                    let body = match serde_json::to_vec(&merged) {
                        Ok(body) => body,
                        Err(e) => {
                            tracing::warn!(segment = %path, error = %e, "cannot encode an index segment");
                            return;
                        }
                    };
                    let mode = if self.stale().remove(&path) {
                        PutMode::Overwrite
                    } else {
                        PutMode::Create
                    };
                    let put = self.block_on(self.store.put_opts(
                        &path,
                        PutPayload::from(body),
                        PutOptions::from(mode),
                    ));
                    match put {
                        Ok(_)
                        | Err(object_store::Error::AlreadyExists { .. })
                        | Err(object_store::Error::Precondition { .. }) => {}
                        Err(e) => {
                            tracing::warn!(segment = %path, error = %e, "cannot write a merged index segment: the smaller ones serve");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e.report(), "cannot merge index segments: the smaller ones serve");
                    return;
                }
            }
            size = run;
        }
    }

    /// The events at notification ids `ids`, read from their saves (the
    /// cached ones first, the others at once).
    fn events_at(&self, located: &[(u64, u64, usize)]) -> Result<Vec<StoredEvent>> {
        let mut saves: std::collections::HashMap<u64, Arc<Decoded>> =
            std::collections::HashMap::new();
        let mut missing: Vec<(u64, u64)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        {
            let mut cache = self.cache();
            for &(save, first, _) in located {
                if !seen.insert(save) {
                    continue;
                }
                match cache.get(&save) {
                    Some(decoded) => {
                        saves.insert(save, decoded.clone());
                    }
                    None => missing.push((save, first)),
                }
            }
        }
        for batch in missing.chunks(PARALLEL_READS) {
            let paths: Vec<Path> = batch.iter().map(|&(n, _)| self.path(n)).collect();
            for ((&(save, first), path), bytes) in batch.iter().zip(&paths).zip(self.fetch(&paths)?)
            {
                let bytes = bytes.ok_or_else(|| {
                    Error::persistence(
                        format!("reading {path}"),
                        "the save is gone, though it was read before (removed by hand?)",
                    )
                })?;
                let decoded = Arc::new(decode(path, &bytes, first)?);
                self.cache().put(save, decoded.clone());
                saves.insert(save, decoded);
            }
        }
        located
            .iter()
            .map(|&(save, _, offset)| {
                saves[&save].events.get(offset).cloned().ok_or_else(|| {
                    Error::persistence(
                        format!("reading {}", self.path(save)),
                        format!("it has no event {offset}, which the index says it has"),
                    )
                })
            })
            .collect()
    }

    /// Where each of `ids` is: (save, its first id, the event's place).
    fn locate(index: &Index, ids: impl IntoIterator<Item = u64>) -> Vec<(u64, u64, usize)> {
        ids.into_iter()
            .map(|id| {
                let (save, offset) = index.locate(id);
                (save, index.first_of(save), offset)
            })
            .collect()
    }

    /// Stores a save. A save that finds the writer (the index) free and
    /// nobody waiting writes alone; otherwise it queues, and whichever
    /// save holds the writer next writes every queued save in one object
    /// (one create-if-absent write decides them all; each is checked
    /// against the index alone, so one refused does not refuse the
    /// others). So saves arriving together cost one request, not one each
    /// in turn. The save that completes an index segment writes it before
    /// it returns, having let the writer go.
    fn save(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: Option<&KeyedOutcome>,
    ) -> Result<Vec<u64>> {
        let free = self.try_lock();
        if let Some(mut index) = free {
            if self.queue().is_empty() {
                let request = Request {
                    events,
                    tracking,
                    outcome,
                };
                let (mut results, segments) = self.store_group(&mut index, &[request]);
                drop(index);
                self.write_segments(segments);
                return results.pop().expect("one result for one save");
            }
            // Saves are queued: write them with this one, now.
            let slot = Arc::new(Queued::of(events, tracking, outcome));
            self.queue().push(slot.clone());
            return self.lead(index, &slot);
        }
        let slot = Arc::new(Queued::of(events, tracking, outcome));
        self.queue().push(slot.clone());
        match self.wait(&slot) {
            Waited::Settled(result) => result,
            Waited::Leading(index) => self.lead(index, &slot),
        }
    }

    /// The writer, if it is free.
    fn try_lock(&self) -> Option<IndexGuard<'_>> {
        let guard = match self.index.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(IndexGuard {
            guard: Some(guard),
            recorder: self,
        })
    }

    /// Waits until queued save `slot` is written by another save (its
    /// result), or the writer is free for it to write the queue itself.
    /// Woken whenever the writer is let go (see [`IndexGuard`]), so a save
    /// written by another returns at once, not after the next write.
    fn wait(&self, slot: &Arc<Queued>) -> Waited<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut queue = self.queue();
        let waited = loop {
            if let Some(result) = slot.result().take() {
                break Waited::Settled(result);
            }
            if let Some(index) = self.try_lock() {
                // A writer sets its group's results before it lets go.
                match slot.result().take() {
                    Some(result) => {
                        drop(queue);
                        drop(index);
                        self.waiting.fetch_sub(1, Ordering::SeqCst);
                        return Waited::Settled(result);
                    }
                    None => break Waited::Leading(index),
                }
            }
            // The timeout only bounds a wake-up missed by a reader that
            // held the index (every release wakes; this is a backstop).
            queue = match self
                .wake
                .wait_timeout(queue, std::time::Duration::from_millis(50))
            {
                Ok((queue, _)) => queue,
                Err(poisoned) => poisoned.into_inner().0,
            };
        };
        drop(queue);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        waited
    }

    /// Writes every queued save (`slot` among them, unless a writer that
    /// panicked took it) as the writer `index`, and returns `slot`'s
    /// result.
    fn lead(&self, mut index: IndexGuard<'_>, slot: &Arc<Queued>) -> Result<Vec<u64>> {
        if let Some(result) = slot.result().take() {
            return result;
        }
        let group = {
            let mut queue = self.queue();
            if !queue.iter().any(|queued| Arc::ptr_eq(queued, slot)) {
                return Err(Error::persistence(
                    "saving to the object store",
                    "the save was taken from the queue and not written",
                ));
            }
            std::mem::take(&mut *queue)
        };
        let mut settle = SettleOnUnwind(&group);
        let requests: Vec<Request<'_>> = group.iter().map(|queued| queued.request()).collect();
        let (results, segments) = self.store_group(&mut index, &requests);
        // Every result is set before the writer is let go: a save woken
        // then finds its own.
        for (queued, result) in group.iter().zip(results) {
            *queued.result() = Some(result);
        }
        settle.0 = &[];
        drop(index);
        self.write_segments(segments);
        let result = slot.result().take();
        result.expect("its group set its result")
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Arc<Queued>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `requests` as save objects: each checked against the index
    /// (a refused one gets its error), those that pass and take nothing
    /// from one another written together as the next object; one that
    /// repeats what an earlier one of the group takes waits for the next
    /// round, to be checked against the index once that one is stored or
    /// not. A lost race for the name reads the winner's save and checks
    /// again. One result per request, and the index segments the objects
    /// complete.
    fn store_group(
        &self,
        index: &mut Index,
        requests: &[Request<'_>],
    ) -> (Vec<Result<Vec<u64>>>, Vec<Segment>) {
        let mut results: Vec<Option<Result<Vec<u64>>>> = requests.iter().map(|_| None).collect();
        let mut segments = Vec::new();
        // One token for every write of an object: a retried write that
        // finds its own earlier one stored must know it by it.
        let mut token = uuid::Uuid::new_v4().simple().to_string();
        for _ in 0..MAX_RACES {
            let accepted = Self::check_group(index, requests, &mut results);
            if accepted.is_empty() {
                break;
            }
            let group: Vec<Request<'_>> = accepted.iter().map(|&i| requests[i]).collect();
            let first = index.next_id();
            let number = index.saves() + 1;
            let path = self.path(number);
            let written = encode(first, &group, &token)
                .and_then(|body| self.put(&path, body, first, &token, index));
            match written {
                Ok(true) => {
                    let decoded = Decoded::of(&group, token);
                    let (ids, completed) = index.add(decoded.positions(), decoded.token.as_deref());
                    segments.extend(completed);
                    self.cache().put(number, Arc::new(decoded));
                    let mut ids = ids.into_iter();
                    for (&i, request) in accepted.iter().zip(&group) {
                        results[i] = Some(Ok(ids.by_ref().take(request.events.len()).collect()));
                    }
                    // The saves left for the next round, in an object of
                    // their own.
                    token = uuid::Uuid::new_v4().simple().to_string();
                }
                // Lost the race: the index has read the winner; check again.
                Ok(false) => {}
                Err(e) => {
                    if let [i] = accepted[..] {
                        results[i] = Some(Err(e));
                    } else {
                        // One error for each save of the group.
                        let message = e.report().to_string();
                        for &i in &accepted {
                            results[i] = Some(Err(Error::persistence(
                                "saving a group of saves to the object store",
                                message.clone(),
                            )));
                        }
                    }
                    // Those left wait on what the failed write did: the
                    // index reads it, if it landed.
                    if results.iter().any(Option::is_none) {
                        if let Err(e) = self.read_new(index) {
                            let message = e.report().to_string();
                            for result in results.iter_mut().filter(|r| r.is_none()) {
                                *result = Some(Err(Error::persistence(
                                    "saving to the object store",
                                    message.clone(),
                                )));
                            }
                        }
                    }
                    token = uuid::Uuid::new_v4().simple().to_string();
                }
            }
        }
        let results = results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(Error::persistence(
                        "saving to the object store",
                        format!(
                            "lost the race for the next save object {MAX_RACES} times in a row"
                        ),
                    ))
                })
            })
            .collect();
        (results, segments)
    }

    /// Checks the requests not yet settled, in order, against the index
    /// (settling the refused ones), and returns those that pass and take
    /// no (stream, version), key or tracking record that one before them
    /// in the group takes: the next object's saves.
    fn check_group(
        index: &Index,
        requests: &[Request<'_>],
        results: &mut [Option<Result<Vec<u64>>>],
    ) -> Vec<usize> {
        let mut versions: std::collections::HashSet<(&str, u64)> = std::collections::HashSet::new();
        let mut keys: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut tracked: std::collections::HashSet<(&str, u64)> = std::collections::HashSet::new();
        let mut accepted = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            if let Err(e) = index.check(request.events, request.tracking, request.outcome) {
                results[i] = Some(Err(e));
                continue;
            }
            let overlaps = request
                .events
                .iter()
                .any(|e| versions.contains(&(e.originator_id.as_str(), e.originator_version)))
                || request
                    .outcome
                    .is_some_and(|o| keys.contains(o.key.as_str()))
                || request.tracking.is_some_and(|t| {
                    tracked.contains(&(t.application_name.as_str(), t.notification_id))
                });
            if overlaps {
                // Decided by the index once the earlier one is settled.
                continue;
            }
            versions.extend(
                request
                    .events
                    .iter()
                    .map(|e| (e.originator_id.as_str(), e.originator_version)),
            );
            keys.extend(request.outcome.map(|o| o.key.as_str()));
            tracked.extend(
                request
                    .tracking
                    .map(|t| (t.application_name.as_str(), t.notification_id)),
            );
            accepted.push(i);
        }
        accepted
    }

    /// Writes `body` as save object `path` only if it is absent: true if
    /// it is stored (by this write, or by an earlier write of it that was
    /// answered with an error); false if another writer's save is there,
    /// which is then read into `index`, with those after it.
    fn put(
        &self,
        path: &Path,
        body: Vec<u8>,
        first: u64,
        token: &str,
        index: &mut Index,
    ) -> Result<bool> {
        let put = self.block_on(async {
            let options = PutOptions::from(PutMode::Create);
            self.store
                .put_opts(path, PutPayload::from(body), options)
                .await
        });
        match put {
            Ok(_) => Ok(true),
            // The name is taken: by another writer's save, or by this
            // object's own write, stored but answered with an error (an
            // S3 500) and retried by the client. The token tells which:
            // this object's means it is stored, and storing it again
            // would apply it twice.
            Err(
                object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
            ) => match self.read(path)? {
                Some(there) => {
                    let there = decode(path, &there, first)?;
                    if there.token.as_deref() == Some(token) {
                        return Ok(true);
                    }
                    // Another writer stored save n first: read it and the
                    // saves after it.
                    let _ = self.add_read(index, there);
                    self.read_new(index)?;
                    Ok(false)
                }
                // Taken but not readable yet: S3 answers 409 while another
                // write to the name is still under way (this object's own
                // first try, perhaps). Look again shortly, with the same
                // token.
                None => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    Ok(false)
                }
            },
            Err(e @ object_store::Error::NotImplemented { .. })
            | Err(e @ object_store::Error::NotSupported { .. }) => Err(Error::persistence(
                format!("writing {path}"),
                format!("this object store cannot create an object only if it is absent, which keeps racing writers apart: {e}"),
            )),
            // Whether it was stored is unknown: the next read finds out.
            Err(e) => Err(Error::persistence(format!("writing {path}"), e)),
        }
    }
}

fn encode(first: u64, group: &[Request<'_>], token: &str) -> Result<Vec<u8>> {
    let rows = |events: &[StoredEvent]| -> Vec<Row> {
        events
            .iter()
            .map(|e| Row {
                id: e.originator_id.clone(),
                version: e.originator_version,
                topic: e.topic.clone(),
                state: base64::engine::general_purpose::STANDARD.encode(&e.state),
            })
            .collect()
    };
    let tracking = |t: Option<&Tracking>| {
        t.map(|t| TrackingRow {
            application: t.application_name.clone(),
            notification: t.notification_id,
        })
    };
    let key = |o: Option<&KeyedOutcome>| {
        o.map(|o| KeyRow {
            key: o.key.clone(),
            outcome: base64::engine::general_purpose::STANDARD.encode(&o.outcome),
        })
    };
    let save = match group {
        // A lone save: the form every reader knows.
        [save] => Save {
            first,
            events: Some(rows(save.events)),
            tracking: tracking(save.tracking),
            key: key(save.outcome),
            token: Some(token.to_owned()),
            saves: Vec::new(),
        },
        group => Save {
            first,
            events: None,
            tracking: None,
            key: None,
            token: Some(token.to_owned()),
            saves: group
                .iter()
                .map(|save| Part {
                    events: rows(save.events),
                    tracking: tracking(save.tracking),
                    key: key(save.outcome),
                })
                .collect(),
        },
    };
    serde_json::to_vec(&save).map_err(|e| Error::persistence("encoding a save", e))
}

/// Whether `error` or one of its causes says `code`.
fn says(error: &(dyn std::error::Error + 'static), code: &str) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.to_string().contains(code))
}

/// The events, tracking record and token of the save object at `path`, whose
/// first event must have notification id `first`.
fn decode(path: &Path, bytes: &[u8], first: u64) -> Result<Decoded> {
    let bad = |message: String| {
        Error::persistence(
            format!("reading {path}"),
            format!("it is not a save annals wrote (corrupt, truncated or foreign): {message}"),
        )
    };
    let save: Save = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if save.first != first {
        return Err(bad(format!(
            "its first notification id is {}, where the saves before it end at {}",
            save.first,
            first - 1
        )));
    }
    let parts = match (save.events, save.saves) {
        (Some(events), saves) if saves.is_empty() => vec![Part {
            events,
            tracking: save.tracking,
            key: save.key,
        }],
        (None, saves) if !saves.is_empty() => saves,
        _ => {
            return Err(bad(
                "it holds neither one save's events nor a group's".into()
            ))
        }
    };
    let mut decoded = Decoded {
        events: Vec::new(),
        tracking: Vec::new(),
        outcomes: Vec::new(),
        token: save.token,
    };
    for part in parts {
        for row in part.events {
            let state = base64::engine::general_purpose::STANDARD
                .decode(&row.state)
                .map_err(|e| bad(format!("the state of {}@{}: {e}", row.id, row.version)))?;
            decoded.events.push(StoredEvent {
                originator_id: row.id,
                originator_version: row.version,
                topic: row.topic,
                state,
            });
        }
        decoded.tracking.extend(part.tracking.map(|t| Tracking {
            application_name: t.application,
            notification_id: t.notification,
        }));
        if let Some(k) = part.key {
            let outcome = base64::engine::general_purpose::STANDARD
                .decode(&k.outcome)
                .map_err(|e| bad(format!("the outcome of idempotency key {:?}: {e}", k.key)))?;
            decoded.outcomes.push(KeyedOutcome {
                key: k.key,
                outcome,
            });
        }
    }
    Ok(decoded)
}

/// A save object, read: the events of its saves, their tracking
/// records and outcomes.
struct Decoded {
    events: Vec<StoredEvent>,
    tracking: Vec<Tracking>,
    outcomes: Vec<KeyedOutcome>,
    /// The token of the writes that stored it (none before tokens).
    token: Option<String>,
}

impl Decoded {
    /// What a group of saves written as one object holds.
    fn of(group: &[Request<'_>], token: String) -> Self {
        Self {
            events: group
                .iter()
                .flat_map(|r| r.events.iter().cloned())
                .collect(),
            tracking: group.iter().filter_map(|r| r.tracking.cloned()).collect(),
            outcomes: group.iter().filter_map(|r| r.outcome.cloned()).collect(),
            token: Some(token),
        }
    }

    fn positions(&self) -> Positions {
        let mut positions = Positions::of(&self.events, None, None);
        positions.tracking = self
            .tracking
            .iter()
            .map(|t| (t.application_name.clone(), t.notification_id))
            .collect();
        positions.keys = self.outcomes.iter().map(|o| o.key.clone()).collect();
        positions
    }
}

impl AggregateRecorder for ObjectRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        self.save(events, None, None)
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let located = {
            let index = self.caught_up()?;
            Self::locate(&index, index.stream(originator_id, query))
        };
        self.events_at(&located)
    }
}

impl ApplicationRecorder for ObjectRecorder {
    /// The page's events are read from their saves, many at once; a topic
    /// filter is applied first, from the index, so saves of other topics
    /// are not read.
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        let (ids, located) = {
            let index = self.caught_up()?;
            let last = index.next_id() - 1;
            let end = query.stop.map_or(last, |stop| stop.min(last));
            let ids: Vec<u64> = (query.start.max(1)..=end)
                .filter(|&id| query.matches(id, index.topic(id)))
                .take(query.limit)
                .collect();
            let located = Self::locate(&index, ids.iter().copied());
            (ids, located)
        };
        Ok(ids
            .into_iter()
            .zip(self.events_at(&located)?)
            .map(|(id, event)| Notification { id, event })
            .collect())
    }

    fn max_notification_id(&self) -> Result<u64> {
        Ok(self.caught_up()?.next_id() - 1)
    }

    /// A thread that looks for the next save object every 100 ms (one
    /// HEAD request; an object store has no commit signal).
    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        let mut next = self.caught_up()?.saves() + 1;
        let store = self.store.clone();
        let root = self.root.clone();
        let runtime = self.runtime.clone();
        Watch::spawn(&format!("objects {root}"), signal, move |timeout| {
            let until = std::time::Instant::now() + timeout;
            loop {
                let path = root.clone().join(format!("{next:020}").as_str());
                match runtime.block_on(store.head(&path)) {
                    Ok(_) => {
                        next += 1;
                        return Ok(true);
                    }
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(Error::persistence(format!("watching for {path}"), e)),
                }
                let now = std::time::Instant::now();
                if now >= until {
                    return Ok(false);
                }
                std::thread::sleep(WATCH_EVERY.min(until - now));
            }
        })
    }
}

impl ProcessRecorder for ObjectRecorder {
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> Result<Vec<u64>> {
        self.save(events, Some(tracking), None)
    }

    fn insert_events_with(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        writes: &mut dyn FnMut(&mut annals_core::persistence::StoreTx<'_>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        let _ = (events, tracking, writes);
        Err(annals_core::persistence::no_transaction("the object store"))
    }

    fn insert_events_keyed(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: &KeyedOutcome,
    ) -> Result<Vec<u64>> {
        self.save(events, tracking, Some(outcome))
    }

    fn select_outcome(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let located = {
            let index = self.caught_up()?;
            match index.key(key) {
                Some(save) => (save, index.first_of(save)),
                None => return Ok(None),
            }
        };
        let (save, first) = located;
        let cached = self.cache().get(&save).cloned();
        let decoded = match cached {
            Some(decoded) => decoded,
            None => {
                let path = self.path(save);
                let bytes = self.read(&path)?.ok_or_else(|| {
                    Error::persistence(
                        format!("reading {path}"),
                        "the save is gone, though it was read before",
                    )
                })?;
                let decoded = Arc::new(decode(&path, &bytes, first)?);
                self.cache().put(save, decoded.clone());
                decoded
            }
        };
        Ok(decoded
            .outcomes
            .iter()
            .find(|o| o.key == key)
            .map(|o| o.outcome.clone()))
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        Ok(self.caught_up()?.max_tracking_id(application_name))
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        Ok(self
            .caught_up()?
            .has_tracking_id(application_name, notification_id))
    }
}
