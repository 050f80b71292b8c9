//! The shop as a system: Orders -> Reservations -> Payments -> Orders, each
//! step a policy, run by any of annals' runners.
//!
//! ```sh
//! cargo run --example shop                                # run --runner single
//! cargo run --example shop -- run --runner threads --orders 50
//! cargo run --example shop -- place --orders 5            # place, process nothing
//! cargo run --example shop -- sync-followers --dry-run -v # what would be processed
//! cargo run --example shop -- sync-followers              # process it
//! ```
//!
//! `single` and `threads` keep the shop in the SQLite file `shop.db` (one
//! file, a table prefix per application), removed first. `processes` runs
//! it on PostgreSQL, set from the environment (`POSTGRES_DBNAME`,
//! `POSTGRES_HOST`, `POSTGRES_USER`, ...), with one child process per
//! follower (`shop follower NAME`), which can also be started by hand in
//! several terminals:
//!
//! ```sh
//! export POSTGRES_DBNAME=test POSTGRES_HOST=127.0.0.1 POSTGRES_USER=postgres
//! cargo run --example shop -- run --runner processes
//! cargo run --example shop -- follower shop_reservations   # runs until killed
//! ```
//!
//! Any runner can keep the shop on the object store instead, in the
//! directory `shop-objects/` (removed first; the followers of `processes`
//! poll it):
//!
//! ```sh
//! cargo run --example shop -- run --runner processes --store directory
//! ```
//!
//! Every runner ends in the same state, which `run` checks.

use std::error::Error;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use annals::env::Env;
use annals::log::Stopper;
use annals::persistence::object::ObjectConfig;
use annals::persistence::postgres::PostgresConfig;
use annals::persistence::sqlite::SqliteConfig;
use annals::prelude::*;
use annals::system::{MultiThreadedRunner, SingleThreadedRunner, SyncOptions};
use annals::Persistence;
use annals_examples::shop::{price, stored_events, Order, Payment, Reservation, Shop};
use clap::{ArgAction, Parser, Subcommand, ValueEnum};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// The SQLite file of the shop.
const SQLITE_FILE: &str = "shop.db";
/// The prefix of the applications' names (and so of their tables).
const PREFIX: &str = "shop";
/// Long enough for any machine; reaching it is an error.
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Parser)]
#[command(about = "The shop system: orders reserved, paid and marked paid by policies")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Places orders, runs the system until every order is settled, checks
    /// the final state.
    Run {
        /// Who runs the followers.
        #[arg(long, value_enum, default_value_t = Runner::Single)]
        runner: Runner,
        /// How many orders to place.
        #[arg(long, default_value_t = 10)]
        orders: usize,
        /// Where the shop is kept (default: SQLite for single and threads,
        /// PostgreSQL for processes).
        #[arg(long, value_enum)]
        store: Option<StoreKind>,
    },
    /// Runs one follower until killed.
    Follower {
        /// The follower: shop_orders, shop_reservations or shop_payments.
        name: String,
        /// Where the shop is kept.
        #[arg(long, value_enum, default_value_t = StoreKind::Postgres)]
        store: StoreKind,
    },
    /// Places orders in the SQLite shop without processing them.
    Place {
        /// How many orders to place.
        #[arg(long, default_value_t = 3)]
        orders: usize,
    },
    /// Brings the SQLite shop's followers up to date.
    SyncFollowers {
        /// Runs the policies but stores nothing.
        #[arg(long)]
        dry_run: bool,
        /// More output (-v: per leader, -vv: per notification).
        #[arg(short, long, action = ArgAction::Count)]
        verbose: u8,
        /// The followers (all when none is named).
        names: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Runner {
    /// `SingleThreadedRunner`, in this thread (SQLite).
    Single,
    /// `MultiThreadedRunner`, a thread per follower (SQLite).
    Threads,
    /// A child process per follower (PostgreSQL).
    Processes,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// The SQLite file `shop.db`.
    Sqlite,
    /// PostgreSQL, from the `POSTGRES_*` settings.
    Postgres,
    /// The object store on the directory `shop-objects/`.
    Directory,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "SQLite",
            StoreKind::Postgres => "PostgreSQL",
            StoreKind::Directory => "directory",
        }
    }
}

/// The object store's directory of the shop.
const DIRECTORY: &str = "shop-objects";

