//! Connections: listening, dropped, refused, silent, or impossible; the
//! lock timeout; the password kept out of errors.

use std::time::Duration;

use annals::persistence::postgres::{OriginatorIdType, PostgresConfig, PostgresRecorder, SslMode};
use annals::persistence::{AggregateRecorder, ApplicationRecorder, EventQuery};
use annals::testing::contract::event;

use crate::{client, fresh, server};

#[test]
fn a_listener_wakes_up_on_insert_and_times_out_otherwise() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("listen_notify");
    };
    config.originator_id_type = OriginatorIdType::Text;
    let r = fresh(&config, "pg_listen");
    let mut listener = r.listen().expect("listen");
    assert!(
        !listener.wait(Duration::from_millis(200)).expect("wait"),
        "nothing inserted yet"
    );
    r.insert_events(&[event("l", 1, "T")]).expect("insert");
    assert!(listener.wait(Duration::from_secs(30)).expect("wait"));
    assert!(
        !listener.wait(Duration::from_millis(100)).expect("wait"),
        "the wake-up was consumed"
    );
    // A failed insert commits nothing and wakes nobody.
    assert!(r.insert_events(&[event("l", 1, "T")]).is_err());
    assert!(!listener.wait(Duration::from_millis(200)).expect("wait"));

    // Woken in another thread while this one inserts.
    let woke = std::thread::scope(|scope| {
        let waiter = scope.spawn(move || listener.wait(Duration::from_secs(30)).expect("wait"));
        r.insert_events(&[event("l", 2, "T")]).expect("insert");
        waiter.join().expect("waiter")
    });
    assert!(woke);
}

#[test]
fn reads_and_writes_survive_a_dropped_connection() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("dropped_connection");
    };
    config.originator_id_type = OriginatorIdType::Text;
    config.pool_size = 1;
    let r = fresh(&config, "pg_dropped_conn");
    r.insert_events(&[event("d", 1, "T")]).expect("insert");
    let mut db = client(&config);
    let mut kill = || {
        // The pool's one connection last ran a statement on this table.
        let killed: i64 = db
            .query_one(
                "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity \
                 WHERE pid <> pg_backend_pid() AND query LIKE '%pg_dropped_conn_events%'",
                &[],
            )
            .expect("terminate")
            .get(0);
        assert_eq!(killed, 1, "one pooled connection");
    };
    r.max_notification_id().expect("connection in use");
    kill();
    assert_eq!(r.max_notification_id().expect("read retried"), 1);
    kill();
    let ids = r
        .insert_events(&[event("d", 2, "T")])
        .expect("write retried: it failed before COMMIT");
    assert_eq!(ids, [2]);
    let versions: Vec<u64> = r
        .select_events("d", &EventQuery::all())
        .expect("select")
        .iter()
        .map(|e| e.originator_version)
        .collect();
    assert_eq!(versions, [1, 2], "stored once");
}

#[test]
fn the_password_never_shows_in_errors() {
    let mut config = PostgresConfig::new("nowhere");
    config.port = 1; // nothing listens there
    config.password = Some("s3cret-pw".to_owned());
    config.connect_timeout = Duration::from_millis(300);
    let err = PostgresRecorder::open(&config, "dogs").expect_err("no server on port 1");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(shown.contains("nowhere"), "says which database: {shown}");
}

/// Opens a recorder on a thread; its error, or a failure if it is not back
/// within 30 s (a hang).
fn open_error_within_30s(config: PostgresConfig) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = PostgresRecorder::open(&config, "dogs").map(drop);
        let _ = tx.send(outcome.map_err(|e| e.report().to_string()));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(outcome) => outcome.expect_err("nothing there speaks PostgreSQL"),
        Err(_) => panic!("opening hung for 30 s"),
    }
}

