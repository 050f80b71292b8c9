//! `export` and `import` between stores: SQLite and PostgreSQL, sealed
//! and plain, tracking positions, the object store, resumed imports.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use annals::persistence::postgres::PostgresConfig;
use annals::prelude::*;
use annals_tests::dogs::Dog;
use annals_tests::stores::{drop_postgres_tables, postgres_client, postgres_server, temp_dir};

use crate::support::{annals, json_lines, kennel, ok, run, school, sqlite_file, stderr, temp_path};

/// A fresh PostgreSQL application's flags, its tables dropped first.
pub(crate) fn postgres_flags(config: &PostgresConfig, app: &str) -> Vec<String> {
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
    // The killed import's transaction may still be ending on the server
    // (its COMMIT sent before the kill): a SHARE lock waits for it.
    client
        .batch_execute("BEGIN; LOCK TABLE clitarget_events IN SHARE MODE; COMMIT")
        .expect("wait for the killed import's last transaction");
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

/// The SQLite file `from` copied to a new file: the same store, as a
/// backup of it is.
fn copy_of(from: &str, name: &str) -> String {
    let to = sqlite_file(name);
    let db = rusqlite::Connection::open(from).expect("open the file");
    db.execute("VACUUM INTO ?1", [&to])
        .expect("copy the database");
    to
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