fn main() -> ExitCode {
    annals_examples::init_tracing();
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Cmd::Run {
        runner: Runner::Single,
        orders: 10,
        store: None,
    }) {
        Cmd::Run {
            runner,
            orders,
            store,
        } => run(runner, orders, store),
        Cmd::Follower { name, store } => follower(&name, store),
        Cmd::Place { orders } => place(orders),
        Cmd::SyncFollowers {
            dry_run,
            verbose,
            names,
        } => sync_followers(SyncOptions {
            followers: names,
            dry_run,
            verbosity: verbose,
        }),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shop: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The shop on `persistence`, its applications named `shop_orders`,
/// `shop_reservations` and `shop_payments` (valid PostgreSQL table
/// prefixes; on SQLite, each its own table prefix in the one file).
fn shop_on(persistence: &Persistence) -> annals::Result<Shop> {
    Shop::new(|role| {
        let name = app_name(role);
        let persistence = match persistence {
            Persistence::Sqlite(config) => {
                let mut config = config.clone();
                config.table_prefix = Some(name.clone());
                Persistence::Sqlite(config)
            }
            other => other.clone(),
        };
        Application::builder(&name).persistence(persistence).build()
    })
}

fn app_name(role: &str) -> String {
    format!("{PREFIX}_{}", role.to_ascii_lowercase())
}

fn sqlite_shop() -> annals::Result<Shop> {
    shop_on(&Persistence::Sqlite(SqliteConfig::new(SQLITE_FILE)))
}

fn postgres_config() -> Result<PostgresConfig> {
    PostgresConfig::from_env(&Env::from_process(PREFIX)).map_err(|e| {
        format!(
            "the processes runner keeps the shop in PostgreSQL: set POSTGRES_DBNAME \
             (and POSTGRES_HOST, POSTGRES_USER, ... as needed) ({e})"
        )
        .into()
    })
}

/// Drops the tables of the shop's applications, for a fresh run.
fn drop_postgres_tables(config: &PostgresConfig) -> Result<()> {
    let mut c = postgres::Config::new();
    c.dbname(&config.dbname)
        .host(&config.host)
        .port(config.port)
        .user(&config.user);
    if let Some(password) = &config.password {
        c.password(password);
    }
    let mut client = c.connect(postgres::NoTls)?;
    let mut tables = Vec::new();
    for role in ["orders", "reservations", "payments"] {
        for table in ["events", "tracking", "snapshots"] {
            let table = format!("{}_{table}", app_name(role));
            tables.push(match &config.schema {
                Some(schema) => format!("\"{schema}\".\"{table}\""),
                None => format!("\"{table}\""),
            });
        }
    }
    client.batch_execute(&format!("DROP TABLE IF EXISTS {}", tables.join(", ")))?;
    Ok(())
}

fn remove_sqlite_files() -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        match std::fs::remove_file(format!("{SQLITE_FILE}{suffix}")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// What order `i` is for.
fn items(i: usize) -> &'static [&'static str] {
    const ITEMS: [&[&str]; 4] = [
        &["book"],
        &["pen", "ink"],
        &["lamp", "bulb", "shade"],
        &["mug"],
    ];
    ITEMS[i % ITEMS.len()]
}

fn place_orders(shop: &Shop, n: usize) -> annals::Result<Vec<Uuid>> {
    (0..n).map(|i| shop.place_order(items(i))).collect()
}

/// The final state of a run, as every runner must leave it.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    orders: usize,
    paid: usize,
    reservations: usize,
    payments: usize,
    taken_cents: u64,
    events: (u64, u64, u64),
}

impl Summary {
    /// What `n` orders settle to.
    fn expected(n: usize) -> Self {
        let n64 = n as u64;
        Self {
            orders: n,
            paid: n,
            reservations: n,
            payments: n,
            taken_cents: (0..n).map(|i| price(items(i).len())).sum(),
            events: (2 * n64, n64, n64),
        }
    }

    /// What the shop holds for `orders`.
    fn of(shop: &Shop, orders: &[Uuid]) -> annals::Result<Self> {
        let mut summary = Self {
            orders: orders.len(),
            paid: 0,
            reservations: 0,
            payments: 0,
            taken_cents: 0,
            events: (
                stored_events(&shop.orders)?,
                stored_events(&shop.reservations)?,
                stored_events(&shop.payments)?,
            ),
        };
        for id in orders {
            let order: Order = shop.orders.repository().get(*id)?;
            summary.paid += usize::from(order.paid);
            let reservation: Reservation = shop
                .reservations
                .repository()
                .get(Reservation::create_id(id))?;
            summary.reservations += usize::from(reservation.order_id == *id);
            let payment: Payment = shop.payments.repository().get(Payment::create_id(id))?;
            summary.payments += usize::from(payment.order_id == *id);
            summary.taken_cents += payment.amount;
        }
        Ok(summary)
    }
}

/// A new, empty shop on `store`.
fn fresh_shop(store: StoreKind) -> Result<Shop> {
    Ok(match store {
        StoreKind::Sqlite => {
            remove_sqlite_files()?;
            sqlite_shop()?
        }
        StoreKind::Postgres => {
            let config = postgres_config()?;
            drop_postgres_tables(&config)?;
            shop_on(&Persistence::Postgres(config))?
        }
        StoreKind::Directory => {
            match std::fs::remove_dir_all(DIRECTORY) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            shop_on(&directory())?
        }
    })
}

