//! The tracking-layout tests SQLite and PostgreSQL share: the Python
//! library's two layouts of a tracking table (single-row with its
//! migration row, and multi-row), which a recorder creates, recognises in a
//! table another program made, and keeps to. Each store's test file runs
//! them, under the same test names, through its own [`Tables`].

use annals::persistence::{
    AggregateRecorder, EventQuery, ProcessRecorder, Tracking, TrackingLayout,
};
use annals::testing::contract::event;
use annals::Error;

/// One store's tables of one application, as the tracking-layout tests
/// need them: opened in a layout, made as the Python library makes them,
/// read straight from the store. A test makes a new one (empty: a new
/// file, or the tables dropped) for each of its applications.
pub trait Tables {
    /// The store's recorder.
    type Recorder: ProcessRecorder + std::fmt::Debug;

    /// The layout `recorder` keeps its tracking records in.
    fn layout(recorder: &Self::Recorder) -> TrackingLayout;

    /// Opens a recorder with the store's default settings.
    fn open(&self) -> Result<Self::Recorder, Error>;

    /// Opens a recorder asking for `layout`, creating missing tables or not.
    fn open_with(
        &self,
        layout: TrackingLayout,
        create_tables: bool,
    ) -> Result<Self::Recorder, Error>;

    /// Reads the store's settings from an environment of application `App`
    /// holding `settings` (and what the store needs to find its tables),
    /// and opens a recorder with them: the layout the settings ask for, and
    /// the recorder or its error.
    fn open_from_env(
        &self,
        settings: &[(&str, &str)],
    ) -> (TrackingLayout, Result<Self::Recorder, Error>);

    /// Creates the tracking table as the Python library (9.5) does in
    /// `layout`, or, for `None`, one in neither layout (without a primary
    /// key), and inserts `rows` (SQL values, as `('up', 7)`; none if empty).
    fn create_tracking_table(&self, layout: Option<TrackingLayout>, rows: &str);

    /// The columns of the tracking table's primary key and its rows
    /// (ordered by application name, then notification id).
    fn tracking_table(&self) -> (Vec<String>, Vec<(String, i64)>);

    /// Asserts that opening the tables renamed none of them (`name` says
    /// which test's tables, in the failure).
    fn assert_nothing_renamed(&self, name: &str);
}

/// A tracking record of upstream application `up`.
pub fn up(notification_id: u64) -> Tracking {
    Tracking {
        application_name: "up".to_owned(),
        notification_id,
    }
}

