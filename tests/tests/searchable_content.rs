//! The searchable content example (`annals_examples::searchable_content`)
//! on SQLite (FTS5) and PostgreSQL (tsvector): pages are found by their
//! words, updates change what is found, each event is indexed once, and a
//! failing index write stores no tracking record.

use std::sync::Arc;

use annals::persistence::postgres::PostgresConfig;
use annals::persistence::sqlite::SqliteConfig;
use annals::prelude::*;
use annals::system::ProcessApplication;
use annals::{Error, Persistence};
use annals_examples::searchable_content::{sqlite_has_fts5, IndexDb, Page, SearchIndex};
use annals_tests::stores::{drop_postgres_tables, postgres_server, temp_sqlite};

/// The content application, the index follower, the index and a
/// connection to its tables, on one store.
struct Wiki {
    store: &'static str,
    content: Application,
    follower: ProcessApplication,
    index: SearchIndex,
    db: IndexDb,
}

impl Wiki {
    /// A wiki on SQLite (a new file) and on PostgreSQL when configured
    /// (its tables dropped first), the applications and the index table
    /// named after `name`.
    fn every(name: &str) -> Vec<Wiki> {
        let content = format!("{name}_content");
        let follower = format!("{name}_index");
        let mut stores = vec![Persistence::Sqlite(SqliteConfig::new(temp_sqlite(name)))];
        match postgres_server() {
            Some(config) => {
                drop_postgres_tables(&config, &content);
                drop_postgres_tables(&config, &follower);
                stores.push(Persistence::Postgres(config));
            }
            None => annals_tests::skipped(&format!("{name} on postgres")),
        }
        stores
            .into_iter()
            .map(|persistence| Wiki::on(&persistence, &content, &follower, name))
            .collect()
    }

    fn on(persistence: &Persistence, content: &str, follower: &str, table: &str) -> Wiki {
        let app = |name: &str| {
            let persistence = match persistence {
                Persistence::Sqlite(config) => {
                    let mut config = config.clone();
                    config.table_prefix = Some(name.to_owned());
                    Persistence::Sqlite(config)
                }
                other => other.clone(),
            };
            Application::builder(name)
                .persistence(persistence)
                .build()
                .expect("app")
        };
        let store = match persistence {
            Persistence::Sqlite(_) => "sqlite",
            _ => "postgres",
        };
        let index = SearchIndex::new(&format!("{table}_pages")).expect("index");
        let mut db = IndexDb::connect(persistence).expect("connect");
        index.drop_tables(&mut db).expect("drop");
        index.create_tables(&mut db).expect("create");
        Wiki {
            store,
            content: app(content),
            follower: ProcessApplication::new(Arc::new(app(follower)), index.policy()),
            index,
            db,
        }
    }

    fn create(&self, slug: &str, title: &str, body: &str) -> Page {
        let mut page = Page::create(slug.into(), title.into(), body.into());
        self.content.save(&mut page).expect("save");
        page
    }

    fn pull(&self) -> annals::Result<usize> {
        self.follower.pull(&self.content, 100)
    }

    /// The slugs found for `query`, sorted.
    fn found(&mut self, query: &str) -> Vec<String> {
        let mut slugs: Vec<String> = self
            .index
            .search(&mut self.db, query)
            .unwrap_or_else(|e| panic!("{}: search {query:?}: {e}", self.store))
            .into_iter()
            .map(|hit| hit.slug)
            .collect();
        slugs.sort();
        slugs
    }

    fn tracked(&self) -> u64 {
        self.follower
            .app()
            .recorder()
            .max_tracking_id(self.content.name())
            .expect("tracking")
    }
}

#[test]
fn the_bundled_sqlite_has_fts5() {
    let conn = annals::rusqlite::Connection::open_in_memory().expect("open");
    assert!(sqlite_has_fts5(&conn).expect("compile options"));
}

#[test]
fn search_finds_created_pages() {
    for mut wiki in Wiki::every("search_created") {
        wiki.create("cats", "Cats", "Cats chase mice in the barn.");
        wiki.create("dogs", "Dogs", "Dogs chase cats in the garden.");
        wiki.create("birds", "Birds", "Birds sing in the morning.");
        assert!(
            wiki.found("chase").is_empty(),
            "{}: not indexed yet",
            wiki.store
        );
        assert_eq!(wiki.pull().expect("pull"), 3, "{}", wiki.store);
        assert_eq!(wiki.found("chase"), ["cats", "dogs"], "{}", wiki.store);
        assert_eq!(wiki.found("garden cats"), ["dogs"], "{}", wiki.store);
        assert_eq!(wiki.found("birds"), ["birds"], "{}: title", wiki.store);
        assert_eq!(wiki.found("singing"), ["birds"], "{}: stemmed", wiki.store);
        assert!(wiki.found("elephants").is_empty(), "{}", wiki.store);
        assert!(wiki.found("").is_empty(), "{}", wiki.store);
        // Punctuation is not query syntax.
        assert_eq!(wiki.found("\"mice\" (barn)"), ["cats"], "{}", wiki.store);
        let hits = wiki.index.search(&mut wiki.db, "morning").expect("search");
        assert_eq!(hits[0].title, "Birds", "{}", wiki.store);
    }
}