/// The shop's object store (each application in its own subdirectory).
fn directory() -> Persistence {
    Persistence::Store(std::sync::Arc::new(ObjectConfig::location(DIRECTORY)))
}

/// The existing shop on `store`.
fn shop_of(store: StoreKind) -> Result<Shop> {
    Ok(match store {
        StoreKind::Sqlite => sqlite_shop()?,
        StoreKind::Postgres => shop_on(&Persistence::Postgres(postgres_config()?))?,
        StoreKind::Directory => shop_on(&directory())?,
    })
}

fn run(runner: Runner, n: usize, store: Option<StoreKind>) -> Result<ExitCode> {
    let started = Instant::now();
    let store = store.unwrap_or(match runner {
        Runner::Single | Runner::Threads => StoreKind::Sqlite,
        Runner::Processes => StoreKind::Postgres,
    });
    let (shop, orders, label) = match runner {
        Runner::Single => {
            let shop = fresh_shop(store)?;
            let orders = place_orders(&shop, n)?;
            let processed = SingleThreadedRunner::new(shop.system.clone()).run()?;
            println!("single-threaded runner: processed {processed} notifications");
            (shop, orders, format!("single ({})", store.name()))
        }
        Runner::Threads => {
            let shop = fresh_shop(store)?;
            let runner = MultiThreadedRunner::start(shop.system.clone())?;
            let orders = place_orders(&shop, n)?;
            let caught_up = runner.wait_until_caught_up(DEADLINE)?;
            runner.stop()?;
            if !caught_up {
                return Err(format!("the followers did not catch up within {DEADLINE:?}").into());
            }
            (shop, orders, format!("threads ({})", store.name()))
        }
        Runner::Processes => {
            let (shop, orders) = run_processes(n, store)?;
            (shop, orders, format!("processes ({})", store.name()))
        }
    };
    shop.check_settled(&orders)?;
    let summary = Summary::of(&shop, &orders)?;
    assert_eq!(
        summary,
        Summary::expected(n),
        "the {label} runner's final state"
    );
    println!(
        "{label}: {} orders settled in {:.2?}: {} reserved, {} paid, {} marked paid, \
         {} cents taken; events stored (orders, reservations, payments): {:?}",
        summary.orders,
        started.elapsed(),
        summary.reservations,
        summary.payments,
        summary.paid,
        summary.taken_cents,
        summary.events
    );
    Ok(ExitCode::SUCCESS)
}

/// The follower processes, killed and reaped when dropped.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_processes(n: usize, store: StoreKind) -> Result<(Shop, Vec<Uuid>)> {
    // Made before the followers start, so the tables exist.
    let shop = fresh_shop(store)?;
    let exe = std::env::current_exe()?;
    let store_arg = match store {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Postgres => "postgres",
        StoreKind::Directory => "directory",
    };
    let mut children = Children(Vec::new());
    for name in shop.system.followers() {
        let child = Command::new(&exe)
            .arg("follower")
            .arg(name)
            .arg("--store")
            .arg(store_arg)
            .spawn()?;
        println!("started follower {name} (pid {})", child.id());
        children.0.push((name.clone(), child));
    }
    let orders = place_orders(&shop, n)?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut state = shop.check_settled(&orders);
        for name in shop.system.followers() {
            if state.is_ok() && !shop.system.is_caught_up(name)? {
                state = Err(format!("{name} is not caught up"));
            }
        }
        if state.is_ok() {
            break;
        }
        for (name, child) in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                return Err(format!("follower {name} exited: {status}").into());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("not settled within {DEADLINE:?}: {state:?}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(children);
    Ok((shop, orders))
}

fn follower(name: &str, store: StoreKind) -> Result<ExitCode> {
    let shop = shop_of(store)?;
    if !shop.system.followers().iter().any(|f| f == name) {
        return Err(format!(
            "{name:?} is not a follower; the followers are {:?}",
            shop.system.followers()
        )
        .into());
    }
    shop.system
        .run_follower(name, &Stopper::new(), Duration::from_millis(500))?;
    Ok(ExitCode::SUCCESS)
}

fn place(n: usize) -> Result<ExitCode> {
    let shop = sqlite_shop()?;
    let orders = place_orders(&shop, n)?;
    println!(
        "placed {} orders in {SQLITE_FILE}; `sync-followers` processes them",
        orders.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn sync_followers(options: SyncOptions) -> Result<ExitCode> {
    let shop = sqlite_shop()?;
    let report = shop
        .system
        .sync_followers(&options, &mut std::io::stdout().lock())?;
    if report.is_ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        for failed in report.followers.iter().filter(|f| f.error.is_some()) {
            eprintln!("shop: follower {} failed", failed.name);
        }
        Ok(ExitCode::FAILURE)
    }
}
