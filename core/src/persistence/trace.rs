//! The `trace` spans of the recorders' calls, written once for every
//! store: [`Traced`] wraps any store's recorder (the application wraps the
//! one its store opens), so a store written outside annals is traced as
//! the built-in ones are, and no store writes a span of its own.
//!
//! Fields are counts, ids and versions, never a state's bytes. When no
//! subscriber wants `trace`, the macros skip the fields and the spans are
//! disabled, so a call costs one level check.

use std::sync::Arc;

use tracing::field::Empty;
use tracing::Span;

use super::wake::{Signal, Watch};
use super::{
    AggregateRecorder, ApplicationRecorder, EventQuery, KeyedOutcome, NotificationQuery,
    ProcessRecorder, StoreTx,
};
use crate::error::Result;
use crate::rows::{Notification, StoredEvent, Tracking};

/// Runs `insert` (an insert of `events`, with `tracking` when given) inside
/// an `insert_events` span: the store, the number of rows, the first row's
/// originator id and version, the tracking record, and after success the
/// first and last notification ids given.
fn insert(
    store: &'static str,
    events: &[StoredEvent],
    tracking: Option<&Tracking>,
    insert: impl FnOnce() -> Result<Vec<u64>>,
) -> Result<Vec<u64>> {
    let first = events.first();
    let span = tracing::trace_span!(
        "insert_events",
        store,
        rows = events.len(),
        originator_id = first.map(|e| e.originator_id.as_str()),
        originator_version = first.map(|e| e.originator_version),
        tracking_application = tracking.map(|t| t.application_name.as_str()),
        tracking_notification_id = tracking.map(|t| t.notification_id),
        first_notification_id = Empty,
        last_notification_id = Empty,
    );
    let ids = span.in_scope(insert)?;
    if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
        span.record("first_notification_id", first);
        span.record("last_notification_id", last);
    }
    Ok(ids)
}

/// Runs `select` (of stream `originator_id`, by `query`) inside a
/// `select_events` span recording how many rows it returned.
fn select_events(
    store: &'static str,
    originator_id: &str,
    query: &EventQuery,
    select: impl FnOnce() -> Result<Vec<StoredEvent>>,
) -> Result<Vec<StoredEvent>> {
    let span = events_span(store, originator_id, query);
    let rows = span.in_scope(select)?;
    span.record("rows", rows.len());
    Ok(rows)
}

fn events_span(store: &'static str, originator_id: &str, query: &EventQuery) -> tracing::Span {
    tracing::trace_span!(
        "select_events",
        store,
        originator_id,
        gt = query.gt,
        lte = query.lte,
        desc = query.desc,
        limit = query.limit,
        rows = Empty,
    )
}

/// Runs `visit` (of stream `originator_id`, by `query`) inside a
/// `select_events` span recording how many rows it visited.
fn visit_events(
    store: &'static str,
    originator_id: &str,
    query: &EventQuery,
    visit: impl FnOnce() -> Result<usize>,
) -> Result<usize> {
    let span = events_span(store, originator_id, query);
    let rows = span.in_scope(visit)?;
    span.record("rows", rows);
    Ok(rows)
}

/// Runs `select` (of the log, by `query`) inside a `select_notifications`
/// span ([`notifications_span`]).
fn select_notifications(
    store: &'static str,
    query: &NotificationQuery,
    select: impl FnOnce() -> Result<Vec<Notification>>,
) -> Result<Vec<Notification>> {
    let span = notifications_span(store, query);
    let rows = span.in_scope(select)?;
    selected(&span, &rows);
    Ok(rows)
}

/// A `select_notifications` span (of the log, by `query`), for a body too
/// long to wrap: enter it, and give the rows to [`selected`].
fn notifications_span(store: &'static str, query: &NotificationQuery) -> Span {
    tracing::trace_span!(
        "select_notifications",
        store,
        start = query.start,
        limit = query.limit,
        stop = query.stop,
        topics = query.topics.len(),
        rows = Empty,
        last_notification_id = Empty,
    )
}

/// Records on a [`notifications_span`] how many rows the select returned
/// and the last one's id.
fn selected(span: &Span, rows: &[Notification]) {
    span.record("rows", rows.len());
    if let Some(last) = rows.last() {
        span.record("last_notification_id", last.id);
    }
}

/// Any store's recorder, with a `trace` span around each call that reads
/// or writes rows: `insert_events` (the store, the number of rows, the
/// first row's id and version, the tracking record, the notification ids
/// given), `select_events` and `select_notifications` (the query and the
/// rows returned). Fields are counts, ids and versions, never a state.
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::memory::MemoryRecorder;
/// use annals_core::persistence::trace::Traced;
/// use annals_core::persistence::{ApplicationRecorder, ProcessRecorder};
///
/// let recorder: Arc<dyn ProcessRecorder> = Arc::new(Traced::new("memory", Arc::new(MemoryRecorder::new())));
/// assert_eq!(recorder.max_notification_id()?, 0);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Traced {
    store: &'static str,
    inner: Arc<dyn ProcessRecorder>,
}

impl std::fmt::Debug for Traced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traced")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Traced {
    /// `inner`, its calls traced with `store` as the spans' `store` field.
    pub fn new(store: &'static str, inner: Arc<dyn ProcessRecorder>) -> Self {
        Self { store, inner }
    }
}

