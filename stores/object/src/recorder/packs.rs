//! Compaction: old saves folded into packs (of as many saves as an index
//! segment), each save's own object then overwritten by a small
//! tombstone that names its pack.
//!
//! The names stay taken: a writer that paused across a compaction and
//! tries a name that is packed finds it taken, as it would have before,
//! so the create-if-absent write still decides every save. Freeing the
//! names would need every writer fenced off from the packed range first.
//!
//! A reader sees, at each save's name, the save or its tombstone; both
//! say the same save, so it never sees one twice or misses one. A crash
//! at any step leaves a log that reads the same: a pack with no
//! tombstones yet is unused, and each tombstone names a pack written
//! before it. The next compaction finishes a range whose last save is
//! not yet a tombstone (the last is written after the others).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, MutexGuard};

use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload};

use super::codec::{decode_object, decode_pack, encode_pack, encode_tombstone, Decoded, Object};
use super::{ObjectRecorder, PARALLEL_READS};
use annals_core::error::{Error, Result};

/// What [`ObjectRecorder::compact`] did.
///
/// ```
/// use annals_object_store::Compaction;
///
/// let nothing = Compaction::default();
/// assert_eq!((nothing.packs, nothing.saves), (0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Packs written (or finished: tombstones written for a pack found
    /// written before).
    pub packs: u64,
    /// Saves their packs now hold.
    pub saves: u64,
}

/// The packs a recorder knows of: saves `first ..= last` by `first`.
#[derive(Debug, Default)]
pub(super) struct Known {
    ranges: BTreeMap<u64, u64>,
    /// Whether the packs were listed: at the first tombstone read.
    listed: bool,
}

impl Known {
    /// The pack that holds save `save`, if one is known to.
    fn of(&self, save: u64) -> Option<(u64, u64)> {
        let (&first, &last) = self.ranges.range(..=save).next_back()?;
        (save <= last).then_some((first, last))
    }
}