/// A new tracking table is single-row with the Python library's migration
/// row; records only move forward, one row per upstream application, the
/// row not added again on reopening, and two recorders racing take each id
/// once.
pub fn new_tracking_tables_are_single_row_with_the_python_librarys_migration_row<T: Tables>(
    new: impl Fn(&str) -> T,
) {
    let tables = new("single_row");
    let r = tables.open().expect("open");
    assert_eq!(T::layout(&r), TrackingLayout::SingleRow);
    assert_eq!(
        tables.tracking_table(),
        (
            vec!["application_name".to_owned()],
            vec![("__migration__".to_owned(), 1)]
        )
    );

    r.insert_events_tracked(&[event("a", 1, "T")], &up(3))
        .expect("tracked");
    // Only forward: the same id or a lower one is a conflict, and nothing
    // of its save is stored.
    for n in [3, 2] {
        let err = r
            .insert_events_tracked(&[event("b", 1, "T")], &up(n))
            .expect_err("tracked already");
        assert!(err.is_conflict(), "{n}: {err}");
        assert!(err.to_string().contains("tracked already"), "{err}");
        assert!(
            r.select_events("b", &EventQuery::all())
                .expect("select")
                .is_empty(),
            "{n}: nothing stored"
        );
    }
    r.insert_events_tracked(&[], &up(5))
        .expect("tracking alone");
    assert_eq!(r.max_tracking_id("up").expect("max"), 5);
    assert!(
        r.has_tracking_id("up", 4).expect("has"),
        "at or below the row"
    );
    assert!(r.has_tracking_id("up", 5).expect("has"));
    assert!(!r.has_tracking_id("up", 6).expect("has"));
    assert_eq!(r.max_tracking_id("other").expect("max"), 0);
    assert_eq!(
        tables.tracking_table().1,
        [("__migration__".to_owned(), 1), ("up".to_owned(), 5)],
        "one row per upstream application"
    );

    // Reopened: the same table, the same layout, the row not added twice.
    let again = tables.open().expect("reopen");
    assert_eq!(again.max_tracking_id("up").expect("max"), 5);
    assert_eq!(tables.tracking_table().1.len(), 2);

    // Concurrent records of one upstream from two recorders (as two
    // processes): each id is taken once.
    let won: usize = std::thread::scope(|scope| {
        [&r, &again]
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
        tables.tracking_table().1,
        [("__migration__".to_owned(), 1), ("up".to_owned(), 39)]
    );
}

/// Tracking tables the Python library made, in either layout, are opened
/// in their own layout whatever is asked (but multi-row of a single-row
/// table: the next test), unchanged and not renamed, and kept to.
pub fn tracking_tables_in_the_python_librarys_layouts_are_used_as_they_are<T: Tables>(
    new: impl Fn(&str) -> T,
) {
    // As the Python library (9.5) creates them: single-row with its
    // migration row, or multi-row (SINGLE_ROW_TRACKING=no, or before 9.5).
    let python = [
        (
            "py_single",
            "('__migration__', 1), ('up', 7)",
            TrackingLayout::SingleRow,
        ),
        ("py_multi", "('up', 6), ('up', 7)", TrackingLayout::MultiRow),
    ];
    for (name, rows, layout) in python {
        let tables = new(name);
        tables.create_tracking_table(Some(layout), rows);
        let before = tables.tracking_table();
        for wanted in [TrackingLayout::SingleRow, TrackingLayout::MultiRow] {
            if layout == TrackingLayout::SingleRow && wanted == TrackingLayout::MultiRow {
                continue; // refused: the next test
            }
            for create in [true, false] {
                let r = tables.open_with(wanted, create).expect(name);
                assert_eq!(T::layout(&r), layout, "{name}: the table's own layout");
                assert_eq!(r.max_tracking_id("up").expect("max"), 7, "{name}");
            }
        }
        assert_eq!(
            tables.tracking_table(),
            before,
            "{name}: opening changed nothing"
        );
        tables.assert_nothing_renamed(name);
        let r = tables.open().expect(name);
        r.insert_events_tracked(&[event("a", 1, "T")], &up(9))
            .expect("tracked");
        let err = r
            .insert_events_tracked(&[event("b", 1, "T")], &up(9))
            .expect_err("twice");
        assert!(err.is_conflict(), "{name}: {err}");
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
        let (_, rows) = tables.tracking_table();
        let migration = rows
            .iter()
            .filter(|(app, _)| app == "__migration__")
            .count();
        assert_eq!(
            migration,
            usize::from(layout == TrackingLayout::SingleRow),
            "{name}: the migration row only in a single-row table"
        );
    }
}

/// `SINGLE_ROW_TRACKING=no` on a single-row table is refused (with or
/// without `CREATE_TABLE`), and so is a table in neither layout.
pub fn a_single_row_table_with_multi_row_tracking_asked_for_is_a_config_error<T: Tables>(
    new: impl Fn(&str) -> T,
) {
    let tables = new("single_asked_multi");
    tables.open().expect("single-row");
    for create in ["yes", "no"] {
        let (asked, opened) =
            tables.open_from_env(&[("SINGLE_ROW_TRACKING", "no"), ("CREATE_TABLE", create)]);
        assert_eq!(asked, TrackingLayout::MultiRow);
        match opened {
            Err(Error::Config { setting, message }) => {
                assert_eq!(setting, "SINGLE_ROW_TRACKING");
                assert!(
                    message.contains("tracking") && message.contains("SINGLE_ROW_TRACKING=yes"),
                    "{message}"
                );
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
    // A table in neither layout is refused too, whatever is asked.
    let odd = new("odd_tracking");
    odd.create_tracking_table(None, "");
    match odd.open() {
        Err(Error::Config { setting, message }) => {
            assert_eq!(setting, "SINGLE_ROW_TRACKING");
            assert!(message.contains("neither"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// `SINGLE_ROW_TRACKING=no` makes a multi-row tracking table, without the
/// migration row, that takes ids in any order.
pub fn single_row_tracking_no_creates_multi_row_tables_without_the_migration_row<T: Tables>(
    new: impl Fn(&str) -> T,
) {
    let tables = new("multi_row_env");
    let (_, opened) = tables.open_from_env(&[("APP_SINGLE_ROW_TRACKING", "no")]);
    let r = opened.expect("open");
    assert_eq!(T::layout(&r), TrackingLayout::MultiRow);
    r.insert_events_tracked(&[], &up(2)).expect("tracked");
    r.insert_events_tracked(&[], &up(1)).expect("any order");
    assert!(r.has_tracking_id("up", 1).expect("has"));
    assert!(!r.has_tracking_id("up", 3).expect("has"));
    assert_eq!(
        tables.tracking_table(),
        (
            vec!["application_name".to_owned(), "notification_id".to_owned()],
            vec![("up".to_owned(), 1), ("up".to_owned(), 2)]
        )
    );
}
