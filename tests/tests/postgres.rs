//! The recorder contract and PostgreSQL-specific behaviour, against the
//! server that `POSTGRES_DBNAME`, `POSTGRES_HOST`, ... name. Without
//! `POSTGRES_DBNAME` the server tests are skipped, except in CI (`CI` set),
//! where that is a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals::env::Env;
use annals::persistence::postgres::{OriginatorIdType, PostgresConfig, PostgresRecorder, SslMode};
use annals::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, NotificationQuery, ProcessRecorder,
    Tracking, TrackingLayout,
};
use annals::testing::contract::event;
use annals::Error;

use annals_tests::stores::{
    drop_postgres_tables as drop_tables, postgres_client as client, postgres_server as server,
};

/// A recorder on empty tables of application `name`.
fn fresh(config: &PostgresConfig, name: &str) -> PostgresRecorder {
    drop_tables(config, name);
    PostgresRecorder::open(config, name).expect("open")
}

/// A recorder on fresh tables for contract test `test`, its tracking table
/// created in `layout` (the tables' names begin with `prefix`).
fn contract_recorder_with(
    test: &str,
    prefix: &str,
    layout: TrackingLayout,
) -> Option<Arc<dyn ProcessRecorder>> {
    let mut config = server()?;
    config.originator_id_type = OriginatorIdType::Text;
    config.tracking_layout = layout;
    let name = format!("{prefix}_{}", &test[..test.len().min(45)]);
    let r = fresh(&config, &name);
    assert_eq!(r.tracking_layout(), layout);
    Some(Arc::new(r))
}

/// The contract with the default layout: single-row tracking.
fn contract_recorder(test: &str) -> Option<Arc<dyn ProcessRecorder>> {
    contract_recorder_with(test, "c", TrackingLayout::SingleRow)
}

annals::recorder_contract!(contract_recorder);

mod multi_row_tracking {
    use super::*;

    fn contract_recorder(test: &str) -> Option<Arc<dyn ProcessRecorder>> {
        contract_recorder_with(test, "m", TrackingLayout::MultiRow)
    }

    annals::recorder_contract!(contract_recorder);
}

fn config_error(result: Result<impl std::fmt::Debug, Error>) -> (String, String) {
    match result {
        Err(Error::Config { setting, message }) => (setting, message),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

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

/// Writers whose saves now and then conflict (wasting the ids they drew:
/// gaps in the log) while readers poll from their last id + 1: every
/// reader sees every committed id, in order, none skipped.
#[test]
fn readers_polling_while_writers_commit_never_skip_an_event() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("readers_never_skip");
    };
    config.originator_id_type = OriginatorIdType::Text;
    config.pool_size = 8;
    let r = fresh(&config, "pg_readers_never_skip");
    const WRITERS: u64 = 4;
    const SAVES: u64 = 300;
    let done = AtomicBool::new(false);
    let seen: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut ids = Vec::new();
                    let mut last = 0;
                    loop {
                        // Read `done` before the page: an empty page after
                        // the writers finished means caught up.
                        let finished = done.load(Ordering::SeqCst);
                        let page = r
                            .select_notifications(&NotificationQuery::new(last + 1, 100))
                            .expect("select");
                        if page.is_empty() {
                            if finished {
                                break ids;
                            }
                            std::thread::yield_now();
                        }
                        for n in page {
                            assert!(n.id > last, "{} after {last}", n.id);
                            last = n.id;
                            ids.push(n.id);
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let r = &r;
                scope.spawn(move || {
                    for i in 0..SAVES {
                        let id = format!("w{w}-{}", i / 3);
                        r.insert_events(&[event(&id, i % 3 + 1, "T")])
                            .unwrap_or_else(|e| panic!("writer {w} save {i}: {e}"));
                        if i % 10 == 9 {
                            let err = r
                                .insert_events(&[event(&id, i % 3 + 1, "T")])
                                .expect_err("stored already");
                            assert!(err.is_conflict(), "{err}");
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        done.store(true, Ordering::SeqCst);
        readers
            .into_iter()
            .map(|h| h.join().expect("reader"))
            .collect()
    });
    let all: Vec<u64> = r
        .select_notifications(&NotificationQuery::new(1, 100_000))
        .expect("all")
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(all.len() as u64, WRITERS * SAVES, "every save stored once");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ids increase");
    assert!(
        *all.last().expect("ids") > WRITERS * SAVES,
        "the conflicts left gaps, which the readers had to step over"
    );
    for ids in seen {
        assert_eq!(ids, all, "a reader saw every notification, in order");
    }
}

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
fn tables_go_in_the_configured_schema() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("schema");
    };
    config.originator_id_type = OriginatorIdType::Text;
    config.schema = Some("annals_test_schema".to_owned());
    let mut db = client(&config);
    db.batch_execute("DROP SCHEMA IF EXISTS annals_test_schema CASCADE")
        .expect("drop schema");
    let r = PostgresRecorder::open(&config, "PG_Schema").expect("open");
    r.create_tables().expect("again: idempotent");
    r.insert_events(&[event("s", 1, "T")]).expect("insert");
    let tables: Vec<String> = db
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'annals_test_schema' ORDER BY 1",
            &[],
        )
        .expect("tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "pg_schema_events",
            "pg_schema_snapshots",
            "pg_schema_tracking"
        ]
    );
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM annals_test_schema.pg_schema_events",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(stored, 1);
    let elsewhere: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_name = 'pg_schema_events' AND table_schema <> 'annals_test_schema'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(elsewhere, 0);
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
fn application_names_must_be_safe_table_prefixes() {
    // Checked before any connection is made: no server needed.
    let config = PostgresConfig::new("nowhere");
    for name in [
        "dogs; DROP TABLE x",
        "dogs\"",
        "1dogs",
        "",
        "dog-school",
        "école",
        &"a".repeat(54),
    ] {
        let (var, message) = config_error(PostgresRecorder::open(&config, name));
        assert_eq!(var, "application name", "{name:?}");
        assert!(message.contains("ASCII letters"), "{message}");
    }
    let mut config = PostgresConfig::new("nowhere");
    config.schema = Some("x\"; DROP TABLE y; --".to_owned());
    let (var, _) = config_error(PostgresRecorder::open(&config, "dogs"));
    assert_eq!(var, "POSTGRES_SCHEMA");
}

#[test]
fn the_longest_application_name_fits() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("longest_name");
    };
    config.originator_id_type = OriginatorIdType::Text;
    let name = format!("pg_long_{}", "n".repeat(53 - 8));
    let r = fresh(&config, &name);
    r.insert_events(&[event("x", 1, "T")]).expect("insert");
    assert_eq!(r.max_notification_id().expect("max"), 1);
}

