//! The built `annals` binary against SQLite and PostgreSQL stores that the
//! tests make: exit codes, what each command shows, `--json` output that
//! parses, and export/import between stores (100,000 events, an import
//! killed halfway).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use annals::persistence::postgres::PostgresConfig;
use annals::prelude::*;
use annals_tests::dogs::Dog;
use annals_tests::stores::{drop_postgres_tables, postgres_client, postgres_server, temp_dir};
use serde_json::Value;

/// The binary, with no store settings from the environment of the tests
/// (CI exports the PostgreSQL server's).
fn annals() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    for var in [
        "PERSISTENCE_MODULE",
        "SQLITE_DBNAME",
        "CIPHER_KEY",
        "COMPRESSOR_TOPIC",
        "IS_HASH_CHAINING_ENABLED",
        "RUST_LOG",
        "ANNALS_APP",
    ] {
        command.env_remove(var);
    }
    command
}

fn run(args: &[&str]) -> Output {
    annals().args(args).output().expect("run annals")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and expects exit code 0.
fn ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "annals {args:?} failed ({}): {}",
        output.status,
        stderr(&output)
    );
    stdout(&output)
}

/// Every line of `text`, parsed as JSON.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

fn sqlite_file(name: &str) -> String {
    temp_dir()
        .join(format!("{name}.db"))
        .to_string_lossy()
        .into_owned()
}

/// Three dogs of 1, 2 and 3 events in a hash-chained SQLite store.
fn kennel(file: &str, settings: &[(&str, &str)]) -> (Application, Vec<Dog>) {
    let mut vars = vec![
        ("PERSISTENCE_MODULE", "sqlite"),
        ("SQLITE_DBNAME", file),
        ("IS_HASH_CHAINING_ENABLED", "y"),
    ];
    vars.extend_from_slice(settings);
    let env = annals::env::Env::from_map("School", vars);
    let app = Application::builder("School")
        .with_env(&env)
        .and_then(|b| b.build())
        .expect("the school");
    let mut dogs = Vec::new();
    for (name, tricks) in [("Fido", 0), ("Rex", 1), ("Milou", 2)] {
        let mut dog = Dog::register(name.into());
        for trick in ["sit", "roll"].iter().take(tricks) {
            dog.add_trick((*trick).into());
        }
        app.save(&mut dog).expect("save");
        dogs.push(dog);
    }
    (app, dogs)
}

