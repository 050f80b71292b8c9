//! DCB shared with the real Python library (9.5.6, `ANNALS_PYTHON` names
//! the venv's interpreter): its `PostgresDCBRecorderTT` and annals'
//! [`PostgresDcbRecorder`] on one PostgreSQL database, in its
//! `postgres_tt` layout. Either side creates the tables first; each reads
//! by query what the other appended, exactly; conditional appends from
//! both sides conflict as the model says; a subscription on each side
//! wakes on the other's appends. `tests/python/dcb_interop.py` is the
//! Python side.
//!
//! And a level up, the applications: Python's `Enrolment` DCB application
//! (enduring objects, a group, `MessagePackMapper`;
//! `tests/python/enrolment.py`) and annals' courses example on one store,
//! each deciding on what the other appended.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use annals::persistence::dcb::{
    DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder, DcbSubscription,
};
use annals::persistence::postgres::{PostgresConfig, PostgresDcbRecorder};
use annals_tests::stores::{postgres_client, postgres_server};
use serde_json::{json, Value};

fn python() -> Option<PathBuf> {
    annals_tests::python::interpreter("ANNALS_PYTHON", "the Python DCB interop tests")
}

/// One database, one schema, one DCB store, both languages.
struct Shared {
    python: PathBuf,
    config: PostgresConfig,
    schema: String,
}