impl ObjectRecorder {
    /// Folds old saves into packs of as many saves as an index segment
    /// ([`SEGMENT_SAVES`](super::SEGMENT_SAVES) unless opened
    /// [`with`](Self::open_with) another size): each whole run of saves
    /// `k·size + 1 ..= (k+1)·size` with at least `size` newer saves after
    /// it, not packed yet, is written as one pack object
    /// (`{root}-packs/{first:020}-{last:020}`, create-if-absent), then
    /// each of its saves' objects is replaced by a tombstone naming the
    /// pack. A log reader then reads one object per pack, not per save.
    /// Readers and writers may run meanwhile, in this process or others;
    /// so may another compaction.
    ///
    /// # Errors
    ///
    /// The store fails, or a save in a run is not one annals wrote. What
    /// was done stays done; the next compaction carries on from there.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use annals_core::persistence::{AggregateRecorder, EventQuery, StoredEvent};
    /// use annals_object_store::ObjectRecorder;
    ///
    /// let store = Arc::new(object_store::memory::InMemory::new());
    /// // Packs (and index segments) of 10 saves.
    /// let log = ObjectRecorder::open_with(store.clone(), "app/events".into(), 10)?;
    /// for n in 0..25 {
    ///     log.insert_events(&[StoredEvent {
    ///         originator_id: format!("dog-{n}"),
    ///         originator_version: 1,
    ///         topic: "Registered".into(),
    ///         state: vec![1],
    ///     }])?;
    /// }
    /// // Saves 1 to 10 are packed; 11 to 20 are not (the newest 10 stay).
    /// let done = log.compact()?;
    /// assert_eq!((done.packs, done.saves), (1, 10));
    /// // A process opening the log now reads the packed saves from the pack.
    /// let fresh = ObjectRecorder::open_with(store, "app/events".into(), 10)?;
    /// assert_eq!(fresh.select_events("dog-7", &EventQuery::all())?.len(), 1);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn compact(&self) -> Result<Compaction> {
        self.compact_with(&mut |_, _| Ok(()))
    }

    /// [`compact`](Self::compact), calling `packed` with each stream that
    /// has events in a run once the run is packed, and the stream's last
    /// version in it: where an application takes a snapshot, so that
    /// getting the aggregate reads the snapshot rather than the pack. (The
    /// store cannot take it: it does not know which aggregate a stream
    /// is.) It is called once the run's pack is written and before its
    /// saves' objects become tombstones: a compaction stopped by an error
    /// or a crash leaves the run to the next, which calls it again for
    /// the run's streams (at least once each, then).
    ///
    /// # Errors
    ///
    /// As [`compact`](Self::compact), and the first error `packed`
    /// returns, which stops the compaction there, before the run's
    /// tombstones.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use annals_core::persistence::{AggregateRecorder, StoredEvent};
    /// use annals_object_store::ObjectRecorder;
    ///
    /// let store = Arc::new(object_store::memory::InMemory::new());
    /// let log = ObjectRecorder::open_with(store, "app/events".into(), 10)?;
    /// for version in 1..=20 {
    ///     log.insert_events(&[StoredEvent {
    ///         originator_id: "dog-1".into(),
    ///         originator_version: version,
    ///         topic: "TrickAdded".into(),
    ///         state: vec![1],
    ///     }])?;
    /// }
    /// let mut snapshots = Vec::new();
    /// log.compact_with(&mut |stream, version| {
    ///     snapshots.push((stream.to_owned(), version));
    ///     Ok(())
    /// })?;
    /// assert_eq!(snapshots, [("dog-1".to_owned(), 10)]);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn compact_with(
        &self,
        packed: &mut dyn FnMut(&str, u64) -> Result<()>,
    ) -> Result<Compaction> {
        let end = self.caught_up()?.saves();
        let listed: std::collections::HashSet<Path> = self
            .list(&self.packs)
            .map_err(|e| self.open_error(&e))?
            .into_iter()
            .collect();
        let mut done = Compaction::default();
        let size = self.segment_saves;
        let mut first = 1;
        while first + 2 * size - 1 <= end {
            let path = self.pack_path(first);
            let saves = if listed.contains(&path) {
                self.finish_pack(first, packed)?
            } else {
                self.write_pack(first, packed)?
            };
            if let Some(saves) = saves {
                done.packs += 1;
                done.saves += saves as u64;
            }
            first += size;
        }
        if done.packs > 0 {
            tracing::info!(log = %self.root, packs = done.packs, saves = done.saves, "compacted");
        }
        Ok(done)
    }

    /// The pack that holds saves `first ..` of this recorder's size.
    fn pack_path(&self, first: u64) -> Path {
        let name = pack_name(first, first + self.segment_saves - 1);
        self.packs.clone().join(name.as_str())
    }

    /// The first notification id of each save of the run from `first`
    /// (all of them read already).
    fn firsts(&self, first: u64) -> Vec<u64> {
        let index = self.lock();
        (first..first + self.segment_saves)
            .map(|n| index.first_of(n))
            .collect()
    }

    /// Packs the run from save `first`: reads its saves, writes the pack,
    /// then the tombstones; the saves packed. `None` if the run turns out
    /// to be packed by another compaction meanwhile (its tombstones are
    /// then finished).
    fn write_pack(
        &self,
        first: u64,
        packed: &mut dyn FnMut(&str, u64) -> Result<()>,
    ) -> Result<Option<usize>> {
        let firsts = self.firsts(first);
        let mut stored = Vec::with_capacity(firsts.len());
        let mut saves = Vec::with_capacity(firsts.len());
        let numbers: Vec<u64> = (first..first + self.segment_saves).collect();
        for batch in numbers.chunks(PARALLEL_READS) {
            let paths: Vec<Path> = batch.iter().map(|&n| self.path(n)).collect();
            for ((&n, path), bytes) in batch.iter().zip(&paths).zip(self.fetch(&paths)?) {
                let bytes = bytes.ok_or_else(|| gone(path))?;
                match decode_object(path, &bytes, firsts[(n - first) as usize])? {
                    Object::Save(save) => saves.push(save),
                    // Another compaction got here first.
                    Object::Packed(tombstone) => {
                        // One of another pack size: the run is its, to
                        // finish (this size's pack would overlap it).
                        if tombstone.pack != pack_name(first, first + self.segment_saves - 1) {
                            return Ok(None);
                        }
                        return self.finish_pack(first, packed);
                    }
                }
                stored.push(bytes);
            }
        }
        let body = encode_pack(first, firsts[0], &stored)?;
        let path = self.pack_path(first);
        let put = self.block_on(self.store.put_opts(
            &path,
            PutPayload::from(body),
            PutOptions::from(PutMode::Create),
        ));
        match put {
            Ok(_) => {}
            // Another compaction wrote the same pack (after this one
            // listed the packs): it holds the same saves, which are never
            // rewritten. Checked to be that pack before any tombstone
            // names it: a tombstone naming anything else would lose its
            // save.
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                let last = first + self.segment_saves - 1;
                let there = self.read_pack_saves(first, last, firsts[0])?;
                let same = there.iter().zip(&saves).all(|(there, save)| {
                    there.events.len() == save.events.len() && there.token == save.token
                });
                if !same {
                    return Err(Error::persistence(
                        format!("reading {path}"),
                        "it is not the pack of the saves it is named after: no tombstone names it",
                    ));
                }
            }
            Err(e) => return Err(Error::persistence(format!("writing {path}"), e)),
        }
        self.known()
            .ranges
            .insert(first, first + self.segment_saves - 1);
        name_streams(&saves, packed)?;
        self.write_tombstones(first, &firsts, &saves)?;
        Ok(Some(saves.len()))
    }

    /// Finishes the run from save `first`, whose pack is written: its
    /// tombstones, unless the last is one already (it is written last);
    /// the saves packed.
    fn finish_pack(
        &self,
        first: u64,
        packed: &mut dyn FnMut(&str, u64) -> Result<()>,
    ) -> Result<Option<usize>> {
        let firsts = self.firsts(first);
        let path = self.path(first + self.segment_saves - 1);
        let bytes = self.read(&path)?.ok_or_else(|| gone(&path))?;
        let last_first = firsts[firsts.len() - 1];
        if let Object::Packed(_) = decode_object(&path, &bytes, last_first)? {
            return Ok(None);
        }
        let last = first + self.segment_saves - 1;
        let saves = self.read_pack_saves(first, last, firsts[0])?;
        name_streams(&saves, packed)?;
        self.write_tombstones(first, &firsts, &saves)?;
        Ok(Some(saves.len()))
    }

    /// Replaces the objects of saves `first ..` by tombstones naming
    /// their pack, the last one last.
    fn write_tombstones(&self, first: u64, firsts: &[u64], saves: &[Decoded]) -> Result<()> {
        let name = pack_name(first, first + saves.len() as u64 - 1);
        let mut writes = Vec::with_capacity(saves.len());
        for ((n, &first_id), save) in (first..).zip(firsts).zip(saves) {
            writes.push((
                self.path(n),
                encode_tombstone(first_id, &name, firsts[0], save)?,
            ));
        }
        let last = writes.pop();
        for batch in writes.chunks(PARALLEL_READS) {
            self.overwrite(batch)?;
        }
        self.overwrite(last.as_slice())
    }

    /// Writes each `(path, body)`, over what is there, at once.
    fn overwrite(&self, writes: &[(Path, Vec<u8>)]) -> Result<()> {
        self.block_on(async {
            let mut puts = tokio::task::JoinSet::new();
            for (path, body) in writes {
                let store = self.store.clone();
                let (path, body) = (path.clone(), body.clone());
                puts.spawn(async move {
                    store
                        .put_opts(
                            &path,
                            PutPayload::from(body),
                            PutOptions::from(PutMode::Overwrite),
                        )
                        .await
                        .map_err(|e| Error::persistence(format!("writing {path}"), e))
                });
            }
            let mut failed = None;
            while let Some(done) = puts.join_next().await {
                let put = done.map_err(|e| Error::persistence("writing tombstones", e));
                if let Err(e) = put.and_then(|put| put.map(drop)) {
                    failed.get_or_insert(e);
                }
            }
            failed.map_or(Ok(()), Err)
        })
    }

    /// The saves of the pack of saves `first ..= last`, whose first
    /// event has notification id `first_id`.
    fn read_pack_saves(&self, first: u64, last: u64, first_id: u64) -> Result<Vec<Decoded>> {
        let path = self.packs.clone().join(pack_name(first, last).as_str());
        let bytes = self.read(&path)?.ok_or_else(|| gone(&path))?;
        let saves = decode_pack(&path, &bytes, first, first_id)?;
        check_count(&path, saves.len(), first, last)?;
        self.known().ranges.insert(first, last);
        Ok(saves)
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        self.packed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Learns of the packs, listed, the first time a tombstone is read
    /// (the tombstone's own pack is learnt once it is read whole: see
    /// `read_pack_saves`).
    fn learn_packs(&self) {
        let listed = self.known().listed;
        let mut found = Vec::new();
        if !listed {
            match self.list(&self.packs) {
                Ok(names) => {
                    found.extend(names.iter().filter_map(|p| pack_range(p.filename()?)));
                    self.known().listed = true;
                }
                // Packs stay unknown until their tombstones are read.
                Err(e) => tracing::warn!(packs = %self.packs, error = %e, "cannot list the packs"),
            }
        }
        self.known().ranges.extend(found);
    }

    /// Reads the saves of `wanted` (save, its first id) that known packs
    /// hold, a pack at a time (all of it cached), into `saves`; returns
    /// the others.
    pub(super) fn read_from_packs(
        &self,
        wanted: Vec<(u64, u64)>,
        saves: &mut HashMap<u64, Arc<Decoded>>,
    ) -> Result<Vec<(u64, u64)>> {
        let mut packs: BTreeMap<(u64, u64), Vec<(u64, u64)>> = BTreeMap::new();
        let mut rest = Vec::new();
        {
            let known = self.known();
            for (save, first) in wanted {
                match known.of(save) {
                    Some(pack) => packs.entry(pack).or_default().push((save, first)),
                    None => rest.push((save, first)),
                }
            }
        }
        if packs.is_empty() {
            return Ok(rest);
        }
        let firsts: Vec<u64> = {
            let index = self.lock();
            packs
                .keys()
                .map(|&(first, _)| index.first_of(first))
                .collect()
        };
        let paths: Vec<Path> = packs
            .keys()
            .map(|&(first, last)| self.packs.clone().join(pack_name(first, last).as_str()))
            .collect();
        let read = self.fetch(&paths)?;
        for (((&(first, last), numbers), (path, bytes)), first_id) in
            packs.iter().zip(paths.iter().zip(read)).zip(firsts)
        {
            let pack = bytes.ok_or_else(|| gone(path)).and_then(|bytes| {
                let pack = decode_pack(path, &bytes, first, first_id)?;
                check_count(path, pack.len(), first, last)?;
                Ok(pack)
            });
            let pack = match pack {
                Ok(pack) => pack,
                // Listed, but not a pack that holds these saves (foreign,
                // corrupt, or gone): forgotten, and the saves read from
                // their own objects. A tombstone there that names it is
                // then the error.
                Err(e) => {
                    tracing::warn!(pack = %path, error = %e.report(), "a listed pack is unusable: its saves are read from their objects");
                    let mut known = self.known();
                    if known.ranges.get(&first) == Some(&last) {
                        known.ranges.remove(&first);
                    }
                    rest.extend(numbers);
                    continue;
                }
            };
            let mut cache = self.cache();
            for (n, save) in (first..).zip(pack) {
                let save = Arc::new(save);
                if numbers.iter().any(|&(wanted, _)| wanted == n) {
                    saves.insert(n, save.clone());
                }
                cache.put(n, save);
            }
        }
        Ok(rest)
    }

    /// Save `number` (first notification id `first`), from the object
    /// read at its name: the save itself, or, for a tombstone, the save
    /// in its pack (the whole pack is read and cached: the saves beside
    /// it are the likeliest to be read next).
    pub(super) fn resolve(
        &self,
        number: u64,
        path: &Path,
        bytes: &[u8],
        first: u64,
    ) -> Result<Arc<Decoded>> {
        let tombstone = match decode_object(path, bytes, first)? {
            Object::Save(save) => return Ok(Arc::new(save)),
            Object::Packed(tombstone) => tombstone,
        };
        let (pack_first, pack_last) = pack_range(&tombstone.pack)
            .filter(|(first, last)| (*first..=*last).contains(&number))
            .ok_or_else(|| {
                Error::persistence(
                    format!("reading {path}"),
                    format!(
                        "its tombstone names {:?}, which is not its pack",
                        tombstone.pack
                    ),
                )
            })?;
        // Read already with the pack, most likely.
        if let Some(save) = self.cache().get(&number) {
            return Ok(save.clone());
        }
        self.learn_packs();
        let saves = self.read_pack_saves(pack_first, pack_last, tombstone.pack_first_id)?;
        let mut found = None;
        let mut first_id = tombstone.pack_first_id;
        let mut read = Vec::with_capacity(saves.len());
        for (n, save) in (pack_first..).zip(saves) {
            let save = Arc::new(save);
            if n == number && first_id == first {
                found = Some(save.clone());
            }
            first_id += save.events.len() as u64;
            read.push((n, save));
        }
        // Cached the saves before `number` first, then from the last down
        // to `number`: a pack larger than the cache leaves the saves from
        // `number` on, which a reader in order reads next (cached in
        // order, it left the pack's last ones, and each save after them
        // read the pack again).
        let at = usize::try_from(number - pack_first).map_or(read.len(), |at| at.min(read.len()));
        let later = read.split_off(at);
        let mut cache = self.cache();
        for (n, save) in read.into_iter().chain(later.into_iter().rev()) {
            cache.put(n, save);
        }
        found.ok_or_else(|| {
            Error::persistence(
                format!("reading {}", tombstone.pack),
                format!("it does not hold save {number} from notification {first}, which its tombstone says it does"),
            )
        })
    }
}