#[test]
fn an_update_changes_what_is_found() {
    for mut wiki in Wiki::every("search_updated") {
        let mut page = wiki.create("notes", "Notes", "Apples and pears.");
        wiki.pull().expect("pull");
        assert_eq!(wiki.found("apples"), ["notes"], "{}", wiki.store);
        page.update_body("Oranges and lemons.".into());
        page.update_title("Citrus".into());
        page.update_slug("citrus".into());
        wiki.content.save(&mut page).expect("save");
        assert_eq!(wiki.pull().expect("pull"), 3, "{}", wiki.store);
        assert!(wiki.found("apples").is_empty(), "{}: old body", wiki.store);
        assert!(wiki.found("notes").is_empty(), "{}: old title", wiki.store);
        assert_eq!(wiki.found("lemons"), ["citrus"], "{}", wiki.store);
        assert_eq!(wiki.found("citrus oranges"), ["citrus"], "{}", wiki.store);
        assert_eq!(wiki.index.count(&mut wiki.db).expect("count"), 1);
    }
}

#[test]
fn pulling_twice_indexes_once() {
    for mut wiki in Wiki::every("search_once") {
        for i in 0..4 {
            wiki.create(&format!("page{i}"), "Page", "Shared words here.");
        }
        assert_eq!(wiki.pull().expect("first"), 4, "{}", wiki.store);
        assert_eq!(wiki.pull().expect("second"), 0, "{}", wiki.store);
        assert_eq!(wiki.index.count(&mut wiki.db).expect("count"), 4);
        assert_eq!(wiki.found("shared").len(), 4, "{}", wiki.store);
        assert_eq!(wiki.tracked(), 4, "{}", wiki.store);
        // The index saves no events of its own: only tracking records.
        assert_eq!(
            wiki.follower.app().last_notification_id().expect("log"),
            None
        );
    }
}

#[test]
fn a_failing_index_write_stores_no_tracking_record() {
    for mut wiki in Wiki::every("search_failing") {
        wiki.create("first", "First", "Indexed before the failure.");
        assert_eq!(wiki.pull().expect("pull"), 1, "{}", wiki.store);
        wiki.create("second", "Second", "Indexed after the fix.");
        // The index's table is gone: its write fails.
        wiki.index.drop_tables(&mut wiki.db).expect("drop");
        let error = wiki.pull().expect_err("no table");
        assert!(matches!(error, Error::User(_)), "{}: {error:?}", wiki.store);
        assert_eq!(wiki.tracked(), 1, "{}: no tracking record", wiki.store);
        // Fixed (an empty index again), the failed event is processed once.
        wiki.index.create_tables(&mut wiki.db).expect("create");
        assert_eq!(wiki.pull().expect("fixed"), 1, "{}", wiki.store);
        assert_eq!(wiki.pull().expect("again"), 0, "{}", wiki.store);
        assert_eq!(wiki.tracked(), 2, "{}", wiki.store);
        assert_eq!(wiki.found("fix"), ["second"], "{}", wiki.store);
        assert_eq!(wiki.index.count(&mut wiki.db).expect("count"), 1);
    }
}

/// The index's tables from the library's DDL, as a migration would run it.
#[test]
fn the_ddl_creates_the_index_on_both_stores() {
    let index = SearchIndex::new("search_ddl_pages").expect("index");
    let path = temp_sqlite("search_ddl");
    let conn = annals::rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(&index.sqlite_ddl()).expect("sqlite ddl");
    conn.execute_batch(&index.sqlite_ddl()).expect("idempotent");
    assert!(SearchIndex::new("pages; DROP TABLE x").is_err());
    let Some(config): Option<PostgresConfig> = postgres_server() else {
        annals_tests::skipped("the_ddl_creates_the_index_on_both_stores on postgres");
        return;
    };
    let mut db = IndexDb::connect(&Persistence::Postgres(config)).expect("connect");
    index.drop_tables(&mut db).expect("drop");
    let IndexDb::Postgres(client) = &mut db else {
        unreachable!()
    };
    client.batch_execute(&index.postgres_ddl()).expect("pg ddl");
    client
        .batch_execute(&index.postgres_ddl())
        .expect("idempotent");
    let gin: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'search_ddl_pages' \
             AND indexdef LIKE '%USING gin%'",
            &[],
        )
        .expect("pg_indexes")
        .get(0);
    assert_eq!(gin, 1);
}