impl Shared {
    /// A fresh schema `schema` on the test server, or `None` (skipped).
    fn new(schema: &str) -> Option<Self> {
        let python = python()?;
        let Some(mut config) = postgres_server() else {
            annals_tests::skipped(schema);
            return None;
        };
        postgres_client(&config)
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
            ))
            .expect("a fresh schema");
        config.schema = Some(schema.to_owned());
        Some(Self {
            python,
            config,
            schema: schema.to_owned(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        self.script("dcb_interop.py", args)
    }

    /// `python SCRIPT ARGS` in `tests/python`, on this store.
    fn script(&self, script: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg(script)
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/python"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("POSTGRES_DBNAME", &self.config.dbname)
            .env("POSTGRES_HOST", &self.config.host)
            .env("POSTGRES_PORT", self.config.port.to_string())
            .env("POSTGRES_USER", &self.config.user)
            .env(
                "POSTGRES_PASSWORD",
                self.config.password.clone().unwrap_or_default(),
            )
            .env("POSTGRES_SCHEMA", &self.schema)
            // Python's tags table names the events table without its
            // schema: found on the search path.
            .env(
                "PGOPTIONS",
                format!("-c search_path={},public", self.schema),
            )
            .env("DCB_EVENTS_TABLE", "courses_events")
            // The Enrolment application's settings (enrolment_cli.py).
            .env("PERSISTENCE_MODULE", "eventsourcing.dcb.postgres_tt");
        command
    }

    /// Runs `dcb_interop.py COMMAND DOC`; its JSON output.
    fn py(&self, command: &str, doc: Value) -> Value {
        let output = self
            .command(&[command, &doc.to_string()])
            .output()
            .expect("run the venv's python");
        assert!(
            output.status.success(),
            "python dcb_interop.py {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("dcb_interop.py prints JSON")
    }

    /// annals' recorder of the same store (application `Courses`: table
    /// name `courses_events`, as Python's factory names it).
    fn annals(&self) -> Arc<dyn DcbRecorder> {
        Arc::new(PostgresDcbRecorder::open(&self.config, "Courses").expect("open"))
    }
}

fn event_json(e: &DcbEvent) -> Value {
    json!({"type": e.type_, "data": hex(&e.data), "tags": e.tags})
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn query_json(q: &DcbQuery) -> Value {
    json!(q
        .items
        .iter()
        .map(|i| json!({"types": i.types, "tags": i.tags}))
        .collect::<Vec<_>>())
}

fn tags(tags: &[&str]) -> DcbQuery {
    DcbQuery::item(DcbQueryItem::new().tags(tags.iter().copied()))
}

fn py_append(
    shared: &Shared,
    events: &[DcbEvent],
    condition: Option<&DcbAppendCondition>,
) -> Value {
    let condition =
        condition.map(|c| json!({"items": query_json(&c.fail_if_events_match), "after": c.after}));
    shared.py(
        "append",
        json!({"events": events.iter().map(event_json).collect::<Vec<_>>(), "condition": condition}),
    )
}

fn py_read(
    shared: &Shared,
    query: &DcbQuery,
    after: Option<u64>,
) -> (Vec<(u64, DcbEvent)>, Option<u64>) {
    let out = shared.py("read", json!({"items": query_json(query), "after": after}));
    let events = out["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            let data = e["data"].as_str().expect("hex");
            let data = (0..data.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&data[i..i + 2], 16).expect("hex"))
                .collect::<Vec<u8>>();
            let tags: Vec<String> = serde_json::from_value(e["tags"].clone()).expect("tags");
            (
                e["position"].as_u64().expect("position"),
                DcbEvent::new(e["type"].as_str().expect("type"), data).tags(tags),
            )
        })
        .collect();
    (events, out["head"].as_u64())
}

fn course(id: &str) -> DcbEvent {
    DcbEvent::new(
        "CourseRegistered",
        format!(r#"{{"name":"{id}","places":2}}"#),
    )
    .tags([id])
}

fn joined(student: &str, course: &str) -> DcbEvent {
    DcbEvent::new("StudentJoinedCourse", vec![0, 159, 146, 150, 255]).tags([course, student])
}

#[test]
fn python_creates_and_appends_then_annals_reads_and_appends_and_python_reads() {
    let Some(shared) = Shared::new("dcb_py_first") else {
        return;
    };
    shared.py("create", json!({}));
    let c1 = course("course-1");
    let out = py_append(
        &shared,
        std::slice::from_ref(&c1),
        Some(&DcbAppendCondition::new(tags(&["course-1"]))),
    );
    assert_eq!(out["position"], 1, "{out}");
    // annals opens the store Python created (its types kept, its
    // functions replaced by the same) and reads Python's event by tag.
    let annals = shared.annals();
    let read = annals.read(&tags(&["course-1"]), None, None).expect("read");
    assert_eq!(read.head, Some(1));
    assert_eq!(read.events.len(), 1);
    assert_eq!((read.events[0].position, &read.events[0].event), (1, &c1));
    // annals decides from that read and appends.
    let j = joined("student-1", "course-1");
    let boundary = DcbQuery::new([
        DcbQueryItem::new()
            .types(["CourseRegistered", "StudentJoinedCourse"])
            .tags(["course-1"]),
        DcbQueryItem::new()
            .types(["StudentJoinedCourse"])
            .tags(["student-1"]),
    ]);
    let position = annals
        .append(
            std::slice::from_ref(&j),
            Some(&DcbAppendCondition::new(boundary.clone()).after(read.head)),
        )
        .expect("annals appends");
    assert_eq!(position, 2);
    // Python reads annals' event by both tags, exactly.
    let (events, head) = py_read(&shared, &tags(&["student-1", "course-1"]), None);
    assert_eq!(events, [(2, j)]);
    assert_eq!(head, Some(2));
    // And by the boundary: both.
    let (events, _) = py_read(&shared, &boundary, None);
    assert_eq!(events.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn annals_creates_and_conditional_appends_from_both_sides_conflict() {
    let Some(shared) = Shared::new("dcb_annals_first") else {
        return;
    };
    let annals = shared.annals();
    annals.append(&[course("course-2")], None).expect("append");
    let boundary = tags(&["course-2"]);
    let annals_read = annals.read(&boundary, None, None).expect("read");
    let (_, python_head) = py_read(&shared, &boundary, None);
    assert_eq!((annals_read.head, python_head), (Some(1), Some(1)));

    // Python decides first, from its read: it wins.
    let python_join = joined("student-py", "course-2");
    let out = py_append(
        &shared,
        std::slice::from_ref(&python_join),
        Some(&DcbAppendCondition::new(boundary.clone()).after(python_head)),
    );
    assert_eq!(out["position"], 2, "{out}");
    // annals, from its read before Python's append: a conflict.
    let err = annals
        .append(
            &[joined("student-rs", "course-2")],
            Some(&DcbAppendCondition::new(boundary.clone()).after(annals_read.head)),
        )
        .expect_err("Python's append is in the boundary");
    assert!(err.is_conflict(), "{}", err.report());

    // annals reads again and wins; Python, from its old read, conflicts.
    let again = annals.read(&boundary, None, None).expect("read");
    assert_eq!(again.events.last().map(|e| &e.event), Some(&python_join));
    annals
        .append(
            &[joined("student-rs", "course-2")],
            Some(&DcbAppendCondition::new(boundary.clone()).after(again.head)),
        )
        .expect("annals appends after reading again");
    let out = py_append(
        &shared,
        &[joined("student-py2", "course-2")],
        Some(&DcbAppendCondition::new(boundary.clone()).after(python_head)),
    );
    assert_eq!(out["conflict"], true, "{out}");
    // A condition elsewhere does not conflict.
    let out = py_append(
        &shared,
        &[course("course-3")],
        Some(&DcbAppendCondition::new(tags(&["course-3"])).after(python_head)),
    );
    assert!(out["position"].as_u64().is_some(), "{out}");
    let all = annals.read(&DcbQuery::all(), None, None).expect("read");
    assert_eq!(all.events.len(), 4);
}

#[test]
fn a_subscription_on_each_side_wakes_on_the_others_appends() {
    let Some(shared) = Shared::new("dcb_subscriptions") else {
        return;
    };
    let annals = shared.annals();
    // Python follows the course's events; annals appends.
    let mut child = shared
        .command(&[
            "subscribe",
            &json!({"items": query_json(&tags(&["course-4"])), "after": null, "count": 2})
                .to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the venv's python");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines.next().expect("a line").expect("read");
    assert!(ready.contains("ready"), "{ready}");
    // annals follows the same; Python appends.
    let mut subscription =
        DcbSubscription::new(annals.clone(), tags(&["course-4"]), None).expect("subscribe");
    annals
        .append(&[DcbEvent::new("Other", vec![]).tags(["x"])], None)
        .expect("append");
    annals.append(&[course("course-4")], None).expect("append");
    let out = py_append(&shared, &[joined("student-1", "course-4")], None);
    assert_eq!(out["position"], 3, "{out}");
    let first = subscription
        .next_timeout(Duration::from_secs(10))
        .expect("read")
        .expect("annals' own append");
    assert_eq!(first.position, 2);
    let second = subscription
        .next_timeout(Duration::from_secs(10))
        .expect("read")
        .expect("Python's append wakes annals' subscription");
    assert_eq!(second.position, 3);
    let positions = lines.next().expect("a line").expect("read");
    let positions: Value = serde_json::from_str(&positions).expect("JSON");
    assert_eq!(
        positions["positions"],
        json!([2, 3]),
        "Python's subscription saw both"
    );
    assert!(child.wait().expect("python ends").success());
}

// ---- The applications: Python's Enrolment and annals' Courses. -------------

mod enrolment {
    use super::*;

    use annals::dcb::{self, Slice};
    use annals::CommandError;
    use annals_examples::courses::{
        CourseId, CourseRegistered, Courses, JoinCourse, StudentId, SubscriptionError,
    };
    use std::io::Write;

    impl Shared {
        /// `python enrolment_cli.py ARGS`: its JSON output.
        fn enrolment(&self, args: &[&str]) -> Value {
            let output = self
                .script("enrolment_cli.py", args)
                .output()
                .expect("run the venv's python");
            assert!(
                output.status.success(),
                "python enrolment_cli.py {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            serde_json::from_slice(&output.stdout).expect("enrolment_cli.py prints JSON")
        }

        /// annals' courses application on the same store.
        fn courses(&self) -> Courses {
            Courses::new(Arc::new(
                PostgresDcbRecorder::open(&self.config, Courses::NAME).expect("open"),
            ))
        }
    }

    fn id<T: std::str::FromStr>(out: &Value) -> T
    where
        T::Err: std::fmt::Debug,
    {
        out["id"]
            .as_str()
            .expect("an id")
            .parse()
            .expect("a Python id")
    }

    fn names(ids: &[impl ToString]) -> Value {
        json!(ids.iter().map(ToString::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn python_and_annals_enrolment_applications_share_one_store() {
        let Some(shared) = Shared::new("dcb_enrolment") else {
            return;
        };
        // Python creates the store: a course, from its enduring object.
        let maths: CourseId = id(&shared.enrolment(&["register-course", "Maths", "2"]));
        let courses = shared.courses();
        // annals registers a student and joins her to Python's course.
        let ada = courses.register_student("Ada", 2).expect("register");
        courses.join(ada, maths).expect("Ada joins Maths");
        // Python builds both objects: Ada from annals' initial event.
        let course = shared.enrolment(&["course", &maths.to_string()]);
        assert_eq!(course["name"], "Maths");
        assert_eq!(course["student_ids"], names(&[ada]));
        let student = shared.enrolment(&["student", &ada.to_string()]);
        assert_eq!(
            (&student["name"], &student["max_courses"]),
            (&json!("Ada"), &json!(2))
        );
        assert_eq!(student["course_ids"], names(&[maths]));

        // Python fills the course; annals sees it full, and so does Python.
        let bob: StudentId = id(&shared.enrolment(&["register-student", "Bob", "3"]));
        assert_eq!(
            shared.enrolment(&["join", &bob.to_string(), &maths.to_string()]),
            json!({"ok": true})
        );
        assert_eq!(courses.course(maths).expect("read").students, [ada, bob]);
        let cy = courses.register_student("Cy", 3).expect("register");
        assert!(matches!(
            courses.join(cy, maths),
            Err(CommandError::Rejected(SubscriptionError::CourseFull {
                capacity: 2,
                ..
            }))
        ));
        assert_eq!(
            shared.enrolment(&["join", &cy.to_string(), &maths.to_string()]),
            json!({"error": "FullyBookedError"})
        );

        // Leaving, from each side.
        courses.leave(ada, maths).expect("Ada leaves");
        let course = shared.enrolment(&["course", &maths.to_string()]);
        assert_eq!(course["student_ids"], names(&[bob]));
        assert_eq!(
            shared.enrolment(&["leave", &bob.to_string(), &maths.to_string()]),
            json!({"ok": true})
        );
        assert!(courses.course(maths).expect("read").students.is_empty());
        assert!(courses.student(bob).expect("read").courses.is_empty());

        // annals writes Python's bytes: the course Python registered,
        // decoded and encoded again, is the same event.
        let stored = courses
            .app()
            .recorder()
            .read(&DcbQuery::all(), None, Some(1))
            .expect("read")
            .events
            .remove(0);
        let decoded: CourseRegistered = dcb::decode(&stored).expect("decode");
        assert_eq!(decoded.places, 2);
        assert_eq!(dcb::encode(&decoded).expect("encode"), stored.event);
    }

    /// annals' decision reads the course and the student; Python takes
    /// the last seat before annals appends: annals' condition fails, it
    /// decides again and refuses. Then the reverse: Python's group is
    /// read, annals takes the seat, and Python's save fails its condition
    /// (an `IntegrityError`); an append outside Python's boundary does not.
    #[test]
    fn each_sides_condition_fails_when_the_other_appended_in_its_boundary() {
        let Some(shared) = Shared::new("dcb_enrolment_conflicts") else {
            return;
        };
        let courses = shared.courses();
        let maths = courses.register_course("Maths", 1).expect("register");
        let (ada, bob) = (
            courses.register_student("Ada", 3).expect("register"),
            courses.register_student("Bob", 3).expect("register"),
        );
        let join = JoinCourse {
            student: ada,
            course: maths,
        };
        let mut tries = 0;
        let outcome = courses.app().decide(join.state(), |state| {
            tries += 1;
            if tries == 1 {
                let out = shared.enrolment(&["join", &bob.to_string(), &maths.to_string()]);
                assert_eq!(out, json!({"ok": true}));
            }
            join.decide(state)
        });
        assert_eq!(tries, 2, "annals decided again after Python's append");
        assert!(
            matches!(
                outcome,
                Err(CommandError::Rejected(SubscriptionError::CourseFull { .. }))
            ),
            "{outcome:?}"
        );

        // Python reads its group (Ada and Physics), annals appends in it.
        let physics = courses.register_course("Physics", 1).expect("register");
        let history = courses.register_course("History", 1).expect("register");
        let stale_join = |course: CourseId, meanwhile: &dyn Fn()| -> Value {
            let mut child = shared
                .script(
                    "enrolment_cli.py",
                    &["stale-join", &ada.to_string(), &course.to_string()],
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run the venv's python");
            let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
            let read = lines.next().expect("a line").expect("read");
            assert_eq!(read, r#"{"read": true}"#);
            meanwhile();
            let mut stdin = child.stdin.take().expect("stdin");
            writeln!(stdin, "go").expect("write");
            drop(stdin);
            let out = lines.next().expect("a line").expect("read");
            assert!(child.wait().expect("python ends").success());
            serde_json::from_str(&out).expect("JSON")
        };
        let out = stale_join(physics, &|| {
            courses.join(bob, physics).expect("Bob joins Physics");
        });
        assert_eq!(out, json!({"error": "IntegrityError"}));
        assert_eq!(courses.course(physics).expect("read").students, [bob]);
        // Outside Python's boundary (Ada, History): Bob leaves Physics
        // meanwhile, and Python's save holds.
        let out = stale_join(history, &|| {
            courses.leave(bob, physics).expect("Bob leaves Physics");
        });
        assert_eq!(out, json!({"ok": true}));
        assert_eq!(courses.course(history).expect("read").students, [ada]);
    }
}
