//! The DCB recorder contract: Python eventsourcing 9.5's
//! `DCBRecorderTestCase` (`eventsourcing/dcb/tests.py`), every case, for
//! any [`DcbRecorder`].
//!
//! Python's test is one script; here its stages are functions that each
//! replay the stages before them on a fresh, empty store, so a store that
//! breaks one stage fails the test named after it:
//! [`reads_and_appends_one_event`] (positions, head, a limit of 0, queries
//! by type and tag), [`reads_by_every_query_shape`] (three events; tags
//! ANDed within an item, items ORed, results in position order),
//! [`failing_append_conditions_store_nothing`] (the 12 conditions that
//! must fail), [`passing_append_conditions`] (the 6 that must not, and an
//! unconditional append), [`course_subscription_scenario`] (a student, a
//! course and the student joining it, ending at head 13), and
//! [`subscription_wakes_on_append`]. [`an_empty_append_is_an_error`],
//! [`stores_data_and_tags_exactly`] and
//! [`concurrent_conditional_appends_admit_one`] are annals' own.
//!
//! [`dcb_recorder_contract!`](crate::dcb_recorder_contract) makes each a
//! `#[test]`.
//!
//! ```
//! use std::sync::Arc;
//! use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
//! use annals_core::testing::dcb;
//!
//! let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
//! dcb::course_subscription_scenario(&store);
//! ```

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::persistence::dcb::{
    DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbReadResponse, DcbRecorder,
    DcbSubscription,
};

/// A fresh, empty DCB store for a test named `name`, or `None` when the
/// store is not available here (the test then says it was skipped).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::MemoryDcbRecorder;
/// use annals_core::testing::dcb::MakeDcbRecorder;
///
/// let make: MakeDcbRecorder = |_name| Some(Arc::new(MemoryDcbRecorder::new()));
/// assert!(make("any_test").is_some());
/// ```
pub type MakeDcbRecorder = fn(&str) -> Option<Arc<dyn DcbRecorder>>;

/// Generates the DCB contract's tests (one `#[test]` per function of
/// [`testing::dcb`](crate::testing::dcb), with the same names) for the
/// store that `$make` (a
/// [`MakeDcbRecorder`](crate::testing::dcb::MakeDcbRecorder)) opens; as
/// [`recorder_contract!`](crate::recorder_contract), `None` skips (calling
/// `skipped = hook`, by default [`testing::skipped`](crate::testing::skipped)).
///
/// Needs the `testing` feature.
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::MemoryDcbRecorder;
///
/// annals_core::dcb_recorder_contract!(|_name| Some(Arc::new(MemoryDcbRecorder::new())));
///
/// mod not_configured {
///     annals_core::dcb_recorder_contract!(|_name| None);
/// }
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
macro_rules! dcb_recorder_contract {
    ($make:expr $(,)?) => {
        $crate::dcb_recorder_contract!($make, skipped = $crate::testing::skipped);
    };
    ($make:expr, skipped = $skipped:path $(,)?) => {
        $crate::dcb_recorder_contract!(@tests $make, $skipped;
            reads_and_appends_one_event,
            reads_by_every_query_shape,
            failing_append_conditions_store_nothing,
            passing_append_conditions,
            course_subscription_scenario,
            subscription_wakes_on_append,
            an_empty_append_is_an_error,
            stores_data_and_tags_exactly,
            concurrent_conditional_appends_admit_one,
        );
    };
    (@tests $make:expr, $skipped:path; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                let make: $crate::testing::dcb::MakeDcbRecorder = $make;
                match make(stringify!($name)) {
                    Some(recorder) => $crate::testing::dcb::$name(&recorder),
                    None => $skipped(stringify!($name)),
                }
            }
        )+
    };
}

fn read(
    r: &Arc<dyn DcbRecorder>,
    query: &DcbQuery,
    after: Option<u64>,
    limit: Option<usize>,
) -> DcbReadResponse {
    r.read(query, after, limit).expect("read")
}

fn datas(response: &DcbReadResponse) -> Vec<&[u8]> {
    response
        .events
        .iter()
        .map(|e| e.event.data.as_slice())
        .collect()
}

