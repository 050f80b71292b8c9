//! Every SQL statement of the PostgreSQL DCB store
//! ([`PostgresDcbRecorder`](crate::PostgresDcbRecorder)): Python
//! eventsourcing 9.5's `eventsourcing/dcb/postgres_tt.py`, its templates
//! copied verbatim and filled in as Python fills them (identifiers
//! double-quoted, as psycopg's `Identifier` does; the lock timeout in
//! whole seconds), so that either side creates the same types, tables,
//! indexes and functions, and either may create them first.
//!
//! The names, for an events table name `n` (Python's `events_table_name`,
//! `<application name, lower-cased>_events` from its factory):
//!
//! | object | name |
//! |---|---|
//! | events table | `n_tt_main (id bigserial, type text, data bytea, tags text[])` |
//! | its index | `n_tt_main_idx_id_type`, unique on `id`, including `type` |
//! | tags table | `n_tt_tag (tag text, main_id bigint REFERENCES n_tt_main (id))` |
//! | its index | `n_tt_tag_idx_tag_main_id` on `(tag, main_id)` |
//! | composite types | `dcb_event_tt (type, data, tags)`, `dcb_query_item_tt (types, tags)` |
//! | functions | `dcb_unconditional_append_tt(dcb_event_tt[])`, `dcb_conditional_append_tt(dcb_query_item_tt[], bigint, dcb_event_tt[])` |
//! | channel | `n_tt_main` (the functions `NOTIFY` it) |
//!
//! The types and the functions are named without the table's name, as in
//! Python: one schema holds one DCB store's functions (the last created
//! wins), so give each DCB application a schema of its own.
//!
//! Parameters: where Python writes `%(after)s` these take `$n::bigint`
//! (psycopg sends a Python `int` typed; the `postgres` crate needs the
//! type said).

/// Python's `DB_TYPE_DCB_EVENT`, verbatim.
pub(super) const DB_TYPE_DCB_EVENT: &str = r#"
CREATE TYPE {schema}.{event_type} AS (
    type text,
    data bytea,
    tags text[]
)
"#;

/// Python's `DB_TYPE_DCB_QUERY_ITEM`, verbatim.
pub(super) const DB_TYPE_DCB_QUERY_ITEM: &str = r#"
CREATE TYPE {schema}.{query_item_type} AS (
    types text[],
    tags text[]
)
"#;

/// Python's `DB_TABLE_DCB_EVENTS`, verbatim.
pub(super) const DB_TABLE_DCB_EVENTS: &str = r#"
CREATE TABLE IF NOT EXISTS {schema}.{events_table} (
    id bigserial,
    type text NOT NULL ,
    data bytea,
    tags text[] NOT NULL
) WITH (
  autovacuum_enabled = true,
  autovacuum_vacuum_threshold = 100000000,  -- Effectively disables VACUUM
  autovacuum_vacuum_scale_factor = 0.5,     -- Same here, high scale factor
  autovacuum_analyze_threshold = 1000,      -- Triggers ANALYZE more often
  autovacuum_analyze_scale_factor = 0.01    -- Triggers after 1% new rows
)
"#;

/// Python's `DB_INDEX_UNIQUE_ID_COVER_TYPE`, verbatim.
pub(super) const DB_INDEX_UNIQUE_ID_COVER_TYPE: &str = r#"
CREATE UNIQUE INDEX IF NOT EXISTS {id_cover_type_index} ON
{schema}.{events_table} (id) INCLUDE (type)
"#;

/// Python's `DB_TABLE_DCB_TAGS`, verbatim.
pub(super) const DB_TABLE_DCB_TAGS: &str = r#"
CREATE TABLE IF NOT EXISTS {schema}.{tags_table} (
    tag text,
    main_id bigint REFERENCES {events_table} (id)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,  -- Effectively disables VACUUM
    autovacuum_vacuum_scale_factor = 0.5,     -- Same here, high scale factor
    autovacuum_analyze_threshold = 1000,      -- Triggers ANALYZE more often
    autovacuum_analyze_scale_factor = 0.01    -- Triggers after 1% new rows
)
"#;

/// Python's `DB_INDEX_TAG_MAIN_ID`, verbatim.
pub(super) const DB_INDEX_TAG_MAIN_ID: &str = r#"
CREATE INDEX IF NOT EXISTS {tag_main_id_index} ON
{schema}.{tags_table} (tag, main_id)
"#;

