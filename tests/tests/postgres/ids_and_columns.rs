//! Originator ids in a uuid column, and stored versions no version can be.

use annals::persistence::postgres::{OriginatorIdType, PostgresRecorder};
use annals::persistence::{AggregateRecorder, ApplicationRecorder, EventQuery, NotificationQuery};
use annals::testing::contract::event;
use annals::Error;

use crate::{client, config_error, fresh, server};

#[test]
fn uuid_ids_are_stored_in_a_uuid_column_and_read_as_32_hex() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("uuid_column");
    };
    config.originator_id_type = OriginatorIdType::Uuid;
    let r = fresh(&config, "pg_uuid_ids");
    let hyphenated = "6BA7B810-9DAD-11D1-80B4-00C04FD430C8";
    let simple = "6ba7b8109dad11d180b400c04fd430c8";
    r.insert_events(&[event(hyphenated, 1, "T.A"), event(simple, 2, "T.B")])
        .expect("insert");
    for id in [hyphenated, simple] {
        let got = r.select_events(id, &EventQuery::all()).expect("select");
        assert_eq!(got.len(), 2, "{id}");
        assert!(got.iter().all(|e| e.originator_id == simple), "{got:?}");
    }
    let n = r
        .select_notifications(&NotificationQuery::new(1, 10))
        .expect("notifications");
    assert_eq!(n[0].event.originator_id, simple);
    assert_eq!(n[1].event.state, event(simple, 2, "T.B").state);

    let mut db = client(&config);
    let column: String = db
        .query_one(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_name = 'pg_uuid_ids_events' AND column_name = 'originator_id'",
            &[],
        )
        .expect("column type")
        .get(0);
    assert_eq!(column, "uuid");

    let (var, message) = config_error(r.insert_events(&[event("dog-fido", 1, "T")]));
    assert_eq!(var, "ORIGINATOR_ID_TYPE");
    assert!(
        message.contains("dog-fido") && message.contains("ORIGINATOR_ID_TYPE=text"),
        "{message}"
    );
    config_error(r.select_events("dog-fido", &EventQuery::all()));
    assert_eq!(r.max_notification_id().expect("max"), 2, "nothing stored");

    // The same tables opened with the other id type: a clear error.
    config.originator_id_type = OriginatorIdType::Text;
    let (var, message) = config_error(PostgresRecorder::open(&config, "pg_uuid_ids"));
    assert_eq!(var, "ORIGINATOR_ID_TYPE");
    assert!(message.contains("uuid"), "{message}");
}

#[test]
fn negative_stored_versions_are_errors_on_every_path() {
    use annals::prelude::*;
    use annals_examples::dog_school::Dog;
    let Some(config) = server() else {
        return annals_tests::skipped("negative_versions");
    };
    let app = Application::builder("pg_negative")
        .persistence(annals::Persistence::Postgres(config.clone()))
        .build()
        .expect("app");
    let id = uuid::Uuid::new_v4();
    let mut db = client(&config);
    db.batch_execute("DELETE FROM pg_negative_events; DELETE FROM pg_negative_snapshots")
        .expect("empty");
    for table in ["pg_negative_events", "pg_negative_snapshots"] {
        db.execute(
            &format!(
                "INSERT INTO {table} (originator_id, originator_version, topic, state) \
                 VALUES ($1, -3, 'Dog.Registered', '\\x7b7d')"
            ),
            &[&id],
        )
        .expect("a corrupt row");
    }
    let simple = id.simple().to_string();
    let check = |what: &str, err: Error, table: &str| {
        let shown = err.to_string();
        assert!(
            shown.contains("-3") && shown.contains(table),
            "{what}: {shown}"
        );
    };
    let err = app.repository().get::<Dog>(id).expect_err("get");
    check("get", err, "pg_negative_events");
    let err = app
        .recorder()
        .select_events(&simple, &EventQuery::all())
        .expect_err("select_events");
    check("select_events", err, "pg_negative_events");
    let err = app
        .recorder()
        .select_notifications(&NotificationQuery::new(1, 10))
        .expect_err("select_notifications");
    check("select_notifications", err, "pg_negative_events");
    let snapshots = PostgresRecorder::open(&config, "pg_negative")
        .expect("open")
        .snapshot_recorder();
    let err = snapshots
        .select_events(&simple, &EventQuery::all())
        .expect_err("snapshots");
    check("snapshots", err, "pg_negative_snapshots");
}
