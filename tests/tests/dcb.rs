//! The DCB recorder contract (Python's `DCBRecorderTestCase`) on every
//! store that has a DCB recorder.

use std::sync::Arc;

mod memory {
    use super::*;
    use annals::persistence::dcb::MemoryDcbRecorder;

    annals::dcb_recorder_contract!(|_| Some(Arc::new(MemoryDcbRecorder::new())));
}

mod sqlite_file {
    use super::*;
    use annals::persistence::sqlite::{SqliteConfig, SqliteDcbRecorder};

    annals::dcb_recorder_contract!(|name| {
        let path = annals_tests::stores::temp_dir().join(format!("dcb-{name}.db"));
        let config = SqliteConfig::new(path.to_string_lossy());
        Some(Arc::new(SqliteDcbRecorder::open(config).expect("open")))
    });
}

mod sqlite_in_memory {
    use super::*;
    use annals::persistence::sqlite::SqliteDcbRecorder;

    annals::dcb_recorder_contract!(|_| Some(Arc::new(
        SqliteDcbRecorder::in_memory().expect("open")
    )));
}

/// Two recorders on one file (as two processes would be): an append
/// through one wakes a subscription of the other (`PRAGMA data_version`),
/// and the condition of one sees the other's events.
#[test]
fn sqlite_recorders_on_one_file_see_each_others_appends() {
    use std::time::Duration;

    use annals::persistence::dcb::{
        DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder, DcbSubscription,
    };
    use annals::persistence::sqlite::{SqliteConfig, SqliteDcbRecorder};

    let path = annals_tests::stores::temp_dir().join("dcb-shared.db");
    let config = SqliteConfig::new(path.to_string_lossy());
    let one: Arc<dyn DcbRecorder> =
        Arc::new(SqliteDcbRecorder::open(config.clone()).expect("open"));
    let two: Arc<dyn DcbRecorder> = Arc::new(SqliteDcbRecorder::open(config).expect("open"));
    let seat = DcbQuery::item(DcbQueryItem::new().tags(["seat-1"]));
    let mut subscription =
        DcbSubscription::new(two.clone(), seat.clone(), None).expect("subscribe");
    let read = two.read(&seat, None, None).expect("read");
    one.append(
        &[DcbEvent::new("SeatBooked", b"1".to_vec()).tags(["seat-1"])],
        None,
    )
    .expect("append");
    let seen = subscription
        .next_timeout(Duration::from_secs(5))
        .expect("read")
        .expect("the other recorder's append wakes the subscription");
    assert_eq!(seen.position, 1);
    let condition = DcbAppendCondition::new(seat).after(read.head);
    let err = two
        .append(
            &[DcbEvent::new("SeatBooked", b"2".to_vec()).tags(["seat-1"])],
            Some(&condition),
        )
        .expect_err("the seat was booked through the other recorder");
    assert!(err.is_conflict());
}