#[test]
fn verify_names_the_first_broken_link_and_exits_3() {
    let file = sqlite_file("verify");
    let (_app, dogs) = kennel(&file, &[]);
    let base = ["--app", "School", "--sqlite", &file, "--json"];
    let all = json_lines(&ok(&[&base[..], &["verify"]].concat()));
    assert_eq!(all[0]["intact"], true);
    assert_eq!(all[0]["streams"], 3);
    assert_eq!(all[0]["events"], 6);
    let milou = dogs[2].id().to_string();
    let one = json_lines(&ok(&[&base[..], &["verify", &milou]].concat()));
    assert_eq!(one[0]["events"], 3);

    // Change a trick in Milou's second event, as a hand on the file would.
    let db = rusqlite::Connection::open(&file).expect("open the file");
    let changed = db
        .execute(
            "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), 'sit', 'beg') AS BLOB) \
             WHERE originator_id = ?1 AND originator_version = 2",
            [dogs[2].id().simple().to_string()],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    drop(db);

    for args in [vec!["verify"], vec!["verify", milou.as_str()]] {
        let output = run(&[&base[..], &args[..]].concat());
        assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
        let verdict = &json_lines(&stdout(&output))[0];
        assert_eq!(verdict["intact"], false);
        let broken = verdict["broken"].as_array().expect("broken links");
        assert_eq!(broken.len(), 1, "only Milou's chain is broken: {verdict}");
        assert_eq!(broken[0]["id"], dogs[2].id().simple().to_string());
        assert_eq!(broken[0]["version"], 2);
        assert!(broken[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("hash does not match")));
    }
    // Without --json, the text names the link.
    let output = run(&["--app", "School", "--sqlite", &file, "verify"]);
    assert_eq!(output.status.code(), Some(3));
    let stored = dogs[2].id().simple();
    assert!(stdout(&output).contains(&format!("stream {stored} at version 2")));
}

#[test]
fn streams_events_log_and_info_decode_and_never_show_the_key() {
    let file = sqlite_file("inspect");
    let key = annals::cipher::create_key();
    let (_app, dogs) = kennel(&file, &[("CIPHER_KEY", &key), ("COMPRESSOR_TOPIC", "zlib")]);
    let base = [
        "--app",
        "School",
        "--sqlite",
        &file,
        "--set",
        &format!("CIPHER_KEY={key}"),
        "--set",
        "COMPRESSOR_TOPIC=zlib",
        "--json",
    ];
    let base: Vec<&str> = base.iter().map(|s| s.as_ref()).collect();
    let with = |args: &[&str]| ok(&[&base[..], args].concat());

    let streams = json_lines(&with(&["streams"]));
    assert_eq!(streams.len(), 3);
    // SQLite stores UUIDs as plain hex; the tool takes either form.
    assert_eq!(streams[2]["id"], dogs[2].id().simple().to_string());
    assert_eq!(streams[2]["version"], 3);
    assert_eq!(streams[2]["events"], 3);
    assert!(streams[2]["last_time"].as_str().is_some(), "{}", streams[2]);

    let milou = dogs[2].id().to_string();
    let events = json_lines(&with(&["events", &milou]));
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["topic"], "Dog.Registered");
    assert_eq!(events[0]["state"]["name"], "Milou");
    assert_eq!(events[2]["state"]["trick"], "roll");
    let middle = json_lines(&with(&["events", &milou, "--from", "2", "--to", "2"]));
    assert_eq!(middle.len(), 1);
    assert_eq!(middle[0]["originator_version"], 2);

    let log = json_lines(&with(&["log"]));
    assert_eq!(log.len(), 6);
    let ids: Vec<u64> = log.iter().filter_map(|n| n["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let tricks = json_lines(&with(&[
        "log",
        "--topics",
        "Dog.TrickAdded",
        "--limit",
        "2",
    ]));
    assert_eq!(tricks.len(), 2);
    assert!(tricks.iter().all(|n| n["topic"] == "Dog.TrickAdded"));
    let later = json_lines(&with(&["log", "--from", &ids[4].to_string()]));
    assert_eq!(later.len(), 2);

    let info_text = with(&["info"]);
    assert!(!info_text.contains(&key), "info showed the key");
    let info = &json_lines(&info_text)[0];
    assert_eq!(info["events"], 6);
    assert_eq!(info["streams"], 3);
    let setting = |name: &str| {
        info["settings"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not in {info}"))
    };
    assert_eq!(setting("CIPHER_KEY")["value"], "(set)");
    assert_eq!(setting("COMPRESSOR_TOPIC")["value"], "zlib");
    assert_eq!(setting("PERSISTENCE_MODULE")["value"], "sqlite");

    // With the wrong key the streams are listed, their times unknown, and
    // reading an event is an error that names it.
    let other = annals::cipher::create_key();
    let wrong = [
        "--app",
        "School",
        "--sqlite",
        &file,
        "--set",
        &format!("CIPHER_KEY={other}"),
        "--set",
        "COMPRESSOR_TOPIC=zlib",
        "--json",
    ];
    let listed = run(&[&wrong[..], &["streams"]].concat());
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(json_lines(&stdout(&listed))
        .iter()
        .all(|s| s["last_time"].is_null()));
    assert!(stderr(&listed).contains("do"), "{}", stderr(&listed));
    let read = run(&[&wrong[..], &["events", &milou]].concat());
    assert_eq!(read.status.code(), Some(1));
    let stored = dogs[2].id().simple().to_string();
    assert!(stderr(&read).contains(&stored), "{}", stderr(&read));
}

#[test]
fn keygen_makes_a_key_the_library_takes() {
    let made = json_lines(&ok(&["keygen", "--json"]));
    let key = made[0]["key"].as_str().expect("a key").to_owned();
    let app = Application::builder("Keyed")
        .cipher_key(key)
        .build()
        .expect("the key is taken");
    let mut dog = Dog::register("Fido".into());
    app.save(&mut dog).expect("save");
    assert_eq!(app.get::<Dog>(dog.id()).expect("get").name, "Fido");
    assert_ne!(
        ok(&["keygen"]).trim(),
        made[0]["key"].as_str().unwrap_or_default(),
        "keys differ"
    );
}