#[test]
fn config_from_env_with_prefixed_names_winning() {
    let env = Env::from_map(
        "TrainingSchool",
        [
            ("POSTGRES_DBNAME", "plain"),
            ("TRAININGSCHOOL_POSTGRES_DBNAME", "school"),
            ("POSTGRES_HOST", "db.example"),
            ("POSTGRES_PORT", "1"),
            ("TRAININGSCHOOL_POSTGRES_PORT", "6543"),
            ("POSTGRES_USER", "app"),
            ("POSTGRES_PASSWORD", "s3cret-pw"),
            ("POSTGRES_CONNECT_TIMEOUT", "2.5"),
            ("POSTGRES_LOCK_TIMEOUT", "1"),
            ("POSTGRES_STATEMENT_TIMEOUT", "0"),
            ("POSTGRES_POOL_SIZE", "3"),
            ("POSTGRES_SCHEMA", "events"),
            ("POSTGRES_ORIGINATOR_ID_TYPE", "TEXT"),
        ],
    );
    let config = PostgresConfig::from_env(&env).expect("config");
    assert_eq!(config.dbname, "school");
    assert_eq!(config.host, "db.example");
    assert_eq!(config.port, 6543);
    assert_eq!(config.user, "app");
    assert_eq!(config.password.as_deref(), Some("s3cret-pw"));
    assert_eq!(config.connect_timeout, Duration::from_millis(2500));
    assert_eq!(config.lock_timeout, Some(Duration::from_secs(1)));
    assert_eq!(config.statement_timeout, None, "0 means none");
    assert_eq!(config.pool_size, 3);
    assert_eq!(config.schema.as_deref(), Some("events"));
    assert_eq!(config.originator_id_type, OriginatorIdType::Text);

    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret-pw"), "{debug}");
    assert!(debug.contains("password: Some(\"***\")"), "{debug}");
    assert!(debug.contains("school"), "{debug}");

    let defaults =
        PostgresConfig::from_env(&Env::from_map("App", [("POSTGRES_DBNAME", "d")])).expect("ok");
    assert_eq!(defaults, PostgresConfig::new("d"));
    assert_eq!(defaults.host, "127.0.0.1");
    assert_eq!(defaults.port, 5432);
    assert_eq!(defaults.user, "postgres");
    assert_eq!(defaults.connect_timeout, Duration::from_secs(5));
    assert_eq!(defaults.pool_size, 5);
    assert_eq!(defaults.originator_id_type, OriginatorIdType::Uuid);
    assert!(!format!("{defaults:?}").contains("***"));
}

