//! The DCB domain side (`annals::dcb`): events tagged from their fields,
//! states folded from their boundary, decisions appended on the condition
//! of their read and retried when another decision got there first; on
//! memory, SQLite and PostgreSQL (skipped when no server is configured,
//! outside CI). The domain is the courses example's.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

use annals::dcb::{
    self, Boundary, DcbApplication, DcbEvents, NewEvent, Perspective, Slice, Tagged,
};
use annals::persistence::dcb::{
    DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder, DcbSequencedEvent, MemoryDcbRecorder,
};
use annals::testing::DecisionTest;
use annals::{CommandError, Uuid};
use annals_examples::courses::{
    Course, CourseId, CourseRegistered, Courses, JoinCourse, Student, StudentId,
    StudentJoinedCourse, StudentRegistered, SubscriptionError, COURSE_TOPIC, STUDENT_TOPIC,
};
use serde::{Deserialize, Serialize};

// ---- Encoding: Python's MessagePackMapper's layout. -----------------------

#[derive(Debug, PartialEq, Serialize, Deserialize, Tagged)]
#[dcb(type = "shop.domain:ItemAdded")]
struct ItemAdded {
    #[tag(prefix = "cart-")]
    cart: u32,
    #[tag]
    sku: String,
    quantity: u8,
}

#[test]
fn an_event_is_its_type_its_tags_and_a_msgpack_map_of_its_fields() {
    let added = ItemAdded {
        cart: 7,
        sku: "tea".into(),
        quantity: 2,
    };
    let event = dcb::encode(&added).expect("encode");
    assert_eq!(event.type_, "shop.domain:ItemAdded");
    assert_eq!(event.tags, ["cart-7", "tea"]);
    // {"cart": 7, "sku": "tea", "quantity": 2}, as msgspec.msgpack.encode
    // writes a Struct of those fields.
    let mut expected = vec![0x83, 0xa4];
    expected.extend(b"cart");
    expected.extend([0x07, 0xa3]);
    expected.extend(b"sku");
    expected.push(0xa3);
    expected.extend(b"tea");
    expected.push(0xa8);
    expected.extend(b"quantity");
    expected.push(0x02);
    assert_eq!(event.data, expected);
    let stored = DcbSequencedEvent { event, position: 1 };
    assert_eq!(dcb::decode::<ItemAdded>(&stored).expect("decode"), added);
}

#[test]
fn a_uuid_is_written_as_a_string_as_msgspec_writes_it() {
    let id = Uuid::from_u128(0x1234);
    let event = dcb::encode(&StudentRegistered {
        originator_topic: STUDENT_TOPIC.into(),
        student_id: StudentId(id),
        name: "Ada".into(),
        max_courses: 2,
    })
    .expect("encode");
    assert_eq!(event.tags, [format!("student-{id}")]);
    let text = String::from_utf8_lossy(&event.data);
    assert!(text.contains(&id.to_string()), "{:?}", event.data);
}

#[test]
fn data_that_does_not_decode_is_a_decode_error_naming_type_and_position() {
    let stored = DcbSequencedEvent {
        event: DcbEvent::new("shop.domain:ItemAdded", b"\xc1".to_vec()).tags(["cart-1"]),
        position: 9,
    };
    let err = dcb::decode::<ItemAdded>(&stored).unwrap_err();
    match err {
        annals::Error::Decode { topic, version, .. } => {
            assert_eq!((topic.as_str(), version), ("shop.domain:ItemAdded", 9));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // Another type is refused before its data is looked at.
    let other = DcbSequencedEvent {
        event: DcbEvent::new("Other", vec![]),
        position: 1,
    };
    assert!(matches!(
        dcb::decode::<ItemAdded>(&other),
        Err(annals::Error::Decode { .. })
    ));
}

// ---- Boundaries: queries from what a state reads. -------------------------

#[test]
fn a_perspectives_query_is_its_event_types_and_its_tags() {
    let course = Course::new(CourseId(Uuid::from_u128(1)));
    assert_eq!(
        course.query(),
        DcbQuery::item(
            DcbQueryItem::new()
                .types([
                    "enrolment:Course.Registered",
                    "enrolment:StudentJoinedCourse",
                    "enrolment:StudentLeftCourse"
                ])
                .tags([format!("course-{}", Uuid::from_u128(1))])
        )
    );
    // A group's query is its members' items, ORed.
    let group = (course.clone(), Student::new(StudentId(Uuid::from_u128(2))));
    let items = group.query().items;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0], course.query().items[0]);
    assert_eq!(items[1].tags, [format!("student-{}", Uuid::from_u128(2))]);
}

