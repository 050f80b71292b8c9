//! `import` at the database's speed, `import --dry-run` and `export
//! --from`, on SQLite always and on PostgreSQL and MariaDB/MySQL when
//! configured: a round trip keeps every row, a batch with a conflict
//! stores nothing, an interrupted import resumes storing each event once.

use std::collections::BTreeSet;

use serde_json::Value;

use annals_tests::stores::{mysql_server, postgres_server};

use crate::export_import::postgres_flags;
use crate::mysql::mysql_flags;
use crate::support::{json_lines, kennel, ok, run, sqlite_file, stderr, temp_path};

/// The events of an export, without their notification ids (each store
/// gives its own).
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

/// The lines of an export file.
fn lines_of(export: &str) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(export).expect("the export"))
}

fn with<'a>(target: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    target
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect()
}

/// The (stream, version) of each event in the target's log, in order.
fn log_of(target: &[String]) -> Vec<(String, u64)> {
    json_lines(&ok(&with(target, &["--json", "log"])))
        .into_iter()
        .map(|n| {
            (
                n["originator_id"].as_str().expect("an id").to_owned(),
                n["originator_version"].as_u64().expect("a version"),
            )
        })
        .collect()
}

/// The position the target keeps for imports (its one import marker).
fn import_position(target: &[String]) -> Option<u64> {
    json_lines(&ok(&with(target, &["--json", "followers"])))
        .into_iter()
        .find(|f| {
            f["upstream"]
                .as_str()
                .is_some_and(|u| u.starts_with("annals import of "))
        })
        .map(|f| f["position"].as_u64().expect("a position"))
}

/// The three dogs' six events (Fido 1; Rex 1, 2; Milou 1, 2, 3), exported
/// from a new SQLite store: the export, and the store's file.
fn exported(name: &str) -> (String, String) {
    let file = sqlite_file(name);
    let _ = std::fs::remove_file(&file);
    let (app, _) = kennel(&file, &[]);
    drop(app);
    let export = temp_path(&format!("{name}.jsonl"));
    ok(&[
        "--app", "School", "--sqlite", &file, "export", "-o", &export,
    ]);
    (export, file)
}

/// A new SQLite store's flags.
fn sqlite_target(name: &str) -> Vec<String> {
    let file = sqlite_file(name);
    let _ = std::fs::remove_file(&file);
    ["--app", "School", "--sqlite", &file]
        .map(str::to_owned)
        .to_vec()
}

/// Round trip, dry run, conflict, interruption: on the store of `target`
/// (made anew by `fresh`).
fn bulk_import_on(name: &str, fresh: &dyn Fn() -> Vec<String>) {
    let (export, _) = exported(name);
    let events: Vec<Value> = lines_of(&export)
        .into_iter()
        .filter(|l| l["kind"] == "event")
        .collect();
    assert_eq!(events.len(), 6);

    // A dry run reads and checks it all, and stores nothing.
    let target = fresh();
    let dry = json_lines(&ok(&with(
        &target,
        &["--json", "import", "-i", &export, "--dry-run"],
    )));
    assert_eq!(dry[0]["events"], 6, "{}", dry[0]);
    assert_eq!(dry[0]["dry_run"], true);
    assert!(log_of(&target).is_empty(), "a dry run stored events");
    assert_eq!(
        import_position(&target),
        None,
        "a dry run stored a position"
    );

    // The round trip: every row as exported, the position at the end.
    let stored = json_lines(&ok(&with(&target, &["--json", "import", "-i", &export])));
    assert_eq!(stored[0]["events"], 6, "{}", stored[0]);
    let back = temp_path(&format!("{name}-back.jsonl"));
    ok(&with(&target, &["export", "-o", &back]));
    assert_eq!(rows_of(&back), rows_of(&export));
    assert_eq!(import_position(&target), Some(6));
    // A dry run now finds it all here, to be skipped.
    let dry = json_lines(&ok(&with(
        &target,
        &["--json", "import", "-i", &export, "--dry-run", "--compare"],
    )));
    assert_eq!(
        (dry[0]["events"].as_u64(), dry[0]["skipped"].as_u64()),
        (Some(0), Some(6))
    );

    // Milou's version 2 is here already with other content: the batch
    // that holds it (the third of two events) stores nothing, the two
    // before it are kept with their position.
    let target = fresh();
    let milou = events[4]["originator_id"].as_str().expect("Milou's id");
    assert_eq!(events[4]["originator_version"], 2);
    let other = temp_path(&format!("{name}-other.jsonl"));
    let mut line = events[4].clone();
    line["state"] = serde_json::json!({ "plain": "{\"name\":\"not Milou\"}" });
    std::fs::write(
        &other,
        format!(
            "{}\n{line}\n{}\n",
            serde_json::json!({"kind": "header", "format": "annals-export", "version": 1, "application": "Elsewhere"}),
            serde_json::json!({"kind": "end", "events": 1, "snapshots": 0, "tracking": 0}),
        ),
    )
    .expect("write the other export");
    ok(&with(&target, &["import", "-i", &other]));
    let failed = run(&with(&target, &["import", "-i", &export, "--batch", "2"]));
    assert!(!failed.status.success(), "a conflict must fail the import");
    let error = stderr(&failed);
    assert!(
        error.contains(milou) && error.contains("version 2"),
        "the error names the stream and version: {error}"
    );
    let log = log_of(&target);
    assert_eq!(
        log.len(),
        1 + 4,
        "the batches before, and nothing of the third: {log:?}"
    );
    assert!(
        !log.contains(&(milou.to_owned(), 3)),
        "Milou's version 3, in the failed batch, was stored"
    );
    assert_eq!(
        import_position(&target),
        Some(4),
        "the position of the batches stored"
    );

    // Interrupted: an export cut short after five events stores those
    // (in batches of two, with the position), then fails; the whole file
    // again stores the sixth only.
    let target = fresh();
    let cut = temp_path(&format!("{name}-cut.jsonl"));
    let text = std::fs::read_to_string(&export).expect("the export");
    let head: Vec<&str> = text.lines().take(6).collect();
    std::fs::write(&cut, head.join("\n") + "\n").expect("write the cut export");
    let failed = run(&with(&target, &["import", "-i", &cut, "--batch", "2"]));
    assert!(!failed.status.success());
    assert!(stderr(&failed).contains("cut short"), "{}", stderr(&failed));
    assert_eq!(log_of(&target).len(), 5);
    assert_eq!(import_position(&target), Some(5));
    let resumed = json_lines(&ok(&with(
        &target,
        &["--json", "import", "-i", &export, "--batch", "2"],
    )));
    assert_eq!(
        (
            resumed[0]["events"].as_u64(),
            resumed[0]["skipped"].as_u64()
        ),
        (Some(1), Some(5)),
        "{}",
        resumed[0]
    );
    assert_eq!(resumed[0]["resumed_after"], 5);
    let log = log_of(&target);
    let once: BTreeSet<&(String, u64)> = log.iter().collect();
    assert_eq!((log.len(), once.len()), (6, 6), "each event once: {log:?}");

    // The save path (kept to compare with) stores the same.
    let target = fresh();
    ok(&with(&target, &["import", "-i", &export, "--save-path"]));
    let back = temp_path(&format!("{name}-saved.jsonl"));
    ok(&with(&target, &["export", "-o", &back]));
    assert_eq!(rows_of(&back), rows_of(&export));
}

