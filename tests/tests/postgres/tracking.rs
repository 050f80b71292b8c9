//! Tracking tables: single-row with the migration row, multi-row, and
//! the Python library's layouts used as they are.

use annals::env::Env;
use annals::persistence::postgres::{PostgresConfig, PostgresRecorder};
use annals::persistence::{
    AggregateRecorder, EventQuery, ProcessRecorder, Tracking, TrackingLayout,
};
use annals::testing::contract::event;

use crate::{client, config_error, drop_tables, fresh, text_config};

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
