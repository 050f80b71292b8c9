//! The in-memory recorder: the default store, for tests and prototypes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::wake::{Notifier, Signal, Watch};
use super::{
    AggregateRecorder, ApplicationRecorder, EventQuery, KeyedOutcome, Notification,
    NotificationQuery, ProcessRecorder, StoredEvent, Tracking,
};
use crate::error::{Error, Result};

/// Keeps events in memory, behind a read-write lock. Cloning is not
/// offered: share it behind an `Arc`.
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
/// use annals_core::persistence::{AggregateRecorder, EventQuery, StoredEvent};
///
/// let recorder = MemoryRecorder::new();
/// let row = StoredEvent {
///     originator_id: "dog-1".into(),
///     originator_version: 1,
///     topic: "Dog.Registered".into(),
///     state: b"{}".to_vec(),
/// };
/// assert_eq!(recorder.insert_events(&[row.clone()])?, [1]);
/// // The same (id, version) again: a conflict, nothing stored.
/// assert!(recorder.insert_events(&[row]).unwrap_err().is_conflict());
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryRecorder {
    state: RwLock<LogIndex>,
    /// Raised after every insert, for the watchers of this recorder.
    committed: Notifier,
}

/// What a log holds, indexed: the memory store's whole state, and the
/// object store's index of the log objects it has read.
#[derive(Debug, Default)]
pub struct LogIndex {
    /// The log: notification id `n` is at index `n - 1`.
    pub log: Vec<StoredEvent>,
    /// Per stream: version -> index in `log`.
    streams: HashMap<String, BTreeMap<u64, usize>>,
    /// Per upstream application: the tracked notification ids.
    tracking: HashMap<String, TrackedIds>,
    /// Idempotency keys and their outcomes.
    outcomes: HashMap<String, Vec<u8>>,
    /// The notification ids of events removed by
    /// [`end_stream`](Self::end_stream): gaps in the log (their places in
    /// `log` hold empty rows).
    removed: HashSet<u64>,
}

#[derive(Debug, Default)]
struct TrackedIds {
    ids: HashSet<u64>,
    max: u64,
}

impl MemoryRecorder {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, LogIndex> {
        // A panic while holding the lock cannot leave `LogIndex` half-written:
        // every write checks first and mutates after, so a poisoned lock
        // still guards consistent data.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, LogIndex> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl LogIndex {
    /// A conflict if `tracking` is recorded already.
    pub fn check_tracking(&self, tracking: &Tracking) -> Result<()> {
        if self
            .tracking
            .get(&tracking.application_name)
            .is_some_and(|t| t.ids.contains(&tracking.notification_id))
        {
            return Err(tracked_already(tracking));
        }
        Ok(())
    }

    /// Records `tracking` (checked).
    pub fn track(&mut self, tracking: &Tracking) {
        let tracked = self
            .tracking
            .entry(tracking.application_name.clone())
            .or_default();
        tracked.ids.insert(tracking.notification_id);
        tracked.max = tracked.max.max(tracking.notification_id);
    }

    /// A conflict if the key of `outcome` is stored already.
    pub fn check_key(&self, outcome: &KeyedOutcome) -> Result<()> {
        if self.outcomes.contains_key(&outcome.key) {
            return Err(key_stored_already(&outcome.key));
        }
        Ok(())
    }

    /// Records `outcome` (checked).
    pub fn record_key(&mut self, outcome: &KeyedOutcome) {
        self.outcomes
            .insert(outcome.key.clone(), outcome.outcome.clone());
    }

    /// The outcome stored with idempotency key `key`.
    pub fn outcome(&self, key: &str) -> Option<&[u8]> {
        self.outcomes.get(key).map(Vec::as_slice)
    }

    /// A conflict if any of `events` is at a taken (id, version), or two
    /// of them are at the same one.
    pub fn check(&self, events: &[StoredEvent]) -> Result<()> {
        check_versions(events, |id, version| {
            self.streams
                .get(id)
                .is_some_and(|s| s.contains_key(&version))
        })
    }