#[test]
fn bulk_import_round_trips_stores_nothing_of_a_conflicting_batch_and_resumes_on_sqlite() {
    let made = std::sync::atomic::AtomicUsize::new(0);
    bulk_import_on("bulk-sqlite", &|| {
        let n = made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sqlite_target(&format!("bulk-sqlite-target-{n}"))
    });
}

#[test]
fn bulk_import_round_trips_stores_nothing_of_a_conflicting_batch_and_resumes_on_postgres() {
    let Some(config) = postgres_server() else {
        annals_tests::skipped("bulk_import_..._on_postgres (set POSTGRES_DBNAME)");
        return;
    };
    bulk_import_on("bulk-postgres", &|| postgres_flags(&config, "CliBulk"));
}

#[test]
fn bulk_import_round_trips_stores_nothing_of_a_conflicting_batch_and_resumes_on_mysql() {
    let Some(config) = mysql_server() else {
        annals_tests::skipped("bulk_import_..._on_mysql (set MYSQL_DBNAME)");
        return;
    };
    bulk_import_on("bulk-mysql", &|| mysql_flags(&config, "CliBulk"));
}

#[test]
fn export_from_a_notification_id_writes_the_rest_and_its_import_resumes() {
    let (export, file) = exported("from");
    let rest = temp_path("from-4.jsonl");
    ok(&[
        "--app", "School", "--sqlite", &file, "export", "--from", "4", "-o", &rest,
    ]);
    let lines = lines_of(&rest);
    assert_eq!(lines[0]["from"], 4, "the header says where it starts");
    let ids: Vec<u64> = lines
        .iter()
        .filter(|l| l["kind"] == "event")
        .map(|l| l["notification_id"].as_u64().expect("an id"))
        .collect();
    assert_eq!(ids, [4, 5, 6]);
    assert_eq!(lines.last().expect("the end")["events"], 3);

    // The first three, then the rest from --from 4: each event once, and
    // the position moves on.
    let target = sqlite_target("from-target");
    let cut = temp_path("from-first.jsonl");
    let text = std::fs::read_to_string(&export).expect("the export");
    let mut head: Vec<String> = text.lines().take(4).map(str::to_owned).collect();
    head.push(r#"{"kind":"end","events":3,"snapshots":0,"tracking":0}"#.to_owned());
    std::fs::write(&cut, head.join("\n") + "\n").expect("write");
    ok(&with(&target, &["import", "-i", &cut]));
    let done = json_lines(&ok(&with(&target, &["--json", "import", "-i", &rest])));
    assert_eq!(done[0]["events"], 3, "{}", done[0]);
    assert_eq!(log_of(&target).len(), 6);
    assert_eq!(import_position(&target), Some(6));

    // Into a store without the first three, the rest is stored but no
    // position is kept (it would claim the three): the whole export then
    // stores the three, comparing the rest.
    let target = sqlite_target("from-gap");
    let gap = run(&with(&target, &["--json", "import", "-i", &rest]));
    assert!(gap.status.success(), "{}", stderr(&gap));
    assert!(stderr(&gap).contains("not kept"), "{}", stderr(&gap));
    assert_eq!(import_position(&target), None);
    let whole = json_lines(&ok(&with(&target, &["--json", "import", "-i", &export])));
    assert_eq!(
        (whole[0]["events"].as_u64(), whole[0]["skipped"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(log_of(&target).len(), 6);

    // --from 0 is refused by the grammar.
    let zero = run(&[
        "--app", "School", "--sqlite", &file, "export", "--from", "0",
    ]);
    assert_eq!(zero.status.code(), Some(2));
}
