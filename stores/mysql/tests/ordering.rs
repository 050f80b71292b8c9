//! Notification order under concurrent writers: a reader that follows the
//! log never skips a row that commits late.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use annals_core::persistence::{
    AggregateRecorder, ApplicationRecorder, NotificationQuery, ProcessRecorder, StoredEvent,
    TrackingLayout,
};
use annals_mysql::mysql::prelude::Queryable;
use annals_mysql::MysqlRecorder;

mod common;

fn row(id: &str, version: u64) -> StoredEvent {
    StoredEvent {
        originator_id: id.to_owned(),
        originator_version: version,
        topic: "T".into(),
        state: vec![1, 2, 3],
    }
}

/// Two writers, each with a recorder (and pool, and group writer) of its
/// own, as two processes would have, hold each transaction open a little
/// after their rows took their ids (the user's writes sleep), while a
/// reader follows the log from the highest id it has seen. Every id at or
/// below the highest the reader saw must have been seen: an id that
/// committed after a higher one would have been skipped.
#[test]
fn a_reader_following_the_log_never_skips_a_row_that_commits_late() {
    let name = "my_order_two_writers";
    let Some(first) = common::fresh(name, TrackingLayout::SingleRow) else {
        return annals_core::testing::skipped(name);
    };
    let config = common::server().expect("configured");
    let second = MysqlRecorder::open(&config, name).expect("open");
    let finished = AtomicUsize::new(0);
    let saves_each = 60;
    let seen = std::thread::scope(|scope| {
        for (w, recorder) in [&first, &second].into_iter().enumerate() {
            let finished = &finished;
            scope.spawn(move || {
                for i in 0..saves_each {
                    let id = format!("w{w}-{i}");
                    let pause = Duration::from_millis(((i * 7 + w * 3) % 5) as u64);
                    recorder
                        .insert_events_with(&[row(&id, 1), row(&id, 2)], None, &mut |_tx| {
                            std::thread::sleep(pause);
                            Ok(())
                        })
                        .expect("save");
                }
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        let reader = scope.spawn(|| {
            let mut seen = BTreeSet::new();
            let mut high = 0;
            loop {
                // Both writers done before this read: it is the last.
                let last = finished.load(Ordering::SeqCst) == 2;
                let page = first
                    .select_notifications(&NotificationQuery::new(high + 1, 7))
                    .expect("read");
                for n in page {
                    assert!(n.id > high, "ids come in order");
                    high = n.id;
                    seen.insert(n.id);
                }
                if last && page_was_empty(&first, high) {
                    return seen;
                }
            }
        });
        reader.join().expect("reader")
    });
    let all: Vec<u64> = first
        .select_notifications(&NotificationQuery::new(1, 100_000))
        .expect("log")
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(all.len(), 2 * 2 * saves_each, "every event stored once");
    let skipped: Vec<&u64> = all.iter().filter(|id| !seen.contains(id)).collect();
    assert!(
        skipped.is_empty(),
        "the reader skipped ids that committed after a higher one: {skipped:?}"
    );
}

/// Whether nothing follows id `high` in the log.
fn page_was_empty(recorder: &MysqlRecorder, high: u64) -> bool {
    recorder
        .select_notifications(&NotificationQuery::new(high + 1, 1))
        .expect("read")
        .is_empty()
}

/// A transaction that holds the writers' lock holds off writers, and not
/// readers; its ROLLBACK (or its connection's end) lets writers on.
#[test]
fn the_writers_lock_holds_off_writers_not_readers() {
    let name = "my_order_lock";
    let Some(recorder) = common::fresh(name, TrackingLayout::SingleRow) else {
        return annals_core::testing::skipped(name);
    };
    recorder.insert_events(&[row("a", 1)]).expect("first save");
    let config = common::server().expect("configured");
    let mut holder = common::client(&config);
    holder.query_drop("START TRANSACTION").expect("begin");
    let locked: Option<u8> = holder
        .query_first(format!(
            "SELECT id FROM `{name}_lock` WHERE id = 1 FOR UPDATE"
        ))
        .expect("lock");
    assert_eq!(locked, Some(1));
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            recorder.insert_events(&[row("b", 1)]).expect("second save");
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(300));
        // Readers are not held off: this returns while the writer waits.
        assert_eq!(recorder.max_notification_id().expect("read"), 1);
        assert!(!writer.is_finished(), "the writer waits for the lock");
        let released = Instant::now();
        holder.query_drop("ROLLBACK").expect("release");
        let saved = writer.join().expect("writer");
        assert!(
            saved >= released,
            "the save returned only after the lock was let go"
        );
    });
    assert_eq!(recorder.max_notification_id().expect("read"), 2);
}

/// The watcher raises its signal when another recorder (another process,
/// as far as this one knows) commits, and not otherwise.
#[test]
fn the_watcher_sees_another_writers_commits() {
    use annals_core::persistence::wake::Signal;

    let name = "my_watch";
    let Some(watched) = common::fresh(name, TrackingLayout::SingleRow) else {
        return annals_core::testing::skipped(name);
    };
    let config = common::server().expect("configured");
    let writer = MysqlRecorder::open(&config, name).expect("open");
    let signal = Signal::new();
    let watch = watched.watch(&signal).expect("watch");
    assert!(watch.is_watching());
    // Whatever was raised while starting is taken; then quiet.
    signal.wait(Duration::from_millis(100));
    assert!(
        !signal.wait(Duration::from_millis(300)),
        "raised with no commit"
    );
    writer.insert_events(&[row("w", 1)]).expect("save");
    assert!(signal.wait(Duration::from_secs(5)), "the commit was seen");
}
