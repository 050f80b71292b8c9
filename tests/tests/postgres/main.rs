//! The recorder contract and PostgreSQL-specific behaviour, against the
//! server that `POSTGRES_DBNAME`, `POSTGRES_HOST`, ... name. Without
//! `POSTGRES_DBNAME` the server tests are skipped, except in CI (`CI` set),
//! where that is a failure.

use annals::persistence::postgres::{OriginatorIdType, PostgresConfig, PostgresRecorder};
use annals::Error;

use annals_tests::stores::{
    drop_postgres_tables as drop_tables, postgres_client as client, postgres_server as server,
};

mod concurrency;
mod connections_and_timeouts;
mod contract;
mod dcb;
mod ids_and_columns;
mod import;
mod python_interop;
mod roles_and_schemas;
mod settings;
mod tables;
mod tracking;

/// A recorder on empty tables of application `name`.
fn fresh(config: &PostgresConfig, name: &str) -> PostgresRecorder {
    drop_tables(config, name);
    PostgresRecorder::open(config, name).expect("open")
}

fn config_error(result: Result<impl std::fmt::Debug, Error>) -> (String, String) {
    match result {
        Err(Error::Config { setting, message }) => (setting, message),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

fn text_config() -> Option<PostgresConfig> {
    let mut config = server()?;
    config.originator_id_type = OriginatorIdType::Text;
    Some(config)
}