fn one(types: &[&str], tags: &[&str]) -> DcbQuery {
    DcbQuery::item(
        DcbQueryItem::new()
            .types(types.iter().copied())
            .tags(tags.iter().copied()),
    )
}

/// Checks that a read returns the events whose data are `expected` and
/// the head `head`.
#[track_caller]
fn check(response: &DcbReadResponse, expected: &[&[u8]], head: Option<u64>, what: &str) {
    assert_eq!(datas(response), expected, "{what}: the events read");
    assert_eq!(response.head, head, "{what}: the head");
}

const D1: &[u8] = b"data1";
const D2: &[u8] = b"data2";
const D3: &[u8] = b"data3";

fn event1() -> DcbEvent {
    DcbEvent::new("type1", D1).tags(["tagX"])
}

/// Python's first stage: an empty store, then one event.
fn stage_one_event(r: &Arc<dyn DcbRecorder>) {
    let all = DcbQuery::all();
    check(&read(r, &all, None, None), &[], None, "an empty store");

    let position = r.append(&[event1()], None).expect("append event1");
    assert_eq!(position, 1, "the first append's position");

    check(&read(r, &all, None, None), &[D1], Some(1), "read all");
    check(&read(r, &all, Some(1), None), &[], Some(1), "read after 1");
    check(&read(r, &all, None, Some(1)), &[D1], Some(1), "limit 1");
    check(&read(r, &all, None, Some(0)), &[], None, "limit 0");
    check(
        &read(r, &one(&["type1"], &[]), None, None),
        &[D1],
        Some(1),
        "type1",
    );
    check(
        &read(r, &one(&["type2"], &[]), None, None),
        &[],
        Some(1),
        "type2",
    );
    check(
        &read(r, &one(&[], &["tagX"]), None, None),
        &[D1],
        Some(1),
        "tagX",
    );
    check(
        &read(r, &one(&[], &["tagY"]), None, None),
        &[],
        Some(1),
        "tagY",
    );
    check(
        &read(r, &one(&["type1"], &["tagX"]), None, None),
        &[D1],
        Some(1),
        "type1 and tagX",
    );
    check(
        &read(r, &one(&["type1"], &["tagY"]), None, None),
        &[],
        Some(1),
        "type1 and tagY",
    );
    check(
        &read(r, &one(&["type2"], &["tagX"]), None, None),
        &[],
        Some(1),
        "type2 and tagX",
    );
}

fn tag_b_or_c() -> DcbQuery {
    DcbQuery::new([
        DcbQueryItem::new().tags(["tagB"]),
        DcbQueryItem::new().tags(["tagC"]),
    ])
}

fn tag_x_or_y() -> DcbQuery {
    DcbQuery::new([
        DcbQueryItem::new().tags(["tagX"]),
        DcbQueryItem::new().tags(["tagY"]),
    ])
}

fn type2_tag_b_or_type3_tag_c() -> DcbQuery {
    DcbQuery::new([
        DcbQueryItem::new().types(["type2"]).tags(["tagB"]),
        DcbQueryItem::new().types(["type3"]).tags(["tagC"]),
    ])
}

