//! The recorder contract: what every store must do, whatever it is.
//!
//! Each function takes a fresh, empty recorder and panics (with a message
//! saying what the store got wrong) when the store breaks the contract.
//! [`recorder_contract!`](crate::recorder_contract) generates one `#[test]`
//! per function for a store; a store of your own (see
//! [`Store`](crate::persistence::Store)) runs the same suite as the built-in
//! ones.
//!
//! ```
//! use annals_core::persistence::memory::MemoryRecorder;
//! use annals_core::testing::contract;
//!
//! contract::inserts_and_selects_a_stream(&MemoryRecorder::new());
//! contract::a_conflict_stores_nothing(&MemoryRecorder::new());
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use crate::persistence::{
    EventQuery, KeyedOutcome, NotificationQuery, ProcessRecorder, StoredEvent, Tracking,
};

/// A fresh recorder for a test named `name`, or `None` when the store is not
/// available here (the test then says it was skipped).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::memory::MemoryRecorder;
/// use annals_core::testing::contract::MakeRecorder;
///
/// let make: MakeRecorder = |_name| Some(Arc::new(MemoryRecorder::new()));
/// assert!(make("any_test").is_some());
/// ```
pub type MakeRecorder = fn(&str) -> Option<Arc<dyn ProcessRecorder>>;

/// Generates the recorder contract's tests (one `#[test]` per function of
/// [`testing::contract`](crate::testing::contract), with the same names)
/// for the store that `$make` (a
/// [`MakeRecorder`](crate::testing::contract::MakeRecorder)) opens.
///
/// When `$make` returns `None` (the store is not configured here), the
/// test passes after calling the skip hook with the test's name: by
/// default [`testing::skipped`](crate::testing::skipped), which prints
/// `SKIPPED <name>: ...` past the test harness's capture, for CI to find;
/// `recorder_contract!(make, skipped = path::to::hook)` names another
/// `fn(&str)`.
///
/// Needs the `testing` feature.
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// // In a test file of your store's crate (`tests/contract.rs`):
/// annals_core::recorder_contract!(|_name| Some(Arc::new(MemoryRecorder::new())));
///
/// // A store that is not configured here: each test says it was skipped.
/// mod not_configured {
///     annals_core::recorder_contract!(|_name| None);
/// }
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
macro_rules! recorder_contract {
    ($make:expr $(,)?) => {
        $crate::recorder_contract!($make, skipped = $crate::testing::skipped);
    };
    ($make:expr, skipped = $skipped:path $(,)?) => {
        $crate::recorder_contract!(@tests $make, $skipped;
            inserts_and_selects_a_stream,
            a_conflict_stores_nothing,
            a_conflict_within_one_batch_stores_nothing,
            selects_events_with_every_argument,
            visits_the_events_it_selects,
            stream_ids_are_kept_apart,
            notifications_are_numbered_from_one_in_order,
            selects_notifications_with_every_argument,
            filters_notifications_by_topic,
            max_notification_id_follows_inserts,
            stores_bytes_exactly,
            tracks_processed_notifications,
            a_second_tracking_record_is_a_conflict_and_stores_nothing,
            tracking_without_events,
            concurrent_writers_store_every_event_once,
            concurrent_writers_of_one_stream_conflict,
            concurrent_conflicting_batches_store_exactly_the_successful_saves,
            stores_an_idempotency_key_with_its_events,
            a_second_insert_of_a_key_is_a_conflict_and_stores_nothing,
            a_failed_keyed_insert_stores_no_key,
            concurrent_inserts_of_one_key_store_one,
            ends_a_stream_leaving_a_tombstone_and_gaps,
            imports_a_batch_with_its_position_all_or_nothing,
            lists_the_applications_it_tracks,
        );
    };
    (@tests $make:expr, $skipped:path; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                let make: $crate::testing::contract::MakeRecorder = $make;
                match make(stringify!($name)) {
                    Some(recorder) => $crate::testing::contract::$name(&*recorder),
                    None => $skipped(stringify!($name)),
                }
            }
        )+
    };
}

/// A stored event with a state that names it.
///
/// ```
/// let e = annals_core::testing::contract::event("a", 2, "T.A");
/// assert_eq!((e.originator_id.as_str(), e.originator_version), ("a", 2));
/// assert_eq!(e.state, br#"{"id":"a","v":2}"#);
/// ```
pub fn event(originator_id: &str, version: u64, topic: &str) -> StoredEvent {
    StoredEvent {
        originator_id: originator_id.to_owned(),
        originator_version: version,
        topic: topic.to_owned(),
        state: format!("{{\"id\":\"{originator_id}\",\"v\":{version}}}").into_bytes(),
    }
}

fn all(r: &dyn ProcessRecorder, id: &str) -> Vec<StoredEvent> {
    r.select_events(id, &EventQuery::all())
        .expect("select_events")
}

fn versions(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.originator_version).collect()
}

fn notification_ids(r: &dyn ProcessRecorder, query: &NotificationQuery) -> Vec<u64> {
    r.select_notifications(query)
        .expect("select_notifications")
        .iter()
        .map(|n| n.id)
        .collect()
}

