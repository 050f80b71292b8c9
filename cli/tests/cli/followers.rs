//! `followers`: each upstream application a store tracks, its position,
//! and its lag behind its leader when the leader's log can be read.

use annals::persistence::Tracking;
use annals::prelude::*;
use annals_tests::stores::postgres_server;
use serde_json::Value;

use crate::export_import::postgres_flags;
use crate::support::{json_lines, kennel, ok, run, sqlite_file, stderr, temp_path};

/// An export that holds only tracking records.
fn tracking_export(name: &str, records: &[(&str, u64)]) -> String {
    let path = temp_path(&format!("{name}.jsonl"));
    let mut lines = vec![
        r#"{"kind":"header","format":"annals-export","version":1,"application":"X"}"#.to_owned(),
    ];
    for (upstream, id) in records {
        lines.push(
            serde_json::json!({"kind": "tracking", "application_name": upstream, "notification_id": id})
                .to_string(),
        );
    }
    lines.push(
        serde_json::json!({"kind": "end", "events": 0, "snapshots": 0, "tracking": records.len()})
            .to_string(),
    );
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the export");
    path
}

fn by_upstream<'a>(followers: &'a [Value], upstream: &str) -> &'a Value {
    followers
        .iter()
        .find(|f| f["upstream"] == upstream)
        .unwrap_or_else(|| panic!("{upstream} in {followers:?}"))
}

#[test]
fn followers_shows_each_upstream_s_position_and_its_lag_behind_a_leader_it_can_read() {
    // The leader: School's six events, in a file of its own.
    let leader = sqlite_file("followers-leader");
    let _ = std::fs::remove_file(&leader);
    let (app, _) = kennel(&leader, &[]);
    drop(app);
    // The follower: Report, tracking School at 2 and Billing at 1.
    let file = sqlite_file("followers-report");
    let _ = std::fs::remove_file(&file);
    let app = Application::builder("Report")
        .sqlite(&file)
        .build()
        .expect("the report");
    for (upstream, id) in [("School", 1), ("School", 2), ("Billing", 1)] {
        let tracking = Tracking {
            application_name: upstream.into(),
            notification_id: id,
        };
        app.recorder()
            .insert_events_tracked(&[], &tracking)
            .expect("track");
    }
    drop(app);
    let report = ["--app", "Report", "--sqlite", file.as_str()];
    let leader_set = format!("School:SQLITE_DBNAME={leader}");
    let args = [
        &report[..],
        &["--json", "followers", "--leader-set", &leader_set],
    ]
    .concat();
    let followers = json_lines(&ok(&args));
    assert_eq!(followers.len(), 2, "{followers:?}");
    assert_eq!(followers[0]["upstream"], "Billing", "sorted");
    let school = by_upstream(&followers, "School");
    assert_eq!(
        (
            &school["position"],
            &school["leader_position"],
            &school["lag"]
        ),
        (&Value::from(2), &Value::from(6), &Value::from(4)),
        "{school}"
    );
    // Billing's log would be Report's own tables (one application a
    // SQLite file): unknown, and said why.
    let billing = by_upstream(&followers, "Billing");
    assert_eq!(billing["position"], 1);
    assert!(billing.get("lag").is_none(), "{billing}");
    assert!(
        billing["unknown"]
            .as_str()
            .is_some_and(|why| why.contains("--leader-set")),
        "{billing}"
    );
    let text = ok(&[&report[..], &["followers", "--leader-set", &leader_set]].concat());
    assert!(
        text.contains("School\tposition 2\tleader at 6\tlag 4"),
        "{text}"
    );
    assert!(text.contains("Billing\tposition 1\tlag unknown"), "{text}");

    // No leader named: School's lag is unknown too.
    let followers = json_lines(&ok(&[&report[..], &["--json", "followers"]].concat()));
    assert!(by_upstream(&followers, "School").get("lag").is_none());

    // A malformed --leader-set is a usage error; a store that tracks
    // nothing says so.
    let bad = run(&[&report[..], &["followers", "--leader-set", "School"]].concat());
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let empty = ok(&["--app", "School", "--sqlite", &leader, "followers"]);
    assert!(empty.contains("follows no application"), "{empty}");
}

#[test]
fn followers_of_a_postgres_store_read_their_leader_s_log_beside_it() {
    let Some(config) = postgres_server() else {
        annals_tests::skipped("followers_of_a_postgres_store (set POSTGRES_DBNAME)");
        return;
    };
    // The leader: CliLeader, with the six events of the SQLite kennel.
    let source = sqlite_file("followers-pg-source");
    let _ = std::fs::remove_file(&source);
    let (app, _) = kennel(&source, &[]);
    drop(app);
    let export = temp_path("followers-pg.jsonl");
    ok(&[
        "--app", "School", "--sqlite", &source, "export", "-o", &export,
    ]);
    let leader = postgres_flags(&config, "CliLeader");
    let leader: Vec<&str> = leader.iter().map(String::as_str).collect();
    ok(&[&leader[..], &["import", "-i", &export]].concat());
    // The follower: CliFollower, at 2 of CliLeader's, and at 1 of an
    // application with no tables here.
    let follower = postgres_flags(&config, "CliFollower");
    let follower: Vec<&str> = follower.iter().map(String::as_str).collect();
    let records = tracking_export(
        "followers-pg-tracking",
        &[("CliLeader", 2), ("CliNowhere", 1)],
    );
    ok(&[&follower[..], &["import", "-i", &records]].concat());
    let followers = json_lines(&ok(&[&follower[..], &["--json", "followers"]].concat()));
    let at = by_upstream(&followers, "CliLeader");
    assert_eq!(
        (&at["position"], &at["lag"]),
        (&Value::from(2), &Value::from(4)),
        "{at}"
    );
    let nowhere = by_upstream(&followers, "CliNowhere");
    assert!(nowhere.get("lag").is_none(), "{nowhere}");
    assert!(nowhere["unknown"].is_string(), "{nowhere}");
}