#[test]
fn bad_settings_name_their_variable() {
    let with = |vars: &[(&str, &str)]| {
        let mut all = vec![("POSTGRES_DBNAME", "d")];
        all.extend_from_slice(vars);
        config_error(PostgresConfig::from_env(&Env::from_map("App", all)))
    };
    let (var, message) = with(&[("POSTGRES_PORT", "70000")]);
    assert_eq!(var, "POSTGRES_PORT");
    assert!(message.contains("70000"), "{message}");
    assert_eq!(with(&[("APP_POSTGRES_PORT", "x")]).0, "APP_POSTGRES_PORT");
    assert_eq!(
        with(&[("POSTGRES_CONNECT_TIMEOUT", "soon")]).0,
        "POSTGRES_CONNECT_TIMEOUT"
    );
    assert_eq!(
        with(&[("POSTGRES_CONNECT_TIMEOUT", "0")]).0,
        "POSTGRES_CONNECT_TIMEOUT"
    );
    assert_eq!(
        with(&[("APP_POSTGRES_LOCK_TIMEOUT", "-1")]).0,
        "APP_POSTGRES_LOCK_TIMEOUT"
    );
    assert_eq!(
        with(&[("POSTGRES_STATEMENT_TIMEOUT", "NaN")]).0,
        "POSTGRES_STATEMENT_TIMEOUT"
    );
    assert_eq!(with(&[("POSTGRES_POOL_SIZE", "0")]).0, "POSTGRES_POOL_SIZE");
    assert_eq!(
        with(&[("POSTGRES_ORIGINATOR_ID_TYPE", "int")]).0,
        "POSTGRES_ORIGINATOR_ID_TYPE"
    );

    let (var, message) = config_error(PostgresConfig::from_env(&Env::from_map(
        "App",
        [("POSTGRES_HOST", "h")],
    )));
    assert_eq!(var, "POSTGRES_DBNAME");
    assert!(message.contains("not set"), "{message}");
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
fn a_pool_size_over_the_maximum_is_a_config_error() {
    let env = Env::from_map(
        "App",
        [
            ("POSTGRES_DBNAME", "d"),
            ("POSTGRES_POOL_SIZE", "4294967295"),
        ],
    );
    let (var, message) = config_error(PostgresConfig::from_env(&env));
    assert_eq!(var, "POSTGRES_POOL_SIZE");
    assert!(message.contains("1000"), "{message}");
    // Built in code: refused at open, before connecting.
    let mut config = PostgresConfig::new("nowhere");
    config.port = 1;
    config.pool_size = u32::MAX;
    let (var, message) = config_error(PostgresRecorder::open(&config, "dogs"));
    assert_eq!(var, "POSTGRES_POOL_SIZE");
    assert!(message.contains("1000"), "{message}");
}

#[test]
fn timeouts_postgres_cannot_take_are_config_errors() {
    for var in ["POSTGRES_LOCK_TIMEOUT", "POSTGRES_STATEMENT_TIMEOUT"] {
        let env = Env::from_map("App", [("POSTGRES_DBNAME", "d"), (var, "1e12")]);
        let (setting, message) = config_error(PostgresConfig::from_env(&env));
        assert_eq!(setting, var);
        assert!(message.contains("2147483.647"), "{message}");
    }
    let env = Env::from_map(
        "App",
        [
            ("POSTGRES_DBNAME", "d"),
            ("POSTGRES_LOCK_TIMEOUT", "2147483.647"),
        ],
    );
    PostgresConfig::from_env(&env).expect("the largest lock timeout");
    // Built in code: refused at open, at once.
    let mut config = PostgresConfig::new("nowhere");
    config.lock_timeout = Some(Duration::from_secs(1_000_000_000_000));
    let (setting, _) = config_error(PostgresRecorder::open(&config, "dogs"));
    assert_eq!(setting, "POSTGRES_LOCK_TIMEOUT");
    let mut config = PostgresConfig::new("nowhere");
    config.statement_timeout = Some(Duration::from_secs(1_000_000_000_000));
    let (setting, _) = config_error(PostgresRecorder::open(&config, "dogs"));
    assert_eq!(setting, "POSTGRES_STATEMENT_TIMEOUT");
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

#[test]
fn a_role_that_may_not_create_tables_gets_the_servers_permission_denied() {
    let Some(server) = server() else {
        return annals_tests::skipped("permission_denied");
    };
    let mut db = client(&server);
    db.batch_execute(
        "DROP SCHEMA IF EXISTS annals_locked CASCADE; \
         CREATE SCHEMA annals_locked; \
         DO $$ BEGIN \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'annals_noddl') THEN \
             CREATE ROLE annals_noddl LOGIN; \
           END IF; \
         END $$; \
         GRANT USAGE ON SCHEMA annals_locked TO annals_noddl; \
         REVOKE CREATE ON SCHEMA annals_locked FROM annals_noddl",
    )
    .expect("a schema annals_noddl may not create tables in");
    let mut config = server.clone();
    config.user = "annals_noddl".to_owned();
    config.password = None;
    config.schema = Some("annals_locked".to_owned());
    let err = PostgresRecorder::open(&config, "dogs").expect_err("may not create");
    let shown = err.report().to_string();
    assert!(
        shown.contains("permission denied for schema annals_locked"),
        "{shown}"
    );
    assert!(shown.contains("42501"), "{shown}");
}

/// Drops a schema and a role when dropped, so a failed test leaves neither.
struct DropsSchemaAndRole(PostgresConfig, &'static str, &'static str);

impl Drop for DropsSchemaAndRole {
    fn drop(&mut self) {
        let (schema, role) = (self.1, self.2);
        let _ = client(&self.0).batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; DROP ROLE IF EXISTS {role}"
        ));
    }
}

/// A schema of the test's own and a login role that may use it but not
/// create in it (both dropped first, and again when the guard drops), a
/// client of the server's owner, and the owner's settings in that schema.
fn schema_and_role(
    server: &PostgresConfig,
    schema: &'static str,
    role: &'static str,
) -> (DropsSchemaAndRole, postgres::Client, PostgresConfig) {
    let cleanup = DropsSchemaAndRole(server.clone(), schema, role);
    let mut db = client(server);
    db.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; DROP ROLE IF EXISTS {role}; \
         CREATE SCHEMA {schema}; CREATE ROLE {role} LOGIN; \
         GRANT USAGE ON SCHEMA {schema} TO {role}"
    ))
    .expect("a schema and a role that may not create in it");
    let mut owner = server.clone();
    owner.schema = Some(schema.to_owned());
    owner.originator_id_type = OriginatorIdType::Text;
    (cleanup, db, owner)
}

#[test]
fn a_role_that_does_not_own_the_tables_opens_them_with_create_table_on() {
    let Some(server) = server() else {
        return annals_tests::skipped("not_owner");
    };
    let (schema, role) = ("annals_not_owner", "annals_not_owner_service");
    let (cleanup, mut db, owner) = schema_and_role(&server, schema, role);
    // The owner creates the tables, as a migration would.
    drop(PostgresRecorder::open(&owner, "dogs").expect("the owner creates the tables"));
    // What a service writing events needs (UPDATE: writers lock the events
    // table in EXCLUSIVE mode, and tracking is an upsert); no ownership.
    db.batch_execute(&format!(
        "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"
    ))
    .expect("grants");
    let mut service = owner.clone();
    service.user = role.to_owned();
    service.password = None;
    assert!(service.create_tables, "CREATE_TABLE=yes, the default");
    {
        let r = PostgresRecorder::open(&service, "dogs")
            .unwrap_or_else(|e| panic!("the service opens the owner's tables: {}", e.report()));
        r.create_tables()
            .unwrap_or_else(|e| panic!("nothing is missing: {}", e.report()));
        r.insert_events(&[event("a", 1, "T")]).expect("insert");
        assert_eq!(
            r.select_events("a", &EventQuery::all())
                .expect("select")
                .len(),
            1
        );
        r.snapshot_recorder()
            .insert_events(&[event("a", 1, "Snapshot")])
            .expect("a snapshot");
    }
    // A table that is missing is still created (by a role that may).
    db.batch_execute(&format!("DROP TABLE {schema}.dogs_snapshots"))
        .expect("drop one table");
    drop(PostgresRecorder::open(&owner, "dogs").expect("the owner opens again"));
    let back: bool = db
        .query_one(
            &format!("SELECT to_regclass('{schema}.dogs_snapshots') IS NOT NULL"),
            &[],
        )
        .expect("regclass")
        .get(0);
    assert!(back, "the missing snapshots table was created");
    drop(db);
    drop(cleanup);
}

