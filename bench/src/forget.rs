//! `--forget`: how long forgetting a subject takes against how many
//! events hold its personal data. Crypto-shredding erases one key, so the
//! time should not grow with the events.

use std::time::Instant;

use annals::persistence::postgres::PostgresConfig;
use annals::prelude::*;

use crate::annals_sut::PersonalDog;
use crate::workload::{name, trick, Res};

/// Opens the application named so on one store, on fresh tables.
type OpenApp = dyn Fn(&str) -> Res<Application>;

/// Subjects timed per size (the median is reported).
const SUBJECTS: usize = 5;

/// Forgets `SUBJECTS` dogs of each of `sizes` events on SQLite and, when
/// POSTGRES_DBNAME is set, PostgreSQL; prints the median time of each and
/// its ratio to the smallest size's.
pub(crate) fn run(sizes: &[usize]) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let mut stores: Vec<(&str, Box<OpenApp>)> = Vec::new();
    // SQLite's forget ends with a WAL checkpoint, which also writes back
    // every page the saves before it left in the WAL: done first, so the
    // time is the forget's own.
    let settle = |store: &str, db: &str| -> Res<()> {
        if store == "sqlite" {
            annals::rusqlite::Connection::open(db)?.query_row(
                "PRAGMA wal_checkpoint(TRUNCATE)",
                [],
                |_| Ok(()),
            )?;
        }
        Ok(())
    };
    let db = dir.path().join("forget.db");
    let db = db.to_str().ok_or("path")?.to_owned();
    let sqlite_db = db.clone();
    let key = annals::cipher::create_key();
    let sqlite_key = key.clone();
    stores.push((
        "sqlite",
        Box::new(move |app| {
            Ok(Application::builder(app)
                .sqlite(&db)
                .personal_data_key(&sqlite_key)
                .build()?)
        }),
    ));
    if super::pg_settings().is_some() {
        let env = annals::env::Env::from_process("annals_bench");
        let config = PostgresConfig::from_env(&env)?;
        let client = std::cell::RefCell::new(super::pg_config()?.connect(postgres::NoTls)?);
        stores.push((
            "postgres",
            Box::new(move |app| {
                let name = app.to_ascii_lowercase();
                client.borrow_mut().batch_execute(&format!(
                    "DROP TABLE IF EXISTS {name}_events, {name}_snapshots, {name}_tracking, \
                     {name}_outcomes, {name}_data_keys"
                ))?;
                Ok(Application::builder(app)
                    .postgres(config.clone())
                    .personal_data_key(&key)
                    .build()?)
            }),
        ));
    }
    println!(
        "| store | events of the subject | forget (median of {SUBJECTS}), ms | against {} events |",
        sizes[0]
    );
    println!("|---|---|---|---|");
    for (store, open) in &stores {
        let mut first = None;
        for &size in sizes {
            let app = open(&format!("bench_forget_{size}"))?;
            let mut times = Vec::with_capacity(SUBJECTS);
            for s in 0..SUBJECTS {
                let mut dog = PersonalDog::register(name(s));
                for j in 1..size {
                    dog.add_trick(trick(j));
                    if j % 100 == 0 {
                        app.save(&mut dog)?;
                    }
                }
                app.save(&mut dog)?;
                let subject = dog.id().to_string();
                settle(store, &sqlite_db)?;
                let start = Instant::now();
                if !app.forget(&subject)? {
                    return Err(format!("{store}: subject {subject} had no key").into());
                }
                times.push(start.elapsed().as_secs_f64() * 1e3);
                let forgotten: PersonalDog = app.get(dog.id())?;
                if forgotten.version() != size as u64 || !forgotten.name.is_empty() {
                    return Err(format!("{store}: the dog was not forgotten as expected").into());
                }
            }
            let median = super::median(times).ok_or("no times")?;
            let base = *first.get_or_insert(median);
            println!("| {store} | {size} | {median:.2} | {:.2}x |", median / base);
        }
    }
    Ok(())
}