#[test]
fn a_server_that_accepts_and_never_answers_fails_within_the_connect_timeout() {
    // Accepts every connection, keeps it open, never says a byte.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    // Plain: the startup message waits; TLS: the SSLRequest's answer does.
    for mode in [SslMode::Disable, SslMode::Require] {
        let mut config = PostgresConfig::new("silent");
        config.port = port;
        config.ssl_mode = mode;
        config.connect_timeout = Duration::from_secs(1);
        let err = open_error_within_30s(config);
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{mode}: {err}");
        assert!(err.contains("POSTGRES_CONNECT_TIMEOUT"), "{mode}: {err}");
    }
}

#[test]
fn a_refused_connection_says_why_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.local_addr().expect("its address").port()
    }; // closed: the port refuses
    let mut config = PostgresConfig::new("nowhere");
    config.port = port;
    config.connect_timeout = Duration::from_secs(1);
    let err = open_error_within_30s(config);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(err.matches("refused").count(), 1, "{err}");
}

#[test]
fn writers_give_up_after_the_lock_timeout_while_readers_go_on() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("lock_timeout");
    };
    config.originator_id_type = OriginatorIdType::Text;
    config.lock_timeout = Some(Duration::from_millis(200));
    let r = fresh(&config, "pg_lock_timeout");
    r.insert_events(&[event("k", 1, "T")]).expect("insert");
    let mut db = client(&config);
    let mut writer = db.transaction().expect("begin");
    writer
        .batch_execute("LOCK TABLE pg_lock_timeout_events IN EXCLUSIVE MODE")
        .expect("lock");
    let err = r
        .insert_events(&[event("k", 2, "T")])
        .expect_err("the table is locked");
    assert!(err.to_string().contains("POSTGRES_LOCK_TIMEOUT"), "{err}");
    // The server's error is reachable through source(), its SQLSTATE too,
    // and the report says it once.
    let code = std::iter::successors(std::error::Error::source(&err), |e| e.source())
        .find_map(|e| e.downcast_ref::<postgres::Error>())
        .and_then(postgres::Error::code)
        .cloned();
    assert_eq!(
        code,
        Some(postgres::error::SqlState::LOCK_NOT_AVAILABLE),
        "{}",
        err.report()
    );
    let report = err.report().to_string();
    assert_eq!(report.matches("lock timeout").count(), 1, "{report}");
    // Readers take no lock that a writer's lock blocks.
    assert_eq!(r.max_notification_id().expect("read while locked"), 1);
    assert_eq!(
        r.select_events("k", &EventQuery::all())
            .expect("read while locked")
            .len(),
        1
    );
    writer.rollback().expect("release");
    r.insert_events(&[event("k", 2, "T")])
        .expect("insert once unlocked");
    assert_eq!(r.max_notification_id().expect("max"), 2);
}

#[test]
fn a_connection_that_cannot_succeed_fails_at_once_with_the_servers_message() {
    let Some(server) = server() else {
        return annals_tests::skipped("connect_fails_fast");
    };
    // The test server trusts 127.0.0.1, so a wrong password would be
    // accepted: a missing database and a missing role fail as surely.
    let mut missing_db = server.clone();
    missing_db.dbname = "annals_no_such_database".to_owned();
    let mut missing_role = server.clone();
    missing_role.user = "annals_no_such_role".to_owned();
    for (config, code, says, names) in [
        (
            missing_db,
            "3D000",
            "database \"annals_no_such_database\" does not exist",
            "POSTGRES_DBNAME",
        ),
        (
            missing_role,
            "28000",
            "role \"annals_no_such_role\" does not exist",
            "POSTGRES_USER",
        ),
    ] {
        let mut config = config;
        config.connect_timeout = Duration::from_secs(10);
        let started = std::time::Instant::now();
        let err = PostgresRecorder::open(&config, "dogs").expect_err(says);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "failed after {:?}, not at once: {err}",
            started.elapsed()
        );
        let shown = err.report().to_string();
        assert!(shown.contains(says), "{shown}");
        assert!(shown.contains(code), "{shown}");
        assert!(shown.contains(names), "{shown}");
    }
}
