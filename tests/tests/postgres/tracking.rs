//! Tracking tables: single-row with the migration row, multi-row, and
//! the Python library's layouts used as they are (the tests SQLite shares,
//! `annals_tests::tracking`, on the server's tables).

use annals::env::Env;
use annals::persistence::postgres::{PostgresConfig, PostgresRecorder};
use annals::persistence::TrackingLayout;
use annals::Error;
use annals_tests::tracking::Tables;

use crate::{client, drop_tables, text_config};

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

/// Tables of application `pg_<name>` (dropped first) for the
/// tracking-layout tests PostgreSQL shares with SQLite.
struct PostgresTables {
    config: PostgresConfig,
    name: String,
}

impl PostgresTables {
    fn new(config: &PostgresConfig, name: &str) -> Self {
        let name = format!("pg_{name}");
        drop_tables(config, &name);
        PostgresTables {
            config: config.clone(),
            name,
        }
    }
}

impl Tables for PostgresTables {
    type Recorder = PostgresRecorder;

    fn layout(recorder: &PostgresRecorder) -> TrackingLayout {
        recorder.tracking_layout()
    }

    fn open(&self) -> Result<PostgresRecorder, Error> {
        PostgresRecorder::open(&self.config, &self.name)
    }

    fn open_with(
        &self,
        layout: TrackingLayout,
        create_tables: bool,
    ) -> Result<PostgresRecorder, Error> {
        let mut config = self.config.clone();
        config.tracking_layout = layout;
        config.create_tables = create_tables;
        PostgresRecorder::open(&config, &self.name)
    }

    /// The layout and `CREATE_TABLE` read from the environment, the rest
    /// (the test server) as before.
    fn open_from_env(
        &self,
        settings: &[(&str, &str)],
    ) -> (TrackingLayout, Result<PostgresRecorder, Error>) {
        let mut vars = vec![("POSTGRES_DBNAME", "d")];
        vars.extend_from_slice(settings);
        let read = PostgresConfig::from_env(&Env::from_map("App", vars)).expect("config");
        let mut config = self.config.clone();
        config.tracking_layout = read.tracking_layout;
        config.create_tables = read.create_tables;
        (
            config.tracking_layout,
            PostgresRecorder::open(&config, &self.name),
        )
    }

    fn create_tracking_table(&self, layout: Option<TrackingLayout>, rows: &str) {
        let name = &self.name;
        let options = "WITH (autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000, \
                       autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000, \
                       autovacuum_analyze_scale_factor = 0.01)";
        let key = match layout {
            Some(TrackingLayout::SingleRow) => ", PRIMARY KEY (application_name)",
            Some(TrackingLayout::MultiRow) => ", PRIMARY KEY (application_name, notification_id)",
            None => "",
        };
        // The Python library's tables have its storage options; the one in
        // neither layout, none.
        let options = if layout.is_some() { options } else { "" };
        let mut db = client(&self.config);
        db.batch_execute(&format!(
            "DROP TABLE IF EXISTS bkup1_{name}_tracking; \
             CREATE TABLE {name}_tracking (application_name text, notification_id bigint\
             {key}){options}"
        ))
        .expect("the tracking table");
        if !rows.is_empty() {
            db.batch_execute(&format!("INSERT INTO {name}_tracking VALUES {rows}"))
                .expect("its rows");
        }
    }

    fn tracking_table(&self) -> (Vec<String>, Vec<(String, i64)>) {
        tracking_table(
            &mut client(&self.config),
            &format!("{}_tracking", self.name),
        )
    }

    fn assert_nothing_renamed(&self, name: &str) {
        let renamed: bool = client(&self.config)
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("bkup1_{}_tracking", self.name)],
            )
            .expect("regclass")
            .get(0);
        assert!(!renamed, "{name}");
    }
}

#[test]
fn new_tracking_tables_are_single_row_with_the_python_librarys_migration_row() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("pg_single_row");
    };
    annals_tests::tracking::new_tracking_tables_are_single_row_with_the_python_librarys_migration_row(
        |name| PostgresTables::new(&config, name),
    );
}

#[test]
fn tracking_tables_in_the_python_librarys_layouts_are_used_as_they_are() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("pg_python_tracking");
    };
    annals_tests::tracking::tracking_tables_in_the_python_librarys_layouts_are_used_as_they_are(
        |name| PostgresTables::new(&config, name),
    );
}

#[test]
fn a_single_row_table_with_multi_row_tracking_asked_for_is_a_config_error() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("pg_single_asked_multi");
    };
    annals_tests::tracking::a_single_row_table_with_multi_row_tracking_asked_for_is_a_config_error(
        |name| PostgresTables::new(&config, name),
    );
}

#[test]
fn single_row_tracking_no_creates_multi_row_tables_without_the_migration_row() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("pg_multi_row_env");
    };
    annals_tests::tracking::single_row_tracking_no_creates_multi_row_tables_without_the_migration_row(
        |name| PostgresTables::new(&config, name),
    );
}