#[test]
fn a_group_folds_each_event_into_the_members_it_matches() {
    let (c, s) = (CourseId::new(), StudentId::new());
    let mut group = (Course::new(c), Student::new(s));
    let joined = dcb::encode(&StudentJoinedCourse {
        student_id: s,
        course_id: c,
    })
    .expect("encode");
    let registered = dcb::encode(&CourseRegistered {
        originator_topic: COURSE_TOPIC.into(),
        course_id: c,
        name: "Maths".into(),
        places: 3,
    })
    .expect("encode");
    for (position, event) in [registered, joined].into_iter().enumerate() {
        group
            .fold(&DcbSequencedEvent {
                event,
                position: position as u64 + 1,
            })
            .expect("fold");
    }
    assert_eq!(group.0.registered, Some(("Maths".to_owned(), 3)));
    assert_eq!(group.0.students, [s]);
    assert_eq!(group.1.courses, [c]);
    assert_eq!(group.1.registered, None);
}

/// A state of one type reads only that type, even when other events carry
/// its tag.
#[derive(Debug, Clone, Default)]
struct Registrations {
    course: CourseId,
    seen: u32,
}

impl Perspective for Registrations {
    type Events = CourseRegistered;
    fn tags(&self) -> Vec<String> {
        vec![self.course.to_string()]
    }
    fn apply(&mut self, _: CourseRegistered) {
        self.seen += 1;
    }
}

#[test]
fn a_state_reads_only_the_types_it_decodes() {
    let app = DcbApplication::new(Arc::new(MemoryDcbRecorder::new()));
    let course = CourseId::new();
    app.append([CourseRegistered {
        originator_topic: COURSE_TOPIC.into(),
        course_id: course,
        name: "Maths".into(),
        places: 1,
    }])
    .expect("append");
    // An event with the course's tag, of a type this state does not read
    // (and whose data no struct here decodes).
    app.append([DcbEvent::new("Unknown", b"not msgpack".to_vec()).tags([course.to_string()])])
        .expect("append");
    let folded = app.read(Registrations { course, seen: 0 }).expect("read");
    assert_eq!(
        (folded.state.seen, folded.events, folded.head),
        (1, 1, Some(2))
    );
}

// ---- Decisions on every store. ---------------------------------------------

fn sqlite(name: &str) -> Arc<dyn DcbRecorder> {
    use annals::persistence::sqlite::{SqliteConfig, SqliteDcbRecorder};
    let path = annals_tests::stores::temp_dir().join(format!("dcb-domain-{name}.db"));
    Arc::new(SqliteDcbRecorder::open(SqliteConfig::new(path.to_string_lossy())).expect("open"))
}

fn postgres(name: &str) -> Option<Arc<dyn DcbRecorder>> {
    use annals::persistence::postgres::PostgresDcbRecorder;
    let mut config = annals_tests::stores::postgres_server()?;
    let schema = format!("dcbd_{}", &name[..name.len().min(50)]);
    annals_tests::stores::postgres_client(&config)
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
        ))
        .expect("a fresh schema");
    config.schema = Some(schema);
    Some(Arc::new(
        PostgresDcbRecorder::open(&config, "Courses").expect("open"),
    ))
}

macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[test]
            fn $test() {
                super::$test(std::sync::Arc::new(annals::persistence::dcb::MemoryDcbRecorder::new()));
            })*
        }
        mod sqlite {
            $(#[test]
            fn $test() {
                super::$test(super::sqlite(stringify!($test)));
            })*
        }
        mod postgres {
            $(#[test]
            fn $test() {
                match super::postgres(stringify!($test)) {
                    Some(store) => super::$test(store),
                    None => annals::testing::skipped(concat!("postgres ", stringify!($test))),
                }
            })*
        }
    };
}