/// Calls `packed` with each stream that has events in `saves` and its
/// last version there: before the saves' tombstones are written, so that
/// a compaction stopped by its error (or a crash) names the run's streams
/// again when the next compaction finishes the run.
fn name_streams(saves: &[Decoded], packed: &mut dyn FnMut(&str, u64) -> Result<()>) -> Result<()> {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for event in saves.iter().flat_map(|save| &save.events) {
        let version = last.entry(&event.originator_id).or_default();
        *version = (*version).max(event.originator_version);
    }
    for (stream, version) in last {
        packed(stream, version)?;
    }
    Ok(())
}

/// The name of the pack of saves `first ..= last`.
fn pack_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}")
}

/// The saves the pack named `name` holds, if it names a pack.
fn pack_range(name: &str) -> Option<(u64, u64)> {
    let (first, last) = name.split_once('-')?;
    let number = |s: &str| (s.len() == 20).then(|| s.parse::<u64>().ok()).flatten();
    let (first, last) = (number(first)?, number(last)?);
    (first >= 1 && last >= first).then_some((first, last))
}

/// That the pack at `path` holds as many saves as its name says.
fn check_count(path: &Path, count: usize, first: u64, last: u64) -> Result<()> {
    if count as u64 == last - first + 1 {
        return Ok(());
    }
    Err(Error::persistence(
        format!("reading {path}"),
        format!(
            "it holds {count} saves, where its name says {}",
            last - first + 1
        ),
    ))
}

