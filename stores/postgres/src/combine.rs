//! Saves of events alone, combined: each queues its events before it waits
//! for the group's writer, and whichever save holds the writer inserts
//! every queued one in one statement, one round trip for them all
//! (flat combining). The others then find their ids and only join the
//! group's commit.
//!
//! What a save finds is true of the open transaction: a rolled-back group
//! puts its saves back in the queue's hands (their owners insert them
//! again), so an outcome is never one of a transaction that did not
//! commit.

use std::sync::{Arc, Mutex, MutexGuard};

use annals_core::error::Error;
use annals_core::persistence::StoredEvent;

/// Where one save's insert stands.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Not inserted (yet, or again after a rollback).
    Pending,
    /// Inserted in the open transaction, with these notification ids.
    Stored(Vec<u64>),
    /// Inserted, and committed before its owner took the outcome (a group
    /// can commit while a save waits: `exclusive`, a withdrawn save). Kept
    /// when taken: the owner's own group may fail after, and its rows are
    /// stored all the same.
    Committed(Vec<u64>),
    /// Refused (a taken key), or lost with a connection that broke after
    /// COMMIT was sent; the error is taken by the save's owner.
    Failed(Option<Error>),
}

/// One save's events, queued for the writer's holder.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) events: Vec<StoredEvent>,
    outcome: Mutex<Outcome>,
}

impl Slot {
    pub(super) fn outcome(&self) -> MutexGuard<'_, Outcome> {
        // An outcome is set whole: one left by a panic is still whole.
        self.outcome.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set(&self, outcome: Outcome) {
        *self.outcome() = outcome;
    }

    /// The outcome, for the owner, leaving `Pending` (a committed one
    /// stays).
    pub(super) fn take(&self) -> Outcome {
        let mut outcome = self.outcome();
        match std::mem::replace(&mut *outcome, Outcome::Pending) {
            Outcome::Committed(ids) => {
                *outcome = Outcome::Committed(ids.clone());
                Outcome::Committed(ids)
            }
            other => other,
        }
    }

    /// Its ids, if its rows are committed.
    pub(super) fn committed(&self) -> Option<Vec<u64>> {
        match &*self.outcome() {
            Outcome::Committed(ids) => Some(ids.clone()),
            _ => None,
        }
    }

    /// Its group committed: an outcome not yet taken is for good.
    pub(super) fn commit(&self) {
        let mut outcome = self.outcome();
        if let Outcome::Stored(ids) = &mut *outcome {
            *outcome = Outcome::Committed(std::mem::take(ids));
        }
    }

    /// Whether it is yet to be inserted.
    pub(super) fn is_pending(&self) -> bool {
        matches!(*self.outcome(), Outcome::Pending)
    }
}

/// A save's copy of `events` (the owner's slice may not outlive its call,
/// and the holder of the writer may be another thread).
pub(super) fn slot(events: &[StoredEvent]) -> Arc<Slot> {
    Arc::new(Slot {
        events: events.to_vec(),
        outcome: Mutex::new(Outcome::Pending),
    })
}

/// The saves waiting to be inserted, shared by the recorder (which
/// queues) and the group's writer (which drains).
#[derive(Debug, Clone, Default)]
pub(super) struct Queue(Arc<Mutex<Vec<Arc<Slot>>>>);

impl Queue {
    fn slots(&self) -> MutexGuard<'_, Vec<Arc<Slot>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn push(&self, slot: &Arc<Slot>) {
        self.slots().push(slot.clone());
    }

    /// Every queued save, with `own` first, whether it was still queued or
    /// was handed back by a rollback.
    pub(super) fn drain_with(&self, own: &Arc<Slot>) -> Vec<Arc<Slot>> {
        let mut batch = vec![own.clone()];
        batch.extend(
            self.slots()
                .drain(..)
                .filter(|slot| !Arc::ptr_eq(slot, own)),
        );
        batch
    }

    /// Takes `slot` out of the queue (its owner gives up).
    pub(super) fn remove(&self, slot: &Arc<Slot>) {
        self.slots().retain(|s| !Arc::ptr_eq(s, slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: u64) -> StoredEvent {
        StoredEvent {
            originator_id: "a".into(),
            originator_version: v,
            topic: "T".into(),
            state: Vec::new(),
        }
    }

    #[test]
    fn a_drain_takes_every_queued_save_once_with_its_own_first() {
        let queue = Queue::default();
        let (first, second) = (slot(&[event(1)]), slot(&[event(2), event(3)]));
        queue.push(&first);
        queue.push(&second);
        let batch = queue.drain_with(&second);
        assert_eq!(batch.len(), 2);
        assert!(Arc::ptr_eq(&batch[0], &second) && Arc::ptr_eq(&batch[1], &first));
        // Handed back by a rollback, a save is drained by its owner alone.
        let again = queue.drain_with(&first);
        assert_eq!(again.len(), 1);
        assert!(Arc::ptr_eq(&again[0], &first));
    }

    #[test]
    fn a_committed_outcome_stays_when_taken_and_a_pending_one_is_not_committed() {
        let stored = slot(&[event(1)]);
        stored.set(Outcome::Stored(vec![7]));
        stored.commit();
        assert!(matches!(stored.take(), Outcome::Committed(ids) if ids == [7]));
        assert_eq!(stored.committed(), Some(vec![7]));
        let pending = slot(&[event(2)]);
        pending.commit();
        assert!(matches!(pending.take(), Outcome::Pending));
        assert_eq!(pending.committed(), None);
    }

    #[test]
    fn a_removed_save_is_not_drained() {
        let queue = Queue::default();
        let (gone, own) = (slot(&[event(1)]), slot(&[event(2)]));
        queue.push(&gone);
        queue.push(&own);
        queue.remove(&gone);
        assert_eq!(queue.drain_with(&own).len(), 1);
    }
}
