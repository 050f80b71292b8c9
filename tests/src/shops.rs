//! The shop example on a store named by a string, for tests that run its
//! followers in other processes (the `shop_follower` binary) and inspect
//! what they stored.

use std::path::Path;
use std::time::Duration;

use annals::prelude::*;
use annals::system::{Policy, Processing, System, Upstream};
use annals::Persistence;
use annals_examples::shop::{self, Shop};

use crate::stores::{mysql_client, mysql_server, postgres_client, postgres_server, qualified};

/// The roles of the shop's applications, as their names end.
pub const ROLES: [&str; 3] = ["orders", "reservations", "payments"];

/// The names of the shop's applications under `prefix`:
/// `{prefix}_orders`, `{prefix}_reservations`, `{prefix}_payments`.
pub fn app_names(prefix: &str) -> [String; 3] {
    ROLES.map(|role| format!("{prefix}_{role}"))
}

/// A store as the `shop_follower` binary takes it: `sqlite:PATH` (the
/// applications are named after the file's stem), `postgres:PREFIX` or
/// `mysql:PREFIX` (the test server from the environment); returns the persistence and the
/// prefix of the applications' names.
pub fn parse_store(spec: &str) -> Result<(Persistence, String), String> {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        let prefix = Path::new(path)
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{spec}: the SQLite file has no name"))?
            .to_owned();
        let config = annals::persistence::sqlite::SqliteConfig::new(path);
        Ok((Persistence::Sqlite(config), prefix))
    } else if let Some(prefix) = spec.strip_prefix("postgres:") {
        let config = postgres_server().ok_or("postgres: set POSTGRES_DBNAME")?;
        Ok((Persistence::Postgres(config), prefix.to_owned()))
    } else if let Some(prefix) = spec.strip_prefix("mysql:") {
        let config = mysql_server().ok_or("mysql: set MYSQL_DBNAME")?;
        Ok((Persistence::Mysql(config), prefix.to_owned()))
    } else {
        Err(format!(
            "{spec}: expected sqlite:PATH, postgres:PREFIX or mysql:PREFIX"
        ))
    }
}

/// Runs `policy` after sleeping `delay`: a slow policy, so that a process
/// killed while it works is killed in the middle of a batch.
pub fn slow<P: Policy + 'static>(policy: P, delay: Duration) -> impl Policy + 'static {
    move |event: &Upstream<'_>, processing: &mut Processing<'_>| {
        std::thread::sleep(delay);
        policy.process(event, processing)
    }
}

/// The shop on `persistence`, its applications named `{prefix}_{role}`
/// (SQLite: one file, a table prefix per application). With `delay`, each
/// policy sleeps that long per notification first; without, it is exactly
/// [`Shop::new`]'s system.
pub fn shop_on(
    persistence: &Persistence,
    prefix: &str,
    delay: Option<Duration>,
) -> annals::Result<Shop> {
    let make = |role: &str| {
        let name = format!("{prefix}_{}", role.to_ascii_lowercase());
        let persistence = match persistence {
            Persistence::Sqlite(config) => {
                let mut config = config.clone();
                config.table_prefix = Some(name.clone());
                Persistence::Sqlite(config)
            }
            other => other.clone(),
        };
        Application::builder(&name).persistence(persistence).build()
    };
    let Some(delay) = delay else {
        return Shop::new(make);
    };
    let [orders, reservations, payments] = ROLES.map(|role| make(role).map(std::sync::Arc::new));
    let (orders, reservations, payments) = (orders?, reservations?, payments?);
    // The same wiring as `Shop::new`, each policy slowed down.
    let system = System::builder()
        .process(orders.clone(), slow(shop::mark_paid(), delay))
        .process(reservations.clone(), slow(shop::reserve(), delay))
        .process(payments.clone(), slow(shop::pay(), delay))
        .pipe([
            orders.name(),
            reservations.name(),
            payments.name(),
            orders.name(),
        ])
        .build()?;
    Ok(Shop {
        orders,
        reservations,
        payments,
        system: std::sync::Arc::new(system),
    })
}

/// The notification ids of `leader` in follower `follower`'s tracking
/// table, in order, read straight from it (SQLite: a table prefix per
/// application, as [`shop_on`] makes them): every one processed in a
/// multi-row table, only the last in a single-row one.
pub fn tracked_ids(persistence: &Persistence, follower: &str, leader: &str) -> Vec<u64> {
    match persistence {
        Persistence::Sqlite(config) => {
            let db = rusqlite::Connection::open(&config.dbname).expect("open the SQLite file");
            let mut select = db
                .prepare(&format!(
                    "SELECT notification_id FROM {follower}_tracking \
                     WHERE application_name = ?1 ORDER BY notification_id"
                ))
                .expect("select tracking ids");
            select
                .query_map([leader], |row| row.get::<_, i64>(0))
                .expect("tracking ids")
                .map(|id| u64::try_from(id.expect("a tracking id")).expect("a positive id"))
                .collect()
        }
        Persistence::Postgres(config) => {
            let table = qualified(config, &format!("{follower}_tracking"));
            postgres_client(config)
                .query(
                    &format!(
                        "SELECT notification_id FROM {table} \
                         WHERE application_name = $1 ORDER BY notification_id"
                    ),
                    &[&leader],
                )
                .expect("select tracking ids")
                .iter()
                .map(|row| u64::try_from(row.get::<_, i64>(0)).expect("a positive id"))
                .collect()
        }
        Persistence::Mysql(config) => {
            use annals::mysql::prelude::Queryable;
            mysql_client(config)
                .exec(
                    format!(
                        "SELECT notification_id FROM `{}_tracking` \
                         WHERE application_name = ? ORDER BY notification_id",
                        follower.to_ascii_lowercase()
                    ),
                    (leader,),
                )
                .expect("select tracking ids")
        }
        other => panic!("tracking ids of {other:?}: not a shared store"),
    }
}