/// Inserted events come back, in version order, with every column intact.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::inserts_and_selects_a_stream(&MemoryRecorder::new());
/// ```
pub fn inserts_and_selects_a_stream(r: &dyn ProcessRecorder) {
    let events = vec![
        event("a1", 1, "T.A"),
        event("a1", 2, "T.B"),
        event("a1", 3, "T.A"),
    ];
    let ids = r.insert_events(&events).expect("insert");
    assert_eq!(ids.len(), 3, "one notification id per event");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert_eq!(all(r, "a1"), events);
    assert!(all(r, "unknown").is_empty());
    assert_eq!(
        r.insert_events(&[]).expect("empty insert"),
        Vec::<u64>::new()
    );
}

/// A batch that hits an existing version stores none of its events.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::a_conflict_stores_nothing(&MemoryRecorder::new());
/// ```
pub fn a_conflict_stores_nothing(r: &dyn ProcessRecorder) {
    r.insert_events(&[event("a", 1, "T"), event("a", 2, "T")])
        .expect("insert");
    let before = r.max_notification_id().expect("max");
    let err = r
        .insert_events(&[event("b", 1, "T"), event("a", 3, "T"), event("a", 2, "T")])
        .expect_err("version 2 of a exists");
    assert!(err.is_conflict(), "a conflict error, got: {err}");
    assert!(all(r, "b").is_empty(), "b's event was not stored");
    assert_eq!(versions(&all(r, "a")), [1, 2]);
    assert_eq!(r.max_notification_id().expect("max"), before);
    // The store still works after the conflict.
    r.insert_events(&[event("a", 3, "T")])
        .expect("insert after conflict");
    assert_eq!(versions(&all(r, "a")), [1, 2, 3]);
}

/// Two events at one position in one batch: a conflict, nothing stored.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::a_conflict_within_one_batch_stores_nothing(&MemoryRecorder::new());
/// ```
pub fn a_conflict_within_one_batch_stores_nothing(r: &dyn ProcessRecorder) {
    let err = r
        .insert_events(&[event("a", 1, "T"), event("c", 1, "T"), event("a", 1, "T")])
        .expect_err("duplicate in batch");
    assert!(err.is_conflict(), "{err}");
    assert!(all(r, "a").is_empty() && all(r, "c").is_empty());
    assert_eq!(r.max_notification_id().expect("max"), 0);
}

/// after (gt), up to (lte), descending and limit, alone and together.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::selects_events_with_every_argument(&MemoryRecorder::new());
/// ```
pub fn selects_events_with_every_argument(r: &dyn ProcessRecorder) {
    let events: Vec<_> = (1..=10).map(|v| event("s", v, "T")).collect();
    r.insert_events(&events).expect("insert");
    let select = |q: EventQuery| versions(&r.select_events("s", &q).expect("select"));
    assert_eq!(select(EventQuery::all()), (1..=10).collect::<Vec<_>>());
    assert_eq!(select(EventQuery::all().after(7)), [8, 9, 10]);
    assert_eq!(select(EventQuery::all().up_to(3)), [1, 2, 3]);
    assert_eq!(select(EventQuery::all().after(3).up_to(5)), [4, 5]);
    assert_eq!(
        select(EventQuery::all().after(5).up_to(5)),
        Vec::<u64>::new()
    );
    assert_eq!(
        select(EventQuery::all().after(6).up_to(2)),
        Vec::<u64>::new()
    );
    assert_eq!(select(EventQuery::all().limit(2)), [1, 2]);
    assert_eq!(
        select(EventQuery::all().descending()),
        (1..=10).rev().collect::<Vec<_>>()
    );
    assert_eq!(select(EventQuery::all().descending().limit(1)), [10]);
    assert_eq!(
        select(EventQuery::all().descending().up_to(4).limit(2)),
        [4, 3]
    );
    assert_eq!(select(EventQuery::all().descending().after(8)), [10, 9]);
    assert_eq!(select(EventQuery::all().after(2).limit(3)), [3, 4, 5]);
    assert_eq!(select(EventQuery::all().limit(0)), Vec::<u64>::new());
    assert_eq!(select(EventQuery::all().after(10)), Vec::<u64>::new());
}