#[test]
fn a_role_without_update_on_a_sequence_that_is_behind_is_told_to_grant_it() {
    let Some(server) = server() else {
        return annals_tests::skipped("sequence_behind_role");
    };
    let (schema, role) = ("annals_seq_behind", "annals_seq_behind_service");
    let (cleanup, mut db, owner) = schema_and_role(&server, schema, role);
    let r = PostgresRecorder::open(&owner, "dogs").expect("the owner creates the tables");
    r.insert_events(&[event("a", 1, "T"), event("a", 2, "T")])
        .expect("insert");
    drop(r);
    // The sequence set back, as after rows stored without it.
    db.batch_execute(&format!(
        "SELECT setval(pg_get_serial_sequence('{schema}.dogs_events', 'notification_id'), 1); \
         GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"
    ))
    .expect("the sequence behind, and grants without UPDATE on it");
    let mut service = owner.clone();
    service.user = role.to_owned();
    service.password = None;
    let err = PostgresRecorder::open(&service, "dogs")
        .expect_err("setval needs UPDATE on the sequence")
        .report()
        .to_string();
    assert!(
        err.contains("UPDATE") && err.contains("behind") && err.contains("42501"),
        "{err}"
    );
    // With CREATE_TABLE=no the first write moves it, and says the same.
    let mut no_create = service.clone();
    no_create.create_tables = false;
    let r = PostgresRecorder::open(&no_create, "dogs").expect("opens without creating");
    let err = r
        .insert_events(&[event("b", 1, "T")])
        .expect_err("setval needs UPDATE on the sequence")
        .report()
        .to_string();
    assert!(err.contains("UPDATE") && err.contains("behind"), "{err}");
    drop(r);
    db.batch_execute(&format!(
        "GRANT UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"
    ))
    .expect("grant UPDATE");
    let r = PostgresRecorder::open(&service, "dogs")
        .unwrap_or_else(|e| panic!("opens with UPDATE: {}", e.report()));
    let ids = r.insert_events(&[event("b", 1, "T")]).expect("insert");
    assert_eq!(ids, [3], "the sequence was moved past the table's ids");
    drop(r);
    drop(db);
    drop(cleanup);
}

#[test]
fn create_table_is_read_and_honoured() {
    let with = |value: &str| {
        PostgresConfig::from_env(&Env::from_map(
            "App",
            [("POSTGRES_DBNAME", "d"), ("APP_CREATE_TABLE", value)],
        ))
    };
    let (var, message) = config_error(with("perhaps"));
    assert_eq!(var, "APP_CREATE_TABLE");
    assert!(message.contains("perhaps"), "{message}");
    assert!(!with("no").expect("no").create_tables);
    assert!(with("yes").expect("yes").create_tables);
    assert!(PostgresConfig::new("d").create_tables, "default");

    let Some(mut config) = server() else {
        return annals_tests::skipped("create_table_no");
    };
    config.originator_id_type = OriginatorIdType::Text;
    drop_tables(&config, "pg_no_create");
    config.create_tables = false;
    let r = PostgresRecorder::open(&config, "pg_no_create").expect("open without creating");
    let exists: bool = client(&config)
        .query_one("SELECT to_regclass('pg_no_create_events') IS NOT NULL", &[])
        .expect("regclass")
        .get(0);
    assert!(!exists, "CREATE_TABLE=no created the table");
    let err = r
        .insert_events(&[event("a", 1, "T")])
        .expect_err("no table");
    let shown = err.report().to_string();
    assert!(shown.contains("does not exist"), "{shown}");
    assert!(shown.contains("42P01"), "{shown}");
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

/// The columns of the primary key of `table` (sorted) and its rows, read
/// straight from the server.
fn tracking_table(db: &mut postgres::Client, table: &str) -> (Vec<String>, Vec<(String, i64)>) {
    let mut key: Vec<String> = db
        .query_one(
            "SELECT ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary)",
            &[&table],
        )
        .expect("primary key")
        .get(0);
    key.sort();
    let rows = db
        .query(
            &format!(
                "SELECT application_name, notification_id FROM {table} \
                 ORDER BY application_name, notification_id"
            ),
            &[],
        )
        .expect("rows")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    (key, rows)
}

fn up(notification_id: u64) -> Tracking {
    Tracking {
        application_name: "up".to_owned(),
        notification_id,
    }
}

/// Inserts `rows` (id, version) into `table` as the Python library does:
/// in a transaction that takes the table's EXCLUSIVE lock first, the
/// notification ids left to the column's default (its sequence), returned.
fn python_insert(
    db: &mut postgres::Client,
    table: &str,
    rows: &[(&str, i64)],
) -> Result<Vec<i64>, postgres::Error> {
    let mut tx = db.transaction()?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '0s'; LOCK TABLE {table} IN EXCLUSIVE MODE; NOTIFY {table}"
    ))?;
    let values: Vec<String> = (0..rows.len())
        .map(|i| format!("(${}, ${}, 'Py.Event', '\\x7b7d')", 2 * i + 1, 2 * i + 2))
        .collect();
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = rows
        .iter()
        .flat_map(|(id, version)| {
            [
                id as &(dyn postgres::types::ToSql + Sync),
                version as &(dyn postgres::types::ToSql + Sync),
            ]
        })
        .collect();
    let ids = tx
        .query(
            &format!(
                "INSERT INTO {table} (originator_id, originator_version, topic, state) \
                 VALUES {} RETURNING notification_id",
                values.join(", ")
            ),
            &params,
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    tx.commit()?;
    Ok(ids)
}

