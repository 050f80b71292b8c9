//! The DCB contract on PostgreSQL, in Python's `postgres_tt` layout: each
//! test in a schema of its own (the layout's types and functions are one
//! per schema).

use std::sync::Arc;

use annals::persistence::dcb::DcbRecorder;
use annals::persistence::postgres::{PostgresConfig, PostgresDcbRecorder};

use crate::{client, server};

/// The test server's settings with a fresh, empty schema `schema`.
pub(crate) fn fresh_schema(schema: &str) -> Option<PostgresConfig> {
    let mut config = server()?;
    client(&config)
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
        ))
        .expect("a fresh schema");
    config.schema = Some(schema.to_owned());
    Some(config)
}

fn contract_recorder(test: &str) -> Option<Arc<dyn DcbRecorder>> {
    let config = fresh_schema(&format!("dcb_{}", &test[..test.len().min(50)]))?;
    Some(Arc::new(
        PostgresDcbRecorder::open(&config, "Courses").expect("open"),
    ))
}

annals::dcb_recorder_contract!(contract_recorder);

#[test]
fn the_tables_are_pythons_and_opening_again_keeps_them() {
    let Some(config) = fresh_schema("dcb_layout") else {
        annals::testing::skipped("the_tables_are_pythons_and_opening_again_keeps_them");
        return;
    };
    let first = PostgresDcbRecorder::open(&config, "Courses").expect("open");
    assert_eq!(first.events_table(), "courses_events_tt_main");
    assert_eq!(first.tags_table(), "courses_events_tt_tag");
    // The types exist already: a second open (as Python's after annals')
    // skips them and replaces the functions.
    let again = PostgresDcbRecorder::open(&config, "Courses").expect("open again");
    let mut c = client(&config);
    let columns: Vec<(String, String)> = c
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'dcb_layout' AND table_name = 'courses_events_tt_main' ORDER BY ordinal_position",
            &[],
        )
        .expect("columns")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let columns: Vec<(&str, &str)> = columns
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "bigint"),
            ("type", "text"),
            ("data", "bytea"),
            ("tags", "ARRAY")
        ]
    );
    let functions: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'dcb_layout' AND p.proname IN ('dcb_unconditional_append_tt', 'dcb_conditional_append_tt')",
            &[],
        )
        .expect("functions")
        .get(0);
    assert_eq!(functions, 2);
    assert!(again
        .ddl()
        .contains("CREATE TYPE \"dcb_layout\".\"dcb_event_tt\""));
}

/// An append without a condition waits for an append in progress (here
/// Python's unconditional function, in a transaction not yet committed)
/// instead of taking a later position and committing first: a follower
/// that read after the later position would pass the earlier by.
#[test]
fn an_unconditional_append_commits_after_the_append_in_progress() {
    use std::sync::mpsc;
    use std::time::Duration;

    use annals::persistence::dcb::{DcbEvent, DcbQuery};

    let Some(config) = fresh_schema("dcb_commit_order") else {
        annals::testing::skipped("an_unconditional_append_commits_after_the_append_in_progress");
        return;
    };
    let store: Arc<dyn DcbRecorder> =
        Arc::new(PostgresDcbRecorder::open(&config, "Courses").expect("open"));
    let mut python = client(&config);
    let mut in_progress = python.transaction().expect("begin");
    let first: i64 = in_progress
        .query_one(
            "SELECT * FROM \"dcb_commit_order\".\"dcb_unconditional_append_tt\"(\
             ARRAY[ROW('T', '\\x01'::bytea, ARRAY['a'])::\"dcb_commit_order\".\"dcb_event_tt\"])",
            &[],
        )
        .expect("Python's unconditional append")
        .get(0);
    assert_eq!(first, 1);
    let (appended, has_appended) = mpsc::channel();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let position = store.append(&[DcbEvent::new("T", vec![2])], None);
            let _ = appended.send(position);
        })
    };
    assert!(
        has_appended
            .recv_timeout(Duration::from_millis(500))
            .is_err(),
        "annals' append waits for the one in progress"
    );
    let read = store.read(&DcbQuery::all(), None, None).expect("read");
    assert!(read.events.is_empty(), "nothing committed yet: {read:?}");
    in_progress.commit().expect("commit");
    let position = has_appended
        .recv_timeout(Duration::from_secs(10))
        .expect("annals' append goes on")
        .expect("annals' append");
    assert_eq!(position, 2);
    writer.join().expect("the writer");
    let positions: Vec<u64> = store
        .read(&DcbQuery::all(), None, None)
        .expect("read")
        .events
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, [1, 2]);
}
