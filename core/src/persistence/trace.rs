//! The `trace` spans of the recorders' calls, written once for every
//! store: each store's trait methods run their body inside one of these.
//!
//! Fields are counts, ids and versions, never a state's bytes. When no
//! subscriber wants `trace`, the macros skip the fields and the spans are
//! disabled, so a call costs one level check.

use tracing::field::Empty;
use tracing::Span;

use super::{EventQuery, NotificationQuery};
use crate::error::Result;
use crate::rows::{Notification, StoredEvent, Tracking};

/// Runs `insert` (an insert of `events`, with `tracking` when given) inside
/// an `insert_events` span: the store, the number of rows, the first row's
/// originator id and version, the tracking record, and after success the
/// first and last notification ids given.
pub fn insert(
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
pub fn select_events(
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
pub fn visit_events(
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
pub fn select_notifications(
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
pub fn notifications_span(store: &'static str, query: &NotificationQuery) -> Span {
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
pub fn selected(span: &Span, rows: &[Notification]) {
    span.record("rows", rows.len());
    if let Some(last) = rows.last() {
        span.record("last_notification_id", last.id);
    }
}
