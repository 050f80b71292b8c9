//! The recorder contract on SQLite (a file and an in-memory database), and
//! what only SQLite has: files shared by processes, settings, table names.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use annals::env::Env;
use annals::persistence::sqlite::{SqliteConfig, SqliteRecorder};
use annals::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, NotificationQuery, TrackingLayout,
};
use annals::testing::contract::event;
use annals::Error;
use annals_tests::tracking::Tables;

/// A fresh database file in its own temporary directory (kept for the
/// process's life so the file outlives the recorder's tests).
fn temp_db(name: &str) -> PathBuf {
    let dir = annals_tests::stores::temp_dir();
    dir.join(format!("{name}.db"))
}

/// A recorder on a new file whose tracking table is created in `layout`.
fn open_with_layout(name: &str, layout: TrackingLayout) -> SqliteRecorder {
    let mut config = SqliteConfig::new(temp_db(name).to_string_lossy());
    config.tracking_layout = layout;
    let r = SqliteRecorder::open(config).expect("open");
    assert_eq!(r.tracking_layout(), layout);
    r
}

/// The contract with the default layout: single-row tracking.
mod file {
    use super::*;
    annals::recorder_contract!(|name| Some(Arc::new(super::open_with_layout(
        name,
        TrackingLayout::SingleRow
    ))));
}

mod file_multi_row_tracking {
    use super::*;
    annals::recorder_contract!(|name| Some(Arc::new(super::open_with_layout(
        name,
        TrackingLayout::MultiRow
    ))));
}

mod in_memory {
    use super::*;
    annals::recorder_contract!(|_| Some(Arc::new(SqliteRecorder::in_memory().expect("open"))));
}

mod in_memory_multi_row_tracking {
    use super::*;
    annals::recorder_contract!(|_| {
        let mut config = SqliteConfig::new(":memory:");
        config.tracking_layout = TrackingLayout::MultiRow;
        Some(Arc::new(SqliteRecorder::open(config).expect("open")))
    });
}