on_every_store!(
    the_rules_hold,
    an_overlapping_decision_is_retried_and_sees_the_other,
    a_decision_outside_the_boundary_does_not_conflict,
    racers_for_the_last_seats_never_overfill_a_course,
    a_decision_that_keeps_losing_fails_as_a_conflict,
);

fn the_rules_hold(store: Arc<dyn DcbRecorder>) {
    let courses = Courses::new(store);
    let maths = courses.register_course("Maths", 1).expect("course");
    let physics = courses.register_course("Physics", 5).expect("course");
    let ada = courses.register_student("Ada", 1).expect("student");
    let bob = courses.register_student("Bob", 2).expect("student");
    courses.join(ada, maths).expect("Ada joins Maths");
    assert!(matches!(
        courses.join(bob, maths),
        Err(CommandError::Rejected(SubscriptionError::CourseFull {
            capacity: 1,
            ..
        }))
    ));
    assert!(matches!(
        courses.join(ada, physics),
        Err(CommandError::Rejected(SubscriptionError::TooManyCourses {
            max: 1,
            ..
        }))
    ));
    assert!(matches!(
        courses.join(ada, CourseId::new()),
        Err(CommandError::Rejected(SubscriptionError::NoSuchCourse(_)))
    ));
    courses.leave(ada, maths).expect("Ada leaves");
    courses.join(bob, maths).expect("Bob takes the seat");
    courses.join(ada, physics).expect("Ada has a course left");
    assert_eq!(courses.course(maths).expect("read").students, [bob]);
    assert_eq!(courses.student(ada).expect("read").courses, [physics]);
}

/// Ada's decision reads Maths (one seat); while it decides, the first
/// time, Bob takes the seat. Ada's append fails its condition, the
/// decision runs again from a fresh read, and refuses: the course is full.
fn an_overlapping_decision_is_retried_and_sees_the_other(store: Arc<dyn DcbRecorder>) {
    let courses = Courses::new(store);
    let maths = courses.register_course("Maths", 1).expect("course");
    let ada = courses.register_student("Ada", 3).expect("student");
    let bob = courses.register_student("Bob", 3).expect("student");
    let tries = AtomicU32::new(0);
    let join = JoinCourse {
        student: ada,
        course: maths,
    };
    let outcome = courses.app().decide(join.state(), |state| {
        if tries.fetch_add(1, Ordering::SeqCst) == 0 {
            courses.join(bob, maths).expect("Bob joins meanwhile");
        }
        join.decide(state)
    });
    assert_eq!(tries.load(Ordering::SeqCst), 2);
    assert!(
        matches!(
            outcome,
            Err(CommandError::Rejected(SubscriptionError::CourseFull { .. }))
        ),
        "{outcome:?}"
    );
    assert_eq!(courses.course(maths).expect("read").students, [bob]);
}

/// While Ada's decision about Maths decides, Bob joins Physics: outside
/// Ada's boundary, so her append's condition holds on the first try.
fn a_decision_outside_the_boundary_does_not_conflict(store: Arc<dyn DcbRecorder>) {
    let courses = Courses::new(store);
    let maths = courses.register_course("Maths", 1).expect("course");
    let physics = courses.register_course("Physics", 1).expect("course");
    let ada = courses.register_student("Ada", 3).expect("student");
    let bob = courses.register_student("Bob", 3).expect("student");
    let tries = AtomicU32::new(0);
    let join = JoinCourse {
        student: ada,
        course: maths,
    };
    let position = courses
        .app()
        .decide(join.state(), |state| {
            if tries.fetch_add(1, Ordering::SeqCst) == 0 {
                courses.join(bob, physics).expect("Bob joins Physics");
            }
            join.decide(state)
        })
        .expect("Ada joins Maths");
    assert_eq!(tries.load(Ordering::SeqCst), 1);
    // Ada's event comes after Bob's, read or not.
    assert!(position.is_some_and(|p| p >= 6), "{position:?}");
    assert_eq!(courses.course(maths).expect("read").students, [ada]);
    assert_eq!(courses.course(physics).expect("read").students, [bob]);
}

