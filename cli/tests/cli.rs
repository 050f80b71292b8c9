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
fn bad_input_is_a_clear_error_with_exit_1_and_bad_usage_exits_2() {
    let file = sqlite_file("bad");
    let (_app, _) = kennel(&file, &[]);
    // Usage errors found after parsing exit 2, as clap's do.
    let no_app = run(&["--sqlite", &file, "streams"]);
    assert_eq!(no_app.status.code(), Some(2));
    assert!(stderr(&no_app).contains("--app"), "{}", stderr(&no_app));

    let unknown = run(&["--app", "School", "--store", "nosuchstore", "streams"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("PERSISTENCE_MODULE"),
        "{}",
        stderr(&unknown)
    );

    let bad_set = run(&["--app", "School", "--set", "NOEQUALS", "streams"]);
    assert_eq!(bad_set.status.code(), Some(2));
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

/// How `child` exited, if it did within `timeout` (killed otherwise).
fn exit_of(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let status = exit_of(&mut child, Duration::from_secs(30));
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
    // Nor a tracking table, so no identity can be kept.
    db.execute_batch("DROP TABLE IF EXISTS stored_snapshots; DROP TABLE IF EXISTS tracking")
        .expect("drop the snapshot and tracking tables");
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
    assert!(lines[0].get("store").is_none(), "{}", lines[0]);
    // Its import compares every event: a second one stores nothing.
    let path = temp_path("no-identity.jsonl");
    std::fs::write(&path, &export).expect("write");
    let target = sqlite_file("no-identity");
    for expected in [6, 0] {
        let imported = json_lines(&ok(&[
            "--app", "School", "--sqlite", &target, "--json", "import", "-i", &path,
        ]));
        assert_eq!(imported[0]["events"], expected);
    }
    assert_eq!(lines.iter().filter(|l| l["kind"] == "event").count(), 6);
    assert_eq!(lines.last().map(|l| l["snapshots"].clone()), Some(0.into()));
}

/// The path of a new file in the tests' directory.
fn temp_path(name: &str) -> String {
    temp_dir().join(name).to_string_lossy().into_owned()
}

/// The SQLite file `from` copied to a new file: the same store, as a
/// backup of it is.
fn copy_of(from: &str, name: &str) -> String {
    let to = sqlite_file(name);
    let db = rusqlite::Connection::open(from).expect("open the file");
    db.execute("VACUUM INTO ?1", [&to])
        .expect("copy the database");
    to
}

/// The School application over an existing SQLite file.
fn school(file: &str) -> Application {
    Application::builder("School")
        .sqlite(file)
        .hash_chain(true)
        .build()
        .expect("the school")
}

#[test]
fn import_resumes_per_exporting_store_and_compares_what_it_finds() {
    let x = sqlite_file("shard-x");
    let y = sqlite_file("shard-y");
    let (_x_app, _) = kennel(&x, &[]);
    let (_y_app, y_dogs) = kennel(&y, &[]);
    let export = |file: &str, name: &str| {
        let path = temp_path(name);
        ok(&["--app", "School", "--sqlite", file, "export", "-o", &path]);
        path
    };
    let (x_export, y_export) = (export(&x, "shard-x.jsonl"), export(&y, "shard-y.jsonl"));
    let t = sqlite_file("shards");
    let target = ["--app", "School", "--sqlite", t.as_str(), "--json"];
    let import = |path: &str| json_lines(&ok(&[&target[..], &["import", "-i", path]].concat()));
    let first = import(&x_export);
    assert_eq!(
        (first[0]["events"].as_u64(), first[0]["skipped"].as_u64()),
        (Some(6), Some(0))
    );
    // Another store's export, whose notification ids are the same 1 to 6:
    // all of its events arrive.
    let second = import(&y_export);
    assert_eq!(
        (second[0]["events"].as_u64(), second[0]["skipped"].as_u64()),
        (Some(6), Some(0))
    );
    let header =
        |path: &str| json_lines(&std::fs::read_to_string(path).expect("export"))[0].clone();
    assert_ne!(
        header(&x_export)["store"],
        header(&y_export)["store"],
        "each store has its own identity"
    );
    assert_eq!(
        header(&export(&x, "shard-x-again.jsonl"))["store"],
        header(&x_export)["store"],
        "and keeps it"
    );

    let merged = json_lines(&ok(&[&target[..], &["streams"]].concat()));
    assert_eq!(merged.len(), 6);
    assert!(merged
        .iter()
        .any(|s| s["id"] == y_dogs[2].id().simple().to_string()));
    // Each is idempotent, in any order.
    for path in [&y_export, &x_export, &y_export] {
        let again = import(path);
        assert_eq!(
            (again[0]["events"].as_u64(), again[0]["skipped"].as_u64()),
            (Some(0), Some(6))
        );
    }
    let verdict = json_lines(&ok(&[&target[..], &["verify"]].concat()));
    assert_eq!(
        (
            verdict[0]["intact"].as_bool(),
            verdict[0]["events"].as_u64()
        ),
        (Some(true), Some(12))
    );

    // An export made before stores had an identity is compared event by
    // event: what is here is skipped, the rest stored.
    let old = std::fs::read_to_string(&y_export)
        .expect("export")
        .replacen(&format!(",\"store\":{}", header(&y_export)["store"]), "", 1);
    assert!(
        !old.lines().next().unwrap_or_default().contains("store"),
        "{old}"
    );
    let old_path = temp_path("shard-y-old.jsonl");
    std::fs::write(&old_path, old).expect("write");
    let compared = import(&old_path);
    assert_eq!(
        (
            compared[0]["events"].as_u64(),
            compared[0]["skipped"].as_u64()
        ),
        (Some(0), Some(6))
    );
    let fresh = sqlite_file("from-old");
    let into_fresh = json_lines(&ok(&[
        "--app", "School", "--sqlite", &fresh, "--json", "import", "-i", &old_path,
    ]));
    assert_eq!(into_fresh[0]["events"], 6);

    // Two stores holding the same stream at the same version with other
    // content: the import stops, naming it, and merges nothing into it.
    let z = copy_of(&y, "shard-z");
    let (y_app, z_app) = (school(&y), school(&z));
    let mut fido = y_app.get::<Dog>(y_dogs[0].id()).expect("Fido in y");
    fido.add_trick("sit".into());
    y_app.save(&mut fido).expect("save");
    let mut other = z_app.get::<Dog>(y_dogs[0].id()).expect("Fido in z");
    other.add_trick("beg".into());
    z_app.save(&mut other).expect("save");
    let later = import(&export(&y, "shard-y-later.jsonl"));
    assert_eq!(
        (later[0]["events"].as_u64(), later[0]["skipped"].as_u64()),
        (Some(1), Some(6))
    );
    // z is a copy of y: the same identity, so its position is y's; its
    // event there is not y's, so it stops before storing anything.
    let z_export = export(&z, "shard-z.jsonl");
    assert_eq!(header(&z_export)["store"], header(&y_export)["store"]);
    let fido_id = y_dogs[0].id().simple().to_string();
    for args in [
        vec!["import", "-i", z_export.as_str()],
        vec!["import", "--compare", "-i", z_export.as_str()],
    ] {
        let refused = run(&[&target[..], &args[..]].concat());
        assert_eq!(
            refused.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&refused)
        );
        let message = stderr(&refused);
        assert!(
            message.contains(&fido_id) && message.contains("version 2"),
            "{message}"
        );
    }
    let tricks = json_lines(&ok(&[&target[..], &["events", &fido_id]].concat()));
    assert_eq!(tricks.len(), 2);
    assert_eq!(tricks[1]["state"]["trick"], "sit", "y's event, not z's");
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

#[test]
fn help_lists_the_exit_codes() {
    let help = ok(&["--help"]);
    for code in ["Exit codes", "2  bad usage", "3  verify", "4  verify"] {
        assert!(help.contains(code), "{code:?} is not in {help}");
    }
}

#[test]
fn verify_says_a_store_is_not_hash_chained_with_exit_4() {
    let plain = sqlite_file("unchained");
    let (_app, _) = kennel(&plain, &[("IS_HASH_CHAINING_ENABLED", "n")]);
    let output = run(&["--app", "School", "--sqlite", &plain, "verify"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("not hash-chained"),
        "{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains("BROKEN"));
}

/// zlib and AES: a wrong key says so; no key says the states are
/// encrypted and CIPHER_KEY is missing.
#[test]
fn a_wrong_or_missing_key_is_named() {
    let sealed = sqlite_file("sealed-messages");
    let key = annals::cipher::create_key();
    let (_app, dogs) = kennel(
        &sealed,
        &[("CIPHER_KEY", &key), ("COMPRESSOR_TOPIC", "zlib")],
    );
    let wrong = format!("CIPHER_KEY={}", annals::cipher::create_key());
    let base = [
        "--app",
        "School",
        "--sqlite",
        sealed.as_str(),
        "--set",
        "COMPRESSOR_TOPIC=zlib",
    ];
    let output = run(&[&base[..], &["--set", &wrong, "verify"]].concat());
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("the key is wrong"),
        "{}",
        stderr(&output)
    );
    let milou = dogs[2].id().to_string();
    let output = run(&[&base[..], &["events", &milou]].concat());
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("encrypted") && message.contains("CIPHER_KEY"),
        "{message}"
    );
    assert!(!message.contains("not zlib data"), "{message}");
}

#[test]
fn create_table_no_does_not_make_a_mistyped_sqlite_file() {
    let missing = temp_path("no-such-store.db");
    let output = run(&[
        "--app",
        "School",
        "--sqlite",
        &missing,
        "--set",
        "CREATE_TABLE=no",
        "streams",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("annals migrate"),
        "{}",
        stderr(&output)
    );
    assert!(
        !std::path::Path::new(&missing).exists(),
        "the file was created"
    );
}

#[test]
fn one_is_not_1_events() {
    let one = sqlite_file("one");
    let app = school(&one);
    app.save(&mut Dog::register("Fido".into())).expect("save");
    let verified = ok(&["--app", "School", "--sqlite", &one, "verify"]);
    assert!(
        verified.starts_with("intact: 1 event in 1 stream "),
        "{verified}"
    );
    let listed = ok(&["--app", "School", "--sqlite", &one, "streams"]);
    assert!(listed.contains("  1 event  "), "{listed}");
}

#[test]
fn verify_checks_heads_kept_elsewhere_and_so_sees_a_deleted_last_event() {
    let file = sqlite_file("heads");
    let (_app, dogs) = kennel(&file, &[]);
    let heads = temp_path("heads.jsonl");
    let base = ["--app", "School", "--sqlite", file.as_str()];
    let said = ok(&[&base[..], &["verify", "--heads-out", &heads]].concat());
    assert!(said.contains("cannot show events cut"), "{said}");
    let written = json_lines(&std::fs::read_to_string(&heads).expect("the heads"));
    assert_eq!(written.len(), 3);
    let milou = dogs[2].id().simple().to_string();
    let head = written
        .iter()
        .find(|h| h["id"] == milou.as_str())
        .expect("Milou's head");
    assert_eq!(head["version"], 3);
    assert_eq!(head["hash"].as_str().map(str::len), Some(64));
    let checked = json_lines(&ok(
        &[&base[..], &["--json", "verify", "--heads", &heads]].concat()
    ));
    assert_eq!(checked[0]["heads_checked"], 3);

    // Milou's last event deleted: the chain that is left is whole...
    let db = rusqlite::Connection::open(&file).expect("open the file");
    let deleted = db
        .execute(
            "DELETE FROM stored_events WHERE originator_id = ?1 AND originator_version = 3",
            [&milou],
        )
        .expect("delete");
    assert_eq!(deleted, 1);
    drop(db);
    ok(&[&base[..], &["verify"]].concat());
    // ...and the recorded head shows it, for every stream or for Milou.
    for args in [
        vec!["verify", "--heads", heads.as_str()],
        vec!["verify", milou.as_str(), "--heads", heads.as_str()],
    ] {
        let output = run(&[&base[..], &["--json"], &args[..]].concat());
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {}",
            stderr(&output)
        );
        let verdict = &json_lines(&stdout(&output))[0];
        let broken = verdict["broken"].as_array().expect("broken");
        assert_eq!(broken.len(), 1, "{verdict}");
        assert_eq!(broken[0]["id"], milou.as_str());
        assert_eq!(broken[0]["version"], 3);
        assert!(
            broken[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("missing")),
            "{verdict}"
        );
    }
    // Heads of a broken store are not written.
    let refused = run(&[
        &base[..],
        &[
            "verify",
            "--heads",
            &heads,
            "--heads-out",
            &temp_path("heads-2.jsonl"),
        ],
    ]
    .concat());
    assert_eq!(refused.status.code(), Some(1));
}

#[test]
fn verify_of_one_stream_whose_events_are_all_gone_says_it_is_broken() {
    let file = sqlite_file("heads-gone");
    let (_app, dogs) = kennel(&file, &[]);
    let heads = temp_path("heads-gone.jsonl");
    let base = ["--app", "School", "--sqlite", file.as_str()];
    ok(&[&base[..], &["verify", "--heads-out", &heads]].concat());
    let rex = dogs[1].id().simple().to_string();
    let db = rusqlite::Connection::open(&file).expect("open the file");
    let deleted = db
        .execute("DELETE FROM stored_events WHERE originator_id = ?1", [&rex])
        .expect("delete");
    assert!(deleted > 0);
    drop(db);
    // By either form of its id.
    for id in [rex.clone(), dogs[1].id().hyphenated().to_string()] {
        let output = run(&[&base[..], &["--json", "verify", &id, "--heads", &heads]].concat());
        assert_eq!(output.status.code(), Some(3), "{id}: {}", stderr(&output));
        let verdict = &json_lines(&stdout(&output))[0];
        assert_eq!(verdict["heads_checked"], 1, "{verdict}");
        let broken = verdict["broken"].as_array().expect("broken");
        assert_eq!(broken.len(), 1, "{verdict}");
        assert_eq!(broken[0]["id"], rex.as_str());
        assert!(
            broken[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("gone")),
            "{verdict}"
        );
    }
    // Without a recorded head it is a stream that is not there.
    let output = run(&[&base[..], &["verify", &rex]].concat());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("no stream"), "{}", stderr(&output));
}

#[test]
fn heads_out_replaces_the_file_whole_never_writing_over_it() {
    let file = sqlite_file("heads-replace");
    let (_app, _) = kennel(&file, &[]);
    let heads = temp_path("heads-replace.jsonl");
    let base = ["--app", "School", "--sqlite", file.as_str()];
    let previous = "{\"id\":\"earlier\",\"version\":1,\"hash\":\"00\"}\n";
    std::fs::write(&heads, previous).expect("earlier heads");
    // A second name for the earlier file: writing in place would change
    // it too; a new file renamed over the name leaves it as it was.
    let kept = temp_path("heads-replace-kept.jsonl");
    std::fs::hard_link(&heads, &kept).expect("a hard link");
    ok(&[&base[..], &["verify", "--heads-out", &heads]].concat());
    assert_eq!(
        json_lines(&std::fs::read_to_string(&heads).expect("heads")).len(),
        3
    );
    assert_eq!(std::fs::read_to_string(&kept).expect("kept"), previous);
    let dir = std::path::Path::new(&heads).parent().expect("a directory");
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("the directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn log_follow_stops_cleanly_on_sigint_sigterm_and_sighup() {
    let file = sqlite_file("follow-signal");
    let (_app, _) = kennel(&file, &[]);
    for signal in ["-INT", "-TERM", "-HUP"] {
        let mut child = annals()
            .args([
                "--app", "School", "--sqlite", &file, "--json", "log", "--follow",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn annals log --follow");
        let shown = lines_of(&mut child, 6, Duration::from_secs(30));
        assert_eq!(shown.len(), 6, "the history");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = exit_of(&mut child, Duration::from_secs(30));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{signal}: stopped with exit 0"
        );
    }
}
