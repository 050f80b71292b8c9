//! Settings read from the environment, and values PostgreSQL cannot take.

use std::time::Duration;

use annals::env::Env;
use annals::persistence::postgres::{OriginatorIdType, PostgresConfig, PostgresRecorder};

use crate::config_error;

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
