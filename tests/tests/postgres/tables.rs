//! The tables' names, their creation (`CREATE_TABLE`, the published DDL,
//! migrate) and their storage options.

use annals::env::Env;
use annals::persistence::postgres::{OriginatorIdType, PostgresConfig, PostgresRecorder};
use annals::persistence::{AggregateRecorder, ApplicationRecorder};
use annals::testing::contract::event;

use crate::{client, config_error, drop_tables, fresh, server, text_config};

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