fn gone(path: &Path) -> Error {
    Error::persistence(
        format!("reading {path}"),
        "the save is gone, though it was read before (removed by hand?)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_core::persistence::StoredEvent;

    fn log_of(store: &Arc<object_store::memory::InMemory>, saves: u64) -> ObjectRecorder {
        let log = ObjectRecorder::open_with(store.clone(), "app/events".into(), 10).expect("open");
        for n in 0..saves {
            annals_core::persistence::AggregateRecorder::insert_events(
                &log,
                &[StoredEvent {
                    originator_id: format!("dog-{n}"),
                    originator_version: 1,
                    topic: "Registered".into(),
                    state: vec![1],
                }],
            )
            .expect("a save");
        }
        log
    }

    /// A compaction whose callback fails (the application could not
    /// take a snapshot) leaves the run to the next compaction, which
    /// names its streams again: no stream of a packed run goes unnamed.
    #[test]
    fn a_failed_callback_names_the_run_again_next_time() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let log = log_of(&store, 20);
        let failed = log.compact_with(&mut |_, _| Err(Error::persistence("a snapshot", "down")));
        assert!(failed.is_err());
        let mut named = Vec::new();
        let done = log
            .compact_with(&mut |stream, version| {
                named.push((stream.to_owned(), version));
                Ok(())
            })
            .expect("the next compaction");
        assert_eq!((done.packs, done.saves), (1, 10));
        assert_eq!(named.len(), 10, "{named:?}");
        // Done now: nothing more to name.
        let mut again = 0;
        log.compact_with(&mut |_, _| {
            again += 1;
            Ok(())
        })
        .expect("a third compaction");
        assert_eq!(again, 0);
        // The log reads as before, from a fresh process too.
        let fresh = ObjectRecorder::open_with(store, "app/events".into(), 10).expect("open");
        for n in 0..20 {
            let stream = format!("dog-{n}");
            let events = annals_core::persistence::AggregateRecorder::select_events(
                &fresh,
                &stream,
                &annals_core::persistence::EventQuery::all(),
            )
            .expect("a stream");
            assert_eq!(events.len(), 1, "{stream}");
        }
    }

    /// A pack no tombstone names (a foreign or corrupt object where a
    /// pack would be, before its compaction) does not stand in for the
    /// saves it would hold: they are read from their own objects, which
    /// are there.
    #[test]
    fn a_pack_no_tombstone_names_is_not_read_for_its_saves() {
        use annals_core::persistence::{AggregateRecorder, EventQuery};
        use object_store::ObjectStoreExt as _;
        let store = Arc::new(object_store::memory::InMemory::new());
        let log = log_of(&store, 25);
        assert_eq!(log.compact().expect("compaction").packs, 1);
        // Saves 11 to 20 are not packed; something else is at their
        // pack's name.
        let bogus = Path::from(format!("app/events-packs/{:020}-{:020}", 11, 20));
        log.block_on(store.put(&bogus, b"{\"first_save\": 11".to_vec().into()))
            .expect("a bogus pack");
        // A fresh process: the index from segments, no save cached but
        // the tail's.
        let fresh = ObjectRecorder::open_with(store, "app/events".into(), 10).expect("open");
        // A packed save: its tombstone lists the packs.
        let dog = fresh
            .select_events("dog-2", &EventQuery::all())
            .expect("a packed save");
        assert_eq!(dog.len(), 1);
        let dog = fresh
            .select_events("dog-13", &EventQuery::all())
            .expect("a save not packed, read from its object");
        assert_eq!(dog.len(), 1);
    }

    /// A compaction that finds its pack's name taken (by another
    /// compaction, after it listed the packs) writes the tombstones only
    /// if what is there is the pack of the run's saves: tombstones naming
    /// anything else would lose the saves they replace.
    #[test]
    fn a_taken_pack_name_is_checked_before_the_tombstones() {
        use annals_core::persistence::{AggregateRecorder, EventQuery};
        use object_store::ObjectStoreExt as _;
        let store = Arc::new(object_store::memory::InMemory::new());
        let log = log_of(&store, 30);
        let bogus = Path::from(format!("app/events-packs/{:020}-{:020}", 11, 20));
        // Taken once the packs are listed: while the first run is named.
        let mut taken = false;
        let done = log.compact_with(&mut |_, _| {
            if !taken {
                taken = true;
                log.block_on(store.put(&bogus, b"{\"first_save\": 11".to_vec().into()))
                    .expect("a bogus pack");
            }
            Ok(())
        });
        assert!(done.is_err(), "{done:?}");
        let fresh = ObjectRecorder::open_with(store, "app/events".into(), 10).expect("open");
        for n in 0..30 {
            let stream = format!("dog-{n}");
            let events = fresh
                .select_events(&stream, &EventQuery::all())
                .unwrap_or_else(|e| panic!("{stream}: {}", e.report()));
            assert_eq!(events.len(), 1, "{stream}");
        }
    }

    /// A run whose saves another compaction, of another pack size, has
    /// begun to pack (cut off part way) is left to it: not an error that
    /// says a save is gone.
    #[test]
    fn a_run_packed_in_part_at_another_size_is_left_to_it() {
        use object_store::ObjectStoreExt as _;
        let store = Arc::new(object_store::memory::InMemory::new());
        let log = log_of(&store, 40);
        let tenth = Path::from(format!("app/events/{:020}", 10));
        let save = log.read(&tenth).expect("read").expect("save 10");
        let twenty =
            ObjectRecorder::open_with(store.clone(), "app/events".into(), 20).expect("open");
        assert_eq!(twenty.compact().expect("packs of 20").packs, 1);
        // As if that compaction were cut off before save 10's tombstone.
        log.block_on(store.put(&tenth, save.into()))
            .expect("save 10 again");
        let ten = ObjectRecorder::open_with(store, "app/events".into(), 10).expect("open");
        let done = ten.compact().unwrap_or_else(|e| panic!("{}", e.report()));
        // Only saves 21 to 30, which no pack of 20 holds yet.
        assert_eq!((done.packs, done.saves), (1, 10));
    }
}