fn text_config() -> Option<PostgresConfig> {
    let mut config = server()?;
    config.originator_id_type = OriginatorIdType::Text;
    Some(config)
}

#[test]
fn annals_saves_and_python_style_inserts_interleave_with_unique_increasing_ids() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("python_interleaved");
    };
    let r = fresh(&config, "pg_py_interleaved");
    let mut db = client(&config);
    let table = "pg_py_interleaved_events";
    let mut ids: Vec<u64> = Vec::new();
    for round in 0..20 {
        let a = format!("annals-{round}");
        ids.extend(
            r.insert_events(&[event(&a, 1, "T"), event(&a, 2, "T")])
                .unwrap_or_else(|e| panic!("annals save {round}: {e}")),
        );
        let py = format!("python-{round}");
        let drawn = python_insert(&mut db, table, &[(&py, 1), (&py, 2)])
            .unwrap_or_else(|e| panic!("Python's insert {round} after annals' save: {e}"));
        ids.extend(drawn.iter().map(|&id| u64::try_from(id).expect("positive")));
        if round % 4 == 0 {
            // Conflicts on both sides waste ids: gaps, not collisions.
            assert!(r
                .insert_events(&[event(&py, 2, "T")])
                .expect_err("Python stored it")
                .is_conflict());
            let err = python_insert(&mut db, table, &[(&a, 2)]).expect_err("annals stored it");
            assert_eq!(
                err.code(),
                Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
            );
        }
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids increase in the order the saves were made: {ids:?}"
    );
    let log: Vec<u64> = r
        .select_notifications(&NotificationQuery::new(1, 1_000))
        .expect("log")
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(log, ids, "the log holds every save of both, in order");
    assert_eq!(
        r.select_events("python-3", &EventQuery::all())
            .expect("Python's rows read by annals")
            .len(),
        2
    );

    // Both at once: annals' writers (group commit) and a Python writer.
    let python_ids = std::thread::scope(|scope| {
        let python = scope.spawn(|| {
            let mut db = client(&config);
            (0..100)
                .flat_map(|i| {
                    let id = format!("py-thread-{i}");
                    python_insert(&mut db, table, &[(&id, 1)]).expect("Python's insert")
                })
                .collect::<Vec<i64>>()
        });
        let annals: Vec<_> = (0..3)
            .map(|w| {
                let r = &r;
                scope.spawn(move || {
                    (0..100)
                        .flat_map(|i| {
                            r.insert_events(&[event(&format!("annals-thread-{w}-{i}"), 1, "T")])
                                .expect("annals' save")
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = annals
            .into_iter()
            .flat_map(|h| h.join().expect("annals writer"))
            .collect();
        let python = python.join().expect("Python writer");
        assert!(python.windows(2).all(|w| w[0] < w[1]), "{python:?}");
        all.extend(
            python
                .iter()
                .map(|&id| u64::try_from(id).expect("positive")),
        );
        all
    });
    let mut unique = python_ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 400, "400 ids, none given twice");
    let log: Vec<u64> = r
        .select_notifications(&NotificationQuery::new(ids.last().expect("ids") + 1, 1_000))
        .expect("log")
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(log, unique, "the log holds exactly those, in id order");
}

#[test]
fn a_table_annals_numbered_itself_gets_its_sequence_moved_past_its_ids() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("sequence_behind");
    };
    let mut db = client(&config);
    // Rows numbered without the sequence, as annals numbered them before
    // it took its ids from it: the sequence has handed out nothing.
    let behind = |name: &str| {
        drop_tables(&config, name);
        drop(PostgresRecorder::open(&config, name).expect("create"));
        client(&config)
            .batch_execute(&format!(
                "INSERT INTO {name}_events \
                 (originator_id, originator_version, topic, state, notification_id) \
                 SELECT 'old', v, 'T', '\\x7b7d', v FROM generate_series(1, 5) AS v"
            ))
            .expect("rows numbered by hand");
    };

    // Opened (creating tables): the sequence is moved at once, so a
    // Python writer is next.
    behind("pg_seq_open");
    PostgresRecorder::open(&config, "pg_seq_open").expect("open");
    let drawn = python_insert(&mut db, "pg_seq_open_events", &[("py", 1)]).expect("Python");
    assert_eq!(drawn, [6]);

    // Opened without creating tables: annals' first write moves it.
    behind("pg_seq_write");
    let mut no_create = config.clone();
    no_create.create_tables = false;
    let r = PostgresRecorder::open(&no_create, "pg_seq_write").expect("open");
    assert_eq!(
        r.insert_events(&[event("new", 1, "T")]).expect("insert"),
        [6]
    );
    let drawn = python_insert(&mut db, "pg_seq_write_events", &[("py", 1)]).expect("Python");
    assert_eq!(drawn, [7]);
}

#[test]
fn a_notification_id_the_sequence_gives_twice_is_no_conflict_of_the_caller() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("sequence_set_back");
    };
    let r = fresh(&config, "pg_seq_back");
    r.insert_events(&[event("a", 1, "T"), event("a", 2, "T")])
        .expect("insert");
    client(&config)
        .batch_execute(
            "SELECT setval(pg_get_serial_sequence('pg_seq_back_events', 'notification_id'), 1)",
        )
        .expect("set the sequence back");
    let err = r
        .insert_events(&[event("b", 1, "T")])
        .expect_err("id 2 is taken");
    assert!(!err.is_conflict(), "not the caller's conflict: {err}");
    let shown = err.report().to_string();
    assert!(
        shown.contains("sequence is behind") && shown.contains("23505"),
        "{shown}"
    );
    assert!(r
        .select_events("b", &EventQuery::all())
        .expect("select")
        .is_empty());
}