/// Eight threads join one course of three seats at once: exactly three
/// win; the others decide again and find it full.
fn racers_for_the_last_seats_never_overfill_a_course(store: Arc<dyn DcbRecorder>) {
    let courses = Courses::new(store);
    let course = courses.register_course("Chemistry", 3).expect("course");
    let racers: Vec<StudentId> = (0..8)
        .map(|i| {
            courses
                .register_student(&format!("r{i}"), 1)
                .expect("student")
        })
        .collect();
    let start = Barrier::new(racers.len());
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = racers
            .iter()
            .map(|&racer| {
                let (courses, start) = (&courses, &start);
                scope.spawn(move || {
                    start.wait();
                    courses.join(racer, course)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer"))
            .collect()
    });
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(won, 3, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Ok(()) | Err(CommandError::Rejected(SubscriptionError::CourseFull { .. }))
    )));
    assert_eq!(courses.course(course).expect("read").students.len(), 3);
}

/// A decision whose boundary changes on every try gives up after the
/// policy's tries, with the store's conflict (not a refusal).
fn a_decision_that_keeps_losing_fails_as_a_conflict(store: Arc<dyn DcbRecorder>) {
    let courses = Courses::new(store.clone());
    let app = courses
        .app()
        .clone()
        .with_retry_policy(annals::application::RetryPolicy {
            tries: 3,
            backoff: std::time::Duration::from_millis(1),
            max_backoff: std::time::Duration::from_millis(2),
        });
    let maths = courses.register_course("Maths", 100).expect("course");
    let ada = courses.register_student("Ada", 3).expect("student");
    let tries = AtomicU32::new(0);
    let join = JoinCourse {
        student: ada,
        course: maths,
    };
    let outcome = app.decide(join.state(), |state| {
        let n = tries.fetch_add(1, Ordering::SeqCst);
        let other = courses
            .register_student(&format!("o{n}"), 1)
            .expect("student");
        courses.join(other, maths).expect("another joins");
        join.decide(state)
    });
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    assert!(
        matches!(&outcome, Err(CommandError::Failed(e)) if e.is_conflict()),
        "{outcome:?}"
    );
    assert!(!courses.student(ada).expect("read").courses.contains(&maths));
}

// ---- The given/when/then kit. ----------------------------------------------

fn registered(course: CourseId, places: u32) -> CourseRegistered {
    CourseRegistered {
        originator_topic: COURSE_TOPIC.into(),
        course_id: course,
        name: "Maths".into(),
        places,
    }
}

fn student(student: StudentId, max_courses: u32) -> StudentRegistered {
    StudentRegistered {
        originator_topic: STUDENT_TOPIC.into(),
        student_id: student,
        name: "Ada".into(),
        max_courses,
    }
}

#[test]
fn the_kit_checks_the_events_a_decision_appends() {
    let (c, s) = (CourseId::new(), StudentId::new());
    let given: Vec<NewEvent> = vec![registered(c, 1).into(), student(s, 1).into()];
    DecisionTest::given(given)
        .when_slice(&JoinCourse {
            student: s,
            course: c,
        })
        .then([StudentJoinedCourse {
            student_id: s,
            course_id: c,
        }]);
}

#[test]
fn the_kit_checks_a_refusal() {
    let (c, s, other) = (CourseId::new(), StudentId::new(), StudentId::new());
    let given: Vec<NewEvent> = vec![
        registered(c, 1).into(),
        student(s, 1).into(),
        StudentJoinedCourse {
            student_id: other,
            course_id: c,
        }
        .into(),
    ];
    DecisionTest::given(given)
        .when_slice(&JoinCourse {
            student: s,
            course: c,
        })
        .then_rejected(SubscriptionError::CourseFull {
            course: "Maths".into(),
            capacity: 1,
        });
}

