//! A recorder that changes the rows it hands out, to test what readers do
//! with tampered stores.

use std::sync::Arc;

use annals::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, Notification, NotificationQuery,
    ProcessRecorder, StoredEvent, Tracking,
};

/// Hands out the rows of `inner` after `tamper` changed the selected
/// stream's rows (writes go through unchanged).
pub struct Tampered {
    /// The real store.
    pub inner: Arc<dyn ProcessRecorder>,
    /// What to do to the rows of a selected stream.
    pub tamper: fn(&mut Vec<StoredEvent>),
}

/// Shows only that it is a tampering recorder: the store it wraps has no
/// `Debug`.
impl std::fmt::Debug for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tampered").finish_non_exhaustive()
    }
}

impl AggregateRecorder for Tampered {
    fn insert_events(&self, events: &[StoredEvent]) -> annals::Result<Vec<u64>> {
        self.inner.insert_events(events)
    }
    fn select_events(&self, id: &str, query: &EventQuery) -> annals::Result<Vec<StoredEvent>> {
        let mut events = self.inner.select_events(id, query)?;
        (self.tamper)(&mut events);
        Ok(events)
    }
}

impl ApplicationRecorder for Tampered {
    fn select_notifications(&self, query: &NotificationQuery) -> annals::Result<Vec<Notification>> {
        self.inner.select_notifications(query)
    }
    fn max_notification_id(&self) -> annals::Result<u64> {
        self.inner.max_notification_id()
    }
}

impl ProcessRecorder for Tampered {
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> annals::Result<Vec<u64>> {
        self.inner.insert_events_tracked(events, tracking)
    }
    fn max_tracking_id(&self, name: &str) -> annals::Result<u64> {
        self.inner.max_tracking_id(name)
    }
    fn has_tracking_id(&self, name: &str, id: u64) -> annals::Result<bool> {
        self.inner.has_tracking_id(name, id)
    }
}