/// Python's second stage: two more events, and every query shape.
fn stage_query_shapes(r: &Arc<dyn DcbRecorder>) {
    let all = DcbQuery::all();
    let event2 = DcbEvent::new("type2", D2).tags(["tagA", "tagB"]);
    let event3 = DcbEvent::new("type3", D3).tags(["tagA", "tagC"]);
    let position = r.append(&[event2, event3], None).expect("append 2 and 3");
    assert_eq!(position, 3, "the position of a batch's last event");

    let h = Some(3);
    check(&read(r, &all, None, None), &[D1, D2, D3], h, "read all");
    check(&read(r, &all, Some(1), None), &[D2, D3], h, "after 1");
    check(&read(r, &all, Some(2), None), &[D3], h, "after 2");
    check(
        &read(r, &all, Some(1), Some(1)),
        &[D2],
        Some(2),
        "after 1, limit 1 (head: the last returned)",
    );
    check(
        &read(r, &one(&["type1"], &[]), Some(1), None),
        &[],
        h,
        "type1 after 1",
    );
    check(
        &read(r, &one(&[], &["tagX"]), Some(1), None),
        &[],
        h,
        "tagX after 1",
    );
    check(
        &read(r, &one(&["type1"], &["tagX"]), Some(1), None),
        &[],
        h,
        "type1 and tagX after 1",
    );
    check(
        &read(r, &one(&[], &["tagA"]), None, None),
        &[D2, D3],
        h,
        "tagA",
    );
    check(
        &read(r, &one(&[], &["tagA", "tagB"]), None, None),
        &[D2],
        h,
        "tagA and tagB",
    );
    check(
        &read(r, &tag_b_or_c(), None, None),
        &[D2, D3],
        h,
        "tagB or tagC",
    );
    check(
        &read(r, &tag_x_or_y(), None, None),
        &[D1],
        h,
        "tagX or tagY",
    );
    check(
        &read(r, &one(&["type2"], &["tagA"]), None, None),
        &[D2],
        h,
        "type2 and tagA",
    );
    check(
        &read(r, &one(&["type2"], &["tagA"]), Some(2), None),
        &[],
        h,
        "type2 and tagA after 2",
    );
    check(
        &read(r, &type2_tag_b_or_type3_tag_c(), None, None),
        &[D2, D3],
        h,
        "type2 and tagB, or type3 and tagC",
    );
    let reversed = DcbQuery::new([
        DcbQueryItem::new().types(["type3"]).tags(["tagC"]),
        DcbQueryItem::new().types(["type2"]).tags(["tagB"]),
    ]);
    check(
        &read(r, &reversed, None, None),
        &[D2, D3],
        h,
        "items in the other order: still in position order",
    );
}

fn event4() -> DcbEvent {
    DcbEvent::new("type4", b"data4".to_vec())
}

/// Python's twelve conditions that must fail, with three events stored.
fn stage_failing_conditions(r: &Arc<dyn DcbRecorder>) {
    let cases: Vec<(&str, DcbAppendCondition)> = vec![
        ("matches all", DcbAppendCondition::default()),
        (
            "matches all after 1",
            DcbAppendCondition::default().after(Some(1)),
        ),
        ("type1", DcbAppendCondition::new(one(&["type1"], &[]))),
        (
            "type2 after 1",
            DcbAppendCondition::new(one(&["type2"], &[])).after(Some(1)),
        ),
        ("tagX", DcbAppendCondition::new(one(&[], &["tagX"]))),
        (
            "tagA after 1",
            DcbAppendCondition::new(one(&[], &["tagA"])).after(Some(1)),
        ),
        (
            "type1 and tagX",
            DcbAppendCondition::new(one(&["type1"], &["tagX"])),
        ),
        (
            "type2 and tagA after 1",
            DcbAppendCondition::new(one(&["type2"], &["tagA"])).after(Some(1)),
        ),
        (
            "tagA and tagB",
            DcbAppendCondition::new(one(&[], &["tagA", "tagB"])),
        ),
        ("tagB or tagC", DcbAppendCondition::new(tag_b_or_c())),
        ("tagX or tagY", DcbAppendCondition::new(tag_x_or_y())),
        (
            "type2 and tagB, or type3 and tagC",
            DcbAppendCondition::new(type2_tag_b_or_type3_tag_c()),
        ),
    ];
    assert_eq!(cases.len(), 12);
    for (what, condition) in cases {
        let err = r
            .append(&[event4()], Some(&condition))
            .expect_err(&format!("the condition {what} fails"));
        assert!(err.is_conflict(), "{what}: a conflict error, got: {err}");
        let after = read(r, &DcbQuery::all(), None, None);
        assert_eq!(after.events.len(), 3, "{what}: nothing was stored");
    }
}

