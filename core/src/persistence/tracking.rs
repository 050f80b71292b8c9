//! The two layouts of the SQL stores' tracking tables, as the Python
//! eventsourcing library has them, and how a store tells which one a table
//! has.
//!
//! - **Single-row** (Python 9.5's default, `SINGLE_ROW_TRACKING=yes`):
//!   primary key `(application_name)`, one row per upstream application
//!   holding the last notification id processed; a record moves the row
//!   forward and is refused when it would not (the notification, or a
//!   later one, was processed). A table created in this layout holds the
//!   row `('__migration__', 1)`, by which Python recognizes it (a table
//!   without it, Python renames and replaces).
//! - **Multi-row** (`SINGLE_ROW_TRACKING=no`, Python before 9.5): primary
//!   key `(application_name, notification_id)`, one row per processed
//!   notification; a second record of one notification is refused.
//!
//! A store finds the layout of an existing table from its primary key and
//! uses it; the setting decides only the layout of a table the store
//! creates. Nothing here migrates a table.

use crate::error::{Error, Result};
use crate::settings;

/// The `application_name` of the row that marks a single-row tracking
/// table, as the Python library writes it (with notification id 1) when it
/// creates one.
pub const MIGRATION_ROW: &str = "__migration__";

/// How a SQL store's tracking table keeps its records: one of the Python
/// library's two layouts (see the `SINGLE_ROW_TRACKING` setting).
///
/// ```
/// use annals_core::persistence::TrackingLayout;
///
/// assert_eq!(TrackingLayout::default(), TrackingLayout::SingleRow);
/// assert_eq!(TrackingLayout::from_flag(false), TrackingLayout::MultiRow);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TrackingLayout {
    /// One row per upstream application, primary key `(application_name)`,
    /// holding the highest notification id processed; a record that would
    /// not move it forward is a conflict. A notification counts as tracked
    /// when its id is at most that one. Python 9.5's default.
    #[default]
    SingleRow,
    /// One row per processed notification, primary key `(application_name,
    /// notification_id)`; a second record of a notification is a conflict.
    /// The layout of Python before 9.5 (`SINGLE_ROW_TRACKING=no`).
    MultiRow,
}

impl TrackingLayout {
    /// The layout `SINGLE_ROW_TRACKING` names: single-row for yes,
    /// multi-row for no.
    pub fn from_flag(single_row: bool) -> Self {
        if single_row {
            TrackingLayout::SingleRow
        } else {
            TrackingLayout::MultiRow
        }
    }

    /// The layout a table has, from the columns of its primary key (in any
    /// order); `None` when the table does not exist (`exists` false).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `SINGLE_ROW_TRACKING` when the table exists
    /// with a primary key of neither layout.
    pub fn of_table(table: &str, exists: bool, key: &[String]) -> Result<Option<Self>> {
        if !exists {
            return Ok(None);
        }
        let mut sorted: Vec<&str> = key.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        match sorted.as_slice() {
            ["application_name"] => Ok(Some(TrackingLayout::SingleRow)),
            ["application_name", "notification_id"] => Ok(Some(TrackingLayout::MultiRow)),
            _ => Err(Error::config(
                settings::SINGLE_ROW_TRACKING.name,
                format!(
                    "the tracking table {table} has the primary key ({}), which is neither of \
                     the Python library's layouts: (application_name) for single-row \
                     tracking, (application_name, notification_id) for multi-row tracking",
                    key.join(", ")
                ),
            )),
        }
    }

    /// The layout to use with a table found in layout `found` (`None`: it
    /// does not exist, and `wanted` is made), when the settings ask for
    /// `wanted`: the table's own layout, whatever was asked, except that a
    /// single-row table is refused when multi-row tracking is asked for (as
    /// the Python library refuses it: its records could not be kept one per
    /// notification).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `SINGLE_ROW_TRACKING` for a single-row table
    /// when `wanted` is multi-row.
    pub fn choose(table: &str, found: Option<Self>, wanted: Self) -> Result<Self> {
        match (found, wanted) {
            (Some(TrackingLayout::SingleRow), TrackingLayout::MultiRow) => Err(Error::config(
                settings::SINGLE_ROW_TRACKING.name,
                format!(
                    "the tracking table {table} keeps one row per upstream application (the \
                     Python library's single-row layout), but SINGLE_ROW_TRACKING=no asks for \
                     one row per notification: set SINGLE_ROW_TRACKING=yes to use this table \
                     (annals does not migrate tracking tables)"
                ),
            )),
            (Some(found), _) => Ok(found),
            (None, wanted) => Ok(wanted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(columns: &[&str]) -> Vec<String> {
        columns.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn a_table_s_primary_key_gives_its_layout() {
        let of = |exists, columns: &[&str]| TrackingLayout::of_table("t", exists, &key(columns));
        assert_eq!(of(false, &[]).expect("missing"), None);
        assert_eq!(
            of(true, &["application_name"]).expect("single"),
            Some(TrackingLayout::SingleRow)
        );
        assert_eq!(
            of(true, &["notification_id", "application_name"]).expect("multi"),
            Some(TrackingLayout::MultiRow)
        );
        for odd in [&[][..], &["notification_id"], &["application_name", "x"]] {
            match of(true, odd) {
                Err(Error::Config { setting, message }) => {
                    assert_eq!(setting, "SINGLE_ROW_TRACKING");
                    assert!(message.contains("neither"), "{message}");
                }
                other => panic!("{odd:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_existing_table_s_layout_wins_except_single_row_asked_to_be_multi_row() {
        use TrackingLayout::{MultiRow, SingleRow};
        let choose = |found, wanted| TrackingLayout::choose("t", found, wanted);
        assert_eq!(choose(None, SingleRow).expect("new"), SingleRow);
        assert_eq!(choose(None, MultiRow).expect("new"), MultiRow);
        assert_eq!(choose(Some(SingleRow), SingleRow).expect("same"), SingleRow);
        assert_eq!(choose(Some(MultiRow), MultiRow).expect("same"), MultiRow);
        assert_eq!(
            choose(Some(MultiRow), SingleRow).expect("kept, never migrated"),
            MultiRow
        );
        match choose(Some(SingleRow), MultiRow) {
            Err(Error::Config { setting, message }) => {
                assert_eq!(setting, "SINGLE_ROW_TRACKING");
                assert!(message.contains("SINGLE_ROW_TRACKING=yes"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
