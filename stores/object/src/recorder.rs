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
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

mod codec;
mod groups;
mod packs;
mod segments;

pub use packs::Compaction;

use crate::index::{Index, Segment};
use annals_core::error::{Error, Result};
use annals_core::persistence::wake::{Signal, Watch};
use annals_core::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, KeyedOutcome, Notification,
    NotificationQuery, ProcessRecorder, StoredEvent, Tracking,
};
use codec::{says, Decoded};
use groups::{IndexGuard, Queued};

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
    /// Where the packs of old saves are: `{root}-packs/{first:020}-{last:020}`
    /// (see [`compact`](Self::compact)).
    packs: Path,
    /// The packs this process knows of: listed at the first tombstone
    /// it reads, and those it writes.
    packed: Mutex<packs::Known>,
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
        let packs = Path::from(format!("{root}-packs"));
        let recorder = Self {
            store,
            root,
            segments,
            packs,
            packed: Mutex::new(packs::Known::default()),
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
                for ((&n, path), bytes) in batch.iter().zip(&paths).zip(self.fetch(&paths)?) {
                    // A save removed meanwhile would end the log here; the
                    // sequential read below says what follows.
                    let Some(bytes) = bytes else {
                        break 'batches;
                    };
                    let save = self.resolve(n, path, &bytes, index.next_id())?;
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
        self.list(&self.root)
            .map(drop)
            .map_err(|e| self.open_error(&e))
    }

    /// The names of the objects under `prefix` (none where there is no
    /// such directory).
    fn list(&self, prefix: &Path) -> std::result::Result<Vec<Path>, object_store::Error> {
        self.block_on(async {
            let mut list = self.store.list(Some(prefix));
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
        })
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
                reads.spawn(async move { (i, get(&*store, &path).await) });
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
        self.block_on(get(&*self.store, path))
    }

    /// Adds the next save, read from its object, to the index and the
    /// cache; the segment it completes, if any.
    fn add_read(&self, index: &mut Index, save: Arc<Decoded>) -> Option<Segment> {
        let number = index.saves() + 1;
        let (_, segment) = index.add(save.positions(), save.token.as_deref());
        self.cache().put(number, save);
        segment
    }

    /// Reads the saves after those in `index`, until the first missing.
    fn read_new(&self, index: &mut Index) -> Result<()> {
        loop {
            let number = index.saves() + 1;
            // A save read with its pack is there, and is what the cache
            // holds.
            let cached = self.cache().get(&number).cloned();
            if let Some(save) = cached {
                let _ = self.add_read(index, save);
                continue;
            }
            let path = self.path(number);
            let Some(bytes) = self.read(&path)? else {
                return Ok(());
            };
            let save = self.resolve(number, &path, &bytes, index.next_id())?;
            // The segment is written by the process that stored the save
            // that completed it, or by the next to open the log.
            let _ = self.add_read(index, save);
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
            // Read meanwhile with a pack, or in a pack known to hold them.
            let mut unread = Vec::with_capacity(batch.len());
            for &(save, first) in batch {
                match self.cache().get(&save) {
                    Some(decoded) => {
                        saves.insert(save, decoded.clone());
                    }
                    None => unread.push((save, first)),
                }
            }
            let unread = self.read_from_packs(unread, &mut saves)?;
            let paths: Vec<Path> = unread.iter().map(|&(n, _)| self.path(n)).collect();
            for ((&(save, first), path), bytes) in
                unread.iter().zip(&paths).zip(self.fetch(&paths)?)
            {
                let bytes = bytes.ok_or_else(|| {
                    Error::persistence(
                        format!("reading {path}"),
                        "the save is gone, though it was read before (removed by hand?)",
                    )
                })?;
                let decoded = self.resolve(save, path, &bytes, first)?;
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
}

/// The object at `path` in `store`, or `None` if there is none.
async fn get(store: &dyn ObjectStore, path: &Path) -> Result<Option<bytes::Bytes>> {
    let got = match store.get(path).await {
        Ok(got) => got.bytes().await.map(Some),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    };
    got.map_err(|e| Error::persistence(format!("reading {path}"), e))
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
                let decoded = self.resolve(save, &path, &bytes, first)?;
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
