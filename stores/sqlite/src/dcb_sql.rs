//! Every SQL statement of the SQLite DCB store ([`SqliteDcbRecorder`](crate::SqliteDcbRecorder)).
//!
//! Two tables (with a table prefix `p`: `p_dcb_events`, `p_dcb_tags`):
//!
//! - `dcb_events (position INTEGER PRIMARY KEY, type TEXT, data BLOB,
//!   tags TEXT)`: the position is the rowid; `tags` is the event's tags as
//!   a JSON array of strings, in their order, to read them back; an index
//!   on `(type, position)` serves queries by type alone.
//! - `dcb_tags (tag TEXT, position INTEGER, PRIMARY KEY (tag, position))
//!   WITHOUT ROWID`: one row per tag of each event, a B-tree ordered by
//!   tag then position, so "the events with tag T after position P" is a
//!   seek and a scan of T's events after P alone, however many events the
//!   store holds.
//!
//! A query item with tags is driven by its first tag's rows; each other
//! tag is one more seek per candidate on the same index, and its types one
//! rowid lookup in the events table. Items are joined by `UNION`. The
//! append condition asks `EXISTS` of each item with `LIMIT`-free seeks
//! that stop at the first match.

use rusqlite::types::Value;

use annals_core::persistence::dcb::{DcbQuery, DcbQueryItem};

/// The tables of a DCB store.
#[derive(Debug, Clone)]
pub(super) struct DcbTables {
    pub(super) events: String,
    pub(super) tags: String,
}

impl DcbTables {
    /// `dcb_events` and `dcb_tags`, or `p_dcb_events` and `p_dcb_tags`
    /// with a prefix (checked by the caller as the other tables' prefix).
    pub(super) fn new(prefix: Option<&str>) -> Self {
        match prefix {
            None => Self {
                events: "dcb_events".into(),
                tags: "dcb_tags".into(),
            },
            Some(p) => {
                let p = p.to_ascii_lowercase();
                Self {
                    events: format!("{p}_dcb_events"),
                    tags: format!("{p}_dcb_tags"),
                }
            }
        }
    }

    /// The statements that create the tables and the index.
    pub(super) fn create(&self) -> Vec<String> {
        let Self { events, tags } = self;
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {events} (position INTEGER PRIMARY KEY, type TEXT NOT NULL, data BLOB NOT NULL, tags TEXT NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {events}_type ON {events} (type, position)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {tags} (tag TEXT NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (tag, position)) WITHOUT ROWID"
            ),
        ]
    }

    /// Inserts one event: `(type, data, tags as JSON)`; the position is
    /// the new rowid.
    pub(super) fn insert_event(&self) -> String {
        format!(
            "INSERT INTO {} (type, data, tags) VALUES (?1, ?2, ?3)",
            self.events
        )
    }

    /// Inserts one tag of an event: `(tag, position)`; a tag repeated in
    /// one event is stored once.
    pub(super) fn insert_tag(&self) -> String {
        format!(
            "INSERT OR IGNORE INTO {} (tag, position) VALUES (?1, ?2)",
            self.tags
        )
    }

    /// The last position (NULL when the store is empty).
    pub(super) fn max_position(&self) -> String {
        format!("SELECT MAX(position) FROM {}", self.events)
    }

    /// The positions of the events after `after` that match `item`, as a
    /// `SELECT position ...` whose parameters are pushed on `params`;
    /// `None` when the item matches every event.
    fn item_positions(
        &self,
        item: &DcbQueryItem,
        after: i64,
        params: &mut Vec<Value>,
    ) -> Option<String> {
        let Self { events, tags } = self;
        let types = |params: &mut Vec<Value>| {
            params.extend(item.types.iter().map(|t| Value::Text(t.clone())));
            vec!["?"; item.types.len()].join(", ")
        };
        match item.tags.split_first() {
            Some((first, rest)) => {
                let mut sql = format!("SELECT t.position FROM {tags} t");
                let mut joins = Vec::new();
                for (i, tag) in rest.iter().enumerate() {
                    joins.push(format!(
                        " JOIN {tags} t{i} ON t{i}.tag = ? AND t{i}.position = t.position"
                    ));
                    params.push(Value::Text(tag.clone()));
                }
                sql.extend(joins);
                if !item.types.is_empty() {
                    sql.push_str(&format!(
                        " JOIN {events} e ON e.position = t.position AND e.type IN ({})",
                        types(params)
                    ));
                }
                sql.push_str(" WHERE t.tag = ? AND t.position > ?");
                params.push(Value::Text(first.clone()));
                params.push(Value::Integer(after));
                Some(sql)
            }
            None if !item.types.is_empty() => {
                let sql = format!(
                    "SELECT position FROM {events} WHERE type IN ({}) AND position > ?",
                    types(params)
                );
                params.push(Value::Integer(after));
                Some(sql)
            }
            None => None,
        }
    }

    /// The events after `after` that match `query`, in position order, at
    /// most `limit`: `(position, type, data, tags)`.
    pub(super) fn read(&self, query: &DcbQuery, after: i64, limit: i64) -> (String, Vec<Value>) {
        let events = &self.events;
        let mut params = Vec::new();
        let items: Option<Vec<String>> = if query.items.is_empty() {
            None
        } else {
            query
                .items
                .iter()
                .map(|item| self.item_positions(item, after, &mut params))
                .collect()
        };
        match items {
            // Some item (or the empty query) matches every event.
            None => {
                params.clear();
                params.push(Value::Integer(after));
                params.push(Value::Integer(limit));
                (
                    format!(
                        "SELECT position, type, data, tags FROM {events} WHERE position > ? ORDER BY position LIMIT ?"
                    ),
                    params,
                )
            }
            Some(items) => {
                params.push(Value::Integer(limit));
                (
                    format!(
                        "SELECT e.position, e.type, e.data, e.tags FROM {events} e WHERE e.position IN ({}) ORDER BY e.position LIMIT ?",
                        items.join(" UNION ")
                    ),
                    params,
                )
            }
        }
    }

    /// Whether an event after `after` matches `query`: one `EXISTS` per
    /// item, each stopping at its first match.
    pub(super) fn exists(&self, query: &DcbQuery, after: i64) -> (String, Vec<Value>) {
        let mut params = Vec::new();
        let items: Option<Vec<String>> = if query.items.is_empty() {
            None
        } else {
            query
                .items
                .iter()
                .map(|item| {
                    self.item_positions(item, after, &mut params)
                        .map(|sql| format!("EXISTS ({sql})"))
                })
                .collect()
        };
        match items {
            None => (
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE position > ?)",
                    self.events
                ),
                vec![Value::Integer(after)],
            ),
            Some(items) => (format!("SELECT {}", items.join(" OR ")), params),
        }
    }
}