#[test]
#[should_panic(expected = "expected 1 event(s), appended 1")]
fn the_kit_fails_on_other_events() {
    let (c, s) = (CourseId::new(), StudentId::new());
    let given: Vec<NewEvent> = vec![registered(c, 1).into(), student(s, 1).into()];
    DecisionTest::given(given)
        .when_slice(&JoinCourse {
            student: s,
            course: c,
        })
        .then([StudentJoinedCourse {
            student_id: StudentId(Uuid::nil()),
            course_id: c,
        }]);
}

#[test]
#[should_panic(expected = "expected the decision's refusal, it appended")]
fn the_kit_fails_when_a_refusal_was_expected() {
    let (c, s) = (CourseId::new(), StudentId::new());
    let given: Vec<NewEvent> = vec![registered(c, 2).into(), student(s, 1).into()];
    DecisionTest::given(given)
        .when_slice(&JoinCourse {
            student: s,
            course: c,
        })
        .then_error(|_| {});
}

/// An enum of events is a new event too (each variant as its struct).
#[derive(Debug, DcbEvents)]
enum Cart {
    Added(ItemAdded),
}

#[test]
fn an_enum_of_events_encodes_as_its_variants_struct() {
    let from_enum: NewEvent = Cart::Added(ItemAdded {
        cart: 1,
        sku: "x".into(),
        quantity: 1,
    })
    .into();
    let from_struct: NewEvent = ItemAdded {
        cart: 1,
        sku: "x".into(),
        quantity: 1,
    }
    .into();
    assert_eq!(
        from_enum.into_event().expect("encode"),
        from_struct.into_event().expect("encode")
    );
    assert_eq!(Cart::TYPES, ["shop.domain:ItemAdded"]);
    let _ = <ItemAdded as Tagged>::TYPE;
}

// ---- Python's MessagePackMapper reads annals' events, and the reverse. -----

/// The venv's interpreter (`ANNALS_PYTHON`), or `None` (skipped; in CI a
/// failure).
fn python() -> Option<std::path::PathBuf> {
    match std::env::var_os("ANNALS_PYTHON") {
        Some(path) => Some(path.into()),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the Python interop tests must run in CI: set ANNALS_PYTHON (.ci/run does)"
            );
            annals::testing::skipped("python DCB mapper (ANNALS_PYTHON is not set)");
            None
        }
    }
}

/// Python's side: a decision class of the same fields, its topic
/// `__main__:Enrolled`; decodes annals' event with the mapper, and prints
/// what it read and its own event of the same decision for other values.
const PY_MAPPER: &str = r#"
import json, sys, uuid
from eventsourcing.dcb.api import DCBEvent
from eventsourcing.dcb.domain import Tagged
from eventsourcing.dcb.msgpack import Decision, MessagePackMapper

class Enrolled(Decision):
    student_id: uuid.UUID
    course: str
    seats: list[int]
    note: str | None

doc = json.loads(sys.argv[1])
mapper = MessagePackMapper()
read = mapper.to_domain_event(DCBEvent(type=doc["type"], data=bytes.fromhex(doc["data"]), tags=doc["tags"]))
d = read.decision
mine = mapper.to_dcb_event(Tagged(tags=["course-physics"], decision=Enrolled(
    student_id=uuid.UUID(int=7), course="physics", seats=[], note="late")))
print(json.dumps({
    "read": {"student_id": str(d.student_id), "course": d.course, "seats": d.seats, "note": d.note, "tags": read.tags},
    "event": {"type": mine.type, "data": mine.data.hex(), "tags": mine.tags},
}))
"#;

#[derive(Debug, PartialEq, Serialize, Deserialize, Tagged)]
#[dcb(type = "__main__:Enrolled")]
struct Enrolled {
    student_id: Uuid,
    #[tag(prefix = "course-")]
    course: String,
    seats: Vec<i64>,
    note: Option<String>,
}

