//! The application's own tables, written in the transaction that stores
//! its events (`Application::save_and_write`) or a process application's
//! events and tracking record (`Processing::write`), on SQLite,
//! PostgreSQL and MariaDB/MySQL: stored with them or not at all, exactly once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use annals::mysql::prelude::Queryable;
use annals::persistence::mysql::MysqlConfig;
use annals::persistence::postgres::PostgresConfig;
use annals::persistence::sqlite::SqliteConfig;
use annals::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, Notification, NotificationQuery,
    ProcessRecorder, StoreTx, StoredEvent, Tracking,
};
use annals::prelude::*;
use annals::system::{Policies, ProcessApplication};
use annals::{Error, Persistence};
use annals_tests::stores::{
    drop_mysql_tables, drop_postgres_tables, mysql_client, mysql_server, postgres_client,
    postgres_server, temp_sqlite,
};

#[aggregate]
#[derive(Debug)]
struct Dog {
    name: String,
}

#[aggregate]
impl Dog {
    #[event("Registered")]
    fn register(name: String) -> Self {
        Dog { name }
    }
    #[event("Renamed")]
    fn rename(&mut self, name: String) {
        self.name = name;
    }
}

/// One of the stores that lend their transaction, and a way to look at
/// the user's tables from outside.
enum Db {
    Sqlite(String),
    Postgres(PostgresConfig),
    Mysql(MysqlConfig),
}

impl Db {
    /// SQLite (a new file) and PostgreSQL (when configured), with the
    /// tables of `apps` dropped and the user's `table` (one text column,
    /// `unique` or not) created empty.
    fn every(apps: &[&str], table: &str, unique: bool) -> Vec<Db> {
        let mut dbs = vec![Db::Sqlite(temp_sqlite(apps[0]))];
        match postgres_server() {
            Some(config) => {
                for app in apps {
                    drop_postgres_tables(&config, app);
                }
                dbs.push(Db::Postgres(config));
            }
            None => annals_tests::skipped(&format!("{} on postgres", apps[0])),
        }
        match mysql_server() {
            Some(config) => {
                for app in apps {
                    drop_mysql_tables(&config, app);
                }
                dbs.push(Db::Mysql(config));
            }
            None => annals_tests::skipped(&format!("{} on mysql", apps[0])),
        }
        let constraint = if unique { " UNIQUE" } else { "" };
        for db in &dbs {
            // MySQL keys no TEXT column without a length.
            let text = match db {
                Db::Mysql(_) => "VARCHAR(255)",
                _ => "TEXT",
            };
            db.batch(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (value {text}{constraint})"
            ));
        }
        dbs
    }

    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
            Db::Mysql(_) => "mysql",
        }
    }

    fn persistence(&self) -> Persistence {
        match self {
            Db::Sqlite(path) => Persistence::Sqlite(SqliteConfig::new(path.clone())),
            Db::Postgres(config) => Persistence::Postgres(config.clone()),
            Db::Mysql(config) => Persistence::Mysql(config.clone()),
        }
    }

    fn app(&self, name: &str) -> Application {
        Application::builder(name)
            .persistence(self.persistence())
            .build()
            .expect("app")
    }

    fn batch(&self, sql: &str) {
        match self {
            Db::Sqlite(path) => annals::rusqlite::Connection::open(path)
                .and_then(|c| c.execute_batch(sql))
                .expect("sqlite batch"),
            Db::Postgres(config) => postgres_client(config)
                .batch_execute(sql)
                .expect("postgres batch"),
            Db::Mysql(config) => {
                let mut client = mysql_client(config);
                for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
                    client.query_drop(statement).expect("mysql batch");
                }
            }
        }
    }

    /// The values in `table`, sorted.
    fn values(&self, table: &str) -> Vec<String> {
        let sql = format!("SELECT value FROM {table} ORDER BY value");
        match self {
            Db::Sqlite(path) => {
                let conn = annals::rusqlite::Connection::open(path).expect("open");
                let mut stmt = conn.prepare(&sql).expect("prepare");
                let mut rows = stmt.query([]).expect("query");
                let mut values = Vec::new();
                while let Some(row) = rows.next().expect("row") {
                    values.push(row.get(0).expect("value"));
                }
                values
            }
            Db::Postgres(config) => postgres_client(config)
                .query(&sql, &[])
                .expect("query")
                .iter()
                .map(|row| row.get(0))
                .collect(),
            Db::Mysql(config) => mysql_client(config).query(&sql).expect("query"),
        }
    }
}