    /// Appends `events` (checked) to the log; their notification ids.
    pub fn insert(&mut self, events: &[StoredEvent]) -> Vec<u64> {
        events
            .iter()
            .map(|e| {
                self.log.push(e.clone());
                let index = self.log.len() - 1;
                // The id is copied for a new stream only.
                match self.streams.get_mut(&e.originator_id) {
                    Some(stream) => stream.insert(e.originator_version, index),
                    None => self
                        .streams
                        .entry(e.originator_id.clone())
                        .or_default()
                        .insert(e.originator_version, index),
                };
                index as u64 + 1
            })
            .collect()
    }
    /// Ends stream `originator_id` as
    /// [`AggregateRecorder::end_stream`] says: checked, then the tombstone
    /// appended (if any) and the stream's other events removed, their
    /// places in the log emptied (gaps); returns the removed events.
    pub fn end_stream(
        &mut self,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        let last = self
            .streams
            .get(originator_id)
            .and_then(|s| s.values().next_back())
            .map(|&i| &self.log[i]);
        if !crate::ending::check_end(originator_id, last, tombstone)? {
            return Ok(Vec::new());
        }
        if let Some(tombstone) = tombstone {
            self.insert(std::slice::from_ref(tombstone));
        }
        let stream = self.streams.remove(originator_id).unwrap_or_default();
        let mut removed = Vec::with_capacity(stream.len());
        let mut kept = BTreeMap::new();
        for (version, index) in stream {
            if tombstone.is_some_and(|t| t.originator_version == version) {
                kept.insert(version, index);
                continue;
            }
            removed.push(std::mem::replace(
                &mut self.log[index],
                StoredEvent::buffer(String::new()),
            ));
            self.removed.insert(index as u64 + 1);
        }
        if !kept.is_empty() {
            self.streams.insert(originator_id.to_owned(), kept);
        }
        Ok(removed)
    }

    /// The events of one stream, as `query` says.
    pub fn select_events(&self, originator_id: &str, query: &EventQuery) -> Vec<StoredEvent> {
        let mut events = Vec::new();
        let visited = self.visit_events(originator_id, query, |e| {
            events.push(e.clone());
            Ok(())
        });
        debug_assert!(visited.is_ok(), "the push never fails");
        events
    }

    /// Calls `visit` with the events of one stream, as `query` says.
    pub fn visit_events(
        &self,
        originator_id: &str,
        query: &EventQuery,
        mut visit: impl FnMut(&StoredEvent) -> Result<()>,
    ) -> Result<usize> {
        let Some(stream) = self.streams.get(originator_id) else {
            return Ok(0);
        };
        let lo = query
            .gt
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let hi = query
            .lte
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
        if matches!((lo, hi), (std::ops::Bound::Excluded(a), std::ops::Bound::Included(b)) if a >= b)
        {
            return Ok(0);
        }
        let range = stream.range((lo, hi));
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut visited = 0;
        let mut pick = |(_, &i): (&u64, &usize)| {
            visited += 1;
            visit(&self.log[i])
        };
        if query.desc {
            range.rev().take(limit).try_for_each(&mut pick)?;
        } else {
            range.take(limit).try_for_each(&mut pick)?;
        }
        Ok(visited)
    }

    /// Notifications in id order, as `query` says.
    pub fn select_notifications(&self, query: &NotificationQuery) -> Vec<Notification> {
        let start = query.start.max(1);
        let first = usize::try_from(start - 1).unwrap_or(usize::MAX);
        // Room for the most the page can hold, up front: the filters hide
        // the count from `collect`, which grew the page by doubling (ten
        // copies of a 1,000-row page).
        let mut page = Vec::with_capacity(query.limit.min(self.log.len().saturating_sub(first)));
        page.extend(
            self.log
                .iter()
                .enumerate()
                .skip(first)
                .map(|(i, e)| (i as u64 + 1, e))
                .take_while(|(id, _)| query.stop.is_none_or(|stop| *id <= stop))
                .filter(|(id, e)| query.matches(*id, &e.topic) && !self.removed.contains(id))
                .take(query.limit)
                .map(|(id, e)| Notification {
                    id,
                    event: e.clone(),
                }),
        );
        page
    }

    /// The highest tracked id of `application_name` (0 when none is).
    pub fn max_tracking_id(&self, application_name: &str) -> u64 {
        self.tracking.get(application_name).map_or(0, |t| t.max)
    }