#[test]
fn events_survive_reopening_the_file_and_wal_is_on() {
    let path = temp_db("reopen");
    let config = SqliteConfig::new(path.to_string_lossy());
    {
        let r = SqliteRecorder::open(config.clone()).expect("open");
        r.insert_events(&[event("a", 1, "T"), event("a", 2, "T")])
            .expect("insert");
    }
    let r = SqliteRecorder::open(config).expect("reopen");
    assert_eq!(
        r.select_events("a", &EventQuery::all())
            .expect("select")
            .len(),
        2
    );
    assert_eq!(r.max_notification_id().expect("max"), 2);
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[test]
fn the_tables_are_the_python_librarys() {
    let path = temp_db("layout");
    let r = SqliteRecorder::open(SqliteConfig::new(path.to_string_lossy())).expect("open");
    let id = "0123456789abcdef0123456789abcdef";
    r.insert_events(&[event(id, 1, "Dog.Registered")])
        .expect("insert");
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    tables.sort();
    assert_eq!(
        tables,
        [
            "stored_data_keys",
            "stored_events",
            "stored_outcomes",
            "stored_snapshots",
            "tracking"
        ]
    );
    let row: (i64, String, i64, String, Vec<u8>) = conn
        .query_row(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("row");
    assert_eq!(row.0, 1);
    assert_eq!(row.1, id);
    assert_eq!((row.2, row.3.as_str()), (1, "Dog.Registered"));
    // A row written by another program (as the Python library writes them)
    // is read like our own.
    conn.execute(
        "INSERT INTO stored_events VALUES (?1, 2, 'Dog.TrickAdded', x'7b7d')",
        [id],
    )
    .expect("raw insert");
    let events = r.select_events(id, &EventQuery::all()).expect("select");
    assert_eq!(events[1].state, b"{}");
}

#[test]
fn a_table_prefix_gives_each_application_its_own_tables_in_one_file() {
    let path = temp_db("shared");
    let open = |prefix: &str| {
        let mut config = SqliteConfig::new(path.to_string_lossy());
        config.table_prefix = Some(prefix.to_owned());
        SqliteRecorder::open(config).expect("open")
    };
    let orders = open("Orders");
    let payments = open("payments");
    orders.insert_events(&[event("o", 1, "T")]).expect("insert");
    payments
        .insert_events(&[event("p", 1, "T"), event("p", 2, "T")])
        .expect("insert");
    assert_eq!(orders.max_notification_id().expect("max"), 1);
    assert_eq!(payments.max_notification_id().expect("max"), 2);
    assert!(orders
        .select_events("p", &EventQuery::all())
        .expect("select")
        .is_empty());
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM orders_events", [], |r| r.get(0))
        .expect("orders_events exists");
    assert_eq!(n, 1);
}

#[test]
fn table_names_are_validated() {
    for bad in ["x; DROP TABLE stored_events", "1abc", "a-b", "", "名前"] {
        let mut config = SqliteConfig::new(":memory:");
        config.table_prefix = Some(bad.to_owned());
        let err = SqliteRecorder::open(config).expect_err(bad);
        assert!(matches!(err, Error::Config { .. }), "{bad}: {err}");
        assert!(err.to_string().contains("SQLITE_TABLE_PREFIX"), "{err}");
    }
}

#[test]
fn tables_are_created_on_first_use_or_by_an_explicit_call() {
    let path = temp_db("explicit");
    let mut config = SqliteConfig::new(path.to_string_lossy());
    config.create_tables = false;
    // Without create_tables a missing file is an error, and not made.
    let err = SqliteRecorder::open(config.clone()).expect_err("no file");
    assert!(err.to_string().contains("annals migrate"), "{err}");
    assert!(!path.exists());
    // A directory, or a file in a missing directory, cannot be opened
    // either, but not for want of `annals migrate`.
    let dir = path.parent().expect("a directory").to_path_buf();
    for (what, wrong) in [
        ("a directory", dir.clone()),
        ("a missing directory", dir.join("no/such.db")),
    ] {
        let mut config = config.clone();
        config.dbname = wrong.to_string_lossy().into_owned();
        let err = SqliteRecorder::open(config)
            .expect_err(what)
            .report()
            .to_string();
        assert!(
            !err.contains("annals migrate") && err.contains("open"),
            "{what}: {err}"
        );
    }
    // An empty file is a database without tables.
    std::fs::File::create(&path).expect("an empty file");
    let r = SqliteRecorder::open(config).expect("open");
    let err = r
        .insert_events(&[event("a", 1, "T")])
        .expect_err("no table yet");
    assert!(err.report().to_string().contains("no such table"), "{err}");
    r.create_tables().expect("create");
    r.create_tables().expect("create again is harmless");
    r.insert_events(&[event("a", 1, "T")]).expect("insert");
}

#[test]
fn settings_come_from_the_environment() {
    let env = Env::from_map(
        "School",
        [
            ("SQLITE_DBNAME", "ignored.db"),
            ("SCHOOL_SQLITE_DBNAME", "school.db"),
            ("SQLITE_LOCK_TIMEOUT", "2.5"),
            ("SQLITE_TABLE_PREFIX", "school"),
            ("CREATE_TABLE", "no"),
        ],
    );
    let config = SqliteConfig::from_env(&env).expect("config");
    assert_eq!(config.dbname, "school.db");
    assert_eq!(config.lock_timeout, Duration::from_millis(2500));
    assert_eq!(config.table_prefix.as_deref(), Some("school"));
    assert!(!config.create_tables);

    let err =
        SqliteConfig::from_env(&Env::from_map("School", [("X", "y")])).expect_err("no dbname");
    assert!(err.to_string().contains("SQLITE_DBNAME"), "{err}");
    for (var, value) in [
        ("SCHOOL_SQLITE_LOCK_TIMEOUT", "soon"),
        ("SQLITE_LOCK_TIMEOUT", "-1"),
    ] {
        let env = Env::from_map("School", [("SQLITE_DBNAME", "a.db"), (var, value)]);
        let err = SqliteConfig::from_env(&env).expect_err(value);
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[test]
fn an_unopenable_file_is_a_clear_error() {
    let err =
        SqliteRecorder::open(SqliteConfig::new("/nonexistent-dir/x/y.db")).expect_err("no dir");
    assert!(err.to_string().contains("/nonexistent-dir/x/y.db"), "{err}");
}

#[test]
fn a_second_process_writes_the_same_file_at_the_same_time() {
    let path = temp_db("two-processes");
    let config = SqliteConfig::new(path.to_string_lossy());
    let r = SqliteRecorder::open(config).expect("open");
    const RACE: u64 = 200;
    let child = Command::new(env!("CARGO_BIN_EXE_sqlite_writer"))
        .arg(&path)
        .arg(RACE.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the second process");
    // Both processes append versions 1..=RACE to the stream "shared" and
    // each writes its own stream; every version is won by exactly one.
    let mut wins = 0;
    for v in 1..=RACE {
        r.insert_events(&[event("parent", v, "T")])
            .expect("own stream");
        match r.insert_events(&[event("shared", v, "T")]) {
            Ok(_) => wins += 1,
            Err(e) if e.is_conflict() => {}
            Err(e) => panic!("a lock wait must not be an error: {e}"),
        }
    }
    let output = child.wait_with_output().expect("child");
    assert!(output.status.success(), "child failed: {output:?}");
    let child_wins: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("child's count");
    assert_eq!(
        wins + child_wins,
        RACE,
        "each version of the shared stream won once"
    );
    let shared = r
        .select_events("shared", &EventQuery::all())
        .expect("select");
    assert_eq!(
        shared
            .iter()
            .map(|e| e.originator_version)
            .collect::<Vec<_>>(),
        (1..=RACE).collect::<Vec<_>>()
    );
    for stream in ["parent", "child"] {
        assert_eq!(
            r.select_events(stream, &EventQuery::all())
                .expect("select")
                .len() as u64,
            RACE
        );
    }
    let all = r
        .select_notifications(&NotificationQuery::new(1, 10_000))
        .expect("log");
    assert_eq!(all.len() as u64, 3 * RACE);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn a_lock_timeout_sqlite_cannot_take_is_a_config_error_not_a_panic() {
    // Over i32::MAX milliseconds: rusqlite's busy_timeout panics on it.
    let env = Env::from_map(
        "School",
        [
            ("SQLITE_DBNAME", ":memory:"),
            ("SQLITE_LOCK_TIMEOUT", "3000000"),
        ],
    );
    match SqliteConfig::from_env(&env) {
        Err(Error::Config { setting, message }) => {
            assert_eq!(setting, "SQLITE_LOCK_TIMEOUT");
            assert!(message.contains("2147483.647"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    // The same check for a config built in code, when it is opened.
    let mut config = SqliteConfig::new(":memory:");
    config.lock_timeout = Duration::from_secs(3_000_000);
    match SqliteRecorder::open(config) {
        Err(Error::Config { setting, message }) => {
            assert_eq!(setting, "SQLITE_LOCK_TIMEOUT");
            assert!(message.contains("2147483.647"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    // The largest value accepted works.
    let mut config = SqliteConfig::new(":memory:");
    config.lock_timeout = Duration::from_millis(i32::MAX as u64);
    SqliteRecorder::open(config).expect("the largest lock timeout");
}

#[test]
fn negative_stored_versions_are_errors_on_every_path() {
    use annals::prelude::*;
    use annals_examples::dog_school::Dog;
    let path = temp_db("negative");
    let dbname = path.to_str().expect("utf-8").to_owned();
    let app = Application::builder("negative")
        .sqlite(dbname.clone())
        .build()
        .expect("app");
    let id = uuid::Uuid::new_v4();
    let simple = id.simple().to_string();
    let raw = rusqlite::Connection::open(&path).expect("raw connection");
    for table in ["stored_events", "stored_snapshots"] {
        raw.execute(
            &format!(
                "INSERT INTO {table} (originator_id, originator_version, topic, state) \
                 VALUES (?1, -3, 'Dog.Registered', x'7b7d')"
            ),
            [&simple],
        )
        .expect("a corrupt row");
    }
    let check = |what: &str, err: Error, table: &str| {
        let shown = err.to_string();
        assert!(
            shown.contains("-3") && shown.contains(table),
            "{what}: {shown}"
        );
    };
    let err = app.repository().get::<Dog>(id).expect_err("get");
    check("get", err, "stored_events");
    let recorder = SqliteRecorder::open(SqliteConfig::new(dbname)).expect("open");
    let err = recorder
        .select_events(&simple, &EventQuery::all())
        .expect_err("select_events");
    check("select_events", err, "stored_events");
    let err = recorder
        .select_notifications(&NotificationQuery::new(1, 10))
        .expect_err("select_notifications");
    check("select_notifications", err, "stored_events");
    let err = recorder
        .snapshot_recorder()
        .select_events(&simple, &EventQuery::all())
        .expect_err("snapshots");
    check("snapshots", err, "stored_snapshots");
}

/// The primary key of `table` and its rows, read straight from the file.
fn tracking_table(path: &std::path::Path, table: &str) -> (Vec<String>, Vec<(String, i64)>) {
    let conn = rusqlite::Connection::open(path).expect("raw open");
    let key = conn
        .prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")
        .expect("prepare")
        .query_map([table], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("key");
    let rows = conn
        .prepare(&format!(
            "SELECT application_name, notification_id FROM {table} ORDER BY application_name, notification_id"
        ))
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    (key, rows)
}

fn table_names(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("raw open");
    let names = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("names");
    names
}

/// A new database file (named after the test's application) for the
/// tracking-layout tests SQLite shares with PostgreSQL.
struct SqliteTables(PathBuf);

impl SqliteTables {
    fn new(name: &str) -> Self {
        SqliteTables(temp_db(name))
    }

    fn config(&self) -> SqliteConfig {
        SqliteConfig::new(self.0.to_string_lossy())
    }
}

impl Tables for SqliteTables {
    type Recorder = SqliteRecorder;

    fn layout(recorder: &SqliteRecorder) -> TrackingLayout {
        recorder.tracking_layout()
    }

    fn open(&self) -> Result<SqliteRecorder, Error> {
        SqliteRecorder::open(self.config())
    }

    fn open_with(
        &self,
        layout: TrackingLayout,
        create_tables: bool,
    ) -> Result<SqliteRecorder, Error> {
        let mut config = self.config();
        config.tracking_layout = layout;
        config.create_tables = create_tables;
        SqliteRecorder::open(config)
    }

    fn open_from_env(
        &self,
        settings: &[(&str, &str)],
    ) -> (TrackingLayout, Result<SqliteRecorder, Error>) {
        let path = self.0.to_string_lossy();
        let mut vars = vec![("SQLITE_DBNAME", path.as_ref())];
        vars.extend_from_slice(settings);
        let config = SqliteConfig::from_env(&Env::from_map("App", vars)).expect("config");
        (config.tracking_layout, SqliteRecorder::open(config))
    }

    fn create_tracking_table(&self, layout: Option<TrackingLayout>, rows: &str) {
        let table = match layout {
            Some(TrackingLayout::SingleRow) => {
                "CREATE TABLE tracking (application_name TEXT, notification_id INTEGER, \
                 PRIMARY KEY (application_name)) WITHOUT ROWID"
            }
            Some(TrackingLayout::MultiRow) => {
                "CREATE TABLE tracking (application_name TEXT, notification_id INTEGER, \
                 PRIMARY KEY (application_name, notification_id)) WITHOUT ROWID"
            }
            None => "CREATE TABLE tracking (application_name TEXT, notification_id INTEGER)",
        };
        let conn = rusqlite::Connection::open(&self.0).expect("raw open");
        conn.execute_batch(table).expect("the tracking table");
        if !rows.is_empty() {
            conn.execute_batch(&format!("INSERT INTO tracking VALUES {rows}"))
                .expect("its rows");
        }
    }

    fn tracking_table(&self) -> (Vec<String>, Vec<(String, i64)>) {
        tracking_table(&self.0, "tracking")
    }

    fn assert_nothing_renamed(&self, name: &str) {
        assert_eq!(
            table_names(&self.0),
            [
                "stored_data_keys",
                "stored_events",
                "stored_outcomes",
                "stored_snapshots",
                "tracking"
            ],
            "{name}: nothing renamed"
        );
    }
}

#[test]
fn new_tracking_tables_are_single_row_with_the_python_librarys_migration_row() {
    annals_tests::tracking::new_tracking_tables_are_single_row_with_the_python_librarys_migration_row(
        SqliteTables::new,
    );
}

#[test]
fn tracking_tables_in_the_python_librarys_layouts_are_used_as_they_are() {
    annals_tests::tracking::tracking_tables_in_the_python_librarys_layouts_are_used_as_they_are(
        SqliteTables::new,
    );
}

#[test]
fn a_single_row_table_with_multi_row_tracking_asked_for_is_a_config_error() {
    annals_tests::tracking::a_single_row_table_with_multi_row_tracking_asked_for_is_a_config_error(
        SqliteTables::new,
    );
}

#[test]
fn single_row_tracking_no_creates_multi_row_tables_without_the_migration_row() {
    annals_tests::tracking::single_row_tracking_no_creates_multi_row_tables_without_the_migration_row(
        SqliteTables::new,
    );
}

/// The migrate step creates the tables of a store given as `.store(config)`
/// (the canonical way to choose one in code) as it does for `.sqlite(..)`
/// and `PERSISTENCE_MODULE`.
#[test]
fn migrate_creates_the_tables_of_a_store_given_to_the_builder() {
    let mut config = SqliteConfig::new(annals_tests::stores::temp_sqlite("migrate_store"));
    config.create_tables = false;
    let before = annals::Application::builder("School")
        .store(config.clone())
        .build()
        .and_then(|app| app.last_notification_id());
    assert!(before.is_err(), "no tables yet: {before:?}");
    annals::Application::builder("School")
        .store(config.clone())
        .migrate()
        .expect("migrate");
    let app = annals::Application::builder("School")
        .store(config)
        .build()
        .expect("build");
    assert_eq!(
        app.last_notification_id().expect("the tables are there"),
        None
    );
}

/// With `CREATE_TABLE=no`, a store without tables cannot be read; the
/// migrate step creates them, and the published DDL is what it runs.
#[test]
fn migrate_creates_the_tables_create_table_no_leaves_out() {
    let file = annals_tests::stores::temp_sqlite("migrate");
    let env = annals::env::Env::from_map(
        "School",
        [
            ("PERSISTENCE_MODULE", "sqlite"),
            ("SQLITE_DBNAME", file.as_str()),
            ("CREATE_TABLE", "no"),
        ],
    );
    let builder = || {
        annals::Application::builder("School")
            .with_env(&env)
            .unwrap()
    };
    let before = builder().build().and_then(|app| app.last_notification_id());
    assert!(before.is_err(), "no tables yet: {before:?}");
    builder().migrate().unwrap();
    let app = builder().build().unwrap();
    assert_eq!(app.last_notification_id().unwrap(), None);
    // The DDL on a fresh file makes the same tables.
    let ddl = annals::persistence::sqlite::SqliteConfig::new(":memory:")
        .ddl()
        .unwrap();
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(&ddl).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "stored_data_keys",
            "stored_events",
            "stored_outcomes",
            "stored_snapshots",
            "tracking"
        ]
    );
}

/// The key store contract on a database file's `stored_data_keys`.
mod keys {
    use super::*;

    annals::key_store_contract!(|name| {
        let recorder =
            SqliteRecorder::open(SqliteConfig::new(temp_db(name).to_string_lossy())).expect("open");
        let keys = recorder.key_store().expect("annals' own tables keep keys");
        Some((Arc::new(recorder), Arc::new(keys)))
    });
}
