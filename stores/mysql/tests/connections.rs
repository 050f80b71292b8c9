//! Connecting: a server that is down, a database that does not exist, TLS
//! modes against a server without TLS, and the tables' layouts.

use std::time::Duration;

use annals_core::error::Error;
use annals_core::persistence::{
    AggregateRecorder, ApplicationRecorder, ProcessRecorder, StoredEvent, Tracking, TrackingLayout,
};
use annals_mysql::mysql::prelude::Queryable;
use annals_mysql::{MysqlRecorder, SslMode};

mod common;

fn row(id: &str, version: u64) -> StoredEvent {
    StoredEvent {
        originator_id: id.to_owned(),
        originator_version: version,
        topic: "T".into(),
        state: Vec::new(),
    }
}

#[test]
fn a_server_that_is_down_is_an_error_naming_host_and_port() {
    let Some(mut config) = common::server() else {
        return annals_core::testing::skipped("a_server_that_is_down");
    };
    config.port = 1;
    config.connect_timeout = Duration::from_secs(2);
    let error = MysqlRecorder::open(&config, "my_down").expect_err("nothing listens on port 1");
    let text = error.report().to_string();
    assert!(matches!(error, Error::Persistence { .. }), "{error:?}");
    assert!(text.contains(&format!("{}:1", config.host)), "{text}");
}

#[test]
fn an_unknown_database_names_the_setting() {
    let Some(mut config) = common::server() else {
        return annals_core::testing::skipped("an_unknown_database");
    };
    config.dbname = "annals_no_such_database".into();
    let text = MysqlRecorder::open(&config, "my_nodb")
        .expect_err("no such database")
        .report()
        .to_string();
    assert!(text.contains("MYSQL_DBNAME"), "{text}");
    assert!(text.contains("annals_no_such_database"), "{text}");
}

/// The test server has no TLS: `prefer` connects without it, `require`
/// refuses to, naming the server.
#[test]
fn tls_modes_against_a_server_without_tls() {
    let Some(mut config) = common::server() else {
        return annals_core::testing::skipped("tls_modes");
    };
    let mut tls = common::client(&config);
    let have: Option<(String, String)> = tls
        .query_first("SHOW VARIABLES LIKE 'have_ssl'")
        .expect("have_ssl");
    if have.is_some_and(|(_, v)| v == "YES") {
        eprintln!("the test server has TLS: this test is for one without");
        return;
    }
    config.ssl_mode = SslMode::Prefer;
    common::drop_tables(&config, "my_tls");
    let recorder = MysqlRecorder::open(&config, "my_tls").expect("prefer: plain");
    recorder.insert_events(&[row("a", 1)]).expect("a save");
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        config.ssl_mode = mode;
        let error = MysqlRecorder::open(&config, "my_tls").expect_err("no TLS to be had");
        let text = error.report().to_string();
        assert!(
            text.contains(&format!("{}:{}", config.host, config.port)),
            "{mode}: {text}"
        );
    }
}

/// A root certificate that is not there is a configuration error naming
/// the variable, before any connection.
#[test]
fn a_missing_root_certificate_names_the_setting() {
    let mut config = annals_mysql::MysqlConfig::new("test");
    config.ssl_mode = SslMode::VerifyFull;
    config.ssl_root_cert = Some("/nonexistent/ca.pem".into());
    match MysqlRecorder::open(&config, "my_cert") {
        Err(Error::Config { setting, .. }) => assert_eq!(setting, "MYSQL_SSLROOTCERT"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// An existing tracking table is used in the layout it has; a single-row
/// one is refused when multi-row is asked for.
#[test]
fn an_existing_tracking_table_keeps_its_layout() {
    let name = "my_layouts";
    let Some(multi) = common::fresh(name, TrackingLayout::MultiRow) else {
        return annals_core::testing::skipped(name);
    };
    let track = |n| Tracking {
        application_name: "up".into(),
        notification_id: n,
    };
    multi
        .insert_events_tracked(&[], &track(2))
        .expect("track 2");
    let mut config = common::server().expect("configured");
    config.tracking_layout = TrackingLayout::SingleRow;
    let reopened = MysqlRecorder::open(&config, name).expect("reopen");
    assert_eq!(reopened.tracking_layout(), TrackingLayout::MultiRow);
    reopened
        .insert_events_tracked(&[], &track(1))
        .expect("multi-row takes 1 after 2");
    assert!(reopened.has_tracking_id("up", 1).expect("read"));

    let single = "my_layouts_single";
    common::fresh(single, TrackingLayout::SingleRow).expect("configured");
    config.tracking_layout = TrackingLayout::MultiRow;
    match MysqlRecorder::open(&config, single) {
        Err(Error::Config { setting, .. }) => assert_eq!(setting, "SINGLE_ROW_TRACKING"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// With `CREATE_TABLE=no` nothing is created, and a save into missing
/// tables says to create them.
#[test]
fn without_create_table_a_missing_table_is_a_clear_error() {
    let name = "my_no_create";
    let Some(mut config) = common::server() else {
        return annals_core::testing::skipped(name);
    };
    common::drop_tables(&config, name);
    config.create_tables = false;
    let recorder = MysqlRecorder::open(&config, name).expect("opens without tables");
    let text = recorder
        .insert_events(&[row("a", 1)])
        .expect_err("no tables")
        .report()
        .to_string();
    assert!(
        text.contains("annals migrate") || text.contains("CREATE_TABLE"),
        "{text}"
    );
    assert!(recorder.max_notification_id().is_err());
}

/// Ids too long for the column are refused before anything is sent, and
/// the save stores nothing.
#[test]
fn an_id_too_long_is_refused_and_stores_nothing() {
    let name = "my_long_id";
    let Some(recorder) = common::fresh(name, TrackingLayout::SingleRow) else {
        return annals_core::testing::skipped(name);
    };
    let long = "x".repeat(256);
    let error = recorder
        .insert_events(&[row("ok", 1), row(&long, 1)])
        .expect_err("too long");
    assert!(
        error.report().to_string().contains("255"),
        "{}",
        error.report()
    );
    assert_eq!(recorder.max_notification_id().expect("read"), 0);
    // 255 characters, 4 bytes each, fit.
    let widest = "😀".repeat(255);
    recorder
        .insert_events(&[row(&widest, 1)])
        .expect("255 characters fit");
    assert_eq!(
        recorder
            .select_events(&widest, &Default::default())
            .expect("read")[0]
            .originator_id,
        widest
    );
}

/// A lock table without its row (a `FOR UPDATE` on a missing row would
/// let two writers through): a save fails, saying how to put it back,
/// and stores nothing; reopening with CREATE_TABLE puts it back.
#[test]
fn a_missing_lock_row_fails_saves_and_says_how_to_mend_it() {
    let name = "my_lock_row";
    let Some(recorder) = common::fresh(name, TrackingLayout::SingleRow) else {
        return annals_core::testing::skipped(name);
    };
    let config = common::server().expect("configured");
    common::client(&config)
        .query_drop(format!("DELETE FROM `{name}_lock`"))
        .expect("delete the row");
    let text = recorder
        .insert_events(&[row("a", 1)])
        .expect_err("no lock row")
        .report()
        .to_string();
    assert!(
        text.contains("INSERT INTO `my_lock_row_lock` VALUES (1)"),
        "{text}"
    );
    assert_eq!(recorder.max_notification_id().expect("read"), 0);
    let reopened = MysqlRecorder::open(&config, name).expect("reopen");
    reopened.insert_events(&[row("a", 1)]).expect("saved");
}