#[test]
fn pythons_message_pack_mapper_reads_annals_events_and_annals_reads_pythons() {
    let Some(python) = python() else {
        return;
    };
    let ours = dcb::encode(&Enrolled {
        student_id: Uuid::from_u128(42),
        course: "maths".into(),
        seats: vec![3, -1],
        note: None,
    })
    .expect("encode");
    let hex: String = ours.data.iter().map(|b| format!("{b:02x}")).collect();
    let doc = serde_json::json!({"type": ours.type_, "data": hex, "tags": ours.tags});
    let output = std::process::Command::new(python)
        .args(["-c", PY_MAPPER, &doc.to_string()])
        .output()
        .expect("run the venv's python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        out["read"],
        serde_json::json!({
            "student_id": Uuid::from_u128(42).to_string(),
            "course": "maths",
            "seats": [3, -1],
            "note": null,
            "tags": ["course-maths"],
        })
    );
    let event = &out["event"];
    let data = event["data"].as_str().expect("hex");
    let data: Vec<u8> = (0..data.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&data[i..i + 2], 16).expect("hex"))
        .collect();
    let theirs = DcbSequencedEvent {
        event: DcbEvent::new(event["type"].as_str().expect("type"), data).tags(["course-physics"]),
        position: 1,
    };
    assert_eq!(theirs.event.type_, Enrolled::TYPE);
    assert_eq!(
        dcb::decode::<Enrolled>(&theirs).expect("decode"),
        Enrolled {
            student_id: Uuid::from_u128(7),
            course: "physics".into(),
            seats: vec![],
            note: Some("late".into()),
        }
    );
    // The same fields, the same bytes.
    assert_eq!(
        dcb::encode(&Enrolled {
            student_id: Uuid::from_u128(7),
            course: "physics".into(),
            seats: vec![],
            note: Some("late".into()),
        })
        .expect("encode")
        .data,
        theirs.event.data
    );
}

// ---- The async facade. ------------------------------------------------------

async fn async_racers(courses: Courses) {
    use annals::asynchronous::AsyncDcbApplication;
    let app = AsyncDcbApplication::new(courses.app().clone());
    let course = courses.register_course("Art", 2).expect("course");
    let mut tasks = Vec::new();
    for i in 0..6 {
        let student = courses
            .register_student(&format!("s{i}"), 1)
            .expect("student");
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.run(JoinCourse { student, course }).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => won += 1,
            Err(CommandError::Rejected(SubscriptionError::CourseFull { .. })) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 2);
    let art = app.read(Course::new(course)).await.expect("read");
    assert_eq!(art.state.students.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_decisions_race_on_a_multi_threaded_runtime() {
    async_racers(Courses::new(sqlite("async_multi"))).await;
}

#[tokio::test(flavor = "current_thread")]
async fn async_decisions_race_on_a_current_thread_runtime() {
    async_racers(Courses::new(sqlite("async_current"))).await;
}

// ---- The condition is the query read, whatever the state became. ----------

#[derive(Debug, Serialize, Deserialize, Tagged)]
struct Step {
    #[tag(prefix = "step-")]
    n: u32,
}

/// A state whose tags follow what it folded (`step-0`, then `step-1`...).
#[derive(Debug, Clone, Default)]
struct Walker {
    at: u32,
}

impl Perspective for Walker {
    type Events = Step;
    fn tags(&self) -> Vec<String> {
        vec![format!("step-{}", self.at)]
    }
    fn apply(&mut self, _: Step) {
        self.at += 1;
    }
}

#[test]
fn the_condition_is_the_query_that_was_read_not_the_folded_states() {
    let app = DcbApplication::new(Arc::new(MemoryDcbRecorder::new()));
    app.append([Step { n: 0 }]).expect("append");
    let tries = AtomicU32::new(0);
    let outcome = app.decide(Walker::default(), |walker: &Walker| {
        if tries.fetch_add(1, Ordering::SeqCst) == 0 {
            // Another step-0 event: in the boundary that was read.
            app.append([Step { n: 0 }]).expect("append");
        }
        Ok::<_, ()>(vec![Step { n: walker.at }.into()])
    });
    assert_eq!(tries.load(Ordering::SeqCst), 2, "{outcome:?}");
    assert_eq!(outcome.expect("decided"), Some(3));
}
