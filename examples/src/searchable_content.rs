//! Searchable content, after the Python eventsourcing library's
//! `searchablecontent` example: wiki [`Page`]s are created and updated in a
//! content application; a process application, the search index, follows
//! it and, for each page event, writes the page's searchable text into a
//! table of its own, in the transaction that stores its tracking record
//! ([`Processing::write`](annals::system::Processing::write)): each event
//! is indexed exactly once, or not at all. [`SearchIndex::search`] finds
//! pages by words of their title or body.
//!
//! On SQLite the index is a table and an FTS5 virtual table over it (kept
//! in step by triggers, so the index's writes are plain SQL on the table;
//! Porter stemming); on PostgreSQL a table with a generated `tsvector`
//! column (`to_tsvector('english', ..)`) and a GIN index, queried with
//! `plainto_tsquery`. In both, the words of a query must all match.
//!
//! Unlike the Python example, a body update carries the new body, not a
//! diff of it.

use annals::persistence::StoreTx;
use annals::prelude::*;
use annals::system::Policies;
use annals::{Error, Persistence};
use serde::{Deserialize, Serialize};

/// A wiki page.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page {
    /// Its name in URLs.
    pub slug: String,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
}

#[aggregate]
impl Page {
    /// Creates a page.
    #[event("Created")]
    pub fn create(slug: String, title: String, body: String) -> Self {
        Page { slug, title, body }
    }

    /// Changes the page's slug.
    #[event("SlugUpdated")]
    pub fn update_slug(&mut self, slug: String) {
        self.slug = slug;
    }

    /// Changes the page's title.
    #[event("TitleUpdated")]
    pub fn update_title(&mut self, title: String) {
        self.title = title;
    }

    /// Replaces the page's body.
    #[event("BodyUpdated")]
    pub fn update_body(&mut self, body: String) {
        self.body = body;
    }
}

/// A page found by a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The page's slug.
    pub slug: String,
    /// The page's title.
    pub title: String,
}

/// A connection to the index's database, outside the follower's
/// transactions: to create or drop the index's tables and to search.
pub enum IndexDb {
    /// The SQLite database file of the index application.
    Sqlite(annals::rusqlite::Connection),
    /// The PostgreSQL database of the index application.
    Postgres(annals::postgres::Client),
}

impl std::fmt::Debug for IndexDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IndexDb::Sqlite(_) => "IndexDb::Sqlite",
            IndexDb::Postgres(_) => "IndexDb::Postgres",
        })
    }
}

impl IndexDb {
    /// Connects to the database `persistence` stores events in (SQLite or
    /// PostgreSQL; PostgreSQL without TLS).
    ///
    /// # Errors
    ///
    /// The database cannot be opened; [`Error::Config`] for a store with
    /// no SQL database.
    pub fn connect(persistence: &Persistence) -> annals::Result<Self> {
        match persistence {
            Persistence::Sqlite(config) => annals::rusqlite::Connection::open(&config.dbname)
                .map(IndexDb::Sqlite)
                .map_err(Error::user),
            Persistence::Postgres(config) => {
                let mut c = annals::postgres::Config::new();
                c.dbname(&config.dbname)
                    .host(&config.host)
                    .port(config.port)
                    .user(&config.user);
                if let Some(password) = &config.password {
                    c.password(password);
                }
                c.connect(annals::postgres::NoTls)
                    .map(IndexDb::Postgres)
                    .map_err(Error::user)
            }
            _ => Err(Error::config(
                "PERSISTENCE_MODULE",
                "the search index needs the SQLite or PostgreSQL store",
            )),
        }
    }

    fn batch(&mut self, sql: &str) -> annals::Result<()> {
        match self {
            IndexDb::Sqlite(conn) => conn.execute_batch(sql).map_err(Error::user),
            IndexDb::Postgres(client) => client.batch_execute(sql).map_err(Error::user),
        }
    }
}

/// Whether this SQLite has FTS5 compiled in (the bundled one has).
///
/// # Errors
///
/// The query fails.
pub fn sqlite_has_fts5(conn: &annals::rusqlite::Connection) -> annals::Result<bool> {
    conn.query_row("SELECT sqlite_compileoption_used('ENABLE_FTS5')", [], |r| {
        r.get::<_, bool>(0)
    })
    .map_err(Error::user)
}

