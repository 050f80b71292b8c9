//! The test server, from `MYSQL_*` variables, and fresh tables.

#![allow(dead_code, unreachable_pub)]

use annals_core::env::Env;
use annals_core::persistence::TrackingLayout;
use annals_mysql::mysql::prelude::Queryable;
use annals_mysql::{MysqlConfig, MysqlRecorder};

/// The test server's settings (`MYSQL_DBNAME`, `MYSQL_HOST`, ...), or
/// `None` when none is configured. In CI (`CI` set) a missing server is a
/// failure, not a skip.
pub fn server() -> Option<MysqlConfig> {
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

/// A direct connection to the test server, to inspect and clean up.
pub fn client(config: &MysqlConfig) -> annals_mysql::mysql::Conn {
    let opts = annals_mysql::mysql::OptsBuilder::new()
        .ip_or_hostname(Some(config.host.clone()))
        .tcp_port(config.port)
        .user(Some(config.user.clone()))
        .pass(config.password.clone())
        .db_name(Some(config.dbname.clone()));
    annals_mysql::mysql::Conn::new(opts).expect("connect to the test server")
}

/// Drops the tables of application `name`.
pub fn drop_tables(config: &MysqlConfig, name: &str) {
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
    client(config)
        .query_drop(format!("DROP TABLE IF EXISTS {}", tables.join(", ")))
        .expect("drop tables");
}

/// A recorder on empty tables of application `name`, its tracking table
/// in `layout`.
pub fn fresh(name: &str, layout: TrackingLayout) -> Option<MysqlRecorder> {
    let mut config = server()?;
    config.tracking_layout = layout;
    drop_tables(&config, name);
    Some(MysqlRecorder::open(&config, name).expect("open"))
}
