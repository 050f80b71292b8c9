//! `import_events` by COPY: followers woken at its commit, ids in the
//! batch's order after a concurrent save's, uuid columns, and rows the
//! server could not take refused before anything is sent.

use std::sync::Arc;
use std::time::Duration;

use annals::persistence::wake::Signal;
use annals::persistence::{
    AggregateRecorder, ApplicationRecorder, NotificationQuery, ProcessRecorder, StoredEvent,
    Tracking,
};
use uuid::Uuid;

use crate::{fresh, server, text_config};

fn row(id: &str, version: u64) -> StoredEvent {
    StoredEvent {
        originator_id: id.into(),
        originator_version: version,
        topic: "T".into(),
        state: vec![0, 1, 2, 255],
    }
}

#[test]
fn a_copied_batch_wakes_followers_and_keeps_the_log_in_commit_order() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("a_copied_batch_wakes_followers (set POSTGRES_DBNAME)");
    };
    let r = Arc::new(fresh(&config, "import_wakes"));
    let signal = Signal::new();
    let watch = r.watch(&signal).expect("watch");
    assert!(watch.is_watching(), "PostgreSQL listens for its NOTIFY");
    r.insert_events(&[row("saved", 1)]).expect("a save");
    signal.wait(Duration::from_secs(5));
    let batch: Vec<StoredEvent> = (1..=1000).map(|v| row("copied", v)).collect();
    let at = Tracking {
        application_name: "an import".into(),
        notification_id: 1000,
    };
    // A save beside the import: both stored, each id once, the batch's in
    // its order and together (the table lock orders the transactions).
    let saver = {
        let r = r.clone();
        std::thread::spawn(move || r.insert_events(&[row("beside", 1)]).expect("a save"))
    };
    assert_eq!(r.import_events(&batch, Some(&at)).expect("copied"), 1000);
    saver.join().expect("the saver");
    // The import alone, once the signal is down: its commit raises it.
    while signal.wait(Duration::from_millis(200)) {}
    assert_eq!(
        r.import_events(&[row("alone", 1)], None).expect("copied"),
        1
    );
    assert!(
        signal.wait(Duration::from_secs(5)),
        "the import's commit notified the followers"
    );
    let log = r
        .select_notifications(&NotificationQuery::new(1, 10_000))
        .expect("the log");
    assert_eq!(log.len(), 1003);
    let copied: Vec<(u64, u64)> = log
        .iter()
        .filter(|n| n.event.originator_id == "copied")
        .map(|n| (n.id, n.event.originator_version))
        .collect();
    assert!(
        copied
            .windows(2)
            .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1),
        "the batch's ids are consecutive, in its order"
    );
    assert_eq!(log[1].event.state, [0, 1, 2, 255], "bytes kept");
    assert_eq!(r.max_tracking_id("an import").expect("max"), 1000);
}

#[test]
fn uuid_columns_are_copied_and_rows_the_server_cannot_take_are_refused_first() {
    let Some(config) = server() else {
        return annals_tests::skipped("uuid_columns_are_copied (set POSTGRES_DBNAME)");
    };
    let r = fresh(&config, "import_uuids");
    let id = Uuid::new_v4().simple().to_string();
    assert_eq!(
        r.import_events(&[row(&id, 1), row(&id, 2)], None)
            .expect("copied"),
        2
    );
    let stored = r
        .select_events(&id, &annals::persistence::EventQuery::all())
        .expect("the stream");
    assert_eq!(stored.len(), 2);
    // Not a UUID for a uuid column; a NUL in a topic: refused, nothing sent.
    let other = Uuid::new_v4().simple().to_string();
    let refused = r
        .import_events(&[row(&other, 1), row("not a uuid", 1)], None)
        .expect_err("not a UUID");
    assert!(refused.to_string().contains("not a uuid"), "{refused}");
    let mut nul = row(&other, 1);
    nul.topic = "T\0".into();
    assert!(r.import_events(&[nul], None).is_err());
    assert_eq!(
        r.max_notification_id().expect("max"),
        2,
        "nothing more stored"
    );
}