    /// Whether notification `notification_id` of `application_name` is tracked.
    pub fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> bool {
        self.tracking
            .get(application_name)
            .is_some_and(|t| t.ids.contains(&notification_id))
    }
}

/// A conflict if any of `events` is at an (id, version) that `taken` says
/// is stored, or two of them are at the same one: the check of the stores
/// that index their streams themselves (this one, the object store).
///
/// # Errors
///
/// [`Error::Conflict`] naming the first such event's stream and version.
pub fn check_versions(events: &[StoredEvent], taken: impl Fn(&str, u64) -> bool) -> Result<()> {
    // A set of the batch's keys only for a batch (one save of one event,
    // the usual, needs none: an allocation saved).
    let mut batch = HashSet::with_capacity(if events.len() > 1 { events.len() } else { 0 });
    for e in events {
        if taken(&e.originator_id, e.originator_version)
            || (events.len() > 1 && !batch.insert((&e.originator_id, e.originator_version)))
        {
            return Err(Error::Conflict {
                aggregate: None,
                id: Some(e.originator_id.clone()),
                version: Some(e.originator_version),
                message: format!(
                    "stream {} already has version {}",
                    e.originator_id, e.originator_version
                ),
            });
        }
    }
    Ok(())
}

/// The conflict of a tracking record that is stored already.
pub fn tracked_already(tracking: &Tracking) -> Error {
    Error::conflict(format!(
        "notification {} of {} is already tracked",
        tracking.notification_id, tracking.application_name
    ))
}

/// The conflict of an idempotency key that is stored already.
pub fn key_stored_already(key: &str) -> Error {
    Error::conflict(format!(
        "the idempotency key {key:?} is stored already (its request was carried out)"
    ))
}

impl AggregateRecorder for MemoryRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        let mut state = self.write();
        state.check(events)?;
        let ids = state.insert(events);
        drop(state);
        self.committed.notify();
        Ok(ids)
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        Ok(self.read().select_events(originator_id, query))
    }

    fn end_stream(
        &self,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        let removed = self.write().end_stream(originator_id, tombstone)?;
        if tombstone.is_some() && !removed.is_empty() {
            self.committed.notify();
        }
        Ok(removed)
    }

    /// Lends the rows it holds, under the read lock (a writer waits for
    /// the visit).
    fn visit_events(
        &self,
        originator_id: &str,
        query: &EventQuery,
        visit: &mut dyn FnMut(&StoredEvent) -> Result<()>,
    ) -> Result<usize> {
        self.read().visit_events(originator_id, query, visit)
    }
}

impl ApplicationRecorder for MemoryRecorder {
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        Ok(self.read().select_notifications(query))
    }

    fn max_notification_id(&self) -> Result<u64> {
        Ok(self.read().log.len() as u64)
    }

    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        // Inserts raise it directly: no thread needed.
        self.committed.subscribe(signal);
        Ok(Watch::none())
    }
}

impl ProcessRecorder for MemoryRecorder {
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> Result<Vec<u64>> {
        let mut state = self.write();
        state.check_tracking(tracking)?;
        state.check(events)?;
        let ids = state.insert(events);
        state.track(tracking);
        drop(state);
        self.committed.notify();
        Ok(ids)
    }

    fn insert_events_with(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        writes: &mut dyn FnMut(&mut crate::persistence::StoreTx<'_>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        let _ = (events, tracking, writes);
        Err(crate::persistence::no_transaction("the memory store"))
    }

    fn insert_events_keyed(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: &KeyedOutcome,
    ) -> Result<Vec<u64>> {
        let mut state = self.write();
        state.check_key(outcome)?;
        if let Some(tracking) = tracking {
            state.check_tracking(tracking)?;
        }
        state.check(events)?;
        let ids = state.insert(events);
        if let Some(tracking) = tracking {
            state.track(tracking);
        }
        state.record_key(outcome);
        drop(state);
        self.committed.notify();
        Ok(ids)
    }

    fn select_outcome(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read().outcome(key).map(<[u8]>::to_vec))
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        Ok(self.read().max_tracking_id(application_name))
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        Ok(self
            .read()
            .has_tracking_id(application_name, notification_id))
    }

    fn tracked_applications(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.read().tracking.keys().cloned().collect();
        names.sort_unstable();
        Ok(names)
    }
}