impl AggregateRecorder for Traced {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        insert(self.store, events, None, || {
            self.inner.insert_events(events)
        })
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        select_events(self.store, originator_id, query, || {
            self.inner.select_events(originator_id, query)
        })
    }

    fn visit_events(
        &self,
        originator_id: &str,
        query: &EventQuery,
        visit: &mut dyn FnMut(&StoredEvent) -> Result<()>,
    ) -> Result<usize> {
        visit_events(self.store, originator_id, query, || {
            self.inner.visit_events(originator_id, query, visit)
        })
    }

    fn end_stream(
        &self,
        originator_id: &str,
        tombstone: Option<&StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        let span = tracing::trace_span!(
            "end_stream",
            store = self.store,
            originator_id,
            tombstone_version = tombstone.map(|t| t.originator_version),
            removed = Empty,
        );
        let removed = span.in_scope(|| self.inner.end_stream(originator_id, tombstone))?;
        span.record("removed", removed.len());
        Ok(removed)
    }
}

impl ApplicationRecorder for Traced {
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        select_notifications(self.store, query, || self.inner.select_notifications(query))
    }

    fn max_notification_id(&self) -> Result<u64> {
        self.inner.max_notification_id()
    }

    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        self.inner.watch(signal)
    }
}

impl ProcessRecorder for Traced {
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> Result<Vec<u64>> {
        insert(self.store, events, Some(tracking), || {
            self.inner.insert_events_tracked(events, tracking)
        })
    }

    fn insert_events_with(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        writes: &mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        insert(self.store, events, tracking, || {
            self.inner.insert_events_with(events, tracking, writes)
        })
    }

    fn insert_events_keyed(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: &KeyedOutcome,
    ) -> Result<Vec<u64>> {
        // The key is the client's: not a field (it may say who asked).
        insert(self.store, events, tracking, || {
            self.inner.insert_events_keyed(events, tracking, outcome)
        })
    }

    fn select_outcome(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.select_outcome(key)
    }

    fn read_with(&self, reads: &mut dyn FnMut(&mut StoreTx<'_>) -> Result<()>) -> Result<()> {
        self.inner.read_with(reads)
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        self.inner.max_tracking_id(application_name)
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        self.inner
            .has_tracking_id(application_name, notification_id)
    }

    fn import_events(&self, events: &[StoredEvent], tracking: Option<&Tracking>) -> Result<usize> {
        let mut stored = 0;
        insert(self.store, events, tracking, || {
            stored = self.inner.import_events(events, tracking)?;
            Ok(Vec::new())
        })?;
        Ok(stored)
    }

    fn tracked_applications(&self) -> Result<Vec<String>> {
        self.inner.tracked_applications()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::memory::MemoryRecorder;

    /// A recorder that keeps the trait's defaults: how a wrapper that
    /// did not pass the calls on would answer.
    struct Defaults(MemoryRecorder);

    impl AggregateRecorder for Defaults {
        fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
            self.0.insert_events(events)
        }
        fn select_events(
            &self,
            originator_id: &str,
            query: &EventQuery,
        ) -> Result<Vec<StoredEvent>> {
            self.0.select_events(originator_id, query)
        }
    }

    impl ApplicationRecorder for Defaults {
        fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
            self.0.select_notifications(query)
        }
        fn max_notification_id(&self) -> Result<u64> {
            self.0.max_notification_id()
        }
    }

    impl ProcessRecorder for Defaults {
        fn insert_events_tracked(
            &self,
            events: &[StoredEvent],
            tracking: &Tracking,
        ) -> Result<Vec<u64>> {
            self.0.insert_events_tracked(events, tracking)
        }
        fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
            self.0.max_tracking_id(application_name)
        }
        fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
            self.0.has_tracking_id(application_name, notification_id)
        }
    }

    #[test]
    fn imports_and_the_names_tracked_are_passed_on() {
        let traced = Traced::new("memory", Arc::new(MemoryRecorder::new()));
        let row = StoredEvent {
            originator_id: "a".into(),
            originator_version: 1,
            topic: "T".into(),
            state: b"{}".to_vec(),
        };
        let at = Tracking {
            application_name: "up".into(),
            notification_id: 4,
        };
        let batch = std::slice::from_ref(&row);
        assert_eq!(traced.import_events(batch, Some(&at)).expect("import"), 1);
        assert_eq!(traced.tracked_applications().expect("names"), ["up"]);
        assert!(traced
            .import_events(batch, None)
            .expect_err("again")
            .is_conflict());
        // Over a store that keeps the defaults: the import is its save, and
        // the names are the default's error, naming PERSISTENCE_MODULE.
        let traced = Traced::new("defaults", Arc::new(Defaults(MemoryRecorder::new())));
        assert_eq!(traced.import_events(batch, Some(&at)).expect("import"), 1);
        assert_eq!(traced.max_tracking_id("up").expect("max"), 4);
        match traced.tracked_applications() {
            Err(crate::Error::Config { setting, .. }) => assert_eq!(setting, "PERSISTENCE_MODULE"),
            other => panic!("{other:?}"),
        }
    }
}