#[test]
fn a_conflict_names_the_taken_key_and_a_nul_is_refused_before_the_server() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("conflict_key");
    };
    let r = fresh(&config, "pg_conflict_key");
    r.insert_events(&[event("a", 1, "T"), event("a", 2, "T")])
        .expect("insert");
    // Version 3 is free, 2 is taken: the insert stores 3, then undoes it.
    match r.insert_events(&[event("a", 3, "T"), event("a", 2, "T")]) {
        Err(Error::Conflict { id, version, .. }) => {
            assert_eq!((id.as_deref(), version), (Some("a"), Some(2)));
        }
        other => panic!("a conflict at a/2, got {other:?}"),
    }
    let err = r
        .insert_events(&[event("n", 1, "T\0")])
        .expect_err("PostgreSQL's text cannot hold a NUL");
    assert!(!err.is_conflict());
    assert!(err.report().to_string().contains("NUL character"), "{err}");
    let stored: Vec<u64> = r
        .select_events("a", &EventQuery::all())
        .expect("select")
        .iter()
        .map(|e| e.originator_version)
        .collect();
    assert_eq!(stored, [1, 2]);
    assert_eq!(r.max_notification_id().expect("max"), 2);
    r.insert_events(&[event("a", 3, "T")])
        .expect("the store goes on");
    // Saves that join another's transaction (group commit) take another
    // path to the same error: 8 threads race for the same versions.
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for v in 1..=30 {
                    match r.insert_events(&[event("race", v, "T"), event("race", v + 100, "T")]) {
                        Ok(_) => {}
                        Err(Error::Conflict { id, version, .. }) => {
                            assert_eq!(id.as_deref(), Some("race"));
                            assert!(
                                version == Some(v) || version == Some(v + 100),
                                "{version:?} for {v}"
                            );
                        }
                        Err(e) => panic!("not a conflict: {}", e.report()),
                    }
                }
            });
        }
    });
    let race: Vec<u64> = r
        .select_events("race", &EventQuery::all())
        .expect("select")
        .iter()
        .map(|e| e.originator_version)
        .collect();
    assert_eq!(race, (1..=30).chain(101..=130).collect::<Vec<_>>());
}

#[test]
fn concurrent_saves_get_the_notification_ids_of_their_own_events() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("combined_ids");
    };
    let r = fresh(&config, "pg_combined_ids");
    // Saves of 1 to 3 events, queued behind one another and inserted by
    // whichever holds the writer; every fifth one at a taken key.
    // Per acknowledged save: its ids, and the (stream, version) of its events.
    type Saved = (Vec<u64>, Vec<(String, u64)>);
    let saved: Vec<Saved> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let r = &r;
                scope.spawn(move || {
                    let mut saved = Vec::new();
                    let mut next = [1u64; 3];
                    for i in 0..60u64 {
                        let j = (i % 3) as usize;
                        let stream = format!("s{t}-{j}");
                        let taken = i % 5 == 4 && next[j] > 1;
                        let version = if taken { 1 } else { next[j] };
                        let n = 1 + (i / 3) % 3;
                        let events: Vec<_> =
                            (0..n).map(|k| event(&stream, version + k, "T")).collect();
                        match r.insert_events(&events) {
                            Ok(ids) => {
                                assert!(!taken, "save {t}/{i} at a taken key was stored");
                                next[j] += n;
                                let keys = events
                                    .iter()
                                    .map(|e| (e.originator_id.clone(), e.originator_version))
                                    .collect();
                                saved.push((ids, keys));
                            }
                            Err(e) if e.is_conflict() && taken => {}
                            Err(e) => panic!("save {t}/{i}: {}", e.report()),
                        }
                    }
                    saved
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let log = r
        .select_notifications(&NotificationQuery::new(1, 100_000))
        .expect("log");
    let by_id: std::collections::HashMap<u64, (String, u64)> = log
        .iter()
        .map(|n| {
            (
                n.id,
                (n.event.originator_id.clone(), n.event.originator_version),
            )
        })
        .collect();
    let events: usize = saved.iter().map(|(ids, _)| ids.len()).sum();
    assert_eq!(log.len(), events, "every stored event was acknowledged");
    for (ids, keys) in &saved {
        let found: Vec<_> = ids.iter().map(|id| by_id[id].clone()).collect();
        assert_eq!(&found, keys, "ids {ids:?}");
    }
}

#[test]
fn saves_of_groups_whose_connection_is_killed_are_stored_whole_or_not_at_all() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("killed_groups");
    };
    config.originator_id_type = OriginatorIdType::Text;
    let r = fresh(&config, "pg_killed_groups");
    let done = AtomicBool::new(false);
    let outcomes: Vec<(String, Result<Vec<u64>, String>)> = std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            let mut db = client(&config);
            let mut kills = 0;
            for _ in 0..40 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                let killed: i64 = db
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity \
                         WHERE pid <> pg_backend_pid() AND query LIKE '%pg_killed_groups_events%'",
                        &[],
                    )
                    .expect("terminate")
                    .get(0);
                kills += killed;
            }
            kills
        });
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let r = &r;
                scope.spawn(move || {
                    (0..250)
                        .map(|i| {
                            let stream = format!("k{t}-{i}");
                            let saved = r
                                .insert_events(&[event(&stream, 1, "T"), event(&stream, 2, "T")])
                                .map_err(|e| e.report().to_string());
                            (stream, saved)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let outcomes = writers
            .into_iter()
            .flat_map(|h| h.join().expect("writer"))
            .collect();
        done.store(true, Ordering::SeqCst);
        assert!(
            killer.join().expect("killer") > 0,
            "no connection was killed"
        );
        outcomes
    });
    let mut oks = 0;
    for (stream, saved) in &outcomes {
        let stored = r.select_events(stream, &EventQuery::all()).expect("select");
        match saved {
            Ok(ids) => {
                oks += 1;
                assert_eq!(stored.len(), 2, "{stream}: acknowledged, stored whole");
                assert_eq!(ids.len(), 2);
            }
            Err(e) if e.contains("unknown") => {
                assert!(stored.len() == 2 || stored.is_empty(), "{stream}: {e}")
            }
            Err(e) => assert!(stored.is_empty(), "{stream}: failed, yet stored: {e}"),
        }
    }
    eprintln!(
        "killed groups: {oks} of {} saves acknowledged",
        outcomes.len()
    );
    assert!(oks > 0, "no save got through");
}

#[test]
fn tables_are_created_with_the_python_librarys_storage_options() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("storage_options");
    };
    fresh(&config, "pg_options");
    let mut db = client(&config);
    for table in [
        "pg_options_events",
        "pg_options_snapshots",
        "pg_options_tracking",
    ] {
        let options: Vec<String> = db
            .query_one(
                "SELECT reloptions FROM pg_class WHERE oid = $1::text::regclass",
                &[&table],
            )
            .expect("reloptions")
            .get(0);
        assert_eq!(
            options,
            [
                "autovacuum_enabled=true",
                "autovacuum_vacuum_threshold=100000000",
                "autovacuum_vacuum_scale_factor=0.5",
                "autovacuum_analyze_threshold=1000",
                "autovacuum_analyze_scale_factor=0.01"
            ],
            "{table}"
        );
    }
}

