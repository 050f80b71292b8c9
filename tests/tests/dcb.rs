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

mod object_directory {
    use super::*;
    use annals::persistence::object::ObjectConfig;

    annals::dcb_recorder_contract!(|name| {
        let dir = annals_tests::stores::temp_dir().join(name);
        let store = ObjectConfig::location(dir.to_str().expect("a UTF-8 path"));
        Some(Arc::new(store.open_dcb("Courses").expect("open")))
    });
}

mod object_in_memory {
    use super::*;
    use annals::persistence::object::ObjectConfig;

    annals::dcb_recorder_contract!(|_| Some(Arc::new(
        ObjectConfig::location("memory://")
            .open_dcb("Courses")
            .expect("open")
    )));
}

/// The S3 location of the test server (`ANNALS_S3_LOCATION`, which
/// `.ci/run` sets), or `None` (a failure in CI).
fn s3_location() -> Option<String> {
    match std::env::var("ANNALS_S3_LOCATION") {
        Ok(location) => Some(location),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the S3 tests must run in CI: set ANNALS_S3_LOCATION (.ci/run starts a server)"
            );
            None
        }
    }
}

mod object_on_s3 {
    use super::*;
    use annals::persistence::object::ObjectConfig;

    annals::dcb_recorder_contract!(|name| {
        let location = format!(
            "{}/dcb-{name}-{}",
            s3_location()?,
            uuid::Uuid::new_v4().simple()
        );
        Some(Arc::new(
            ObjectConfig::location(&location)
                .open_dcb("Courses")
                .unwrap_or_else(|e| panic!("open {location}: {}", e.report())),
        ))
    });
}

/// The Azure location of the test server (`ANNALS_AZURE_LOCATION`, Azurite,
/// which `.ci/run` starts), or `None` (a failure in CI).
fn azure_location() -> Option<String> {
    match std::env::var("ANNALS_AZURE_LOCATION") {
        Ok(location) => Some(location),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the Azure tests must run in CI: set ANNALS_AZURE_LOCATION (.ci/run starts a server)"
            );
            None
        }
    }
}

mod object_on_azure {
    use super::*;
    use annals::persistence::object::ObjectConfig;

    annals::dcb_recorder_contract!(|name| {
        let location = format!(
            "{}/dcb-{name}-{}",
            azure_location()?,
            uuid::Uuid::new_v4().simple()
        );
        Some(Arc::new(
            ObjectConfig::location(&location)
                .open_dcb("Courses")
                .unwrap_or_else(|e| panic!("open {location}: {}", e.report())),
        ))
    });
}

