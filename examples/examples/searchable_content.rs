//! Searchable content (`annals_examples::searchable_content`): wiki pages
//! created and updated in one application, indexed for search by a
//! process application that follows it, each page event written into the
//! index's table in the transaction of its tracking record.
//!
//! ```sh
//! cargo run --example searchable_content      # SQLite, searchable_content.db (removed first)
//! PERSISTENCE_MODULE=postgres POSTGRES_DBNAME=test POSTGRES_HOST=127.0.0.1 \
//!     POSTGRES_USER=postgres cargo run --example searchable_content
//! ```

use std::sync::Arc;

use annals::env::Env;
use annals::persistence::postgres::PostgresConfig;
use annals::persistence::sqlite::SqliteConfig;
use annals::prelude::*;
use annals::system::ProcessApplication;
use annals::Persistence;
use annals_examples::searchable_content::{Hit, IndexDb, Page, SearchIndex};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The SQLite file of both applications (a table prefix each).
const SQLITE_FILE: &str = "searchable_content.db";
/// The content application.
const CONTENT: &str = "searchable_content";
/// The search index application.
const INDEX: &str = "searchable_index";
/// The index's own table.
const PAGES: &str = "searchable_index_pages";

fn main() -> Result<()> {
    annals_examples::init_tracing();
    let persistence = fresh_store()?;
    let on = |name: &str| -> annals::Result<Application> {
        let persistence = match &persistence {
            Persistence::Sqlite(config) => {
                let mut config = config.clone();
                config.table_prefix = Some(name.to_owned());
                Persistence::Sqlite(config)
            }
            other => other.clone(),
        };
        Application::builder(name).persistence(persistence).build()
    };
    let content = on(CONTENT)?;
    let index_app = Arc::new(on(INDEX)?);
    let index = SearchIndex::new(PAGES)?;
    let mut db = IndexDb::connect(&persistence)?;
    index.drop_tables(&mut db)?;
    index.create_tables(&mut db)?;
    let follower = ProcessApplication::new(index_app, index.policy());

    let mut pages = [
        Page::create(
            "animals".into(),
            "Animals".into(),
            "Cats and dogs are popular pets.".into(),
        ),
        Page::create(
            "plants".into(),
            "Plants".into(),
            "Trees and flowers grow in gardens.".into(),
        ),
        Page::create(
            "weather".into(),
            "Weather".into(),
            "Rain falls on the gardens in spring.".into(),
        ),
    ];
    for page in &mut pages {
        content.save(page)?;
    }
    let processed = follower.pull(&content, 100)?;
    println!("the index processed {processed} page events");
    show_and_check(&index, &mut db, "gardens", &["plants", "weather"])?;
    show_and_check(&index, &mut db, "dogs", &["animals"])?;

    // Rewrite the weather page: its old words are no longer found.
    let weather = &mut pages[2];
    weather.update_title("Climate".into());
    weather.update_body("Snow covers the mountains in winter.".into());
    content.save(weather)?;
    let processed = follower.pull(&content, 100)?;
    println!("the index processed {processed} page events");
    show_and_check(&index, &mut db, "gardens", &["plants"])?;
    show_and_check(&index, &mut db, "mountain snow", &["weather"])?;
    show_and_check(&index, &mut db, "climate", &["weather"])?;
    assert_eq!(follower.pull(&content, 100)?, 0, "nothing left to index");
    assert_eq!(index.count(&mut db)?, 3, "one row per page");
    println!(
        "searchable content: {} pages indexed",
        index.count(&mut db)?
    );
    Ok(())
}

/// Searches, prints the hits and checks their slugs (in any order).
fn show_and_check(
    index: &SearchIndex,
    db: &mut IndexDb,
    query: &str,
    expected: &[&str],
) -> Result<()> {
    let hits = index.search(db, query)?;
    let shown: Vec<String> = hits
        .iter()
        .map(|Hit { slug, title }| format!("{slug} ({title})"))
        .collect();
    println!("search {query:?}: {}", shown.join(", "));
    let mut slugs: Vec<&str> = hits.iter().map(|h| h.slug.as_str()).collect();
    slugs.sort_unstable();
    assert_eq!(slugs, expected, "the pages found for {query:?}");
    Ok(())
}

/// SQLite (`searchable_content.db`, removed first) unless
/// `PERSISTENCE_MODULE=postgres` (the applications' tables dropped first).
fn fresh_store() -> Result<Persistence> {
    match std::env::var("PERSISTENCE_MODULE").ok().as_deref() {
        None | Some("sqlite") => {
            for suffix in ["", "-wal", "-shm"] {
                match std::fs::remove_file(format!("{SQLITE_FILE}{suffix}")) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            Ok(Persistence::Sqlite(SqliteConfig::new(SQLITE_FILE)))
        }
        Some("postgres") => {
            let config = PostgresConfig::from_env(&Env::from_process(CONTENT))?;
            let IndexDb::Postgres(mut client) =
                IndexDb::connect(&Persistence::Postgres(config.clone()))?
            else {
                unreachable!("a PostgreSQL connection");
            };
            let mut tables = Vec::new();
            for app in [CONTENT, INDEX] {
                for table in ["events", "tracking", "snapshots"] {
                    tables.push(format!("{app}_{table}"));
                }
            }
            client.batch_execute(&format!("DROP TABLE IF EXISTS {}", tables.join(", ")))?;
            Ok(Persistence::Postgres(config))
        }
        Some(other) => {
            Err(format!("PERSISTENCE_MODULE={other}: expected sqlite or postgres").into())
        }
    }
}