#[test]
fn new_tracking_tables_are_single_row_with_the_python_librarys_migration_row() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("pg_single_row");
    };
    let r = fresh(&config, "pg_single_row");
    assert_eq!(r.tracking_layout(), TrackingLayout::SingleRow);
    let mut db = client(&config);
    let table = "pg_single_row_tracking";
    assert_eq!(
        tracking_table(&mut db, table),
        (
            vec!["application_name".to_owned()],
            vec![("__migration__".to_owned(), 1)]
        )
    );
    r.insert_events_tracked(&[event("a", 1, "T")], &up(3))
        .expect("tracked");
    for n in [3, 2] {
        let err = r
            .insert_events_tracked(&[event("b", 1, "T")], &up(n))
            .expect_err("tracked already");
        assert!(err.is_conflict(), "{n}: {err}");
        assert!(err.to_string().contains("tracked already"), "{err}");
        assert!(r
            .select_events("b", &EventQuery::all())
            .expect("select")
            .is_empty());
    }
    r.insert_events_tracked(&[], &up(5))
        .expect("tracking alone");
    assert_eq!(r.max_tracking_id("up").expect("max"), 5);
    assert!(r.has_tracking_id("up", 4).expect("has"));
    assert!(!r.has_tracking_id("up", 6).expect("has"));
    // Concurrent records of one upstream from two recorders (as two
    // processes): each id is taken once.
    let other = PostgresRecorder::open(&config, "pg_single_row").expect("second");
    let won: usize = std::thread::scope(|scope| {
        [&r, &other]
            .map(|rec| {
                scope.spawn(move || {
                    (6..40)
                        .filter(|&n| match rec.insert_events_tracked(&[], &up(n)) {
                            Ok(_) => true,
                            Err(e) if e.is_conflict() => false,
                            Err(e) => panic!("{e}"),
                        })
                        .count()
                })
            })
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .sum()
    });
    assert!((34..=68).contains(&won), "{won}");
    assert_eq!(r.max_tracking_id("up").expect("max"), 39);
    assert_eq!(
        tracking_table(&mut db, table).1,
        [("__migration__".to_owned(), 1), ("up".to_owned(), 39)]
    );
}