#[test]
fn bad_input_is_a_clear_error_with_exit_1() {
    let file = sqlite_file("bad");
    let (_app, _) = kennel(&file, &[]);
    let no_app = run(&["--sqlite", &file, "streams"]);
    assert_eq!(no_app.status.code(), Some(1));
    assert!(stderr(&no_app).contains("--app"), "{}", stderr(&no_app));

    let unknown = run(&["--app", "School", "--store", "nosuchstore", "streams"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("PERSISTENCE_MODULE"),
        "{}",
        stderr(&unknown)
    );

    let bad_set = run(&["--app", "School", "--set", "NOEQUALS", "streams"]);
    assert_eq!(bad_set.status.code(), Some(1));
    assert!(stderr(&bad_set).contains("NAME=VALUE"));

    let usage = run(&["--app", "School", "nosuchcommand"]);
    assert_eq!(usage.status.code(), Some(2));

    let dir = temp_dir();
    let export = dir.join("school.jsonl");
    let export = export.to_str().expect("UTF-8 path");
    ok(&["--app", "School", "--sqlite", &file, "export", "-o", export]);
    let text = std::fs::read_to_string(export).expect("the export");
    let lines: Vec<&str> = text.lines().collect();
    let target = sqlite_file("bad-target");
    let import = |content: &str| {
        let path = dir.join("broken.jsonl");
        std::fs::write(&path, content).expect("write");
        run(&[
            "--app",
            "School",
            "--sqlite",
            &target,
            "import",
            "-i",
            path.to_str().expect("UTF-8 path"),
        ])
    };
    let garbage = format!("{}\n{}\n{{not json\n", lines[0], lines[1]);
    let output = import(&garbage);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("line 3"), "{}", stderr(&output));

    let cut = lines[..lines.len() - 1].join("\n");
    let output = import(&cut);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cut short"), "{}", stderr(&output));

    let output = import("{\"kind\":\"end\",\"events\":0,\"snapshots\":0,\"tracking\":0}\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("header"), "{}", stderr(&output));
}

#[test]
fn migrate_creates_the_tables_for_create_table_no() {
    let file = sqlite_file("migrate");
    let base = [
        "--app",
        "School",
        "--sqlite",
        &file,
        "--set",
        "CREATE_TABLE=no",
    ];
    let before = run(&[&base[..], &["streams"]].concat());
    assert_eq!(before.status.code(), Some(1), "no tables yet");
    let migrated = json_lines(&ok(&[&base[..], &["--json", "migrate"]].concat()));
    assert_eq!(migrated[0]["migrated"], "School");
    assert_eq!(ok(&[&base[..], &["streams"]].concat()), "");
}

/// Reads `child`'s stdout lines on a thread, giving up after `timeout`.
fn lines_of(child: &mut Child, want: usize, timeout: Duration) -> Vec<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    while lines.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match receive.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    lines
}

