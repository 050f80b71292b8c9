//! The in-memory recorder: the default store, for tests and prototypes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::wake::{Notifier, Signal, Watch};
use super::{
    AggregateRecorder, ApplicationRecorder, EventQuery, Notification, NotificationQuery,
    ProcessRecorder, StoredEvent, Tracking,
};
use crate::error::{Error, Result};

/// Keeps events in memory, behind a read-write lock. Cloning is not
/// offered: share it behind an `Arc`.
///
/// ```
/// use annals::persistence::memory::MemoryRecorder;
/// use annals::persistence::{AggregateRecorder, EventQuery, StoredEvent};
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
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryRecorder {
    state: RwLock<State>,
    /// Raised after every insert, for the watchers of this recorder.
    committed: Notifier,
}

#[derive(Debug, Default)]
struct State {
    /// The log: notification id `n` is at index `n - 1`.
    log: Vec<StoredEvent>,
    /// Per stream: version -> index in `log`.
    streams: HashMap<String, BTreeMap<u64, usize>>,
    /// Per upstream application: the tracked notification ids.
    tracking: HashMap<String, TrackedIds>,
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

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written:
        // every write checks first and mutates after, so a poisoned lock
        // still guards consistent data.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn check(&self, events: &[StoredEvent]) -> Result<()> {
        let mut batch = HashSet::with_capacity(events.len());
        for e in events {
            let taken = self
                .streams
                .get(&e.originator_id)
                .is_some_and(|s| s.contains_key(&e.originator_version));
            if taken || !batch.insert((&e.originator_id, e.originator_version)) {
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

    fn insert(&mut self, events: &[StoredEvent]) -> Vec<u64> {
        events
            .iter()
            .map(|e| {
                self.log.push(e.clone());
                let index = self.log.len() - 1;
                self.streams
                    .entry(e.originator_id.clone())
                    .or_default()
                    .insert(e.originator_version, index);
                index as u64 + 1
            })
            .collect()
    }
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
        let state = self.read();
        let Some(stream) = state.streams.get(originator_id) else {
            return Ok(Vec::new());
        };
        let lo = query
            .gt
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let hi = query
            .lte
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
        if matches!((lo, hi), (std::ops::Bound::Excluded(a), std::ops::Bound::Included(b)) if a >= b)
        {
            return Ok(Vec::new());
        }
        let range = stream.range((lo, hi));
        let limit = query.limit.unwrap_or(usize::MAX);
        let pick = |(_, &i): (&u64, &usize)| state.log[i].clone();
        Ok(if query.desc {
            range.rev().take(limit).map(pick).collect()
        } else {
            range.take(limit).map(pick).collect()
        })
    }
}

impl ApplicationRecorder for MemoryRecorder {
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        let state = self.read();
        let start = query.start.max(1);
        let first = usize::try_from(start - 1).unwrap_or(usize::MAX);
        Ok(state
            .log
            .iter()
            .enumerate()
            .skip(first)
            .map(|(i, e)| (i as u64 + 1, e))
            .take_while(|(id, _)| query.stop.is_none_or(|stop| *id <= stop))
            .filter(|(id, e)| query.matches(*id, &e.topic))
            .take(query.limit)
            .map(|(id, e)| Notification {
                id,
                event: e.clone(),
            })
            .collect())
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
        if state
            .tracking
            .get(&tracking.application_name)
            .is_some_and(|t| t.ids.contains(&tracking.notification_id))
        {
            return Err(Error::conflict(format!(
                "notification {} of {} is already tracked",
                tracking.notification_id, tracking.application_name
            )));
        }
        state.check(events)?;
        let ids = state.insert(events);
        let tracked = state
            .tracking
            .entry(tracking.application_name.clone())
            .or_default();
        tracked.ids.insert(tracking.notification_id);
        tracked.max = tracked.max.max(tracking.notification_id);
        drop(state);
        self.committed.notify();
        Ok(ids)
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        Ok(self
            .read()
            .tracking
            .get(application_name)
            .map_or(0, |t| t.max))
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        Ok(self
            .read()
            .tracking
            .get(application_name)
            .is_some_and(|t| t.ids.contains(&notification_id)))
    }
}
