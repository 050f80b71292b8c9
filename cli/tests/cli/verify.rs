//! `verify`: broken links, unchained stores, heads kept elsewhere.

use annals::prelude::*;

use crate::support::{json_lines, kennel, ok, run, sqlite_file, stderr, stdout, temp_path};

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