#[test]
fn log_follow_shows_new_events_as_they_are_stored() {
    let file = sqlite_file("follow");
    let (app, mut dogs) = kennel(&file, &[]);
    let mut child = annals()
        .args(["--app", "School", "--sqlite", &file, "--json"])
        .args(["log", "--follow", "--from", "6", "--limit", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn annals log --follow");
    let first = lines_of(&mut child, 1, Duration::from_secs(30));
    assert_eq!(first.len(), 1, "the history's last event");
    dogs[0].add_trick("fetch".into());
    dogs[1].add_trick("beg".into());
    app.save(&mut dogs[0]).expect("save");
    app.save(&mut dogs[1]).expect("save");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "log --follow --limit 3 ends after the third event"
    );
}

/// A fresh PostgreSQL application's flags, its tables dropped first.
fn postgres_flags(config: &PostgresConfig, app: &str) -> Vec<String> {
    drop_postgres_tables(config, app);
    let mut flags = vec![
        "--app".to_owned(),
        app.to_owned(),
        "--postgres".to_owned(),
        config.dbname.clone(),
    ];
    for (name, value) in [
        ("POSTGRES_HOST", config.host.clone()),
        ("POSTGRES_PORT", config.port.to_string()),
        ("POSTGRES_USER", config.user.clone()),
    ] {
        flags.push("--set".into());
        flags.push(format!("{name}={value}"));
    }
    flags
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// The rows of an export (without notification ids, which each store
/// assigns), as a set.
fn rows_of(export: &str) -> BTreeSet<String> {
    json_lines(&std::fs::read_to_string(export).expect("the export"))
        .into_iter()
        .filter(|line| line["kind"] == "event")
        .map(|mut line| {
            line.as_object_mut().map(|o| o.remove("notification_id"));
            line.to_string()
        })
        .collect()
}

const DOGS: usize = 1_000;
const TRICKS: usize = 99;

#[test]
fn export_import_round_trips_100k_events_between_sqlite_and_postgres_and_resumes_after_a_kill() {
    let Some(config) = postgres_server() else {
        annals_tests::skipped("export_import_round_trips_100k_events (set POSTGRES_DBNAME)");
        return;
    };
    let file = sqlite_file("source");
    let app = Application::builder("Source")
        .sqlite(&file)
        .hash_chain(true)
        .build()
        .expect("the source");
    for _ in 0..DOGS / 100 {
        let mut dogs: Vec<Dog> = (0..100)
            .map(|i| {
                let mut dog = Dog::register(format!("dog {i}"));
                for t in 0..TRICKS {
                    dog.add_trick(format!("trick {t}"));
                }
                dog
            })
            .collect();
        app.save(dogs.as_mut_slice()).expect("save 10,000 events");
    }
    let total = (DOGS * (TRICKS + 1)) as u64;
    drop(app);
    let source = ["--app", "Source", "--sqlite", file.as_str()];
    let dir = temp_dir();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let exported = path("source.jsonl");
    let counts = json_lines(&ok(
        &[&source[..], &["--json", "export", "-o", &exported]].concat()
    ));
    assert_eq!(counts[0]["events"], total);

    // Into PostgreSQL, killed halfway.
    let target = postgres_flags(&config, "CliTarget");
    let target = strs(&target);
    let mut import = annals()
        .args(&target)
        .args(["import", "-i", &exported, "--batch", "500"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the import");
    let mut client = postgres_client(&config);
    let count = |client: &mut postgres::Client| -> i64 {
        client
            .query_opt("SELECT count(*) FROM clitarget_events", &[])
            .ok()
            .flatten()
            .map_or(0, |row| row.get(0))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&mut client) < 20_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    import.kill().expect("kill the import");
    import.wait().expect("reap the import");
    let at_kill = count(&mut client);
    assert!(
        (20_000..total as i64).contains(&at_kill),
        "killed halfway: {at_kill} of {total} stored"
    );
    let resumed = json_lines(&ok(
        &[&target[..], &["--json", "import", "-i", &exported]].concat()
    ));
    assert_eq!(resumed[0]["events"].as_u64(), Some(total - at_kill as u64));
    assert_eq!(resumed[0]["skipped"].as_u64(), Some(at_kill as u64));
    assert_eq!(count(&mut client), total as i64, "every event once");
    let again = json_lines(&ok(
        &[&target[..], &["--json", "import", "-i", &exported]].concat()
    ));
    assert_eq!(again[0]["events"], 0, "a second import stores nothing");
    assert_eq!(count(&mut client), total as i64);

    let verdict = json_lines(&ok(&[&target[..], &["--json", "verify"]].concat()));
    assert_eq!(verdict[0]["intact"], true, "{}", verdict[0]);
    assert_eq!(verdict[0]["events"], total);
    assert_eq!(verdict[0]["streams"], DOGS as u64);
    let from_postgres = path("postgres.jsonl");
    ok(&[&target[..], &["export", "-o", &from_postgres]].concat());
    let rows = rows_of(&exported);
    assert_eq!(rows.len(), total as usize);
    assert!(
        rows == rows_of(&from_postgres),
        "PostgreSQL holds the same rows, byte for byte"
    );

    // And back into a new SQLite file.
    let back = sqlite_file("back");
    let back = ["--app", "Source", "--sqlite", back.as_str()];
    ok(&[&back[..], &["import", "-i", &from_postgres]].concat());
    let verdict = json_lines(&ok(&[&back[..], &["--json", "verify"]].concat()));
    assert_eq!(verdict[0]["intact"], true);
    let from_back = path("back.jsonl");
    ok(&[&back[..], &["export", "-o", &from_back]].concat());
    assert!(rows == rows_of(&from_back));
    // The application reads what the tool moved.
    let moved = Application::builder("Source")
        .stores_of(
            &Application::builder("Source")
                .sqlite(back[3])
                .build()
                .expect("back"),
        )
        .build()
        .expect("the moved application");
    let first = moved.notifications(1, 1).expect("the log");
    let dog: Dog = moved
        .get(
            first[0]
                .event
                .originator_id
                .parse::<Uuid>()
                .expect("a UUID"),
        )
        .expect("a dog");
    assert_eq!(dog.tricks.len(), TRICKS);
}

#[test]
fn plain_exports_are_sealed_again_for_a_store_with_other_settings() {
    let file = sqlite_file("sealed");
    let key = annals::cipher::create_key();
    let (_app, dogs) = kennel(&file, &[("CIPHER_KEY", &key), ("COMPRESSOR_TOPIC", "zlib")]);
    let source = [
        "--app".to_owned(),
        "School".to_owned(),
        "--sqlite".to_owned(),
        file.clone(),
        "--set".to_owned(),
        format!("CIPHER_KEY={key}"),
        "--set".to_owned(),
        "COMPRESSOR_TOPIC=zlib".to_owned(),
    ];
    let source = strs(&source);
    let dir = temp_dir();
    let stored = dir.join("stored.jsonl").to_string_lossy().into_owned();
    let plain = dir.join("plain.jsonl").to_string_lossy().into_owned();
    ok(&[&source[..], &["export", "-o", &stored]].concat());
    ok(&[&source[..], &["export", "--plain", "-o", &plain]].concat());
    assert!(!std::fs::read_to_string(&stored)
        .expect("export")
        .contains("Milou"));
    assert!(std::fs::read_to_string(&plain)
        .expect("export")
        .contains("Milou"));

    // A store with another key cannot take the states as they are...
    let other = annals::cipher::create_key();
    let target_file = sqlite_file("resealed");
    let target = [
        "--app".to_owned(),
        "School".to_owned(),
        "--sqlite".to_owned(),
        target_file,
        "--set".to_owned(),
        format!("CIPHER_KEY={other}"),
        "--set".to_owned(),
        "IS_HASH_CHAINING_ENABLED=y".to_owned(),
    ];
    let target = strs(&target);
    let refused = run(&[&target[..], &["import", "-i", &stored]].concat());
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--plain"), "{}", stderr(&refused));
    assert_eq!(
        ok(&[&target[..], &["streams"]].concat()),
        "",
        "nothing stored"
    );

    // ...and takes them plain, sealed with its own key; chains still hold.
    ok(&[&target[..], &["import", "-i", &plain]].concat());
    let milou = dogs[2].id().to_string();
    let events = json_lines(&ok(&[&target[..], &["--json", "events", &milou]].concat()));
    assert_eq!(events[2]["state"]["trick"], "roll");
    let verdict = json_lines(&ok(&[&target[..], &["--json", "verify"]].concat()));
    assert_eq!(verdict[0]["intact"], true, "{}", verdict[0]);
}

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

#[test]
fn tracking_positions_and_the_object_store_travel_too() {
    let file = sqlite_file("tracked");
    let (app, _) = kennel(&file, &[]);
    let tracking = annals::persistence::Tracking {
        application_name: "Upstream".into(),
        notification_id: 7,
    };
    app.recorder()
        .insert_events_tracked(&[], &tracking)
        .expect("a tracking record");
    let dir = temp_dir();
    let export = dir.join("tracked.jsonl").to_string_lossy().into_owned();
    let source = ["--app", "School", "--sqlite", &file, "--json"];
    let counts = json_lines(&ok(&[
        &source[..],
        &["export", "--tracking", "Upstream", "-o", &export],
    ]
    .concat()));
    assert_eq!(counts[0]["tracking"], 1);

    let objects = dir.join("objects").to_string_lossy().into_owned();
    let target = ["--app", "School", "--object", &objects, "--json"];
    let imported = json_lines(&ok(&[&target[..], &["import", "-i", &export]].concat()));
    assert_eq!(imported[0]["events"], 6);
    assert_eq!(imported[0]["tracking"], 1);
    let verdict = json_lines(&ok(&[&target[..], &["verify"]].concat()));
    assert_eq!(verdict[0]["intact"], true);
    assert_eq!(verdict[0]["events"], 6);
    let again = dir.join("again.jsonl").to_string_lossy().into_owned();
    ok(&[
        &target[..],
        &["export", "--tracking", "Upstream", "-o", &again],
    ]
    .concat());
    let position = json_lines(&std::fs::read_to_string(&again).expect("the export"))
        .into_iter()
        .find(|line| line["kind"] == "tracking")
        .expect("a tracking line");
    assert_eq!(position["application_name"], "Upstream");
    assert_eq!(position["notification_id"], 7);
    assert!(rows_of(&export) == rows_of(&again));
}

#[test]
fn a_store_without_a_snapshot_table_exports_with_no_snapshots() {
    let file = sqlite_file("no-snapshots");
    let (_app, _) = kennel(&file, &[]);
    let db = rusqlite::Connection::open(&file).expect("open the file");
    db.execute_batch("DROP TABLE IF EXISTS stored_snapshots")
        .expect("drop the snapshot table");
    drop(db);
    let base = [
        "--app",
        "School",
        "--sqlite",
        &file,
        "--set",
        "CREATE_TABLE=no",
    ];
    let refused = run(&[&base[..], &["export"]].concat());
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("snapshots"),
        "{}",
        stderr(&refused)
    );
    let export = ok(&[&base[..], &["export", "--no-snapshots"]].concat());
    let lines = json_lines(&export);
    assert_eq!(lines.iter().filter(|l| l["kind"] == "event").count(), 6);
    assert_eq!(lines.last().map(|l| l["snapshots"].clone()), Some(0.into()));
}