/// The search index's table (on SQLite, also `{table}_fts` and triggers
/// named after it).
#[derive(Debug, Clone)]
pub struct SearchIndex {
    table: String,
}

/// One write of the index, for one page event.
enum Write {
    Insert {
        slug: String,
        title: String,
        body: String,
    },
    Set(&'static str, String),
}

impl SearchIndex {
    /// The index in `table` (letters, digits and `_`).
    ///
    /// # Errors
    ///
    /// [`Error::User`] for a name that is not a plain SQL identifier.
    pub fn new(table: &str) -> annals::Result<Self> {
        let plain = table.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(Error::user(format!(
                "{table:?} is not a plain table name (letters, digits and _)"
            )));
        }
        Ok(Self {
            table: table.to_ascii_lowercase(),
        })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The SQLite DDL: the pages, an external-content FTS5 table over
    /// their title and body, and the triggers that keep it in step.
    pub fn sqlite_ddl(&self) -> String {
        let t = &self.table;
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                id INTEGER PRIMARY KEY,
                page_id TEXT NOT NULL UNIQUE,
                slug TEXT NOT NULL,
                title TEXT NOT NULL,
                body TEXT NOT NULL
            );
            CREATE VIRTUAL TABLE IF NOT EXISTS {t}_fts USING fts5(
                title, body, content='{t}', content_rowid='id', tokenize='porter unicode61'
            );
            CREATE TRIGGER IF NOT EXISTS {t}_ai AFTER INSERT ON {t} BEGIN
                INSERT INTO {t}_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
            END;
            CREATE TRIGGER IF NOT EXISTS {t}_ad AFTER DELETE ON {t} BEGIN
                INSERT INTO {t}_fts({t}_fts, rowid, title, body)
                    VALUES ('delete', old.id, old.title, old.body);
            END;
            CREATE TRIGGER IF NOT EXISTS {t}_au AFTER UPDATE ON {t} BEGIN
                INSERT INTO {t}_fts({t}_fts, rowid, title, body)
                    VALUES ('delete', old.id, old.title, old.body);
                INSERT INTO {t}_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
            END;"
        )
    }

    /// The PostgreSQL DDL: the pages, with a generated `tsvector` of their
    /// title and body and a GIN index on it.
    pub fn postgres_ddl(&self) -> String {
        let t = &self.table;
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                page_id TEXT PRIMARY KEY,
                slug TEXT NOT NULL,
                title TEXT NOT NULL,
                body TEXT NOT NULL,
                searchable tsvector GENERATED ALWAYS AS
                    (to_tsvector('english', title || ' ' || body)) STORED
            );
            CREATE INDEX IF NOT EXISTS {t}_searchable ON {t} USING GIN (searchable);"
        )
    }

    /// Creates the index's tables, unless they exist.
    ///
    /// # Errors
    ///
    /// The DDL fails (on SQLite, one without FTS5: a clear error).
    pub fn create_tables(&self, db: &mut IndexDb) -> annals::Result<()> {
        if let IndexDb::Sqlite(conn) = db {
            if !sqlite_has_fts5(conn)? {
                return Err(Error::user("this SQLite has no FTS5 (ENABLE_FTS5)"));
            }
        }
        let ddl = match db {
            IndexDb::Sqlite(_) => self.sqlite_ddl(),
            IndexDb::Postgres(_) => self.postgres_ddl(),
        };
        db.batch(&ddl)
    }

    /// Drops the index's tables, if they exist.
    ///
    /// # Errors
    ///
    /// The statements fail.
    pub fn drop_tables(&self, db: &mut IndexDb) -> annals::Result<()> {
        let t = &self.table;
        match db {
            IndexDb::Sqlite(_) => db.batch(&format!(
                "DROP TABLE IF EXISTS {t}; DROP TABLE IF EXISTS {t}_fts;"
            )),
            IndexDb::Postgres(_) => db.batch(&format!("DROP TABLE IF EXISTS {t}")),
        }
    }

    /// How many pages the index holds.
    ///
    /// # Errors
    ///
    /// The query fails.
    pub fn count(&self, db: &mut IndexDb) -> annals::Result<u64> {
        let sql = format!("SELECT COUNT(*) FROM {}", self.table);
        match db {
            IndexDb::Sqlite(conn) => conn
                .query_row(&sql, [], |r| r.get::<_, i64>(0))
                .map_err(Error::user),
            IndexDb::Postgres(client) => client
                .query_one(&sql, &[])
                .map(|row| row.get::<_, i64>(0))
                .map_err(Error::user),
        }
        .map(|n| u64::try_from(n).unwrap_or(0))
    }

    /// The pages whose title or body has every word of `query`, best
    /// first (then by slug). A query with no words finds nothing.
    ///
    /// # Errors
    ///
    /// The query fails.
    pub fn search(&self, db: &mut IndexDb, query: &str) -> annals::Result<Vec<Hit>> {
        let t = &self.table;
        match db {
            IndexDb::Sqlite(conn) => {
                // Every word quoted: FTS5's query syntax is not the user's.
                let words: Vec<String> = query
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .map(|w| format!("\"{w}\""))
                    .collect();
                if words.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT p.slug, p.title FROM {t}_fts JOIN {t} p ON p.id = {t}_fts.rowid
                     WHERE {t}_fts MATCH ?1 ORDER BY {t}_fts.rank, p.slug"
                );
                let mut stmt = conn.prepare(&sql).map_err(Error::user)?;
                let rows = stmt
                    .query_map([words.join(" ")], |r| {
                        Ok(Hit {
                            slug: r.get(0)?,
                            title: r.get(1)?,
                        })
                    })
                    .map_err(Error::user)?;
                rows.collect::<Result<_, _>>().map_err(Error::user)
            }
            IndexDb::Postgres(client) => {
                let sql = format!(
                    "SELECT slug, title FROM {t}, plainto_tsquery('english', $1) AS q
                     WHERE searchable @@ q ORDER BY ts_rank(searchable, q) DESC, slug"
                );
                Ok(client
                    .query(&sql, &[&query])
                    .map_err(Error::user)?
                    .iter()
                    .map(|row| Hit {
                        slug: row.get(0),
                        title: row.get(1),
                    })
                    .collect())
            }
        }
    }

    /// The index's policy: each page event becomes a write of the page's
    /// row, in the transaction of the event's tracking record.
    pub fn policy(&self) -> Policies {
        let index = self.clone();
        Policies::new().on::<Page>(move |event, processing| {
            let page_id = event.originator_id.to_string();
            let write = match event.event.clone() {
                PageEvent::Created { slug, title, body } => Write::Insert { slug, title, body },
                PageEvent::SlugUpdated { slug } => Write::Set("slug", slug),
                PageEvent::TitleUpdated { title } => Write::Set("title", title),
                PageEvent::BodyUpdated { body } => Write::Set("body", body),
            };
            let index = index.clone();
            processing.write(move |tx| index.write(tx, &page_id, &write));
            Ok(())
        })
    }

    /// Writes one page event's change through the follower's transaction.
    fn write(&self, tx: &mut StoreTx<'_>, page_id: &str, write: &Write) -> annals::Result<()> {
        let t = &self.table;
        let (sqlite_sql, postgres_sql, values): (String, String, Vec<&str>) = match write {
            Write::Insert { slug, title, body } => (
                format!("INSERT INTO {t} (page_id, slug, title, body) VALUES (?1, ?2, ?3, ?4)"),
                format!("INSERT INTO {t} (page_id, slug, title, body) VALUES ($1, $2, $3, $4)"),
                vec![page_id, slug, title, body],
            ),
            Write::Set(column, value) => (
                format!("UPDATE {t} SET {column} = ?2 WHERE page_id = ?1"),
                format!("UPDATE {t} SET {column} = $2 WHERE page_id = $1"),
                vec![page_id, value],
            ),
        };
        let changed = match tx.store() {
            "sqlite" => tx
                .sqlite()?
                .execute(&sqlite_sql, annals::rusqlite::params_from_iter(&values))
                .map(|n| n as u64)
                .map_err(Error::user)?,
            _ => {
                let params: Vec<&(dyn annals::postgres::types::ToSql + Sync)> = values
                    .iter()
                    .map(|v| v as &(dyn annals::postgres::types::ToSql + Sync))
                    .collect();
                tx.postgres()?
                    .execute(&postgres_sql, &params)
                    .map_err(Error::user)?
            }
        };
        if changed == 1 {
            Ok(())
        } else {
            Err(Error::user(format!(
                "page {page_id}: {changed} rows of {t} changed, not 1"
            )))
        }
    }
}