/// `visit_events` visits, in order, exactly the rows `select_events`
/// returns, for every argument, and stops at the visitor's first error.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::visits_the_events_it_selects(&MemoryRecorder::new());
/// ```
pub fn visits_the_events_it_selects(r: &dyn ProcessRecorder) {
    let mut events: Vec<_> = (1..=10).map(|v| event("s", v, "T")).collect();
    events[4].state = vec![0, 159, 146, 150, 255];
    events[6].topic = "T.Other".into();
    r.insert_events(&events).expect("insert");
    r.insert_events(&[event("s2", 1, "T")]).expect("insert");
    for q in [
        EventQuery::all(),
        EventQuery::all().after(3).up_to(8),
        EventQuery::all().limit(4),
        EventQuery::all().descending().up_to(9).limit(3),
        EventQuery::all().after(10),
        EventQuery::all().limit(0),
    ] {
        let selected = r.select_events("s", &q).expect("select");
        let mut visited = Vec::new();
        let count = r
            .visit_events("s", &q, &mut |e| {
                visited.push(e.clone());
                Ok(())
            })
            .expect("visit");
        assert_eq!(
            visited, selected,
            "visit_events visited other rows for {q:?}"
        );
        assert_eq!(
            count,
            selected.len(),
            "visit_events counted wrong for {q:?}"
        );
    }
    let mut calls = 0;
    let stopped = r.visit_events("s", &EventQuery::all(), &mut |e| {
        calls += 1;
        if e.originator_version == 3 {
            return Err(crate::Error::persistence("the third row", "stop"));
        }
        Ok(())
    });
    let error = stopped.expect_err("the visitor's error was not returned");
    assert!(
        error.to_string().contains("the third row"),
        "visit_events returned another error: {error}"
    );
    assert_eq!(calls, 3, "visit_events went on after the visitor's error");
    assert_eq!(
        r.visit_events("nobody", &EventQuery::all(), &mut |_| Ok(()))
            .expect("visit"),
        0
    );
}

/// Streams with similar ids do not mix.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::stream_ids_are_kept_apart(&MemoryRecorder::new());
/// ```
pub fn stream_ids_are_kept_apart(r: &dyn ProcessRecorder) {
    r.insert_events(&[event("x", 1, "T"), event("xx", 1, "T"), event("X", 1, "T")])
        .expect("insert");
    for id in ["x", "xx", "X"] {
        let got = all(r, id);
        assert_eq!(got.len(), 1, "{id}");
        assert_eq!(got[0].originator_id, id);
    }
}

/// A fresh store numbers its notifications 1, 2, 3, ... in insert order.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::notifications_are_numbered_from_one_in_order(&MemoryRecorder::new());
/// ```
pub fn notifications_are_numbered_from_one_in_order(r: &dyn ProcessRecorder) {
    r.insert_events(&[event("a", 1, "T.A"), event("b", 1, "T.B")])
        .expect("insert");
    r.insert_events(&[event("a", 2, "T.C")]).expect("insert");
    let got = r
        .select_notifications(&NotificationQuery::new(1, 10))
        .expect("select");
    let summary: Vec<_> = got
        .iter()
        .map(|n| {
            (
                n.id,
                n.event.originator_id.as_str(),
                n.event.originator_version,
                n.event.topic.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "a", 1, "T.A"), (2, "b", 1, "T.B"), (3, "a", 2, "T.C")]
    );
    assert_eq!(got[2].event, event("a", 2, "T.C"));
}