#[test]
fn tracking_tables_in_the_python_librarys_layouts_are_used_as_they_are() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("pg_python_tracking");
    };
    let options = "WITH (autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000, \
                   autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000, \
                   autovacuum_analyze_scale_factor = 0.01)";
    // As the Python library (9.5) creates them.
    let python = [
        (
            "pg_py_single",
            "PRIMARY KEY (application_name)",
            "('__migration__', 1), ('up', 7)",
            TrackingLayout::SingleRow,
        ),
        (
            "pg_py_multi",
            "PRIMARY KEY (application_name, notification_id)",
            "('up', 6), ('up', 7)",
            TrackingLayout::MultiRow,
        ),
    ];
    let mut db = client(&config);
    for (name, key, rows, layout) in python {
        drop_tables(&config, name);
        db.batch_execute(&format!(
            "DROP TABLE IF EXISTS bkup1_{name}_tracking; \
             CREATE TABLE {name}_tracking (application_name text, notification_id bigint, \
             {key}){options}; \
             INSERT INTO {name}_tracking VALUES {rows}"
        ))
        .expect("the Python library's table");
        let table = format!("{name}_tracking");
        let before = tracking_table(&mut db, &table);
        for wanted in [TrackingLayout::SingleRow, TrackingLayout::MultiRow] {
            if layout == TrackingLayout::SingleRow && wanted == TrackingLayout::MultiRow {
                continue; // refused: the next test
            }
            for create in [true, false] {
                let mut config = config.clone();
                config.tracking_layout = wanted;
                config.create_tables = create;
                let r = PostgresRecorder::open(&config, name).expect(name);
                assert_eq!(
                    r.tracking_layout(),
                    layout,
                    "{name}: the table's own layout"
                );
                assert_eq!(r.max_tracking_id("up").expect("max"), 7, "{name}");
            }
        }
        assert_eq!(
            tracking_table(&mut db, &table),
            before,
            "{name}: opening changed nothing"
        );
        let r = PostgresRecorder::open(&config, name).expect(name);
        r.insert_events_tracked(&[event("a", 1, "T")], &up(9))
            .expect("tracked");
        assert!(r
            .insert_events_tracked(&[event("b", 1, "T")], &up(9))
            .expect_err("twice")
            .is_conflict());
        let lower = r.insert_events_tracked(&[event("c", 1, "T")], &up(8));
        match layout {
            TrackingLayout::SingleRow => {
                assert!(lower.expect_err("below the row").is_conflict(), "{name}")
            }
            TrackingLayout::MultiRow => {
                lower.expect("multi-row takes any untracked id");
            }
        }
        assert_eq!(r.max_tracking_id("up").expect("max"), 9, "{name}");
        let renamed: bool = db
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("bkup1_{table}")],
            )
            .expect("regclass")
            .get(0);
        assert!(!renamed, "{name}");
    }
}

#[test]
fn a_single_row_table_with_multi_row_tracking_asked_for_is_a_config_error() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("pg_single_asked_multi");
    };
    fresh(&config, "pg_single_multi");
    for create in ["yes", "no"] {
        let mut multi = config.clone();
        multi.tracking_layout = PostgresConfig::from_env(&Env::from_map(
            "App",
            [
                ("POSTGRES_DBNAME", "d"),
                ("SINGLE_ROW_TRACKING", "no"),
                ("CREATE_TABLE", create),
            ],
        ))
        .expect("config")
        .tracking_layout;
        multi.create_tables = create == "yes";
        let (var, message) = config_error(PostgresRecorder::open(&multi, "pg_single_multi"));
        assert_eq!(var, "SINGLE_ROW_TRACKING");
        assert!(message.contains("SINGLE_ROW_TRACKING=yes"), "{message}");
    }
    // A table of neither layout, whatever is asked.
    drop_tables(&config, "pg_odd_tracking");
    client(&config)
        .batch_execute(
            "CREATE TABLE pg_odd_tracking_tracking (application_name text, notification_id bigint)",
        )
        .expect("no key");
    let (var, message) = config_error(PostgresRecorder::open(&config, "pg_odd_tracking"));
    assert_eq!(var, "SINGLE_ROW_TRACKING");
    assert!(message.contains("neither"), "{message}");
}

#[test]
fn single_row_tracking_no_creates_multi_row_tables_without_the_migration_row() {
    let Some(mut config) = text_config() else {
        return annals_tests::skipped("pg_multi_row_env");
    };
    config.tracking_layout = TrackingLayout::MultiRow;
    let r = fresh(&config, "pg_multi_row");
    assert_eq!(r.tracking_layout(), TrackingLayout::MultiRow);
    r.insert_events_tracked(&[], &up(2)).expect("tracked");
    r.insert_events_tracked(&[], &up(1)).expect("any order");
    assert!(!r.has_tracking_id("up", 3).expect("has"));
    assert_eq!(
        tracking_table(&mut client(&config), "pg_multi_row_tracking"),
        (
            vec!["application_name".to_owned(), "notification_id".to_owned()],
            vec![("up".to_owned(), 1), ("up".to_owned(), 2)]
        )
    );
}

/// The published DDL makes the tables an application then opens with
/// `CREATE_TABLE=no`; `migrate` does the same from the builder.
#[test]
fn the_published_ddl_and_migrate_make_the_tables() {
    let Some(server) = server() else {
        annals_tests::skipped("the_published_ddl_and_migrate_make_the_tables");
        return;
    };
    for app in ["DdlMade", "Migrated"] {
        drop_tables(&server, app);
    }
    let ddl = server.ddl("DdlMade").unwrap();
    client(&server).batch_execute(&ddl).unwrap();
    let mut fixed = server.clone();
    fixed.create_tables = false;
    let app = annals::Application::builder("DdlMade")
        .postgres(fixed.clone())
        .build()
        .unwrap();
    assert_eq!(app.last_notification_id().unwrap(), None);
    let layout: i64 = client(&server)
        .query_one(
            "SELECT notification_id FROM ddlmade_tracking WHERE application_name = '__migration__'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(layout, 1, "the single-row layout's migration row");

    let unmade = annals::Application::builder("Migrated")
        .postgres(fixed.clone())
        .build()
        .and_then(|app| app.last_notification_id());
    assert!(unmade.is_err(), "no tables yet: {unmade:?}");
    annals::Application::builder("Migrated")
        .postgres(fixed.clone())
        .migrate()
        .unwrap();
    let app = annals::Application::builder("Migrated")
        .postgres(fixed)
        .build()
        .unwrap();
    assert_eq!(app.last_notification_id().unwrap(), None);
}