/// Inserts `value` into `table` through the save's transaction.
fn insert(tx: &mut StoreTx<'_>, table: &str, value: &str) -> annals::Result<()> {
    match tx.store() {
        "sqlite" => tx
            .sqlite()?
            .execute(&format!("INSERT INTO {table} VALUES (?1)"), [value])
            .map(drop)
            .map_err(Error::user),
        "mysql" => tx
            .mysql()?
            .exec_drop(format!("INSERT INTO {table} VALUES (?)"), (value,))
            .map_err(Error::user),
        _ => tx
            .postgres()?
            .execute(&format!("INSERT INTO {table} VALUES ($1)"), &[&value])
            .map(drop)
            .map_err(Error::user),
    }
}

#[test]
fn a_save_stores_its_rows_with_its_events() {
    for db in Db::every(&["own_save"], "own_save_names", false) {
        let app = db.app("own_save");
        let mut fido = Dog::register("Fido".into());
        let ids = app
            .save_and_write(&mut fido, |tx| insert(tx, "own_save_names", "Fido"))
            .unwrap_or_else(|e| panic!("{}: {e}", db.name()));
        assert_eq!(ids.len(), 1, "{}", db.name());
        fido.rename("Rex".into());
        app.save_and_write(&mut fido, |tx| {
            insert(tx, "own_save_names", "Rex")?;
            insert(tx, "own_save_names", "Rex again")
        })
        .expect("second save");
        assert_eq!(
            db.values("own_save_names"),
            ["Fido", "Rex", "Rex again"],
            "{}",
            db.name()
        );
        let copy: Dog = app.get(fido.id()).expect("stored");
        assert_eq!((copy.name.as_str(), copy.version()), ("Rex", 2));
        // With nothing pending, the rows are still written, alone.
        app.save_and_write(&mut fido, |tx| insert(tx, "own_save_names", "alone"))
            .expect("no events");
        assert_eq!(db.values("own_save_names").len(), 4, "{}", db.name());
        assert_eq!(app.last_notification_id().expect("log"), Some(2));
    }
}

/// Counts `table`'s rows through `Application::read`.
fn count(tx: &mut StoreTx<'_>, table: &str) -> annals::Result<i64> {
    let sql = format!("SELECT count(*) FROM {table}");
    match tx.store() {
        "sqlite" => tx
            .sqlite()?
            .query_row(&sql, [], |row| row.get(0))
            .map_err(Error::user),
        "mysql" => tx
            .mysql()?
            .query_first(&sql)
            .map(Option::unwrap_or_default)
            .map_err(Error::user),
        _ => tx
            .postgres()?
            .query_one(&sql, &[])
            .map(|row| row.get(0))
            .map_err(Error::user),
    }
}

#[test]
fn a_read_sees_the_rows_saves_wrote_and_writes_nothing() {
    for db in Db::every(&["own_read"], "own_read_names", false) {
        let app = db.app("own_read");
        let mut fido = Dog::register("Fido".into());
        app.save_and_write(&mut fido, |tx| insert(tx, "own_read_names", "Fido"))
            .expect("save");
        let read = |app: &Application| app.read(|tx| count(tx, "own_read_names"));
        assert_eq!(read(&app).expect("read"), 1, "{}", db.name());
        // Read-only: a write is refused, and nothing of it is kept.
        let error = app
            .read(|tx| insert(tx, "own_read_names", "written in a read"))
            .expect_err("a read does not write");
        assert!(matches!(error, Error::User(_)), "{}: {error:?}", db.name());
        // A read that panics leaves no connection in its transaction: the
        // next reads see what is saved after it.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            app.read(|tx| -> annals::Result<()> {
                count(tx, "own_read_names")?;
                panic!("the user's code panicked");
            })
        }));
        assert!(panicked.is_err());
        let mut rex = Dog::register("Rex".into());
        app.save_and_write(&mut rex, |tx| insert(tx, "own_read_names", "Rex"))
            .expect("save");
        for _ in 0..4 {
            assert_eq!(read(&app).expect("read"), 2, "{}", db.name());
        }
        assert_eq!(
            db.values("own_read_names"),
            ["Fido", "Rex"],
            "{}",
            db.name()
        );
    }
    // A store with no connection to lend says so.
    let memory = Application::builder("own_read").build().expect("app");
    let error = memory.read(|_| Ok(())).expect_err("memory has no tables");
    assert!(
        matches!(&error, Error::Config { setting, .. } if setting == "PERSISTENCE_MODULE"),
        "{error:?}"
    );
}

