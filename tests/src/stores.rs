//! Fresh stores for tests: a temporary SQLite file, PostgreSQL tables
//! dropped first, and every store at once for tests that must pass on all.

use annals::env::Env;
use annals::mysql::prelude::Queryable;
use annals::persistence::mysql::MysqlConfig;
use annals::persistence::postgres::PostgresConfig;
use annals::persistence::sqlite::SqliteConfig;
use annals::Persistence;

/// The test server's settings (`POSTGRES_DBNAME`, `POSTGRES_HOST`, ...), or
/// `None` when none is configured. In CI (`CI` set) a missing server is a
/// failure, not a skip.
pub fn postgres_server() -> Option<PostgresConfig> {
    let env = Env::from_process("annals_test");
    if env.get("POSTGRES_DBNAME").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL tests must run in CI: set POSTGRES_DBNAME"
        );
        return None;
    }
    Some(PostgresConfig::from_env(&env).expect("the test server's settings"))
}

/// A direct connection to the test server, to inspect and clean up.
pub fn postgres_client(config: &PostgresConfig) -> postgres::Client {
    let mut c = postgres::Config::new();
    c.dbname(&config.dbname)
        .host(&config.host)
        .port(config.port)
        .user(&config.user);
    if let Some(password) = &config.password {
        c.password(password);
    }
    c.connect(postgres::NoTls)
        .expect("connect to the test server")
}

/// `table`, schema-qualified and quoted as the recorder names it.
pub fn qualified(config: &PostgresConfig, table: &str) -> String {
    match &config.schema {
        Some(schema) => format!("\"{schema}\".\"{table}\""),
        None => format!("\"{table}\""),
    }
}

/// Drops the tables of application `name` (lower-cased, as the recorder
/// names them).
pub fn drop_postgres_tables(config: &PostgresConfig, name: &str) {
    let name = name.to_ascii_lowercase();
    let tables: Vec<String> = ["events", "tracking", "snapshots", "outcomes", "data_keys"]
        .iter()
        .map(|t| qualified(config, &format!("{name}_{t}")))
        .collect();
    postgres_client(config)
        .batch_execute(&format!("DROP TABLE IF EXISTS {}", tables.join(", ")))
        .expect("drop tables");
}

/// The MariaDB/MySQL test server's settings (`MYSQL_DBNAME`, `MYSQL_HOST`,
/// ...), or `None` when none is configured. In CI (`CI` set) a missing
/// server is a failure, not a skip.
pub fn mysql_server() -> Option<MysqlConfig> {
    let env = Env::from_process("annals_test");
    if env.get("MYSQL_DBNAME").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "MariaDB/MySQL tests must run in CI: set MYSQL_DBNAME"
        );
        return None;
    }
    Some(MysqlConfig::from_env(&env).expect("the test server's settings"))
}

/// A direct connection to the MariaDB/MySQL test server, to inspect and
/// clean up.
pub fn mysql_client(config: &MysqlConfig) -> annals::mysql::Conn {
    let opts = annals::mysql::OptsBuilder::new()
        .ip_or_hostname(Some(config.host.clone()))
        .tcp_port(config.port)
        .user(Some(config.user.clone()))
        .pass(config.password.clone())
        .db_name(Some(config.dbname.clone()));
    annals::mysql::Conn::new(opts).expect("connect to the MariaDB/MySQL test server")
}

/// Drops the MariaDB/MySQL tables of application `name` (lower-cased, as
/// the recorder names them).
pub fn drop_mysql_tables(config: &MysqlConfig, name: &str) {
    let name = name.to_ascii_lowercase();
    let tables: Vec<String> = [
        "events",
        "tracking",
        "snapshots",
        "outcomes",
        "lock",
        "data_keys",
    ]
    .iter()
    .map(|t| format!("`{name}_{t}`"))
    .collect();
    mysql_client(config)
        .query_drop(format!("DROP TABLE IF EXISTS {}", tables.join(", ")))
        .expect("drop tables");
}

/// A new directory for a test's files, under the build directory
/// (`target/<profile>/test-data/`, so `cargo clean` removes them), kept
/// after the test so databases outlive the recorders that use them.
pub fn temp_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary>
    let base = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|profile| profile.join("test-data"))
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("test data dir");
    tempfile::Builder::new()
        .prefix("annals-")
        .tempdir_in(base)
        .expect("temp dir")
        .keep()
}

/// A path for a new SQLite database file in a new directory of
/// [`temp_dir`].
pub fn temp_sqlite(name: &str) -> String {
    temp_dir()
        .join(format!("{name}.db"))
        .to_string_lossy()
        .into_owned()
}

/// Every store, empty, for an application named `app` (a valid table
/// prefix): memory, a SQLite file, and PostgreSQL and MariaDB/MySQL when
/// configured (else the caller is told they were skipped).
pub fn every_store(app: &str) -> Vec<(&'static str, Persistence)> {
    every_store_for(&[app])
}

/// Every store, empty for all the applications named in `apps` (the
/// SQLite file is named after the first).
pub fn every_store_for(apps: &[&str]) -> Vec<(&'static str, Persistence)> {
    let first = apps.first().copied().unwrap_or("app");
    let mut stores = vec![
        ("memory", Persistence::Memory),
        (
            "sqlite",
            Persistence::Sqlite(SqliteConfig::new(temp_sqlite(first))),
        ),
    ];
    match postgres_server() {
        Some(config) => {
            for app in apps {
                drop_postgres_tables(&config, app);
            }
            stores.push(("postgres", Persistence::Postgres(config)));
        }
        None => crate::skipped(&format!("{first} on postgres")),
    }
    match mysql_server() {
        Some(config) => {
            for app in apps {
                drop_mysql_tables(&config, app);
            }
            stores.push(("mysql", Persistence::Mysql(config)));
        }
        None => crate::skipped(&format!("{first} on mysql")),
    }
    stores
}
