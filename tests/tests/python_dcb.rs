//! DCB shared with the real Python library (9.5.6, `ANNALS_PYTHON` names
//! the venv's interpreter): its `PostgresDCBRecorderTT` and annals'
//! [`PostgresDcbRecorder`] on one PostgreSQL database, in its
//! `postgres_tt` layout. Either side creates the tables first; each reads
//! by query what the other appended, exactly; conditional appends from
//! both sides conflict as the model says; a subscription on each side
//! wakes on the other's appends. `tests/python/dcb_interop.py` is the
//! Python side.

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
    match std::env::var_os("ANNALS_PYTHON") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the Python interop tests must run in CI: set ANNALS_PYTHON (.ci/run does)"
            );
            annals_tests::skipped("python DCB interop (ANNALS_PYTHON is not set)");
            None
        }
    }
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
        let mut command = Command::new(&self.python);
        command
            .arg("dcb_interop.py")
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
            .env("DCB_EVENTS_TABLE", "courses_events");
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