#[test]
fn a_failing_write_stores_nothing_of_the_save() {
    for db in Db::every(&["own_fail"], "own_fail_names", true) {
        let app = db.app("own_fail");
        let mut fido = Dog::register("Fido".into());
        app.save_and_write(&mut fido, |tx| insert(tx, "own_fail_names", "Fido"))
            .expect("first");
        let before = app.last_notification_id().expect("log");
        let mut other = Dog::register("Fido".into());
        let error = app
            .save_and_write(&mut other, |tx| {
                insert(tx, "own_fail_names", "other")?;
                insert(tx, "own_fail_names", "Fido") // UNIQUE violation
            })
            .expect_err("the name is taken");
        assert!(
            matches!(error, Error::User(_)),
            "{}: the user's error, as it was: {error:?}",
            db.name()
        );
        assert!(app
            .get::<Dog>(other.id())
            .expect_err("not stored")
            .is_not_found());
        assert_eq!(
            app.last_notification_id().expect("log"),
            before,
            "{}",
            db.name()
        );
        assert_eq!(db.values("own_fail_names"), ["Fido"], "{}", db.name());
        // The pending events were kept: a save that succeeds stores them.
        app.save_and_write(&mut other, |tx| insert(tx, "own_fail_names", "Other"))
            .expect("retried");
        let stored: Dog = app.get(other.id()).expect("stored now");
        assert_eq!(stored.version(), 1);
        assert_eq!(db.values("own_fail_names"), ["Fido", "Other"]);
    }
}

