//! The Python library's writers on the same tables: ids from the one
//! sequence, and a sequence left behind.

use annals::persistence::postgres::PostgresRecorder;
use annals::persistence::{AggregateRecorder, ApplicationRecorder, EventQuery, NotificationQuery};
use annals::testing::contract::event;

use crate::{client, drop_tables, fresh, text_config};

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
