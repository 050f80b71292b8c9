//! `annals dcb`: read by query, head and follow, on the DCB stores that
//! `persistence::dcb::open` opens.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use annals::env::Env;
use annals::persistence::dcb::{self, DcbEvent, DcbRecorder};
use annals_tests::stores::temp_dir;
use serde_json::json;

use crate::follow::{exit_of, lines_of};
use crate::support::{annals, json_lines, ok, run, sqlite_file, stderr};

/// Four events: two courses, a student, and the student joining course 1.
fn courses(store: &Arc<dyn DcbRecorder>) {
    store
        .append(
            &[
                DcbEvent::new("CourseRegistered", br#"{"capacity":2}"#.to_vec()).tags(["course-1"]),
                DcbEvent::new("CourseRegistered", br#"{"capacity":5}"#.to_vec()).tags(["course-2"]),
                DcbEvent::new("StudentRegistered", vec![0xff, 0x00]).tags(["student-1"]),
                DcbEvent::new("StudentJoinedCourse", b"seat 1".to_vec())
                    .tags(["student-1", "course-1"]),
            ],
            None,
        )
        .expect("append");
}

fn sqlite_store(file: &str) -> Arc<dyn DcbRecorder> {
    let env = Env::from_map(
        "Courses",
        [("PERSISTENCE_MODULE", "sqlite"), ("SQLITE_DBNAME", file)],
    );
    dcb::open("Courses", &env).expect("open")
}

#[test]
fn dcb_read_by_type_tag_after_and_limit() {
    let file = sqlite_file("dcb-read");
    courses(&sqlite_store(&file));
    let base = ["--app", "Courses", "--sqlite", file.as_str()];
    let read = |args: &[&str]| {
        let mut all: Vec<&str> = base.to_vec();
        all.extend_from_slice(&["--json", "dcb", "read"]);
        all.extend_from_slice(args);
        json_lines(&ok(&all))
    };
    let positions = |lines: &[serde_json::Value]| -> Vec<u64> {
        lines
            .iter()
            .map(|l| l["position"].as_u64().expect("a position"))
            .collect()
    };
    assert_eq!(positions(&read(&[])), [1, 2, 3, 4]);
    assert_eq!(positions(&read(&["--tag", "course-1"])), [1, 4]);
    assert_eq!(positions(&read(&["--tag", "course-1,student-1"])), [4]);
    assert_eq!(
        positions(&read(&[
            "--type",
            "CourseRegistered",
            "--type",
            "StudentRegistered"
        ])),
        [1, 2, 3]
    );
    assert_eq!(
        positions(&read(&["--type", "CourseRegistered", "--tag", "course-2"])),
        [2]
    );
    assert_eq!(positions(&read(&["--after", "1", "--limit", "2"])), [2, 3]);
    assert!(read(&["--limit", "0"]).is_empty());

    // JSON data is shown parsed too; any bytes are base64.
    let first = &read(&["--limit", "1"])[0];
    assert_eq!(first["type"], "CourseRegistered");
    assert_eq!(first["tags"], json!(["course-1"]));
    assert_eq!(first["json"], json!({"capacity": 2}));
    assert_eq!(first["data"], "eyJjYXBhY2l0eSI6Mn0=");
    let student = &read(&["--type", "StudentRegistered"])[0];
    assert_eq!(student["data"], "/wA=");
    assert!(student.get("json").is_none());

    // Text: position, type, tags, data.
    let mut args: Vec<&str> = base.to_vec();
    args.extend_from_slice(&["dcb", "read", "--tag", "student-1"]);
    assert_eq!(
        ok(&args),
        "3\tStudentRegistered\tstudent-1\tbase64:/wA=\n4\tStudentJoinedCourse\tstudent-1,course-1\tseat 1\n"
    );
}

#[test]
fn dcb_head_of_an_empty_and_a_full_store() {
    let file = sqlite_file("dcb-head");
    let store = sqlite_store(&file);
    let base = ["--app", "Courses", "--sqlite", file.as_str()];
    let mut args: Vec<&str> = base.to_vec();
    args.extend_from_slice(&["dcb", "head"]);
    assert_eq!(ok(&args), "empty\n");
    courses(&store);
    assert_eq!(ok(&args), "4\n");
    let mut args: Vec<&str> = base.to_vec();
    args.extend_from_slice(&["--json", "dcb", "head"]);
    assert_eq!(json_lines(&ok(&args)), [json!({"head": 4})]);
}

#[test]
fn dcb_on_the_object_store() {
    let dir = temp_dir().join("dcb-objects");
    let dir = dir.to_str().expect("a UTF-8 path");
    let env = Env::from_map(
        "Courses",
        [
            ("PERSISTENCE_MODULE", "object"),
            ("OBJECT_STORE_LOCATION", dir),
        ],
    );
    courses(&dcb::open("Courses", &env).expect("open"));
    let lines = json_lines(&ok(&[
        "--app", "Courses", "--object", dir, "--json", "dcb", "read", "--tag", "course-2",
    ]));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["position"], 2);
    assert_eq!(
        ok(&["--app", "Courses", "--object", dir, "dcb", "head"]),
        "4\n"
    );
}

#[test]
fn dcb_on_umadb() {
    let Ok(uri) = std::env::var("ANNALS_UMADB_URI") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the UmaDB tests must run in CI: set ANNALS_UMADB_URI (.ci/run starts a server)"
        );
        annals::testing::skipped("dcb_on_umadb");
        return;
    };
    // The server is shared: this test's own tag.
    let tag = format!("cli-{}", annals::prelude::Uuid::new_v4().simple());
    let env = Env::from_map(
        "Courses",
        [("PERSISTENCE_MODULE", "umadb"), ("UMADB_URI", uri.as_str())],
    );
    let store = dcb::open("Courses", &env).expect("open");
    let last = store
        .append(
            &[DcbEvent::new("Tagged", b"1".to_vec()).tags([tag.as_str()])],
            None,
        )
        .expect("append");
    let lines = json_lines(&ok(&[
        "--app", "Courses", "--umadb", &uri, "--json", "dcb", "read", "--tag", &tag,
    ]));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["position"], last);
    let head: u64 = ok(&["--app", "Courses", "--umadb", &uri, "dcb", "head"])
        .trim()
        .parse()
        .expect("a position");
    assert!(head >= last);
}