/// Python's passing appends: one without a condition, six with one.
fn stage_passing_conditions(r: &Arc<dyn DcbRecorder>) {
    assert_eq!(r.append(&[event4()], None).expect("unconditional"), 4);
    let cases: Vec<(&str, DcbAppendCondition)> = vec![
        ("typeN", DcbAppendCondition::new(one(&["typeN"], &[]))),
        ("tagY", DcbAppendCondition::new(one(&[], &["tagY"]))),
        (
            "type1 after 1",
            DcbAppendCondition::new(one(&["type1"], &[])).after(Some(1)),
        ),
        (
            "tagX after 1",
            DcbAppendCondition::new(one(&[], &["tagX"])).after(Some(1)),
        ),
        (
            "type1 and tagX after 1",
            DcbAppendCondition::new(one(&["type1"], &["tagX"])).after(Some(1)),
        ),
        (
            "tagX after 1, again",
            DcbAppendCondition::new(one(&[], &["tagX"])).after(Some(1)),
        ),
    ];
    assert_eq!(cases.len(), 6);
    for (n, (what, condition)) in cases.into_iter().enumerate() {
        let position = r
            .append(&[event4()], Some(&condition))
            .unwrap_or_else(|e| panic!("the condition {what} passes, got: {}", e.report()));
        assert!(position > 4 + n as u64 - 1, "{what}: positions increase");
    }
    assert_eq!(read(r, &DcbQuery::all(), None, None).events.len(), 10);
}

