//! One writer at a time, and the saves that arrive meanwhile written
//! together: the queue, the writer's lock ([`IndexGuard`]), a group's
//! checks and its create-if-absent write.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload};

use super::codec::{encode, Decoded, Request};
use super::{ObjectRecorder, MAX_RACES};
use crate::index::{Index, Segment};
use annals_core::error::{Error, Result};
use annals_core::persistence::{KeyedOutcome, StoredEvent, Tracking};

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
pub(super) struct IndexGuard<'a> {
    pub(super) guard: Option<MutexGuard<'a, Index>>,
    pub(super) recorder: &'a ObjectRecorder,
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

/// A save that waits for the writer: whichever save holds it writes every
/// queued one, in one object (see `ObjectRecorder::save`).
pub(super) struct Queued {
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

impl ObjectRecorder {
    /// Stores a save. A save that finds the writer (the index) free and
    /// nobody waiting writes alone; otherwise it queues, and whichever
    /// save holds the writer next writes every queued save in one object
    /// (one create-if-absent write decides them all; each is checked
    /// against the index alone, so one refused does not refuse the
    /// others). So saves arriving together cost one request, not one each
    /// in turn. The save that completes an index segment writes it before
    /// it returns, having let the writer go.
    pub(super) fn save(
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
                    let there = self.resolve(index.saves() + 1, path, &there, first)?;
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
