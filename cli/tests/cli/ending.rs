//! `archive` and `delete`: a stream ended for good from the command line,
//! the log's order kept, `verify` telling ended from broken.

use annals::domain::AggregateId;
use annals::persistence::EventQuery;
use annals::prelude::*;
use annals_tests::dogs::Dog;

use crate::support::{json_lines, kennel, ok, run, school, sqlite_file, stderr, stdout, temp_path};

#[test]
fn archive_copies_the_stream_as_stored_and_a_get_says_where() {
    let file = sqlite_file("archive_cli");
    let vault = sqlite_file("archive_cli_vault");
    let (app, dogs) = kennel(&file, &[]);
    let milou = dogs[2].id();
    let stored = milou.to_stored();
    let before = app
        .recorder()
        .select_events(&stored, &EventQuery::all())
        .expect("milou");
    let base = ["--app", "School", "--sqlite", &file, "--json"];
    let heads = temp_path("archive_cli_heads.jsonl");
    ok(&[&base[..], &["verify", "--heads-out", &heads]].concat());

    // The hyphenated form finds the stream stored plain.
    let done = json_lines(&ok(&[
        &base[..],
        &["archive", &milou.to_string(), "--to", &vault],
    ]
    .concat()));
    assert_eq!(done[0]["ended"], "archived");
    assert_eq!(done[0]["removed"], 3);
    assert_eq!(done[0]["copied"], 3);
    assert_eq!(done[0]["tombstone_version"], 4);
    assert_eq!(done[0]["to"], vault.as_str());

    // The archive holds the rows as they were stored.
    let archived = school(&vault)
        .recorder()
        .select_events(&stored, &EventQuery::all())
        .expect("the archive");
    assert_eq!(archived, before);

    let app = school(&file);
    match app.get::<Dog>(milou) {
        Err(annals::Error::StreamEnded { archived_to, .. }) => {
            assert_eq!(archived_to.as_deref(), Some(vault.as_str()));
        }
        other => panic!("expected StreamEnded, got {other:?}"),
    }

    // verify: ended, not broken; its recorded head too.
    let verdict = &json_lines(&ok(&[&base[..], &["verify", "--heads", &heads]].concat()))[0];
    assert_eq!(verdict["intact"], true, "{verdict}");
    assert_eq!(verdict["ended"], 1, "{verdict}");
    assert_eq!(verdict["streams"], 2, "{verdict}");
    // `streams` says how it ended.
    let streams = json_lines(&ok(&[&base[..], &["streams"]].concat()));
    let ended: Vec<&serde_json::Value> =
        streams.iter().filter(|s| s["ended"].is_string()).collect();
    assert_eq!(ended.len(), 1, "{streams:?}");
    assert_eq!(ended[0]["id"], stored.as_str());
    assert_eq!(ended[0]["ended"], format!("archived to {vault}"));
    assert!(ended[0]["last_time"].is_string());
    // `events` shows the tombstone's JSON.
    let events = json_lines(&ok(&[&base[..], &["events", &stored]].concat()));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["state"]["ended"], "archived", "{}", events[0]);

    // Again: the stream has ended, exit 1, the archive's location named.
    let again = run(&[&base[..], &["archive", &stored, "--to", &vault]].concat());
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains(&format!("archived to {vault}")),
        "{}",
        stderr(&again)
    );
}

#[test]
fn delete_needs_yes_and_keeps_the_other_streams_ids() {
    let file = sqlite_file("delete_cli");
    // Encrypted: the tombstone is plain JSON all the same, and `log`
    // shows it.
    let key = annals::cipher::create_key();
    let (_app, dogs) = kennel(&file, &[("CIPHER_KEY", &key)]);
    let rex = dogs[1].id().to_stored();
    let cipher = format!("CIPHER_KEY={key}");
    let base = [
        "--app", "School", "--sqlite", &file, "--set", &cipher, "--json",
    ];
    let log_before = json_lines(&ok(&[&base[..], &["log"]].concat()));

    let refused = run(&[&base[..], &["delete", &rex]].concat());
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--yes"));
    assert_eq!(json_lines(&ok(&[&base[..], &["log"]].concat())), log_before);

    let done = json_lines(&ok(&[&base[..], &["delete", &rex, "--yes"]].concat()));
    assert_eq!(done[0]["ended"], "deleted");
    assert_eq!(done[0]["removed"], 2);
    assert!(done[0]["to"].is_null());

    let log_after = json_lines(&ok(&[&base[..], &["log"]].concat()));
    let others = |log: &[serde_json::Value]| -> Vec<serde_json::Value> {
        log.iter()
            .filter(|n| n["originator_id"].as_str() != Some(rex.as_str()))
            .cloned()
            .collect()
    };
    let kept = others(&log_before);
    let after = others(&log_after);
    assert_eq!(
        after, kept,
        "the other streams' notifications are as they were"
    );
    assert_eq!(
        log_after.len(),
        log_before.len() - 2 + 1,
        "rex's two gone, a tombstone"
    );
    let last = log_after.last().expect("the tombstone");
    assert_eq!(last["originator_id"], rex.as_str());
    assert_eq!(last["topic"], annals::ending::TOMBSTONE_TOPIC);
    assert_eq!(last["state"]["ended"], "deleted", "{last}");
    assert!(last["id"].as_u64() > log_before.last().and_then(|n| n["id"].as_u64()));

    let env = annals::env::Env::from_map(
        "School",
        [
            ("SQLITE_DBNAME", file.as_str()),
            ("PERSISTENCE_MODULE", "sqlite"),
            ("CIPHER_KEY", key.as_str()),
        ],
    );
    let app = Application::builder("School")
        .with_env(&env)
        .and_then(|b| b.build())
        .expect("the school");
    assert!(app.get::<Dog>(dogs[1].id()).unwrap_err().is_stream_ended());
    assert_eq!(app.get::<Dog>(dogs[2].id()).expect("milou").tricks.len(), 2);

    let missing = run(&[&base[..], &["delete", "no-such-dog", "--yes"]].concat());
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("there is no stream"),
        "{}",
        stdout(&missing)
    );
}

/// An export taken before a stream was deleted, imported again: the
/// tombstone does not stop the inserts (the versions it replaced are
/// free), so the import refuses the ended stream's events instead of
/// bringing the deleted data back.
#[test]
fn an_import_does_not_bring_an_ended_stream_back() {
    let file = sqlite_file("import_ended_cli");
    let (_app, dogs) = kennel(&file, &[]);
    let rex = dogs[1].id().to_stored();
    let base = ["--app", "School", "--sqlite", &file, "--json"];
    let exported = temp_path("import_ended_cli.jsonl");
    ok(&[&base[..], &["export", "-o", &exported]].concat());
    ok(&[&base[..], &["delete", &rex, "--yes"]].concat());
    let log_after_delete = json_lines(&ok(&[&base[..], &["log"]].concat()));

    let again = run(&[&base[..], &["import", "-i", &exported]].concat());
    assert!(!again.status.success(), "{}", stdout(&again));
    assert!(
        stderr(&again).contains("archived or deleted"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        json_lines(&ok(&[&base[..], &["log"]].concat())),
        log_after_delete,
        "nothing of the deleted stream was stored again"
    );
    let app = school(&file);
    assert!(app.get::<Dog>(dogs[1].id()).unwrap_err().is_stream_ended());
}
