//! `streams`, `events`, `log` and `info`: what they show, keys named,
//! never shown.

use annals::prelude::*;
use annals_tests::dogs::Dog;

use crate::support::{json_lines, kennel, ok, run, school, sqlite_file, stderr, stdout};

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