#[test]
fn dcb_follow_shows_new_events_until_its_limit() {
    let file = sqlite_file("dcb-follow");
    let store = sqlite_store(&file);
    courses(&store);
    let mut child = annals()
        .args(["--app", "Courses", "--sqlite", &file, "--json"])
        .args(["dcb", "follow", "--tag", "course-1", "--limit", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn annals dcb follow");
    let history = lines_of(&mut child, 2, Duration::from_secs(30));
    assert_eq!(history.len(), 2, "the history of course-1");
    store
        .append(
            &[
                DcbEvent::new("Other", b"{}".to_vec()).tags(["course-2"]),
                DcbEvent::new("StudentJoinedCourse", b"{}".to_vec()).tags(["course-1"]),
            ],
            None,
        )
        .expect("append");
    let status = exit_of(&mut child, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "dcb follow --limit 3 ends after the third event of course-1"
    );
}

#[test]
fn dcb_follow_stops_cleanly_on_sigterm() {
    let file = sqlite_file("dcb-follow-signal");
    courses(&sqlite_store(&file));
    let mut child = annals()
        .args(["--app", "Courses", "--sqlite", &file, "dcb", "follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn annals dcb follow");
    assert_eq!(lines_of(&mut child, 4, Duration::from_secs(30)).len(), 4);
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = exit_of(&mut child, Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

#[test]
fn dcb_on_a_store_without_one_is_an_error_naming_the_setting() {
    let output = run(&["--app", "Courses", "--store", "cassandra", "dcb", "head"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("PERSISTENCE_MODULE") && err.contains("no DCB store"),
        "{err}"
    );
    let output = run(&["--app", "Courses", "--store", "umadb", "dcb", "head"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("UMADB_URI"), "{}", stderr(&output));
}
