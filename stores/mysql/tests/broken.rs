//! Broken connections: the server kills the pool's connections between
//! calls, and reads and writes go on, on new ones. (A test binary of its
//! own: it kills every other connection of its user to the database.)

use annals_core::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, NotificationQuery, StoredEvent,
    TrackingLayout,
};
use annals_mysql::mysql::prelude::Queryable;

mod common;

fn row(id: &str, version: u64) -> StoredEvent {
    StoredEvent {
        originator_id: id.to_owned(),
        originator_version: version,
        topic: "T".into(),
        state: b"s".to_vec(),
    }
}

/// Kills every connection to the test database but the killer's own.
fn kill_the_others(config: &annals_mysql::MysqlConfig) -> usize {
    let mut killer = common::client(config);
    let ids: Vec<u64> = killer
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE DB = ? AND ID <> CONNECTION_ID()",
            (&config.dbname,),
        )
        .expect("the process list");
    for id in &ids {
        // One may have gone meanwhile.
        let _ = killer.query_drop(format!("KILL CONNECTION {id}"));
    }
    ids.len()
}

#[test]
fn reads_and_writes_go_on_after_the_server_kills_the_pools_connections() {
    let name = "my_broken";
    let Some(recorder) = common::fresh(name, TrackingLayout::SingleRow) else {
        return annals_core::testing::skipped(name);
    };
    let config = common::server().expect("configured");
    recorder.insert_events(&[row("a", 1)]).expect("first save");
    for round in 0..3u64 {
        // Pool a few connections, then have the server kill them all.
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| recorder.max_notification_id().expect("read"));
            }
        });
        assert!(
            kill_the_others(&config) > 0,
            "round {round}: nothing to kill"
        );
        // A read: retried on a new connection.
        assert_eq!(
            recorder
                .select_events("a", &EventQuery::all())
                .expect("a read after the kill")
                .len() as u64,
            1 + round
        );
        kill_the_others(&config);
        // A save: its group begins on a new connection.
        recorder
            .insert_events(&[row("a", 2 + round)])
            .expect("a save after the kill");
    }
    let log = recorder
        .select_notifications(&NotificationQuery::new(1, 10))
        .expect("the log");
    assert_eq!(log.len(), 4, "every save once");
}