/// Python's course-subscription stage: a student, a course, the student
/// joining it, each on a condition after position 3; then reads by the
/// tags and by the decision's boundary, ending at head 13.
fn stage_courses(r: &Arc<dyn DcbRecorder>) {
    let unique = unique_suffix();
    let student = format!("student1-{unique}");
    let course = format!("course1-{unique}");
    let student_registered = DcbEvent::new(
        "StudentRegistered",
        br#"{"name": "Student1", "max_courses": 10}"#.to_vec(),
    )
    .tags([student.clone()]);
    let course_registered = DcbEvent::new(
        "CourseRegistered",
        br#"{"name": "Course1", "places": 10}"#.to_vec(),
    )
    .tags([course.clone()]);
    let joined = DcbEvent::new(
        "StudentJoinedCourse",
        format!(r#"{{"student_id": "{student}", "course_id": "{course}"}}"#).into_bytes(),
    )
    .tags([course.clone(), student.clone()]);

    let after3 = |query: DcbQuery| DcbAppendCondition::new(query).after(Some(3));
    r.append(
        std::slice::from_ref(&student_registered),
        Some(&after3(DcbQuery::item(
            DcbQueryItem::new()
                .tags(student_registered.tags.clone())
                .types(["StudentRegistered"]),
        ))),
    )
    .expect("the student registers");
    r.append(
        std::slice::from_ref(&course_registered),
        Some(&after3(DcbQuery::item(
            DcbQueryItem::new().tags(course_registered.tags.clone()),
        ))),
    )
    .expect("the course registers");
    r.append(
        std::slice::from_ref(&joined),
        Some(&after3(DcbQuery::item(
            DcbQueryItem::new().tags(joined.tags.clone()),
        ))),
    )
    .expect("the student joins the course");

    let all = read(r, &DcbQuery::all(), None, None);
    assert_eq!(all.events.len(), 13);
    assert_eq!(all.head, Some(13));
    let last: Vec<_> = all.events[10..].iter().map(|e| &e.event).collect();
    assert_eq!(last, [&student_registered, &course_registered, &joined]);

    let by_tags = |tags: &[String], after: Option<u64>, limit: Option<usize>| {
        read(
            r,
            &DcbQuery::item(DcbQueryItem::new().tags(tags.to_vec())),
            after,
            limit,
        )
    };
    for after in [None, Some(2)] {
        let s = by_tags(&student_registered.tags, after, None);
        assert_eq!((s.events.len(), s.head), (2, Some(13)), "the student's tag");
        let c = by_tags(&course_registered.tags, after, None);
        assert_eq!((c.events.len(), c.head), (2, Some(13)), "the course's tag");
        let j = by_tags(&joined.tags, after, None);
        assert_eq!((j.events.len(), j.head), (1, Some(13)), "both tags");
    }
    let s = by_tags(&student_registered.tags, Some(2), Some(1));
    assert_eq!(
        (s.events.len(), s.head),
        (1, Some(11)),
        "the student's, limit 1"
    );
    let c = by_tags(&course_registered.tags, Some(2), Some(1));
    assert_eq!(
        (c.events.len(), c.head),
        (1, Some(12)),
        "the course's, limit 1"
    );
    let j = by_tags(&joined.tags, Some(2), Some(1));
    assert_eq!((j.events.len(), j.head), (1, Some(13)), "both, limit 1");

    let boundary = DcbQuery::new([
        DcbQueryItem::new()
            .types(["StudentRegistered", "StudentJoinedCourse"])
            .tags([student.clone()]),
        DcbQueryItem::new()
            .types(["CourseRegistered", "StudentJoinedCourse"])
            .tags([course.clone()]),
    ]);
    let b = read(r, &boundary, None, None);
    assert_eq!(
        (b.events.len(), b.head),
        (3, Some(13)),
        "the decision's boundary"
    );
}

/// Distinct per call (Python's `uuid4()`): tags of another run never match.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{nanos:x}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An empty store reads nothing with head `None`; one event appended is
/// at position 1 and read back by every query that matches it, and by
/// none that does not; a limit of 0 reads nothing with head `None`.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says how).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// annals_core::testing::dcb::reads_and_appends_one_event(&store);
/// ```
pub fn reads_and_appends_one_event(r: &Arc<dyn DcbRecorder>) {
    stage_one_event(r);
}

/// With three events: reads after a position, with a limit (head: the
/// last returned), by type, by tags (all of an item's tags), by several
/// items (any of them), always in position order.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says how).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// annals_core::testing::dcb::reads_by_every_query_shape(&store);
/// ```
pub fn reads_by_every_query_shape(r: &Arc<dyn DcbRecorder>) {
    stage_one_event(r);
    stage_query_shapes(r);
}

/// Python's twelve append conditions that match a stored event: each is a
/// conflict, and stores nothing.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says how).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// annals_core::testing::dcb::failing_append_conditions_store_nothing(&store);
/// ```
pub fn failing_append_conditions_store_nothing(r: &Arc<dyn DcbRecorder>) {
    stage_one_event(r);
    stage_query_shapes(r);
    stage_failing_conditions(r);
}

/// Python's six append conditions that match nothing stored after their
/// position, and an unconditional append: each appends.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says how).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// annals_core::testing::dcb::passing_append_conditions(&store);
/// ```
pub fn passing_append_conditions(r: &Arc<dyn DcbRecorder>) {
    stage_one_event(r);
    stage_query_shapes(r);
    stage_failing_conditions(r);
    stage_passing_conditions(r);
}

/// The whole of Python's `_test_append_read`, ending with the
/// course-subscription scenario at head 13.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says how).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// annals_core::testing::dcb::course_subscription_scenario(&store);
/// ```
pub fn course_subscription_scenario(r: &Arc<dyn DcbRecorder>) {
    stage_one_event(r);
    stage_query_shapes(r);
    stage_failing_conditions(r);
    stage_passing_conditions(r);
    stage_courses(r);
}

/// Python's `_test_append_subscribe`: a subscription returns the stored
/// event, then blocks (nothing for half a second), then wakes with the
/// next one appended.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says how).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// annals_core::testing::dcb::subscription_wakes_on_append(&store);
/// ```
pub fn subscription_wakes_on_append(r: &Arc<dyn DcbRecorder>) {
    let position1 = r.append(&[event1()], None).expect("append");
    assert_eq!(position1, 1);
    let mut subscription =
        DcbSubscription::new(r.clone(), DcbQuery::all(), None).expect("subscribe");
    let first = subscription
        .next()
        .expect("an event")
        .expect("the subscription reads");
    assert_eq!(first.position, position1);

    let stop = subscription.stopper();
    let (blocked, has_blocked) = mpsc::channel();
    let (received, has_received) = mpsc::channel();
    let follower = std::thread::spawn(move || {
        let _ = blocked.send(());
        let _ = received.send(subscription.next());
    });
    has_blocked.recv().expect("the follower started");
    assert!(
        has_received
            .recv_timeout(Duration::from_millis(500))
            .is_err(),
        "the subscription blocks while nothing is appended"
    );
    let position2 = r.append(&[event1()], None).expect("append");
    assert_eq!(position2, 2);
    // Python waits 1 s; a store that polls gets a little more.
    let next = has_received
        .recv_timeout(Duration::from_secs(5))
        .expect("the subscription wakes on the append");
    let next = next.expect("an event").expect("the subscription reads");
    assert_eq!(next.position, position2);
    stop.stop();
    follower.join().expect("the follower ends");
}

/// An append of no events is an error (Python's `ProgrammingError`), not
/// a conflict, and stores nothing.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says how).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// annals_core::testing::dcb::an_empty_append_is_an_error(&store);
/// ```
pub fn an_empty_append_is_an_error(r: &Arc<dyn DcbRecorder>) {
    let err = r.append(&[], None).expect_err("no events");
    assert!(!err.is_conflict(), "not a conflict: {err}");
    let err = r
        .append(&[], Some(&DcbAppendCondition::default()))
        .expect_err("no events");
    assert!(!err.is_conflict(), "not a conflict: {err}");
    assert_eq!(read(r, &DcbQuery::all(), None, None).head, None);
}

/// Data of every byte value, empty data, no tags, many tags, tags with
/// quotes, commas and non-ASCII text: all read back exactly, in the order
/// appended.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says how).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// annals_core::testing::dcb::stores_data_and_tags_exactly(&store);
/// ```
pub fn stores_data_and_tags_exactly(r: &Arc<dyn DcbRecorder>) {
    let odd_tags = [
        "a,b",
        "\"quoted\"",
        "{braces}",
        "ünïcødé",
        "back\\slash",
        " ",
    ];
    let events = vec![
        DcbEvent::new("Bytes", (0..=255u8).collect::<Vec<u8>>()).tags(["t1"]),
        DcbEvent::new("Empty", Vec::new()),
        DcbEvent::new("Odd", b"x".to_vec()).tags(odd_tags),
        DcbEvent::new("Many", b"y".to_vec()).tags((0..50).map(|i| format!("tag-{i}"))),
    ];
    assert_eq!(r.append(&events, None).expect("append"), 4);
    let read_all = read(r, &DcbQuery::all(), None, None);
    let got: Vec<_> = read_all.events.iter().map(|e| e.event.clone()).collect();
    assert_eq!(got, events);
    let positions: Vec<_> = read_all.events.iter().map(|e| e.position).collect();
    assert_eq!(positions, [1, 2, 3, 4]);
    for tag in odd_tags {
        let found = read(r, &one(&[], &[tag]), None, None);
        assert_eq!(found.events.len(), 1, "the tag {tag:?} finds its event");
        assert_eq!(found.events[0].event.type_, "Odd");
    }
    let both = read(r, &one(&["Many"], &["tag-3", "tag-49"]), None, None);
    assert_eq!(both.events.len(), 1);
}

/// Eight threads decide from the same read and append on the same
/// condition: exactly one succeeds, the others are conflicts, and exactly
/// one event is stored.
///
/// # Panics
///
/// When the store breaks this part of the contract (the message says how).
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::dcb::{DcbRecorder, MemoryDcbRecorder};
///
/// let store: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
/// annals_core::testing::dcb::concurrent_conditional_appends_admit_one(&store);
/// ```
pub fn concurrent_conditional_appends_admit_one(r: &Arc<dyn DcbRecorder>) {
    r.append(&[DcbEvent::new("Other", Vec::new()).tags(["other"])], None)
        .expect("append");
    let boundary = one(&[], &["seat-1"]);
    let head = read(r, &boundary, None, None).head;
    assert_eq!(head, Some(1));
    let condition = DcbAppendCondition::new(boundary.clone()).after(head);
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let condition = condition.clone();
                s.spawn(move || {
                    let claim =
                        DcbEvent::new("SeatBooked", format!("{i}").into_bytes()).tags(["seat-1"]);
                    r.append(&[claim], Some(&condition))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a writer"))
            .collect()
    });
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(won, 1, "exactly one append wins: {outcomes:?}");
    for outcome in &outcomes {
        if let Err(e) = outcome {
            assert!(e.is_conflict(), "the others conflict, got: {}", e.report());
        }
    }
    assert_eq!(read(r, &boundary, None, None).events.len(), 1);
}