/// Two object store recorders on one directory (as two processes would
/// be): each append is decided by its create-if-absent write, so racing
/// conditional appends through both admit one, and each sees the other's.
#[test]
fn object_recorders_on_one_directory_decide_appends_by_their_writes() {
    use annals::persistence::dcb::{
        DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder,
    };
    use annals::persistence::object::ObjectConfig;

    let dir = annals_tests::stores::temp_dir().join("shared");
    let config = ObjectConfig::location(dir.to_str().expect("a UTF-8 path"));
    let one: Arc<dyn DcbRecorder> = Arc::new(config.open_dcb("Courses").expect("open"));
    let two: Arc<dyn DcbRecorder> = Arc::new(config.open_dcb("Courses").expect("open"));
    let seat = DcbQuery::item(DcbQueryItem::new().tags(["seat-1"]));
    // `two` reads before `one` appends anything, so its index is stale
    // when it appends: its write takes a name `one` holds already.
    let read = two.read(&seat, None, None).expect("read");
    assert_eq!(read.head, None);
    one.append(
        &[DcbEvent::new("Other", b"0".to_vec()).tags(["other"])],
        None,
    )
    .expect("append");
    one.append(
        &[
            DcbEvent::new("SeatBooked", b"1".to_vec()).tags(["seat-1"]),
            DcbEvent::new("Paid", b"1".to_vec()).tags(["seat-1", "pay"]),
        ],
        None,
    )
    .expect("append");
    let condition = DcbAppendCondition::new(seat.clone()).after(read.head);
    let err = two
        .append(
            &[DcbEvent::new("SeatBooked", b"2".to_vec()).tags(["seat-1"])],
            Some(&condition),
        )
        .expect_err("the seat was booked through the other recorder");
    assert!(err.is_conflict(), "{}", err.report());
    // A condition on something else passes after re-reading: position 4.
    let other = DcbAppendCondition::new(DcbQuery::item(DcbQueryItem::new().tags(["seat-2"])))
        .after(read.head);
    let last = two
        .append(
            &[DcbEvent::new("SeatBooked", b"3".to_vec()).tags(["seat-2"])],
            Some(&other),
        )
        .expect("append");
    assert_eq!(last, 4);
    let all = one.read(&DcbQuery::all(), None, None).expect("read");
    let positions: Vec<u64> = all.events.iter().map(|e| e.position).collect();
    assert_eq!((positions, all.head), (vec![1, 2, 3, 4], Some(4)));
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

/// `persistence::dcb::open` opens the DCB store `PERSISTENCE_MODULE`
/// names, with that store's settings; a module without one is a
/// configuration error naming the variable.
mod opener {
    use super::*;
    use annals::env::Env;
    use annals::persistence::dcb::{self, DcbEvent, DcbQuery, DcbRecorder};

    fn round_trip(store: &Arc<dyn DcbRecorder>) {
        let head = store.read(&DcbQuery::all(), None, None).expect("read").head;
        let last = store
            .append(
                &[DcbEvent::new("Opened", b"1".to_vec()).tags(["opener"])],
                None,
            )
            .expect("append");
        assert!(last > head.unwrap_or(0));
        let read = store.read(&DcbQuery::all(), head, None).expect("read");
        assert_eq!(read.events.len(), 1);
        assert_eq!(read.head, Some(last));
    }

    #[test]
    fn memory_by_default_and_by_name() {
        for env in [
            Env::from_map("Courses", [("X", "y")]),
            Env::from_map("Courses", [("PERSISTENCE_MODULE", "eventsourcing.popo")]),
        ] {
            round_trip(&dcb::open("Courses", &env).expect("open"));
        }
    }

    #[test]
    fn sqlite_in_its_file() {
        let path = annals_tests::stores::temp_dir().join("opener.db");
        let path = path.to_str().expect("a UTF-8 path");
        let env = Env::from_map(
            "Courses",
            [("PERSISTENCE_MODULE", "sqlite"), ("SQLITE_DBNAME", path)],
        );
        round_trip(&dcb::open("Courses", &env).expect("open"));
        // Opened again, the same store.
        let again = dcb::open("Courses", &env).expect("open again");
        assert_eq!(
            again.read(&DcbQuery::all(), None, None).expect("read").head,
            Some(1)
        );
    }

    #[test]
    fn the_object_store_in_a_directory() {
        let dir = annals_tests::stores::temp_dir().join("opener");
        let env = Env::from_map(
            "Courses",
            [
                ("PERSISTENCE_MODULE", "object"),
                ("OBJECT_STORE_LOCATION", dir.to_str().expect("a UTF-8 path")),
            ],
        );
        round_trip(&dcb::open("Courses", &env).expect("open"));
        assert!(dir.join("courses").join("dcb").is_dir());
    }

    #[test]
    fn postgres_from_its_settings() {
        let Some(config) = annals_tests::stores::postgres_server() else {
            annals::testing::skipped("postgres_from_its_settings");
            return;
        };
        // A schema of its own: the layout's types and functions are one
        // per schema.
        annals_tests::stores::postgres_client(&config)
            .batch_execute("DROP SCHEMA IF EXISTS dcb_opener CASCADE; CREATE SCHEMA dcb_opener")
            .expect("a fresh schema");
        let mut vars: Vec<(&str, String)> = vec![
            ("PERSISTENCE_MODULE", "postgres".into()),
            ("POSTGRES_DBNAME", config.dbname.clone()),
            ("POSTGRES_HOST", config.host.clone()),
            ("POSTGRES_PORT", config.port.to_string()),
            ("POSTGRES_USER", config.user.clone()),
            ("POSTGRES_SCHEMA", "dcb_opener".into()),
        ];
        if let Some(password) = &config.password {
            vars.push(("POSTGRES_PASSWORD", password.clone()));
        }
        let env = Env::from_map("DcbOpener", vars);
        round_trip(&dcb::open("DcbOpener", &env).expect("open"));
    }

    #[test]
    fn umadb_from_its_settings() {
        let Ok(uri) = std::env::var("ANNALS_UMADB_URI") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "the UmaDB tests must run in CI: set ANNALS_UMADB_URI (.ci/run starts a server)"
            );
            annals::testing::skipped("umadb_from_its_settings");
            return;
        };
        let env = Env::from_map(
            "Courses",
            [("PERSISTENCE_MODULE", "umadb"), ("UMADB_URI", uri.as_str())],
        );
        round_trip(&dcb::open("Courses", &env).expect("open"));
    }

    #[test]
    fn a_module_without_a_dcb_store_or_its_settings_is_a_config_error() {
        let env = Env::from_map("Courses", [("COURSES_PERSISTENCE_MODULE", "cassandra")]);
        let err = dcb::open("Courses", &env).expect_err("no such DCB store");
        assert!(
            matches!(&err, annals::Error::Config { setting, .. } if setting == "COURSES_PERSISTENCE_MODULE"),
            "{err:?}"
        );
        let env = Env::from_map("Courses", [("PERSISTENCE_MODULE", "umadb")]);
        let err = dcb::open("Courses", &env).expect_err("no server named");
        assert!(
            matches!(&err, annals::Error::Config { setting, .. } if setting == "UMADB_URI"),
            "{err:?}"
        );
    }
}