/// Saves that share group transactions (joining saves run in savepoints):
/// a failing write undoes its own save alone.
#[test]
fn concurrent_saves_with_failing_writes_fail_alone() {
    for db in Db::every(&["own_group"], "own_group_names", true) {
        let app = db.app("own_group");
        let outcomes: Vec<(Dog, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|t| {
                    let app = &app;
                    s.spawn(move || {
                        (0..15)
                            .map(|i| {
                                // Every 4th save of threads 1.. repeats a
                                // name of thread 0's: it may fail.
                                let name = if t > 0 && i % 4 == 0 {
                                    format!("0-{i}")
                                } else {
                                    format!("{t}-{i}")
                                };
                                let mut dog = Dog::register(name.clone());
                                let ok = app
                                    .save_and_write(&mut dog, |tx| {
                                        insert(tx, "own_group_names", &name)
                                    })
                                    .is_ok();
                                (dog, ok)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        let mut expected: Vec<String> = Vec::new();
        for (dog, ok) in &outcomes {
            let stored = app.get::<Dog>(dog.id());
            assert_eq!(
                stored.is_ok(),
                *ok,
                "{}: {} stored iff saved",
                db.name(),
                dog.name
            );
            if *ok {
                expected.push(dog.name.clone());
            }
        }
        expected.sort();
        assert_eq!(db.values("own_group_names"), expected, "{}", db.name());
        let failed = outcomes.iter().filter(|(_, ok)| !ok).count();
        // 4 names tried by 6 threads each: one of each stored.
        assert_eq!(failed, 20, "{}", db.name());
    }
}

#[test]
fn a_conflicting_save_writes_no_row() {
    for db in Db::every(&["own_conflict"], "own_conflict_names", false) {
        let app = db.app("own_conflict");
        let mut fido = Dog::register("Fido".into());
        app.save(&mut fido).expect("saved");
        let mut a: Dog = app.get(fido.id()).expect("a");
        let mut b: Dog = app.get(fido.id()).expect("b");
        a.rename("Rex".into());
        b.rename("Max".into());
        app.save(&mut a).expect("a saved");
        let ran = AtomicBool::new(false);
        let error = app
            .save_and_write(&mut b, |tx| {
                ran.store(true, Ordering::SeqCst);
                insert(tx, "own_conflict_names", "Max")
            })
            .expect_err("b is stale");
        assert!(
            matches!(error, Error::Conflict { .. }),
            "{}: {error:?}",
            db.name()
        );
        assert!(!ran.load(Ordering::SeqCst), "{}: writes not run", db.name());
        assert!(db.values("own_conflict_names").is_empty(), "{}", db.name());
        let stored: Dog = app.get(fido.id()).expect("fido");
        assert_eq!(stored.name, "Rex");
    }
}

#[test]
fn a_write_through_the_other_stores_handle_is_a_clear_error() {
    for db in Db::every(&["own_wrong"], "own_wrong_names", false) {
        let app = db.app("own_wrong");
        let mut fido = Dog::register("Fido".into());
        let error = app
            .save_and_write(&mut fido, |tx| match tx.store() {
                "sqlite" => tx.postgres().map(drop),
                _ => tx.sqlite().map(drop),
            })
            .expect_err("wrong store");
        match &error {
            Error::Config { setting, message } => {
                assert_eq!(setting, "PERSISTENCE_MODULE");
                assert!(message.contains(db.name()), "{message}");
            }
            other => panic!("{}: {other:?}", db.name()),
        }
        assert!(app.get::<Dog>(fido.id()).is_err(), "nothing stored");
    }
}

#[test]
fn the_memory_store_says_it_has_no_transaction_to_lend() {
    let app = Application::builder("OwnMemory").build().expect("app");
    let mut fido = Dog::register("Fido".into());
    let ran = AtomicBool::new(false);
    let error = app
        .save_and_write(&mut fido, |_| {
            ran.store(true, Ordering::SeqCst);
            Ok(())
        })
        .expect_err("memory lends no transaction");
    match &error {
        Error::Config { setting, message } => {
            assert_eq!(setting, "PERSISTENCE_MODULE");
            assert!(message.contains("memory store"), "{message}");
            assert!(message.contains("SQLite or PostgreSQL"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(app.last_notification_id().expect("log"), None);
    assert!(app.save(&mut fido).is_ok(), "the events were kept pending");
}

/// The follower's recorder, as another process sees it while the first
/// one stores a notification: the first `has_tracking_id` answers "not
/// yet", so the policy runs again and its tracking record conflicts.
struct Racing {
    inner: Arc<dyn ProcessRecorder>,
    lie: AtomicBool,
    conflicts: AtomicUsize,
}

impl AggregateRecorder for Racing {
    fn insert_events(&self, events: &[StoredEvent]) -> annals::Result<Vec<u64>> {
        self.inner.insert_events(events)
    }
    fn select_events(&self, id: &str, query: &EventQuery) -> annals::Result<Vec<StoredEvent>> {
        self.inner.select_events(id, query)
    }
}

impl ApplicationRecorder for Racing {
    fn select_notifications(&self, query: &NotificationQuery) -> annals::Result<Vec<Notification>> {
        self.inner.select_notifications(query)
    }
    fn max_notification_id(&self) -> annals::Result<u64> {
        self.inner.max_notification_id()
    }
}

impl ProcessRecorder for Racing {
    fn insert_events_tracked(&self, e: &[StoredEvent], t: &Tracking) -> annals::Result<Vec<u64>> {
        self.inner.insert_events_tracked(e, t)
    }
    fn insert_events_with(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        writes: &mut dyn FnMut(&mut StoreTx<'_>) -> annals::Result<()>,
    ) -> annals::Result<Vec<u64>> {
        let result = self.inner.insert_events_with(events, tracking, writes);
        if matches!(result, Err(Error::Conflict { .. })) {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
    fn max_tracking_id(&self, name: &str) -> annals::Result<u64> {
        self.inner.max_tracking_id(name)
    }
    fn has_tracking_id(&self, name: &str, id: u64) -> annals::Result<bool> {
        if self.lie.swap(false, Ordering::SeqCst) {
            return Ok(false);
        }
        self.inner.has_tracking_id(name, id)
    }
}

/// A policy that saves a dog and writes an index row per upstream dog,
/// counting the runs of its writes; it fails the write of `poison`.
fn indexing(runs: Arc<AtomicUsize>, poison: Arc<AtomicBool>) -> Policies {
    Policies::new().on::<Dog>(move |registered, processing| {
        let DogEvent::Registered { name } = registered.event.clone() else {
            return Ok(());
        };
        processing.save(&mut Dog::register(format!("copy of {name}")))?;
        let runs = runs.clone();
        let poison = poison.clone();
        processing.write(move |tx| {
            runs.fetch_add(1, Ordering::SeqCst);
            if name == "Poison" && poison.load(Ordering::SeqCst) {
                return Err(Error::user("the index refuses Poison"));
            }
            insert(tx, "own_index", &name)
        });
        Ok(())
    })
}

#[test]
fn a_process_application_writes_each_index_row_once() {
    for db in Db::every(&["own_index_app"], "own_index", false) {
        // The leader's store does not matter: in memory.
        let leader = Arc::new(Application::builder("own_leader").build().expect("leader"));
        let follower = Arc::new(db.app("own_index_app"));
        let runs = Arc::new(AtomicUsize::new(0));
        let poison = Arc::new(AtomicBool::new(true));
        let process =
            ProcessApplication::new(follower.clone(), indexing(runs.clone(), poison.clone()));
        for name in ["Fido", "Rex", "Max"] {
            leader
                .save(&mut Dog::register(name.into()))
                .expect("leader");
        }
        assert_eq!(process.pull(&leader, 10).expect("pull"), 3, "{}", db.name());
        assert_eq!(
            process.pull(&leader, 10).expect("again"),
            0,
            "{}",
            db.name()
        );
        assert_eq!(
            db.values("own_index"),
            ["Fido", "Max", "Rex"],
            "{}",
            db.name()
        );
        assert_eq!(follower.notifications(1, 100).expect("log").len(), 3);

        // Redelivered to a process that does not know yet it is tracked:
        // the tracking record conflicts, the rows are not written again.
        let racing = Arc::new(Racing {
            inner: follower.recorder().clone(),
            lie: AtomicBool::new(true),
            conflicts: AtomicUsize::new(0),
        });
        let other = Arc::new(
            Application::builder("own_index_app")
                .recorder(racing.clone())
                .build()
                .expect("other process"),
        );
        let other = ProcessApplication::new(other, indexing(runs.clone(), poison.clone()));
        let first = leader
            .recorder()
            .select_notifications(&NotificationQuery::new(1, 1))
            .expect("n1");
        assert!(!other
            .process_notification(&leader, &first[0])
            .expect("redelivery"));
        assert_eq!(racing.conflicts.load(Ordering::SeqCst), 1, "{}", db.name());
        assert_eq!(
            db.values("own_index"),
            ["Fido", "Max", "Rex"],
            "{}",
            db.name()
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "{}: writes after a conflict",
            db.name()
        );
        assert_eq!(follower.notifications(1, 100).expect("log").len(), 3);

        // A write that fails stores nothing of the notification (events,
        // tracking, rows) and stops the follower; fixed, it is processed.
        leader
            .save(&mut Dog::register("Poison".into()))
            .expect("leader");
        let error = process.pull(&leader, 10).expect_err("refused");
        assert!(matches!(error, Error::User(_)), "{}: {error:?}", db.name());
        assert_eq!(
            follower
                .recorder()
                .max_tracking_id("own_leader")
                .expect("t"),
            3
        );
        assert_eq!(follower.notifications(1, 100).expect("log").len(), 3);
        assert_eq!(db.values("own_index").len(), 3, "{}", db.name());
        poison.store(false, Ordering::SeqCst);
        assert_eq!(process.pull(&leader, 10).expect("fixed"), 1);
        assert_eq!(
            db.values("own_index"),
            ["Fido", "Max", "Poison", "Rex"],
            "{}",
            db.name()
        );
        assert_eq!(follower.notifications(1, 100).expect("log").len(), 4);
    }
}

#[test]
fn a_process_application_on_memory_fails_with_a_clear_error() {
    let leader = Arc::new(Application::builder("OwnMemLeader").build().expect("app"));
    let follower = Arc::new(Application::builder("OwnMemFollower").build().expect("app"));
    let runs = Arc::new(AtomicUsize::new(0));
    let process = ProcessApplication::new(
        follower.clone(),
        indexing(runs.clone(), Arc::new(AtomicBool::new(false))),
    );
    leader
        .save(&mut Dog::register("Fido".into()))
        .expect("leader");
    let error = process.pull(&leader, 10).expect_err("no transaction");
    assert!(
        matches!(&error, Error::Config { setting, .. } if setting == "PERSISTENCE_MODULE"),
        "{error:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(
        follower
            .recorder()
            .max_tracking_id("OwnMemLeader")
            .expect("t"),
        0
    );
}

/// PostgreSQL: a write whose failed statement is ignored leaves the
/// transaction failed, and its COMMIT would roll back every save of the
/// group silently: the save fails instead, and nothing is stored.
#[test]
fn postgres_a_failed_statement_ignored_fails_the_save() {
    let Some(config) = postgres_server() else {
        annals_tests::skipped("postgres_a_failed_statement_ignored_fails_the_save");
        return;
    };
    drop_postgres_tables(&config, "own_ignored");
    let db = Db::Postgres(config);
    db.batch("DROP TABLE IF EXISTS own_ignored_names; CREATE TABLE own_ignored_names (value TEXT)");
    let app = db.app("own_ignored");
    let mut fido = Dog::register("Fido".into());
    let error = app
        .save_and_write(&mut fido, |tx| {
            insert(tx, "own_ignored_names", "Fido")?;
            let _ignored = tx
                .postgres()?
                .execute("SELECT no_such_column FROM own_ignored_names", &[]);
            Ok(())
        })
        .expect_err("the transaction is failed");
    assert!(matches!(error, Error::Persistence { .. }), "{error:?}");
    assert!(error.to_string().contains("own rows"), "{error}");
    assert!(db.values("own_ignored_names").is_empty());
    assert!(app.get::<Dog>(fido.id()).is_err());
    // The writer still works.
    app.save_and_write(&mut fido, |tx| insert(tx, "own_ignored_names", "Fido"))
        .expect("next save");
    assert_eq!(db.values("own_ignored_names"), ["Fido"]);
}

/// A panic in the writes rolls the save back before it goes on up: the
/// writer is not left inside a transaction that a later save would commit.
#[test]
fn a_panicking_write_stores_nothing_and_the_writer_goes_on() {
    for db in Db::every(&["own_panic"], "own_panic_names", false) {
        let app = db.app("own_panic");
        let mut fido = Dog::register("Fido".into());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            app.save_and_write(&mut fido, |tx| {
                insert(tx, "own_panic_names", "Fido")?;
                panic!("the user's code panics");
            })
        }));
        assert!(panicked.is_err(), "{}: the panic goes on up", db.name());
        let mut rex = Dog::register("Rex".into());
        app.save_and_write(&mut rex, |tx| insert(tx, "own_panic_names", "Rex"))
            .expect("the next save");
        assert_eq!(db.values("own_panic_names"), ["Rex"], "{}", db.name());
        assert!(app.get::<Dog>(fido.id()).is_err(), "{}", db.name());
        assert_eq!(app.notifications(1, 100).expect("log").len(), 1);
    }
}

/// `annals::postgres` and `annals::rusqlite` take chrono and JSON values:
/// an event's timestamp goes to PostgreSQL as a `timestamptz` and comes
/// back equal; a JSON value as `jsonb` (SQLite: text, through rusqlite's
/// own conversions).
#[test]
fn timestamps_and_json_go_to_the_users_tables_as_values() {
    for db in Db::every(&["own_types"], "own_types", false) {
        let columns = match db {
            Db::Sqlite(_) => "at TEXT, doc TEXT",
            Db::Postgres(_) => "at TIMESTAMPTZ, doc JSONB",
            // annals' mysql client is built without chrono and serde_json.
            Db::Mysql(_) => continue,
        };
        db.batch(&format!(
            "DROP TABLE IF EXISTS own_types; CREATE TABLE own_types ({columns})"
        ));
        let app = db.app("own_types");
        let mut fido = Dog::register("Fido".into());
        let at: annals::Timestamp = fido.created_on();
        let doc = serde_json::json!({"name": "Fido", "tricks": ["sit"]});
        app.save_and_write(&mut fido, |tx| match tx.store() {
            "sqlite" => tx
                .sqlite()?
                .execute("INSERT INTO own_types VALUES (?1, ?2)", (&at, &doc))
                .map(drop)
                .map_err(Error::user),
            _ => tx
                .postgres()?
                .execute("INSERT INTO own_types VALUES ($1, $2)", &[&at, &doc])
                .map(drop)
                .map_err(Error::user),
        })
        .unwrap_or_else(|e| panic!("{}: {e}", db.name()));
        let (read_at, read_doc): (annals::Timestamp, serde_json::Value) = app
            .read(|tx| match tx.store() {
                "sqlite" => tx
                    .sqlite()?
                    .query_row("SELECT at, doc FROM own_types", [], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .map_err(Error::user),
                _ => tx
                    .postgres()?
                    .query_one("SELECT at, doc FROM own_types", &[])
                    .map(|row| (row.get(0), row.get(1)))
                    .map_err(Error::user),
            })
            .unwrap_or_else(|e| panic!("{}: {e}", db.name()));
        // PostgreSQL keeps microseconds.
        let micros = |t: annals::Timestamp| t.timestamp_micros();
        assert_eq!(micros(read_at), micros(at), "{}", db.name());
        assert_eq!(read_doc, doc, "{}", db.name());
    }
}
