//! `log --follow`: new events as they are stored, and clean stops on
//! signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{annals, kennel, sqlite_file};

/// How `child` exited, if it did within `timeout` (killed otherwise).
pub(crate) fn exit_of(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
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
pub(crate) fn lines_of(child: &mut Child, want: usize, timeout: Duration) -> Vec<String> {
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
