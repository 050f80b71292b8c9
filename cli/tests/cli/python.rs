//! Stores written by the Python library: moved to PostgreSQL and read
//! back there, and the Python codec's times.

use std::process::Command;

use annals::prelude::*;
use annals_tests::stores::{drop_postgres_tables, postgres_server, temp_dir};
use serde_json::Value;

use crate::support::{annals, json_lines, run, sqlite_file, stderr, stdout};

/// Runs `tests/python/interop.py ARGS` with `settings`; its JSON output.
fn python(interpreter: &std::path::Path, settings: &[(String, String)], args: &[&str]) -> Value {
    let output = Command::new(interpreter)
        .arg("interop.py")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run the venv's python");
    assert!(
        output.status.success(),
        "python interop.py {args:?} failed: {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).expect("interop.py prints JSON")
}

#[test]
fn a_python_written_store_moves_to_postgres_and_python_reads_it_there() {
    let Some(interpreter) = std::env::var_os("ANNALS_PYTHON").map(std::path::PathBuf::from) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Python tests must run in CI: set ANNALS_PYTHON (.ci/run does)"
        );
        annals_tests::skipped("a python-written store moves (ANNALS_PYTHON is not set)");
        return;
    };
    let Some(config) = postgres_server() else {
        annals_tests::skipped("a python-written store moves (set POSTGRES_DBNAME)");
        return;
    };
    drop_postgres_tables(&config, "TrainingSchool");
    // Python's settings: zlib and AES, snapshots every 3 events.
    let common = [
        ("IS_SNAPSHOTTING_ENABLED", "yes".to_owned()),
        (
            "COMPRESSOR_TOPIC",
            "eventsourcing.compressor:ZlibCompressor".into(),
        ),
        ("CIPHER_TOPIC", "eventsourcing.cipher:AESCipher".into()),
        ("CIPHER_KEY", annals::cipher::create_key()),
    ];
    let sqlite: Vec<(String, String)> = [
        ("PERSISTENCE_MODULE", "eventsourcing.sqlite".to_owned()),
        ("SQLITE_DBNAME", sqlite_file("python")),
    ]
    .into_iter()
    .chain(common.clone())
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let postgres: Vec<(String, String)> = [
        ("PERSISTENCE_MODULE", "eventsourcing.postgres".to_owned()),
        ("POSTGRES_DBNAME", config.dbname.clone()),
        ("POSTGRES_HOST", config.host.clone()),
        ("POSTGRES_PORT", config.port.to_string()),
        ("POSTGRES_USER", config.user.clone()),
        // Python asks for one even with trust authentication.
        (
            "POSTGRES_PASSWORD",
            config.password.clone().unwrap_or_default(),
        ),
    ]
    .into_iter()
    .chain(common)
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let owner = Uuid::new_v4().to_string();
    let fido = python(
        &interpreter,
        &sqlite,
        &["register", "Fido", &owner, "sit", "roll", "fetch"],
    );
    let rex = python(&interpreter, &sqlite, &["register", "Rex", &owner]);
    let (fido, rex) = (fido.as_str().expect("an id"), rex.as_str().expect("an id"));

    let export = temp_dir()
        .join("python.jsonl")
        .to_string_lossy()
        .into_owned();
    let tool = |settings: &[(String, String)], args: &[&str]| {
        let output = annals()
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .args(["--app", "TrainingSchool", "--json"])
            .args(args)
            .output()
            .expect("run annals");
        assert!(
            output.status.success(),
            "annals {args:?}: {}",
            stderr(&output)
        );
        json_lines(&stdout(&output))
    };
    let exported = tool(&sqlite, &["export", "-o", &export]);
    assert_eq!(exported[0]["events"], 5);
    // Python's rows show their last times.
    let streams = tool(&sqlite, &["streams"]);
    assert_eq!(streams.len(), 2);
    assert!(
        streams.iter().all(|s| s["last_time"].is_string()),
        "{streams:?}"
    );
    assert_eq!(
        exported[0]["snapshots"], 1,
        "Python's snapshot at Fido's third event"
    );
    let events = tool(&sqlite, &["events", fido]);
    assert_eq!(events[0]["topic"], "dogschool:Dog.Registered");
    assert_eq!(events[3]["state"]["trick"], "fetch");
    let imported = tool(&postgres, &["import", "-i", &export]);
    assert_eq!(imported[0]["events"], 5);
    assert_eq!(imported[0]["snapshots"], 1);

    // Python reads the moved store, from its snapshot and events.
    let dogs = python(&interpreter, &postgres, &["get", fido, rex]);
    assert_eq!(
        dogs[fido]["tricks"],
        serde_json::json!(["sit", "roll", "fetch"])
    );
    assert_eq!(dogs[rex]["name"], "Rex");
    let log = tool(&postgres, &["log"]);
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|n| n["topic"]
        .as_str()
        .is_some_and(|t| t.starts_with("dogschool:Dog."))));
}

/// A dog as the Python library's `dogschool` module names it.
#[aggregate]
#[derive(Debug)]
struct PyDog {
    tricks: Vec<String>,
}

#[aggregate(name = "Dog", python = "dogschool")]
impl PyDog {
    #[event("Registered")]
    fn register(name: String) -> Self {
        let _ = name;
        PyDog { tricks: Vec::new() }
    }

    #[event("TrickAdded")]
    fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }
}

#[test]
fn streams_shows_the_last_times_of_python_codec_rows() {
    let file = sqlite_file("python-codec");
    let app = Application::builder("School")
        .sqlite(&file)
        .codec(annals::mapper::Codec::Python)
        .build()
        .expect("the school");
    let mut dog = PyDog::register("Fido".into());
    dog.add_trick("sit".into());
    app.save(&mut dog).expect("save");
    let listed = run(&["--app", "School", "--sqlite", &file, "--json", "streams"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let streams = json_lines(&stdout(&listed));
    assert_eq!(streams.len(), 1);
    let time = streams[0]["last_time"].as_str().expect("a last time");
    let stored = annals::clock::stored::parse_iso(time).expect("RFC 3339");
    assert_eq!(
        stored.timestamp_micros(),
        dog.modified_on().timestamp_micros()
    );
    assert!(
        !stderr(&listed).contains("CIPHER_KEY"),
        "{}",
        stderr(&listed)
    );
}