/// start, limit and stop, alone and together.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::selects_notifications_with_every_argument(&MemoryRecorder::new());
/// ```
pub fn selects_notifications_with_every_argument(r: &dyn ProcessRecorder) {
    for v in 1..=10 {
        r.insert_events(&[event("n", v, "T")]).expect("insert");
    }
    let ids = |q: NotificationQuery| notification_ids(r, &q);
    assert_eq!(
        ids(NotificationQuery::new(1, 100)),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(ids(NotificationQuery::new(0, 3)), [1, 2, 3]);
    assert_eq!(ids(NotificationQuery::new(4, 3)), [4, 5, 6]);
    assert_eq!(ids(NotificationQuery::new(9, 5)), [9, 10]);
    assert_eq!(ids(NotificationQuery::new(11, 5)), Vec::<u64>::new());
    assert_eq!(ids(NotificationQuery::new(2, 100).stop(4)), [2, 3, 4]);
    assert_eq!(ids(NotificationQuery::new(2, 2).stop(8)), [2, 3]);
    assert_eq!(
        ids(NotificationQuery::new(5, 10).stop(4)),
        Vec::<u64>::new()
    );
    assert_eq!(ids(NotificationQuery::new(1, 0)), Vec::<u64>::new());
}

/// Only the asked topics, still in id order, with limit and stop applied
/// to what matches.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::filters_notifications_by_topic(&MemoryRecorder::new());
/// ```
pub fn filters_notifications_by_topic(r: &dyn ProcessRecorder) {
    let topics = ["T.A", "T.B", "T.C", "T.A", "T.B", "T.A"];
    for (i, topic) in topics.iter().enumerate() {
        r.insert_events(&[event("f", i as u64 + 1, topic)])
            .expect("insert");
    }
    let ids = |q: NotificationQuery| notification_ids(r, &q);
    assert_eq!(
        ids(NotificationQuery::new(1, 10).topics(["T.A"])),
        [1, 4, 6]
    );
    assert_eq!(
        ids(NotificationQuery::new(1, 10).topics(["T.A", "T.C"])),
        [1, 3, 4, 6]
    );
    assert_eq!(
        ids(NotificationQuery::new(2, 2).topics(["T.A", "T.B"])),
        [2, 4]
    );
    assert_eq!(
        ids(NotificationQuery::new(1, 10).topics(["T.B"]).stop(4)),
        [2]
    );
    assert_eq!(
        ids(NotificationQuery::new(1, 10).topics(["T.Z"])),
        Vec::<u64>::new()
    );
}

/// The highest notification id, 0 when empty. A conflict stores nothing;
/// the ids after it need not follow on without a gap (a store may number
/// from a sequence that the failed insert drew from, as PostgreSQL's does).
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::max_notification_id_follows_inserts(&MemoryRecorder::new());
/// ```
pub fn max_notification_id_follows_inserts(r: &dyn ProcessRecorder) {
    assert_eq!(r.max_notification_id().expect("max"), 0);
    r.insert_events(&[event("m", 1, "T"), event("m", 2, "T")])
        .expect("insert");
    assert_eq!(r.max_notification_id().expect("max"), 2);
    let _ = r.insert_events(&[event("m", 2, "T")]);
    assert_eq!(
        r.max_notification_id().expect("max"),
        2,
        "a conflict adds nothing"
    );
    let ids = r.insert_events(&[event("m", 3, "T")]).expect("insert");
    assert!(ids[0] > 2, "ids increase past the conflict: {ids:?}");
    assert_eq!(r.max_notification_id().expect("max"), ids[0]);
}

/// Arbitrary bytes (not UTF-8, with NULs) and odd ids come back unchanged.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::stores_bytes_exactly(&MemoryRecorder::new());
/// ```
pub fn stores_bytes_exactly(r: &dyn ProcessRecorder) {
    let odd = StoredEvent {
        originator_id: "dog-fïdo 'quoted' \"x\"; --".to_owned(),
        originator_version: 1,
        topic: "Dog.Registered".to_owned(),
        state: vec![0, 159, 146, 150, 255, 0, b'{'],
    };
    r.insert_events(std::slice::from_ref(&odd)).expect("insert");
    assert_eq!(all(r, &odd.originator_id), std::slice::from_ref(&odd));
    let n = r
        .select_notifications(&NotificationQuery::new(1, 1))
        .expect("select");
    assert_eq!(n[0].event, odd);
}

/// Tracking records: stored with events, max and membership per upstream.
/// A notification skipped between two tracked ones may count as tracked
/// or not: a store that keeps one row per upstream (the Python library's
/// single-row tracking) knows only the highest.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::tracks_processed_notifications(&MemoryRecorder::new());
/// ```
pub fn tracks_processed_notifications(r: &dyn ProcessRecorder) {
    let up = |id| Tracking {
        application_name: "upstream".to_owned(),
        notification_id: id,
    };
    assert_eq!(r.max_tracking_id("upstream").expect("max"), 0);
    assert!(!r.has_tracking_id("upstream", 1).expect("has"));
    let ids = r
        .insert_events_tracked(&[event("p", 1, "T")], &up(1))
        .expect("insert tracked");
    assert_eq!(ids.len(), 1);
    r.insert_events_tracked(&[event("p", 2, "T")], &up(3))
        .expect("insert tracked");
    assert_eq!(r.max_tracking_id("upstream").expect("max"), 3);
    assert!(r.has_tracking_id("upstream", 1).expect("has"));
    // 2 was skipped: either answer keeps the contract.
    r.has_tracking_id("upstream", 2).expect("has");
    assert!(r.has_tracking_id("upstream", 3).expect("has"));
    assert!(!r.has_tracking_id("upstream", 4).expect("has"));
    assert_eq!(r.max_tracking_id("other").expect("max"), 0);
    assert!(!r.has_tracking_id("other", 1).expect("has"));
    assert_eq!(versions(&all(r, "p")), [1, 2]);
}

/// The same (upstream, id) twice: a conflict; the second call's events are
/// not stored. Conflicting events: the tracking record is not stored.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::a_second_tracking_record_is_a_conflict_and_stores_nothing(&MemoryRecorder::new());
/// ```
pub fn a_second_tracking_record_is_a_conflict_and_stores_nothing(r: &dyn ProcessRecorder) {
    let t = Tracking {
        application_name: "up".to_owned(),
        notification_id: 7,
    };
    r.insert_events_tracked(&[event("q", 1, "T")], &t)
        .expect("first");
    let err = r
        .insert_events_tracked(&[event("q2", 1, "T")], &t)
        .expect_err("tracked twice");
    assert!(err.is_conflict(), "{err}");
    assert!(all(r, "q2").is_empty());
    assert_eq!(r.max_notification_id().expect("max"), 1);

    let t8 = Tracking {
        application_name: "up".to_owned(),
        notification_id: 8,
    };
    let err = r
        .insert_events_tracked(&[event("q", 1, "T")], &t8)
        .expect_err("event conflict");
    assert!(err.is_conflict(), "{err}");
    assert!(
        !r.has_tracking_id("up", 8).expect("has"),
        "tracking not stored"
    );
    assert_eq!(r.max_tracking_id("up").expect("max"), 7);
}

/// A processed notification that caused no events is still tracked.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::tracking_without_events(&MemoryRecorder::new());
/// ```
pub fn tracking_without_events(r: &dyn ProcessRecorder) {
    let t = Tracking {
        application_name: "up".to_owned(),
        notification_id: 5,
    };
    assert!(r
        .insert_events_tracked(&[], &t)
        .expect("tracked")
        .is_empty());
    assert!(r.has_tracking_id("up", 5).expect("has"));
    assert_eq!(r.max_tracking_id("up").expect("max"), 5);
    assert_eq!(r.max_notification_id().expect("max"), 0);
}

/// How many saves each of the 8 writer threads makes.
///
/// ```
/// assert_eq!(annals_core::testing::contract::SAVES_PER_THREAD, 1_000);
/// ```
pub const SAVES_PER_THREAD: u64 = 1_000;

/// 8 threads x 1,000 saves, each thread its own streams: every event stored
/// once, notification ids unique and increasing.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::concurrent_writers_store_every_event_once(&MemoryRecorder::new());
/// ```
pub fn concurrent_writers_store_every_event_once(r: &dyn ProcessRecorder) {
    std::thread::scope(|scope| {
        for thread in 0..8 {
            scope.spawn(move || {
                for i in 0..SAVES_PER_THREAD {
                    let id = format!("t{thread}-{}", i / 10);
                    r.insert_events(&[event(&id, i % 10 + 1, "T")])
                        .unwrap_or_else(|e| panic!("thread {thread} save {i}: {e}"));
                }
            });
        }
    });
    let total = 8 * SAVES_PER_THREAD;
    let mut seen = HashSet::new();
    let mut last = 0;
    let mut start = 1;
    loop {
        let page = r
            .select_notifications(&NotificationQuery::new(start, 1_000))
            .expect("select");
        let Some(tail) = page.last() else { break };
        start = tail.id + 1;
        for n in page {
            assert!(n.id > last, "ids increase: {} after {last}", n.id);
            last = n.id;
            assert!(
                seen.insert((n.event.originator_id.clone(), n.event.originator_version)),
                "stored once: {:?}",
                n.event
            );
        }
    }
    assert_eq!(seen.len() as u64, total);
    assert_eq!(r.max_notification_id().expect("max"), last);
}

/// 8 threads race to append to one stream: each version is won by exactly
/// one thread, the losers get conflicts, and the stream has no gaps.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::concurrent_writers_of_one_stream_conflict(&MemoryRecorder::new());
/// ```
pub fn concurrent_writers_of_one_stream_conflict(r: &dyn ProcessRecorder) {
    let wins: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(move || {
                    let mut wins = 0;
                    for v in 1..=50 {
                        match r.insert_events(&[event("race", v, "T")]) {
                            Ok(_) => wins += 1,
                            Err(e) if e.is_conflict() => {}
                            Err(e) => panic!("not a conflict: {e}"),
                        }
                    }
                    wins
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    assert_eq!(wins, 50, "each version won once");
    assert_eq!(versions(&all(r, "race")), (1..=50).collect::<Vec<_>>());
}

/// 8 threads save two-event batches that overlap other threads' batches
/// wholly or in part: every save that returned Ok is stored whole, every
/// save that returned a conflict stored nothing.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::concurrent_conflicting_batches_store_exactly_the_successful_saves(&MemoryRecorder::new());
/// ```
pub fn concurrent_conflicting_batches_store_exactly_the_successful_saves(r: &dyn ProcessRecorder) {
    let outcomes: Vec<(String, u64, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|thread| {
                scope.spawn(move || {
                    let mut outcomes = Vec::new();
                    for i in 0..100u64 {
                        let stream = format!("b{}", i % 5);
                        let version = 1 + (i / 5) * 3 + thread % 2;
                        let tag = |v: u64| StoredEvent {
                            originator_id: stream.clone(),
                            originator_version: v,
                            topic: "T".to_owned(),
                            state: format!("{thread}:{i}:{v}").into_bytes(),
                        };
                        let saved = r.insert_events(&[tag(version), tag(version + 1)]);
                        match saved {
                            Ok(_) => outcomes.push((format!("{thread}:{i}"), version, true)),
                            Err(e) if e.is_conflict() => {
                                outcomes.push((format!("{thread}:{i}"), version, false))
                            }
                            Err(e) => panic!("not a conflict: {e}"),
                        }
                    }
                    outcomes
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut stored = HashSet::new();
    for s in 0..5 {
        for e in all(r, &format!("b{s}")) {
            let text = String::from_utf8(e.state).expect("utf8");
            let (save, version) = text.rsplit_once(':').expect("tagged");
            assert_eq!(
                version.parse::<u64>().expect("version"),
                e.originator_version
            );
            stored.insert((save.to_owned(), e.originator_version));
        }
    }
    let mut wins = 0;
    for (save, version, ok) in &outcomes {
        let first = stored.contains(&(save.clone(), *version));
        let second = stored.contains(&(save.clone(), version + 1));
        if *ok {
            wins += 1;
            assert!(
                first && second,
                "save {save} returned Ok but is not stored whole"
            );
        } else {
            assert!(
                !first && !second,
                "save {save} conflicted but stored something"
            );
        }
    }
    assert_eq!(
        stored.len(),
        2 * wins,
        "nothing but the successful saves is stored"
    );
    assert!(
        wins > 0 && wins < outcomes.len(),
        "some saves won, some conflicted"
    );
}

/// An idempotency key with outcome `outcome`.
fn keyed(key: &str, outcome: &[u8]) -> KeyedOutcome {
    KeyedOutcome {
        key: key.to_owned(),
        outcome: outcome.to_vec(),
    }
}

/// A keyed insert stores its events, its tracking record and its key,
/// whose outcome comes back byte for byte; an unknown key has none.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::stores_an_idempotency_key_with_its_events(&MemoryRecorder::new());
/// ```
pub fn stores_an_idempotency_key_with_its_events(r: &dyn ProcessRecorder) {
    assert_eq!(r.select_outcome("k1").expect("select_outcome"), None);
    // Every byte value, as a sealed (encrypted) outcome may hold.
    let bytes: Vec<u8> = (0..=255).collect();
    let ids = r
        .insert_events_keyed(
            &[event("k", 1, "T"), event("k", 2, "T")],
            None,
            &keyed("k1", &bytes),
        )
        .expect("keyed insert");
    assert_eq!(ids.len(), 2, "one notification id per event");
    assert_eq!(versions(&all(r, "k")), [1, 2]);
    assert_eq!(
        r.select_outcome("k1").expect("select_outcome"),
        Some(bytes),
        "the outcome as stored"
    );
    assert_eq!(r.select_outcome("k2").expect("select_outcome"), None);
    assert_eq!(r.select_outcome("").expect("select_outcome"), None);

    // With a tracking record, and with no events at all.
    let t = Tracking {
        application_name: "up".to_owned(),
        notification_id: 3,
    };
    let tracked = r
        .insert_events_keyed(&[event("k", 3, "T")], Some(&t), &keyed("k2", b"{}"))
        .expect("keyed and tracked");
    assert!(
        tracked[0] > ids[1],
        "ids increase: {tracked:?} after {ids:?}"
    );
    assert!(r.has_tracking_id("up", 3).expect("has"), "tracked");
    assert!(r
        .insert_events_keyed(&[], None, &keyed("k3", b""))
        .expect("a key alone")
        .is_empty());
    assert_eq!(
        r.select_outcome("k3").expect("select_outcome"),
        Some(Vec::new())
    );
    assert_eq!(r.max_notification_id().expect("max"), tracked[0]);
}

/// A second insert of a stored key is a conflict: neither its events nor
/// its tracking record are stored, and the key keeps its first outcome.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::a_second_insert_of_a_key_is_a_conflict_and_stores_nothing(&MemoryRecorder::new());
/// ```
pub fn a_second_insert_of_a_key_is_a_conflict_and_stores_nothing(r: &dyn ProcessRecorder) {
    r.insert_events_keyed(&[event("s", 1, "T")], None, &keyed("retried", b"first"))
        .expect("first");
    let before = r.max_notification_id().expect("max");
    let t = Tracking {
        application_name: "up".to_owned(),
        notification_id: 9,
    };
    let err = r
        .insert_events_keyed(
            &[event("s2", 1, "T"), event("s", 2, "T")],
            Some(&t),
            &keyed("retried", b"second"),
        )
        .expect_err("the key is stored");
    assert!(err.is_conflict(), "a conflict error, got: {err}");
    assert!(
        all(r, "s2").is_empty(),
        "the retried save's events are not stored"
    );
    assert_eq!(versions(&all(r, "s")), [1]);
    assert!(
        !r.has_tracking_id("up", 9).expect("has"),
        "nor its tracking record"
    );
    assert_eq!(r.max_notification_id().expect("max"), before);
    assert_eq!(
        r.select_outcome("retried").expect("select_outcome"),
        Some(b"first".to_vec()),
        "the first outcome is kept"
    );
    // The store still works; keys are case-sensitive and exact.
    r.insert_events_keyed(&[event("s", 2, "T")], None, &keyed("Retried", b"other"))
        .expect("another key");
    assert_eq!(versions(&all(r, "s")), [1, 2]);
}

/// A keyed insert whose events (or tracking record) conflict stores no
/// key: the request was not carried out, and its retry may be.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::a_failed_keyed_insert_stores_no_key(&MemoryRecorder::new());
/// ```
pub fn a_failed_keyed_insert_stores_no_key(r: &dyn ProcessRecorder) {
    r.insert_events(&[event("f", 1, "T")]).expect("insert");
    let err = r
        .insert_events_keyed(
            &[event("g", 1, "T"), event("f", 1, "T")],
            None,
            &keyed("lost", b"x"),
        )
        .expect_err("version 1 of f exists");
    assert!(err.is_conflict(), "a conflict error, got: {err}");
    assert_eq!(
        r.select_outcome("lost").expect("select_outcome"),
        None,
        "no key"
    );
    assert!(all(r, "g").is_empty());

    let t = Tracking {
        application_name: "up".to_owned(),
        notification_id: 4,
    };
    r.insert_events_tracked(&[], &t).expect("tracked");
    let err = r
        .insert_events_keyed(&[event("g", 1, "T")], Some(&t), &keyed("lost", b"x"))
        .expect_err("tracked already");
    assert!(err.is_conflict(), "a conflict error, got: {err}");
    assert_eq!(
        r.select_outcome("lost").expect("select_outcome"),
        None,
        "no key"
    );
    assert!(all(r, "g").is_empty());

    // The retry, with events that fit, is carried out.
    r.insert_events_keyed(&[event("f", 2, "T")], None, &keyed("lost", b"y"))
        .expect("the retry");
    assert_eq!(
        r.select_outcome("lost").expect("select_outcome"),
        Some(b"y".to_vec())
    );
    assert_eq!(versions(&all(r, "f")), [1, 2]);
}

/// 8 threads insert the same key, each with events of its own stream, 20
/// keys in turn: each key is won by exactly one thread, whose events alone
/// are stored, and the losers get conflicts.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::concurrent_inserts_of_one_key_store_one(&MemoryRecorder::new());
/// ```
pub fn concurrent_inserts_of_one_key_store_one(r: &dyn ProcessRecorder) {
    let wins: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|thread| {
                scope.spawn(move || {
                    let mut wins = Vec::new();
                    for k in 0..20u64 {
                        let stream = format!("key{k}-thread{thread}");
                        let outcome = keyed(&format!("key{k}"), thread.to_string().as_bytes());
                        match r.insert_events_keyed(&[event(&stream, 1, "T")], None, &outcome) {
                            Ok(_) => wins.push((k, thread)),
                            Err(e) if e.is_conflict() => {}
                            Err(e) => panic!("not a conflict: {e}"),
                        }
                    }
                    wins
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    for k in 0..20u64 {
        let winners: Vec<u64> = wins
            .iter()
            .filter(|(key, _)| *key == k)
            .map(|(_, thread)| *thread)
            .collect();
        assert_eq!(winners.len(), 1, "key{k} won once: {winners:?}");
        let outcome = r
            .select_outcome(&format!("key{k}"))
            .expect("select_outcome");
        assert_eq!(outcome, Some(winners[0].to_string().into_bytes()));
        for thread in 0..8u64 {
            let stored = all(r, &format!("key{k}-thread{thread}")).len();
            let expected = usize::from(thread == winners[0]);
            assert_eq!(stored, expected, "key{k}: thread {thread}'s events");
        }
    }
    assert!(r.max_notification_id().expect("max") > 0);
}

/// Ending a stream ([`end_stream`](crate::persistence::AggregateRecorder::end_stream))
/// removes its events and stores the tombstone at the version after the
/// last, in one transaction: the other streams keep their notification
/// ids, the tombstone takes a new one, a save at its version conflicts,
/// ending it again says it ended, a tombstone at a stale version
/// conflicts and changes nothing, and a stream with no events gets no
/// tombstone. A store whose events are immutable refuses with an
/// [`Error::Config`](crate::Error::Config) naming `PERSISTENCE_MODULE`
/// and changes nothing (that passes).
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::ends_a_stream_leaving_a_tombstone_and_gaps(&MemoryRecorder::new());
/// ```
pub fn ends_a_stream_leaving_a_tombstone_and_gaps(r: &dyn ProcessRecorder) {
    use crate::ending::Tombstone;
    let at = "2026-01-01T00:00:00Z";
    let ids = r
        .insert_events(&[
            event("e1", 1, "T.A"),
            event("e2", 1, "T.A"),
            event("e1", 2, "T.B"),
        ])
        .expect("insert");
    let max = r.max_notification_id().expect("max");
    let tombstone = Tombstone::deleted(at).to_stored("e1", 3);
    let removed = match r.end_stream("e1", Some(&tombstone)) {
        Err(crate::Error::Config { setting, .. })
            if setting == crate::settings::PERSISTENCE_MODULE.name =>
        {
            assert_eq!(versions(&all(r, "e1")), [1, 2], "a refusal changes nothing");
            return;
        }
        other => other.expect("end_stream"),
    };
    assert_eq!(removed, [event("e1", 1, "T.A"), event("e1", 2, "T.B")]);
    assert_eq!(
        all(r, "e1"),
        std::slice::from_ref(&tombstone),
        "the tombstone alone"
    );
    assert_eq!(all(r, "e2"), [event("e2", 1, "T.A")]);
    let log = r
        .select_notifications(&NotificationQuery::new(1, 100))
        .expect("select_notifications");
    let logged: Vec<(u64, &str)> = log
        .iter()
        .map(|n| (n.id, n.event.originator_id.as_str()))
        .collect();
    assert_eq!(logged.len(), 2, "e2's event and the tombstone: {logged:?}");
    assert_eq!(logged[0], (ids[1], "e2"), "e2 keeps its notification id");
    assert_eq!(logged[1].1, "e1");
    assert!(
        logged[1].0 > max,
        "the tombstone takes a new id: {logged:?}"
    );
    assert_eq!(log[1].event, tombstone);

    let conflict = r
        .insert_events(&[event("e1", 3, "T.A")])
        .expect_err("the tombstone's version is taken");
    assert!(conflict.is_conflict(), "a conflict, got: {conflict}");
    let again = r
        .end_stream("e1", Some(&Tombstone::deleted(at).to_stored("e1", 4)))
        .expect_err("ended already");
    assert!(again.is_stream_ended(), "StreamEnded, got: {again}");
    let stale = r
        .end_stream("e2", Some(&Tombstone::deleted(at).to_stored("e2", 5)))
        .expect_err("a stale version");
    assert!(stale.is_conflict(), "a conflict, got: {stale}");
    assert_eq!(all(r, "e2"), [event("e2", 1, "T.A")], "nothing changed");
    let none = r
        .end_stream("e3", Some(&Tombstone::deleted(at).to_stored("e3", 1)))
        .expect("a stream with no events");
    assert!(
        none.is_empty() && all(r, "e3").is_empty(),
        "no tombstone stored"
    );
    assert_eq!(
        r.max_notification_id().expect("max"),
        logged[1].0,
        "nothing stored after the tombstone"
    );
}

/// An import's batch ([`ProcessRecorder::import_events`]): stored with
/// its position in one transaction, ids after the log's, in the batch's
/// order; a batch with an event at a stored (stream, version) is a
/// conflict naming that stream and stores nothing, not its position
/// either; an empty batch with a position stores the position.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::imports_a_batch_with_its_position_all_or_nothing(&MemoryRecorder::new());
/// ```
pub fn imports_a_batch_with_its_position_all_or_nothing(r: &dyn ProcessRecorder) {
    r.insert_events(&[event("stream-a", 1, "T"), event("stream-a", 2, "T")])
        .expect("insert");
    let at = |id: u64| Tracking {
        application_name: "an import".into(),
        notification_id: id,
    };
    let batch = [
        event("stream-b", 1, "T"),
        event("stream-b", 2, "T"),
        event("stream-a", 3, "T"),
    ];
    assert_eq!(r.import_events(&batch, Some(&at(5))).expect("import"), 3);
    assert_eq!(versions(&all(r, "stream-b")), [1, 2]);
    assert_eq!(versions(&all(r, "stream-a")), [1, 2, 3]);
    assert_eq!(r.max_tracking_id("an import").expect("max"), 5);
    let ids = notification_ids(r, &NotificationQuery::new(1, 10));
    assert_eq!(ids.len(), 5, "every event in the log: {ids:?}");
    let log = r
        .select_notifications(&NotificationQuery::new(ids[2], 3))
        .expect("log");
    let order: Vec<(&str, u64)> = log
        .iter()
        .map(|n| (n.event.originator_id.as_str(), n.event.originator_version))
        .collect();
    assert_eq!(
        order,
        [("stream-b", 1), ("stream-b", 2), ("stream-a", 3)],
        "the batch's order"
    );
    let before = r.max_notification_id().expect("max");
    let conflicting = [
        event("stream-c", 1, "T"),
        event("stream-a", 3, "T"),
        event("stream-c", 2, "T"),
    ];
    let err = r
        .import_events(&conflicting, Some(&at(8)))
        .expect_err("version 3 of stream-a is stored");
    assert!(err.is_conflict(), "a conflict error, got: {err}");
    assert!(
        err.to_string().contains("stream-a"),
        "the error names the stream: {err}"
    );
    assert!(all(r, "stream-c").is_empty(), "nothing of the batch stored");
    assert_eq!(r.max_notification_id().expect("max"), before);
    assert_eq!(
        r.max_tracking_id("an import").expect("max"),
        5,
        "nor its position"
    );
    // The rest, again: stored, with the position.
    let rest = [event("stream-c", 1, "T"), event("stream-c", 2, "T")];
    assert_eq!(r.import_events(&rest, Some(&at(8))).expect("import"), 2);
    assert_eq!(r.max_tracking_id("an import").expect("max"), 8);
    assert_eq!(r.import_events(&[], Some(&at(9))).expect("position"), 0);
    assert_eq!(r.max_tracking_id("an import").expect("max"), 9);
    assert_eq!(r.import_events(&[], None).expect("nothing"), 0);
}

/// The upstream applications tracked, sorted, each once, the single-row
/// layout's marker row left out; or, from a store that cannot list them,
/// the error naming `PERSISTENCE_MODULE`.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says
/// how).
///
/// ```
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::testing::contract::lists_the_applications_it_tracks(&MemoryRecorder::new());
/// ```
pub fn lists_the_applications_it_tracks(r: &dyn ProcessRecorder) {
    match r.tracked_applications() {
        Ok(names) => assert!(names.is_empty(), "none tracked yet: {names:?}"),
        Err(crate::Error::Config { setting, .. }) => {
            assert_eq!(setting, "PERSISTENCE_MODULE");
            return;
        }
        Err(e) => panic!("listing the applications tracked: {e}"),
    }
    for (upstream, id) in [("orders", 3), ("billing", 1), ("orders", 4)] {
        let tracking = Tracking {
            application_name: upstream.into(),
            notification_id: id,
        };
        r.insert_events_tracked(&[], &tracking).expect("track");
    }
    assert_eq!(
        r.tracked_applications().expect("tracked"),
        ["billing", "orders"]
    );
}