/// Python's `SQL_SELECT_ALL`, verbatim.
pub(super) const SQL_SELECT_ALL: &str = r#"
SELECT * FROM {schema}.{events_table}
WHERE id > COALESCE(%(after)s, 0)
ORDER BY id ASC
LIMIT COALESCE(%(limit)s, 9223372036854775807)
"#;

/// Python's `SQL_SELECT_EVENTS_BY_TYPE`, verbatim.
pub(super) const SQL_SELECT_EVENTS_BY_TYPE: &str = r#"
SELECT * FROM {schema}.{events_table}
WHERE type = %(event_type)s
AND id > COALESCE(%(after)s, 0)
ORDER BY id ASC
LIMIT COALESCE(%(limit)s, 9223372036854775807)
"#;

/// Python's `SQL_SELECT_MAX_ID`, verbatim.
pub(super) const SQL_SELECT_MAX_ID: &str = r#"
SELECT MAX(id) FROM {schema}.{events_table}
"#;

/// Python's `SQL_SELECT_BY_TAGS`, verbatim.
pub(super) const SQL_SELECT_BY_TAGS: &str = r#"
WITH query_items AS (
    SELECT * FROM unnest(
        %(query_items)s::{schema}.{query_item_type}[]
    ) WITH ORDINALITY
),
initial_matches AS (
    SELECT
        t.main_id,
        qi.ordinality,
        t.tag,
        qi.tags AS required_tags,
        qi.types AS allowed_types
    FROM query_items qi
    JOIN {schema}.{tags_table} t
      ON t.tag = ANY(qi.tags)
   WHERE t.main_id > COALESCE(%(after)s, 0)
),
matched_groups AS (
    SELECT
        main_id,
        ordinality,
        COUNT(DISTINCT tag) AS matched_tag_count,
        array_length(required_tags, 1) AS required_tag_count,
        allowed_types
    FROM initial_matches
    GROUP BY main_id, ordinality, required_tag_count, allowed_types
),
qualified_ids AS (
    SELECT main_id, allowed_types
    FROM matched_groups
    WHERE matched_tag_count = required_tag_count
),
filtered_ids AS (
    SELECT m.id
    FROM {schema}.{events_table} m
    JOIN qualified_ids q ON q.main_id = m.id
    WHERE
        m.id > COALESCE(%(after)s, 0)
        AND (
            array_length(q.allowed_types, 1) IS NULL
            OR array_length(q.allowed_types, 1) = 0
            OR m.type = ANY(q.allowed_types)
        )
    ORDER BY m.id ASC
    LIMIT COALESCE(%(limit)s, 9223372036854775807)
)
SELECT *
FROM {schema}.{events_table}  m
WHERE m.id IN (SELECT id FROM filtered_ids)
ORDER BY m.id ASC;
"#;

/// Python's `SQL_UNCONDITIONAL_APPEND`, verbatim.
pub(super) const SQL_UNCONDITIONAL_APPEND: &str = r#"
SELECT * FROM {schema}.{unconditional_append}(%(events)s)
"#;

/// Python's `DB_FUNCTION_UNCONDITIONAL_APPEND`, verbatim.
pub(super) const DB_FUNCTION_UNCONDITIONAL_APPEND: &str = r#"
CREATE OR REPLACE FUNCTION {schema}.{unconditional_append}(
    new_events {schema}.{event_type}[]
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH new_data AS (
        SELECT * FROM unnest(new_events)
    ),
    inserted AS (
        INSERT INTO {schema}.{events_table} (type, data, tags)
        SELECT type, data, tags
        FROM new_data
        RETURNING id, tags
    ),
    expanded_tags AS (
        SELECT ins.id AS main_id, tag
        FROM inserted ins,
             unnest(ins.tags) AS tag
    ),
    tag_insert AS (
        INSERT INTO {schema}.{tags_table} (tag, main_id)
        SELECT tag, main_id
        FROM expanded_tags
    )
    SELECT MAX(id) FROM inserted;
    NOTIFY {channel};

END
$$;
"#;

/// Python's `SQL_CONDITIONAL_APPEND`, verbatim.
pub(super) const SQL_CONDITIONAL_APPEND: &str = r#"
SELECT * FROM {schema}.{conditional_append}(%(query_items)s, %(after)s, %(events)s)
"#;

/// Python's `DB_FUNCTION_CONDITIONAL_APPEND`, verbatim.
pub(super) const DB_FUNCTION_CONDITIONAL_APPEND: &str = r#"
CREATE OR REPLACE FUNCTION {schema}.{conditional_append}(
    query_items {schema}.{query_item_type}[],
    after_id bigint,
    new_events {schema}.{event_type}[]
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    conflict_exists boolean;
BEGIN
    -- Step 0: Lock table in exclusive mode (reads can still read)
    SET LOCAL lock_timeout = '{lock_timeout}s';
    LOCK TABLE {schema}.{events_table} IN EXCLUSIVE MODE;

    -- Step 1: Check for conflicts
    WITH query_items_cte AS (
        SELECT * FROM unnest(query_items) WITH ORDINALITY
    ),
    initial_matches AS (
        SELECT
            t.main_id,
            qi.ordinality,
            t.tag,
            qi.tags AS required_tags,
            qi.types AS allowed_types
        FROM query_items_cte qi
        JOIN {schema}.{tags_table} t
          ON t.tag = ANY(qi.tags)
        WHERE t.main_id > COALESCE(after_id, 0)
    ),
    matched_groups AS (
        SELECT
            main_id,
            ordinality,
            COUNT(DISTINCT tag) AS matched_tag_count,
            array_length(required_tags, 1) AS required_tag_count,
            allowed_types
        FROM initial_matches
        GROUP BY main_id, ordinality, required_tag_count, allowed_types
    ),
    qualified_ids AS (
        SELECT main_id, allowed_types
        FROM matched_groups
        WHERE matched_tag_count = required_tag_count
    ),
    filtered_ids AS (
        SELECT m.id
        FROM {schema}.{events_table} m
        JOIN qualified_ids q ON q.main_id = m.id
        WHERE
            m.id > COALESCE(after_id, 0)
            AND (
                array_length(q.allowed_types, 1) IS NULL
                OR array_length(q.allowed_types, 1) = 0
                OR m.type = ANY(q.allowed_types)
            )
        LIMIT 1
    )
    SELECT EXISTS (SELECT 1 FROM filtered_ids)
    INTO conflict_exists;

    -- Step 2: Insert if no conflicts
    IF NOT conflict_exists THEN
        RETURN QUERY
        WITH new_data AS (
            SELECT * FROM unnest(new_events)
        ),
        inserted AS (
            INSERT INTO {schema}.{events_table} (type, data, tags)
            SELECT type, data, tags
            FROM new_data
            RETURNING id, tags
        ),
        expanded_tags AS (
            SELECT ins.id AS main_id, tag
            FROM inserted ins,
                 unnest(ins.tags) AS tag
        ),
        tag_insert AS (
            INSERT INTO {schema}.{tags_table} (tag, main_id)
            SELECT tag, main_id
            FROM expanded_tags
        )
        SELECT MAX(id) FROM inserted;
        NOTIFY {channel};

    END IF;

    -- If conflict exists, return empty result
    RETURN;
END
$$;
"#;

/// Python's `SQL_SET_LOCAL_LOCK_TIMEOUT`, verbatim.
pub(super) const SQL_SET_LOCAL_LOCK_TIMEOUT: &str = r#"SET LOCAL lock_timeout = '{lock_timeout}s'"#;

/// Python's `SQL_LOCK_TABLE`, verbatim.
pub(super) const SQL_LOCK_TABLE: &str = r#"LOCK TABLE {schema}.{events_table} IN EXCLUSIVE MODE"#;

/// The composite type of an event, as Python names it.
pub(super) const EVENT_TYPE: &str = "dcb_event_tt";
/// The composite type of a query item.
pub(super) const QUERY_ITEM_TYPE: &str = "dcb_query_item_tt";
/// The unconditional append function.
pub(super) const UNCONDITIONAL_APPEND: &str = "dcb_unconditional_append_tt";
/// The conditional append function.
pub(super) const CONDITIONAL_APPEND: &str = "dcb_conditional_append_tt";

/// annals' own read for a query Python's recorder refuses ("Unsupported
/// query": an item without tags, unless the query is one item of one
/// type): the events after `$2` whose type and tags match any item of
/// `$1`, at most `$3`. A scan of the events after `$2`.
const SELECT_BY_ANY_ITEM: &str = r#"
SELECT * FROM {schema}.{events_table} m
WHERE m.id > COALESCE($2::bigint, 0)
AND EXISTS (
    SELECT 1 FROM unnest($1::{schema}.{query_item_type}[]) qi
    WHERE (cardinality(qi.types) = 0 OR m.type = ANY(qi.types))
    AND m.tags @> qi.tags
)
ORDER BY m.id ASC
LIMIT COALESCE($3::bigint, 9223372036854775807)
"#;

/// The statements a connection prepares once and keeps (in
/// [`Conn`](super::pool::Conn)): each read and append is then one round
/// trip, not a parse and describe before it.
#[derive(Debug, Clone, Copy)]
pub(super) enum DcbStmt {
    SelectAll,
    SelectByType,
    SelectByTags,
    SelectByAnyItem,
    UnconditionalAppend,
    ConditionalAppend,
    /// The reads above with the head: see [`with_head`].
    SelectAllHead,
    SelectByTypeHead,
    SelectByTagsHead,
    SelectByAnyItemHead,
}

impl DcbStmt {
    /// The read that also returns the head, for a read without a limit.
    pub(super) fn with_head(self) -> Self {
        match self {
            DcbStmt::SelectAll => DcbStmt::SelectAllHead,
            DcbStmt::SelectByType => DcbStmt::SelectByTypeHead,
            DcbStmt::SelectByTags => DcbStmt::SelectByTagsHead,
            DcbStmt::SelectByAnyItem => DcbStmt::SelectByAnyItemHead,
            other => other,
        }
    }
}

/// How many [`DcbStmt`]s there are.
pub(super) const DCB_STATEMENTS: usize = 10;

/// A read and the head in one statement (so one snapshot and one round
/// trip): Python's `SQL_SELECT_MAX_ID`, and the read as a subquery, its
/// rows (none, when it found none: one row of NULLs) beside the head, in
/// column `head`. Python runs the two one after the other.
fn with_head(select_max_id: &str, select: &str) -> String {
    format!(
        "SELECT h.max AS head, e.* FROM ({}) h LEFT JOIN ({}) e ON true ORDER BY e.id ASC",
        select_max_id.trim(),
        select.trim().trim_end_matches(';')
    )
}

/// `name` as psycopg's `Identifier` writes it: double-quoted, inner
/// quotes doubled.
pub(super) fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statements of one DCB store, filled in.
#[derive(Debug, Clone)]
pub(super) struct TtSql {
    /// What creates the types (each alone: an existing one is skipped).
    pub(super) create_types: Vec<String>,
    /// What creates the tables, indexes and functions, in one transaction.
    pub(super) create_rest: Vec<String>,
    /// `$1` after, `$2` limit.
    pub(super) select_all: String,
    /// `$1` the type, `$2` after, `$3` limit.
    pub(super) select_by_type: String,
    /// `$1` the query items, `$2` after, `$3` limit (and so the next).
    pub(super) select_by_tags: String,
    pub(super) select_by_any_item: String,
    pub(super) unconditional_append: String,
    pub(super) conditional_append: String,
    /// `select_all`, `select_by_type`, `select_by_tags`,
    /// `select_by_any_item`, each with the head (`with_head`).
    pub(super) with_head: [String; 4],
    pub(super) lock_table: String,
    /// `SET LOCAL lock_timeout`, when one is set.
    pub(super) set_lock_timeout: Option<String>,
    pub(super) schema: String,
    pub(super) events_table: String,
    pub(super) tags_table: String,
    /// The channel of the NOTIFY (unquoted).
    pub(super) channel: String,
}

impl TtSql {
    /// The SQL of `which`.
    pub(super) fn statement(&self, which: DcbStmt) -> &str {
        match which {
            DcbStmt::SelectAll => &self.select_all,
            DcbStmt::SelectByType => &self.select_by_type,
            DcbStmt::SelectByTags => &self.select_by_tags,
            DcbStmt::SelectByAnyItem => &self.select_by_any_item,
            DcbStmt::UnconditionalAppend => &self.unconditional_append,
            DcbStmt::ConditionalAppend => &self.conditional_append,
            DcbStmt::SelectAllHead => &self.with_head[0],
            DcbStmt::SelectByTypeHead => &self.with_head[1],
            DcbStmt::SelectByTagsHead => &self.with_head[2],
            DcbStmt::SelectByAnyItemHead => &self.with_head[3],
        }
    }

    /// The statements for events table name `name` (Python's
    /// `events_table_name`) in `schema`, with a lock timeout of
    /// `lock_timeout` whole seconds (0: none).
    pub(super) fn new(name: &str, schema: &str, lock_timeout: u64) -> Self {
        let events_table = format!("{name}_tt_main");
        let channel = events_table.replace('.', "_");
        let tags_table = format!("{name}_tt_tag");
        let index_id_cover_type = format!("{events_table}_idx_id_type");
        let index_tag_main_id = format!("{tags_table}_idx_tag_main_id");
        let fill = |template: &str| -> String {
            template
                .replace("{schema}", &identifier(schema))
                .replace("{events_table}", &identifier(&events_table))
                .replace("{channel}", &identifier(&channel))
                .replace("{tags_table}", &identifier(&tags_table))
                .replace("{event_type}", &identifier(EVENT_TYPE))
                .replace("{query_item_type}", &identifier(QUERY_ITEM_TYPE))
                .replace("{id_cover_type_index}", &identifier(&index_id_cover_type))
                .replace("{tag_main_id_index}", &identifier(&index_tag_main_id))
                .replace("{unconditional_append}", &identifier(UNCONDITIONAL_APPEND))
                .replace("{conditional_append}", &identifier(CONDITIONAL_APPEND))
                .replace("{lock_timeout}", &lock_timeout.to_string())
        };
        let params = |sql: String| -> String {
            sql.replace("%(query_items)s", "$1")
                .replace("%(after)s", "$2::bigint")
                .replace("%(limit)s", "$3::bigint")
                .replace("%(event_type)s", "$1::text")
                .replace("%(events)s", "$3")
        };
        let select_all = fill(SQL_SELECT_ALL)
            .replace("%(after)s", "$1::bigint")
            .replace("%(limit)s", "$2::bigint");
        let select_by_type = params(fill(SQL_SELECT_EVENTS_BY_TYPE));
        let select_by_tags = params(fill(SQL_SELECT_BY_TAGS));
        let select_by_any_item = fill(SELECT_BY_ANY_ITEM);
        let select_max_id = fill(SQL_SELECT_MAX_ID);
        let with_head = [
            with_head(&select_max_id, &select_all),
            with_head(&select_max_id, &select_by_type),
            with_head(&select_max_id, &select_by_tags),
            with_head(&select_max_id, &select_by_any_item),
        ];
        Self {
            create_types: vec![fill(DB_TYPE_DCB_EVENT), fill(DB_TYPE_DCB_QUERY_ITEM)],
            create_rest: [
                DB_TABLE_DCB_EVENTS,
                DB_INDEX_UNIQUE_ID_COVER_TYPE,
                DB_TABLE_DCB_TAGS,
                DB_INDEX_TAG_MAIN_ID,
                DB_FUNCTION_UNCONDITIONAL_APPEND,
                DB_FUNCTION_CONDITIONAL_APPEND,
            ]
            .into_iter()
            .map(fill)
            .collect(),
            // `$1` after, `$2` limit.
            select_all,
            select_by_type,
            select_by_tags,
            select_by_any_item,
            with_head,
            // The events alone: `$1`.
            unconditional_append: fill(SQL_UNCONDITIONAL_APPEND).replace("%(events)s", "$1"),
            conditional_append: params(fill(SQL_CONDITIONAL_APPEND)),
            lock_table: fill(SQL_LOCK_TABLE),
            set_lock_timeout: (lock_timeout > 0).then(|| fill(SQL_SET_LOCAL_LOCK_TIMEOUT)),
            schema: schema.to_owned(),
            events_table,
            tags_table,
            channel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_are_pythons_filled_in() {
        let sql = TtSql::new("courses_events", "public", 0);
        assert_eq!(
            sql.create_types[0].trim(),
            "CREATE TYPE \"public\".\"dcb_event_tt\" AS (\n    type text,\n    data bytea,\n    tags text[]\n)"
        );
        assert!(sql.create_rest[2].contains(
            "CREATE TABLE IF NOT EXISTS \"public\".\"courses_events_tt_tag\" (\n    tag text,\n    main_id bigint REFERENCES \"courses_events_tt_main\" (id)"
        ));
        assert!(sql.create_rest[5].contains("SET LOCAL lock_timeout = '0s';"));
        assert!(sql.create_rest[5].contains("NOTIFY \"courses_events_tt_main\";"));
        assert!(sql
            .conditional_append
            .contains("\"public\".\"dcb_conditional_append_tt\"($1, $2::bigint, $3)"));
        // The reads with the head: Python's max and Python's read, joined.
        assert!(sql.with_head[2].starts_with(
            "SELECT h.max AS head, e.* FROM (SELECT MAX(id) FROM \"public\".\"courses_events_tt_main\") h LEFT JOIN (WITH query_items AS ("
        ));
        for statement in &sql.with_head {
            assert!(!statement.contains(';'), "{statement}");
        }
        for statement in [
            &sql.select_all,
            &sql.select_by_tags,
            &sql.select_by_type,
            &sql.unconditional_append,
        ]
        .into_iter()
        .chain(&sql.with_head)
        {
            assert!(!statement.contains("%("), "{statement}");
            assert!(!statement.contains('{'), "{statement}");
        }
    }
}
