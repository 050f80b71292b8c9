//! `annals-bench`: the standard event-store workload (W1-W5 and the
//! zlib-aes variant, `docs/workload.md`) on annals (memory,
//! SQLite, PostgreSQL, the object store on a directory and on S3), on the
//! raw drivers that annals uses (rusqlite, postgres, object_store) and on
//! cqrs-es 0.5's in-memory store, in one run: rounds of
//! every configuration, each configuration in a fresh process, medians over
//! rounds and medians of the per-round ratios annals/baseline.
//!
//! `cargo run --release -p annals-bench -- --help`

mod allocs;
mod annals_sut;
mod cold_start;
mod compaction;
mod cqrs;
mod curve;
mod enrolment;
mod forget;
mod long_get;
mod raw;
mod reader_memory;
mod wake;
mod web;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use annals::persistence::object::ObjectConfig;
use clap::Parser;
use serde::{Deserialize, Serialize};

use workload::{fail, Res, Sizes, Sut};

/// The standard event-store workload on annals and its baselines.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Stores to run on: memory, sqlite, postgres (postgres needs
    /// POSTGRES_DBNAME; POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER are
    /// read too), mysql (MariaDB or MySQL: MYSQL_DBNAME, and the other
    /// MYSQL_* settings), object (the object store on a fresh temporary
    /// directory), s3 (the object store on ANNALS_S3_LOCATION,
    /// s3://bucket/prefix, a fresh prefix under it per workload group;
    /// endpoint and credentials from the AWS_* variables).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "memory,sqlite,postgres,mysql,object,s3"
    )]
    stores: Vec<String>,
    /// Workloads: w1, w1x8 (W1 with concurrent writers), w2, w3, w4, w5,
    /// zlib-aes (W1 and W2 with zlib + AES-256-GCM).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "w1,w1x8,w2,w3,w4,w5,zlib-aes"
    )]
    workloads: Vec<String>,
    /// Rounds; each runs every configuration once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Multiplies the number of aggregates (W1/W2/W3), the long stream
    /// (W4) and the number of batches (W5).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Aggregates written by W1 (default 2000 x scale).
    #[arg(long)]
    aggregates: Option<usize>,
    /// Events per aggregate in W1 (default 10).
    #[arg(long)]
    events: Option<usize>,
    /// Events in W4's long stream (default 10000 x scale).
    #[arg(long)]
    long: Option<usize>,
    /// Writer threads for w1x8 (default 8).
    #[arg(long)]
    threads: Option<usize>,
    /// Tiny sizes and 1 round: proves the harness works in seconds.
    #[arg(long)]
    quick: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Internal: run one configuration and write its figures to --child-out.
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Internal: where a child writes its figures.
    #[arg(long, hide = true)]
    child_out: Option<PathBuf>,
    /// Internal: the sizes a child uses, as JSON.
    #[arg(long, hide = true)]
    child_sizes: Option<String>,
    /// Instead of the workload: peak memory while reading N (and N/10)
    /// notifications from SQLite with the notification log reader.
    #[arg(long, value_name = "N")]
    reader_memory: Option<usize>,
    /// Internal: the reader of --reader-memory.
    #[arg(long, hide = true)]
    reader_memory_child: Option<String>,
    /// Every annals application with its snapshot store on, so each get
    /// looks for a snapshot first (W4's application always has it).
    #[arg(long)]
    snapshotting: bool,
    /// Instead of the workload: time and peak memory of getting one
    /// aggregate of N (and N/10) events from SQLite.
    #[arg(long, value_name = "N")]
    long_get: Option<usize>,
    /// Internal: the reader of --long-get.
    #[arg(long, hide = true)]
    long_get_child: Option<String>,
    /// Internal: its stream's length.
    #[arg(long, hide = true)]
    long_get_size: Option<usize>,
    /// Internal: build only the aggregate's tricks.
    #[arg(long, hide = true)]
    long_get_floor: bool,
    /// Instead of the workload: how soon a subscription sees each of N
    /// saves, in-process and from a second application (SQLite, and
    /// PostgreSQL when POSTGRES_DBNAME is set).
    #[arg(long, value_name = "N")]
    wake_latency: Option<usize>,
    /// Instead of the workload: N commands, one at a time, through the
    /// sync core, the async facade, and axum over HTTP (SQLite).
    #[arg(long, value_name = "N")]
    web: Option<usize>,
    /// Instead of the workload: allocations per event on the save and get
    /// paths of every system on --stores (needs --features dhat-heap).
    #[arg(long)]
    allocs: bool,
    /// Instead of the workload: the DCB enrolment speedrun (120 ops per
    /// iteration) for SECONDS per configuration, each in a fresh process,
    /// over --rounds: annals' aggregates and DCB on SQLite, PostgreSQL and
    /// UmaDB, umadb-client alone, and Python eventsourcing's own DCB on
    /// the same PostgreSQL (ANNALS_PYTHON). Servers not configured are
    /// SKIPPED.
    #[arg(long, value_name = "SECONDS")]
    enrolment: Option<f64>,
    /// With --enrolment: only these configurations (agg-sqlite,
    /// agg-postgres, dcb-sqlite, dcb-postgres, dcb-umadb, umadb-raw,
    /// python-postgres_tt).
    #[arg(long, value_delimiter = ',')]
    configs: Vec<String>,
    /// Instead of the workload: the cost of a conditional append (a join:
    /// read a course's and a student's boundary, append on the condition)
    /// on DCB stores filled to each of --curve-sizes events (SQLite, and
    /// PostgreSQL when POSTGRES_DBNAME is set).
    #[arg(long)]
    append_curve: bool,
    /// With --append-curve: the store sizes, in events.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,100000,1000000,10000000"
    )]
    curve_sizes: Vec<u64>,
    /// With --append-curve: joins timed at each size (rounded up to 100).
    #[arg(long, default_value_t = 300)]
    curve_joins: usize,
    /// Internal: the enrolment configuration a child runs.
    #[arg(long, hide = true)]
    enrolment_child: Option<String>,
    /// Instead of the workload: the object store's cold start (issue #33).
    /// A fresh process opens a store of N saves (one new aggregate of 2
    /// events each) and gets one aggregate, another reads the last 10
    /// events: wall time and peak RSS, medians of --cold-runs; then
    /// --cold-writers writers against 1 on a fresh directory store. The
    /// stores are built once and kept in --cold-cache (S3 and Azure: a
    /// copy of the directory store under ANNALS_S3_LOCATION and
    /// ANNALS_AZURE_LOCATION, prefix cold-start-N).
    #[arg(long)]
    cold_start: bool,
    /// With --cold-start: dir, s3 (ANNALS_S3_LOCATION, AWS_*), azure
    /// (ANNALS_AZURE_LOCATION, AZURE_*); a cloud store not configured is
    /// SKIPPED.
    #[arg(long, value_delimiter = ',', default_value = "dir,s3,azure")]
    cold_stores: Vec<String>,
    /// With --cold-start: sizes in saves, for every store (default: a
    /// directory 1000,100000,1000000; S3 1000,100000; Azure 1000,10000).
    #[arg(long, value_delimiter = ',')]
    cold_sizes: Vec<usize>,
    /// With --cold-start: runs per size (medians).
    #[arg(long, default_value_t = 3)]
    cold_runs: usize,
    /// With --cold-start: where the built stores are kept (default
    /// target/cold-start, beside the binary's profile directory).
    #[arg(long, value_name = "DIR")]
    cold_cache: Option<PathBuf>,
    /// With --cold-start: build the stores again, even where a marker says
    /// they are built (after a change to what the object store writes).
    #[arg(long)]
    cold_rebuild: bool,
    /// With --cold-start: saves of the writers' comparison (0: none).
    #[arg(long, default_value_t = 2_000)]
    cold_writer_saves: usize,
    /// With --cold-start: the writer threads compared with one.
    #[arg(long, default_value_t = 8)]
    cold_writers: usize,
    /// Instead of the workload: what compacting the object store buys a
    /// reader: a fresh process reads the whole log of N saves as written
    /// and packed (the cold start's stores and flags: --cold-stores,
    /// --cold-sizes, default 10,000 and 100,000; --cold-runs).
    #[arg(long)]
    compaction: bool,
    /// Internal: a cold-start child (get, tail, log).
    #[arg(long, hide = true)]
    cold_child: Option<String>,
    /// Internal: the saves in its store.
    #[arg(long, hide = true)]
    cold_child_saves: Option<usize>,
    /// Internal: the aggregate it gets.
    #[arg(long, hide = true)]
    cold_child_id: Option<String>,
    /// Internal: that aggregate's name index.
    #[arg(long, hide = true)]
    cold_child_index: Option<usize>,
    /// Forget subjects whose personal data is in 100 and in 10,000 events
    /// (SQLite; PostgreSQL with POSTGRES_DBNAME): the time of `forget`
    /// against the number of events.
    #[arg(long)]
    forget: bool,
    /// With --allocs: also write DHAT's profile (every allocation site with
    /// its backtrace) to this file, for DHAT's viewer (dh_view.html).
    #[arg(long, value_name = "FILE")]
    allocs_profile: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum System {
    Annals,
    /// annals with the aggregate in the explicit style (`#[derive(Event)]`
    /// and `Apply`): its cost against the event methods' (`Annals`).
    AnnalsExplicit,
    /// annals on eventsourcing_django's tables (`DJANGO_TABLES`), in the
    /// Python codec they need: their cost against annals' own tables in
    /// the same codec (`AnnalsPython`) on the same server.
    AnnalsDjango,
    /// annals on its own tables in the Python codec (`CODEC=python`).
    AnnalsPython,
    /// annals with every event's field `#[personal]` (sealed with each
    /// dog's own data key): its cost against the same dog unmarked.
    AnnalsPersonal,
    Raw,
    Cqrs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Store {
    Memory,
    Sqlite,
    Postgres,
    /// MariaDB or MySQL.
    Mysql,
    /// The object store on a directory.
    ObjectDir,
    /// The object store on S3.
    ObjectS3,
}

impl Store {
    fn is_object(self) -> bool {
        matches!(self, Store::ObjectDir | Store::ObjectS3)
    }
}

/// One system on one store with one codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Config {
    system: System,
    store: Store,
    zlib_aes: bool,
}

impl Config {
    const ALL: [Config; 24] = [
        Config::new(System::Annals, Store::Memory, false),
        Config::new(System::Cqrs, Store::Memory, false),
        Config::new(System::Annals, Store::Memory, true),
        Config::new(System::Annals, Store::Sqlite, false),
        Config::new(System::Raw, Store::Sqlite, false),
        Config::new(System::AnnalsExplicit, Store::Sqlite, false),
        Config::new(System::AnnalsPersonal, Store::Sqlite, false),
        Config::new(System::Annals, Store::Sqlite, true),
        Config::new(System::Raw, Store::Sqlite, true),
        Config::new(System::Annals, Store::Postgres, false),
        Config::new(System::Raw, Store::Postgres, false),
        Config::new(System::AnnalsPython, Store::Postgres, false),
        Config::new(System::AnnalsDjango, Store::Postgres, false),
        Config::new(System::AnnalsPersonal, Store::Postgres, false),
        Config::new(System::Annals, Store::Postgres, true),
        Config::new(System::Raw, Store::Postgres, true),
        Config::new(System::Annals, Store::Mysql, false),
        Config::new(System::Raw, Store::Mysql, false),
        Config::new(System::Annals, Store::Mysql, true),
        Config::new(System::Raw, Store::Mysql, true),
        Config::new(System::Annals, Store::ObjectDir, false),
        Config::new(System::Raw, Store::ObjectDir, false),
        Config::new(System::Annals, Store::ObjectS3, false),
        Config::new(System::Raw, Store::ObjectS3, false),
    ];

    const fn new(system: System, store: Store, zlib_aes: bool) -> Self {
        Self {
            system,
            store,
            zlib_aes,
        }
    }

    fn label(&self) -> String {
        let system = match (self.system, self.store) {
            (System::Annals, _) => "annals",
            (System::AnnalsExplicit, _) => "annals explicit",
            (System::AnnalsDjango, _) => "annals django-tables",
            (System::AnnalsPython, _) => "annals python-codec",
            (System::AnnalsPersonal, _) => "annals personal",
            (System::Raw, Store::Sqlite) => "raw rusqlite",
            (System::Raw, Store::ObjectDir) => "raw object_store dir",
            (System::Raw, Store::ObjectS3) => "raw object_store s3",
            (System::Raw, Store::Mysql) => "raw mysql",
            (System::Raw, _) => "raw postgres",
            (System::Cqrs, _) => "cqrs-es MemStore",
        };
        let store = match (self.system, self.store) {
            (System::Raw | System::Cqrs, _) => "",
            (_, Store::Memory) => " memory",
            (_, Store::Sqlite) => " sqlite",
            (_, Store::Postgres) => " postgres",
            (_, Store::Mysql) => " mysql",
            (_, Store::ObjectDir) => " object dir",
            (_, Store::ObjectS3) => " object s3",
        };
        let codec = if self.zlib_aes { " zlib-aes" } else { "" };
        format!("{system}{store}{codec}")
    }

    fn parse(label: &str) -> Res<Self> {
        Config::ALL
            .into_iter()
            .find(|c| c.label() == label)
            .ok_or_else(|| format!("unknown configuration {label:?}").into())
    }
}

/// Metric names, their headings, and whether lower is better.
const METRICS: [(&str, &str, bool); 8] = [
    ("w1", "W1 ev/s", false),
    ("w1x8", "W1 8 writers ev/s", false),
    ("w2", "W2 agg/s", false),
    ("w3", "W3 ev/s", false),
    ("w4_write", "W4 write ev/s", false),
    ("w4_nosnap", "W4 get-nosnap ms", true),
    ("w4_snap", "W4 get-snap ms", true),
    ("w5", "W5 ev/s", false),
];

type Figures = BTreeMap<String, f64>;

fn per_second(n: usize, d: std::time::Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// PostgreSQL settings from the environment, or None when
/// POSTGRES_DBNAME is unset.
fn pg_settings() -> Option<(String, String, u16, String)> {
    let dbname = std::env::var("POSTGRES_DBNAME").ok()?;
    let host = std::env::var("POSTGRES_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("POSTGRES_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    let user = std::env::var("POSTGRES_USER").unwrap_or_else(|_| "postgres".into());
    Some((dbname, host, port, user))
}

fn pg_config() -> Res<postgres::Config> {
    let (dbname, host, port, user) = pg_settings().ok_or("POSTGRES_DBNAME is not set")?;
    let mut c = postgres::Config::new();
    c.dbname(&dbname).host(&host).port(port).user(&user);
    Ok(c)
}

/// MariaDB/MySQL settings from the environment, or None when
/// MYSQL_DBNAME is unset.
fn my_config() -> Option<annals::persistence::mysql::MysqlConfig> {
    let env = annals::env::Env::from_process("annals_bench");
    env.get("MYSQL_DBNAME")?;
    annals::persistence::mysql::MysqlConfig::from_env(&env).ok()
}

/// The raw baseline's connection options, from the same settings.
fn my_opts() -> Res<mysql::Opts> {
    let c = my_config().ok_or("MYSQL_DBNAME is not set")?;
    Ok(mysql::OptsBuilder::new()
        .ip_or_hostname(Some(c.host))
        .tcp_port(c.port)
        .user(Some(c.user))
        .pass(c.password)
        .db_name(Some(c.dbname))
        .into())
}

/// Where the S3 rows run: ANNALS_S3_LOCATION (`s3://bucket/prefix`).
const S3_LOCATION: &str = "ANNALS_S3_LOCATION";

/// A fresh prefix under ANNALS_S3_LOCATION for one workload group.
fn s3_location(group: &str) -> Res<String> {
    let base = std::env::var(S3_LOCATION).map_err(|_| format!("{S3_LOCATION} is not set"))?;
    Ok(format!(
        "{}/{group}-{}",
        base.trim_end_matches('/'),
        uuid::Uuid::new_v4().simple()
    ))
}

/// eventsourcing_django's tables in schema `schema`, made afresh, as
/// `manage.py migrate eventsourcing_django` makes them on PostgreSQL
/// (`manage.py sqlmigrate eventsourcing_django 0001`, Django 5.1).
fn django_tables(schema: &str) -> String {
    format!(
        r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"; SET search_path TO "{schema}";
        CREATE TABLE "stored_events" ("id" bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "application_name" varchar(32) NOT NULL, "originator_id" uuid NOT NULL, "originator_version" bigint NOT NULL, "topic" text NOT NULL, "state" bytea NOT NULL);
        CREATE TABLE "snapshots" ("uid" bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "application_name" varchar(32) NOT NULL, "originator_id" uuid NOT NULL, "originator_version" bigint NOT NULL, "topic" text NOT NULL, "state" bytea NOT NULL);
        CREATE TABLE "notification_tracking" ("uid" bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "application_name" varchar(32) NOT NULL, "upstream_application_name" varchar(32) NOT NULL, "notification_id" bigint NOT NULL);
        ALTER TABLE "stored_events" ADD CONSTRAINT "stored_events_application_name_origina_65aeaa8e_uniq" UNIQUE ("application_name", "originator_id", "originator_version");
        ALTER TABLE "stored_events" ADD CONSTRAINT "stored_events_application_name_id_5e4433c4_uniq" UNIQUE ("application_name", "id");
        ALTER TABLE "snapshots" ADD CONSTRAINT "snapshots_application_name_origina_c67229c9_uniq" UNIQUE ("application_name", "originator_id", "originator_version");
        ALTER TABLE "notification_tracking" ADD CONSTRAINT "notification_tracking_application_name_upstrea_ee5eed5e_uniq" UNIQUE ("application_name", "upstream_application_name", "notification_id");
        SET search_path TO DEFAULT"#
    )
}

/// A fresh store for workload group `group` of `config`; the temporary
/// directory (SQLite, the object store's directory) lives as long as the
/// returned value.
fn open(
    config: Config,
    group: &str,
    snapshotting: bool,
) -> Res<(Box<dyn Sut>, Option<tempfile::TempDir>)> {
    let dir = match config.store {
        Store::Sqlite | Store::ObjectDir => Some(tempfile::tempdir()?),
        _ => None,
    };
    let dir_path = |dir: &Option<tempfile::TempDir>| -> Res<PathBuf> {
        Ok(dir.as_ref().ok_or("no directory")?.path().to_owned())
    };
    let db = |dir: &Option<tempfile::TempDir>| -> Res<PathBuf> {
        Ok(dir.as_ref().ok_or("no directory")?.path().join("bench.db"))
    };
    let name = format!("bench_{group}");
    let sut: Box<dyn Sut> = match (config.system, config.store) {
        (System::Cqrs, _) => Box::new(cqrs::CqrsSut::new()),
        (
            system @ (System::Annals
            | System::AnnalsExplicit
            | System::AnnalsDjango
            | System::AnnalsPython
            | System::AnnalsPersonal),
            store,
        ) => {
            let store = match store {
                Store::Memory => annals_sut::Store::Memory,
                Store::Sqlite => {
                    annals_sut::Store::Sqlite(db(&dir)?.to_str().ok_or("path")?.to_owned())
                }
                Store::Postgres => {
                    let mut client = pg_config()?.connect(postgres::NoTls)?;
                    client.batch_execute(&format!(
                        "DROP TABLE IF EXISTS {name}_events, {name}_snapshots, {name}_tracking, \
                         {name}_data_keys"
                    ))?;
                    let (dbname, host, port, user) = pg_settings().ok_or("POSTGRES_DBNAME")?;
                    let mut c = annals::persistence::postgres::PostgresConfig::new(dbname);
                    c.host = host;
                    c.port = port;
                    c.user = user;
                    if system == System::AnnalsDjango {
                        let schema = format!("bench_django_{group}");
                        client.batch_execute(&django_tables(&schema))?;
                        c.schema = Some(schema);
                        c.django_tables = true;
                    }
                    annals_sut::Store::Postgres(c)
                }
                Store::Mysql => {
                    use mysql::prelude::Queryable;
                    let mut conn = mysql::Conn::new(my_opts()?)?;
                    conn.query_drop(format!(
                        "DROP TABLE IF EXISTS {name}_events, {name}_snapshots, {name}_tracking, \
                         {name}_outcomes, {name}_lock"
                    ))?;
                    annals_sut::Store::Mysql(my_config().ok_or("MYSQL_DBNAME")?)
                }
                Store::ObjectDir => {
                    let path = dir_path(&dir)?;
                    annals_sut::Store::Object(ObjectConfig::location(path.to_str().ok_or("path")?))
                }
                Store::ObjectS3 => {
                    annals_sut::Store::Object(ObjectConfig::location(&s3_location(group)?))
                }
            };
            let snapshots = group == "w4" || snapshotting;
            if matches!(system, System::AnnalsDjango | System::AnnalsPython) {
                Box::new(annals_sut::AnnalsSut::<annals_sut::PythonDog>::open(
                    &name,
                    store,
                    config.zlib_aes,
                    snapshots,
                )?)
            } else if system == System::AnnalsPersonal {
                Box::new(annals_sut::AnnalsSut::<annals_sut::PersonalDog>::open(
                    &name,
                    store,
                    config.zlib_aes,
                    snapshots,
                )?)
            } else if system == System::AnnalsExplicit {
                Box::new(annals_sut::AnnalsSut::<annals_sut::ExplicitDog>::open(
                    &name,
                    store,
                    config.zlib_aes,
                    snapshots,
                )?)
            } else {
                Box::new(annals_sut::AnnalsSut::<annals_sut::Dog>::open(
                    &name,
                    store,
                    config.zlib_aes,
                    snapshots,
                )?)
            }
        }
        (System::Raw, store) => {
            let codec = if config.zlib_aes {
                raw::Codec::zlib_aes()
            } else {
                raw::Codec::Json
            };
            match store {
                Store::Sqlite => {
                    Box::new(raw::RawSut::new(raw::SqliteStore::open(&db(&dir)?)?, codec))
                }
                Store::Postgres => Box::new(raw::RawSut::new(
                    raw::PgStore::create(pg_config()?, &format!("bench_raw_{group}"))?,
                    codec,
                )),
                Store::Mysql => Box::new(raw::RawSut::new(
                    raw::MyStore::create(my_opts()?, &format!("bench_raw_{group}"))?,
                    codec,
                )),
                Store::ObjectDir => Box::new(raw::RawSut::new(
                    raw::ObjStore::directory(&dir_path(&dir)?)?,
                    codec,
                )),
                Store::ObjectS3 => Box::new(raw::RawSut::new(
                    raw::ObjStore::s3(&s3_location(group)?)?,
                    codec,
                )),
                Store::Memory => return fail("no raw baseline in memory".into()),
            }
        }
    };
    Ok((sut, dir))
}

/// Runs the selected workloads of one configuration (in the child).
fn run_config(config: Config, sizes: &Sizes, workloads: &[String]) -> Res<Figures> {
    let want = |w: &str| workloads.iter().any(|x| x == w);
    let mut f = Figures::new();
    let plain_groups = !config.zlib_aes;
    let is_cqrs = config.system == System::Cqrs;
    if plain_groups && (want("w1") || want("w2") || want("w3")) {
        let (mut sut, _dir) = open(config, "w123", sizes.snapshotting)?;
        f.insert("w1".into(), per_second(sizes.w1_events(), sut.w1(sizes)?));
        if want("w2") {
            f.insert("w2".into(), per_second(sizes.aggregates, sut.w2(sizes)?));
        }
        if want("w3") && !is_cqrs {
            f.insert("w3".into(), per_second(sizes.w1_events(), sut.w3(sizes)?));
        }
    }
    if plain_groups && want("w4") && !is_cqrs {
        let (mut sut, _dir) = open(config, "w4", sizes.snapshotting)?;
        let w4 = sut.w4(sizes)?;
        f.insert("w4_write".into(), per_second(sizes.long, w4.write));
        f.insert("w4_nosnap".into(), ms(w4.get_nosnap));
        f.insert("w4_snap".into(), ms(w4.get_snap));
    }
    if plain_groups && want("w5") && !is_cqrs {
        let (mut sut, _dir) = open(config, "w5", sizes.snapshotting)?;
        f.insert(
            "w5".into(),
            per_second(sizes.batches * sizes.batch, sut.w5(sizes)?),
        );
    }
    // Not on the object store: a recorder holds its lock across each
    // save's write, so writers in one application take turns (W1 again).
    if plain_groups && want("w1x8") && config.store != Store::Memory && !config.store.is_object() {
        let (mut sut, _dir) = open(config, "w1x8", sizes.snapshotting)?;
        f.insert(
            "w1x8".into(),
            per_second(sizes.w1_events(), sut.w1_concurrent(sizes)?),
        );
    }
    if config.zlib_aes {
        let (mut sut, _dir) = open(config, "zw12", sizes.snapshotting)?;
        f.insert("w1".into(), per_second(sizes.w1_events(), sut.w1(sizes)?));
        f.insert("w2".into(), per_second(sizes.aggregates, sut.w2(sizes)?));
    }
    Ok(f)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One configuration's figures, per round and median.
#[derive(Debug, Serialize)]
struct ConfigResult {
    config: String,
    rounds: Vec<Figures>,
    median: Figures,
}

/// annals against a baseline: per-round ratios and their median (>1:
/// annals is faster; for the ms metrics the ratio is baseline ms / annals
/// ms, so >1 is faster too).
#[derive(Debug, Serialize)]
struct Ratio {
    annals: String,
    baseline: String,
    rounds: Vec<Figures>,
    median: Figures,
}

#[derive(Debug, Serialize)]
struct Report {
    sizes: Sizes,
    rounds: usize,
    results: Vec<ConfigResult>,
    ratios: Vec<Ratio>,
    notes: Vec<String>,
}

fn fmt_value(v: Option<f64>, lower_better: bool) -> String {
    match v {
        None => "–".into(),
        Some(v) if lower_better => format!("{v:.2}"),
        Some(v) => {
            let n = v.round() as u64;
            let s = n.to_string();
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i).is_multiple_of(3) {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }
    }
}

fn print_tables(report: &Report) {
    let used: Vec<_> = METRICS
        .iter()
        .filter(|(k, _, _)| report.results.iter().any(|r| r.median.contains_key(*k)))
        .collect();
    let header = |first: &str| {
        let mut h = format!("| {first} |");
        let mut sep = "|---|".to_owned();
        for (_, title, _) in &used {
            h.push_str(&format!(" {title} |"));
            sep.push_str("---|");
        }
        println!("{h}\n{sep}");
    };
    println!(
        "Medians of {} round(s); sizes: {} aggregates x {} events, long stream {}, W5 {} x {}, {} writers\n",
        report.rounds,
        report.sizes.aggregates,
        report.sizes.events,
        report.sizes.long,
        report.sizes.batches,
        report.sizes.batch,
        report.sizes.threads
    );
    header("system / store");
    for r in &report.results {
        let mut line = format!("| {} |", r.config);
        for (k, _, lower) in &used {
            line.push_str(&format!(
                " {} |",
                fmt_value(r.median.get(*k).copied(), *lower)
            ));
        }
        println!("{line}");
    }
    println!("\nRatios annals / baseline (median of per-round ratios; >1 = annals faster, for ms columns baseline ms / annals ms)\n");
    header("annals vs baseline");
    for r in &report.ratios {
        let mut line = format!("| {} vs {} |", r.annals, r.baseline);
        for (k, _, _) in &used {
            line.push_str(&match r.median.get(*k) {
                Some(v) => format!(" {v:.2}x |"),
                None => " – |".into(),
            });
        }
        println!("{line}");
    }
    println!();
    for n in &report.notes {
        println!("- {n}");
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        eprintln!("annals-bench: FAILED: {message}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Res<()> {
    if let Some(what) = &cli.cold_child {
        return cold_start::child(
            what,
            cli.cold_child_saves.ok_or("--cold-child-saves")?,
            cli.cold_child_id.as_deref().ok_or("--cold-child-id")?,
            cli.cold_child_index.ok_or("--cold-child-index")?,
        );
    }
    if cli.forget {
        return forget::run(&[100, 10_000]);
    }
    if cli.cold_start || cli.compaction {
        let cache = match &cli.cold_cache {
            Some(dir) => dir.clone(),
            None => default_cold_cache()?,
        };
        let mut options = cold_start::Options::standard(cache);
        options.stores = cli.cold_stores.clone();
        if !cli.cold_sizes.is_empty() {
            options.sizes = Some(cli.cold_sizes.clone());
        }
        options.runs = cli.cold_runs.max(1);
        options.rebuild = cli.cold_rebuild;
        options.writer_saves = cli.cold_writer_saves;
        options.writers = cli.cold_writers.max(1);
        if cli.compaction {
            return compaction::run(&options);
        }
        return cold_start::run(&options);
    }
    if let Some(path) = &cli.reader_memory_child {
        return reader_memory::child(path, 1_000);
    }
    if let Some(path) = &cli.long_get_child {
        let size = cli.long_get_size.ok_or("--long-get-size")?;
        return long_get::child(path, size, cli.long_get_floor);
    }
    if let Some(n) = cli.long_get {
        return long_get::run(n.max(10));
    }
    if let Some(n) = cli.reader_memory {
        return reader_memory::run(n);
    }
    if let Some(config) = &cli.enrolment_child {
        let seconds = cli.enrolment.ok_or("--enrolment")?;
        let run = enrolment::child(config, seconds)?;
        let out = cli.child_out.as_ref().ok_or("--child-out")?;
        std::fs::write(out, serde_json::to_vec(&run)?)?;
        return Ok(());
    }
    if let Some(seconds) = cli.enrolment {
        return enrolment::run(seconds.max(0.01), cli.rounds.max(1), &cli.configs);
    }
    if cli.append_curve {
        return curve::run(&cli.curve_sizes, cli.curve_joins, pg_settings().is_some());
    }
    if let Some(n) = cli.web {
        return web::run(n.max(1));
    }
    if let Some(n) = cli.wake_latency {
        let postgres = pg_settings().map(|(dbname, host, port, user)| {
            let mut c = annals::persistence::postgres::PostgresConfig::new(dbname);
            c.host = host;
            c.port = port;
            c.user = user;
            c
        });
        return wake::run(n.max(1), postgres);
    }
    for w in &cli.workloads {
        if !["w1", "w1x8", "w2", "w3", "w4", "w5", "zlib-aes"].contains(&w.as_str()) {
            return fail(format!("unknown workload {w:?}"));
        }
    }
    if let Some(label) = &cli.child {
        let sizes: Sizes = serde_json::from_str(cli.child_sizes.as_deref().ok_or("sizes")?)?;
        let figures = run_config(Config::parse(label)?, &sizes, &cli.workloads)?;
        let out = cli.child_out.as_ref().ok_or("--child-out")?;
        std::fs::write(out, serde_json::to_vec(&figures)?)?;
        return Ok(());
    }

    let mut sizes = if cli.quick {
        Sizes::QUICK
    } else {
        Sizes::STANDARD
    };
    let scale = |n: usize| ((n as f64 * cli.scale).round() as usize).max(1);
    sizes.aggregates = cli.aggregates.unwrap_or(scale(sizes.aggregates));
    sizes.snapshotting = cli.snapshotting;
    sizes.long = cli.long.unwrap_or(scale(sizes.long));
    sizes.batches = scale(sizes.batches);
    if let Some(e) = cli.events {
        sizes.events = e.max(1);
    }
    if let Some(t) = cli.threads {
        sizes.threads = t.max(1);
    }
    let rounds = if cli.quick { 1 } else { cli.rounds.max(1) };

    let mut notes = Vec::new();
    let mut stores = Vec::new();
    for s in &cli.stores {
        stores.push(match s.as_str() {
            "memory" => Store::Memory,
            "sqlite" => Store::Sqlite,
            "postgres" if pg_settings().is_none() => {
                let msg = "PostgreSQL skipped: POSTGRES_DBNAME is not set".to_owned();
                eprintln!("{msg}");
                notes.push(msg);
                continue;
            }
            "postgres" => Store::Postgres,
            "mysql" if my_config().is_none() => {
                let msg = "MariaDB/MySQL skipped: MYSQL_DBNAME is not set".to_owned();
                eprintln!("{msg}");
                notes.push(msg);
                continue;
            }
            "mysql" => Store::Mysql,
            "object" => Store::ObjectDir,
            "s3" if std::env::var_os(S3_LOCATION).is_none() => {
                let msg = format!("S3 skipped: {S3_LOCATION} is not set");
                eprintln!("{msg}");
                notes.push(msg);
                continue;
            }
            "s3" => Store::ObjectS3,
            other => return fail(format!("unknown store {other:?}")),
        });
    }
    if cli.allocs {
        return allocs::run(&stores, cli.allocs_profile.as_deref());
    }
    let zlib = cli.workloads.iter().any(|w| w == "zlib-aes");
    let plain = cli.workloads.iter().any(|w| w != "zlib-aes");
    let w12 = cli.workloads.iter().any(|w| w == "w1" || w == "w2");
    let configs: Vec<Config> = Config::ALL
        .into_iter()
        .filter(|c| stores.contains(&c.store))
        .filter(|c| if c.zlib_aes { zlib } else { plain })
        .filter(|c| c.system != System::Cqrs || w12)
        .collect();

    let exe = std::env::current_exe()?;
    let out_dir = tempfile::tempdir()?;
    let mut figures: Vec<Vec<Figures>> = vec![Vec::new(); configs.len()];
    for round in 0..rounds {
        // Every other round in reverse, so no configuration always runs
        // right after the same one (a PostgreSQL child after one that
        // wrote much pays for its checkpoint: zlib-aes W1, which followed
        // raw postgres, was 0.84x in three runs and 1.04x alone).
        let order: Vec<usize> = if round % 2 == 0 {
            (0..configs.len()).collect()
        } else {
            (0..configs.len()).rev().collect()
        };
        for k in order {
            let config = &configs[k];
            eprintln!("round {}/{}: {}", round + 1, rounds, config.label());
            let out = out_dir.path().join(format!("{round}-{k}.json"));
            // A fresh process per configuration; stdout goes nowhere
            // (cqrs-es's MemStore prints a line per load and commit).
            let status = Command::new(&exe)
                .arg("--child")
                .arg(config.label())
                .arg("--child-out")
                .arg(&out)
                .arg("--child-sizes")
                .arg(serde_json::to_string(&sizes)?)
                .arg("--workloads")
                .arg(cli.workloads.join(","))
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                return fail(format!("{} failed ({status})", config.label()));
            }
            figures[k].push(serde_json::from_slice(&std::fs::read(&out)?)?);
        }
    }

    let results: Vec<ConfigResult> = configs
        .iter()
        .zip(&figures)
        .map(|(c, rounds)| ConfigResult {
            config: c.label(),
            median: METRICS
                .iter()
                .filter_map(|(k, _, _)| {
                    median(rounds.iter().filter_map(|f| f.get(*k).copied()).collect())
                        .map(|m| ((*k).to_owned(), m))
                })
                .collect(),
            rounds: rounds.clone(),
        })
        .collect();

    let mut ratios = Vec::new();
    for (a, ca) in configs.iter().enumerate() {
        // annals against the raw drivers and cqrs-es; the explicit style
        // against the event methods.
        let baseline = |b: System| match ca.system {
            System::Annals => matches!(b, System::Raw | System::Cqrs),
            System::AnnalsExplicit | System::AnnalsPersonal => b == System::Annals,
            System::AnnalsDjango => b == System::AnnalsPython,
            System::AnnalsPython => false,
            System::Raw | System::Cqrs => false,
        };
        for (b, cb) in configs.iter().enumerate() {
            let pair = cb.store == ca.store && cb.zlib_aes == ca.zlib_aes && baseline(cb.system);
            if !pair {
                continue;
            }
            let per_round: Vec<Figures> = figures[a]
                .iter()
                .zip(&figures[b])
                .map(|(fa, fb)| {
                    METRICS
                        .iter()
                        .filter_map(|(k, _, lower)| {
                            let (x, y) = (fa.get(*k)?, fb.get(*k)?);
                            let r = if *lower { y / x } else { x / y };
                            Some(((*k).to_owned(), r))
                        })
                        .collect()
                })
                .collect();
            let median = METRICS
                .iter()
                .filter_map(|(k, _, _)| {
                    median(
                        per_round
                            .iter()
                            .filter_map(|f| f.get(*k).copied())
                            .collect(),
                    )
                    .map(|m| ((*k).to_owned(), m))
                })
                .collect();
            ratios.push(Ratio {
                annals: ca.label(),
                baseline: cb.label(),
                rounds: per_round,
                median,
            });
        }
    }
    if configs.iter().any(|c| c.system == System::Cqrs) {
        notes.push("cqrs-es MemStore skips the version check annals keeps (its commit overwrites the stream), stores no timestamps, reloads the aggregate from the store before every command, and prints a line per load and commit (sent to /dev/null here).".into());
    }
    notes.push("Raw MariaDB/MySQL locks the same one row of a lock table (SELECT ... FOR UPDATE) first in each write transaction (sent with START TRANSACTION in one round trip), as annals does, and inserts a save's rows in one multi-row INSERT.".into());
    notes.push("Raw PostgreSQL takes the same EXCLUSIVE table lock and sends the same NOTIFY in each write transaction as annals; raw SQLite uses one BEGIN IMMEDIATE transaction per save on one connection (each concurrent writer opens its own).".into());
    if configs.iter().any(|c| c.store.is_object()) {
        notes.push("The object store: one object per save, created only if absent; raw object_store writes the same objects (the same JSON, base64 states) and keeps the same in-memory index, reading the next object (a miss) before every query as annals does. No W1 8 writers (a recorder's saves take turns) and no zlib-aes (the codec costs what it costs on the other stores) on it.".into());
    }
    notes.push("Every figure was verified after its workload (outside timing): counts, versions, names, tricks, notification ids 1..n.".into());

    let report = Report {
        sizes,
        rounds,
        results,
        ratios,
        notes,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_tables(&report);
    }
    if cli.quick {
        // The DCB modes too, briefly: every configuration that can run
        // here, each checked (counts, boundaries, events stored).
        println!();
        enrolment::run(0.3, 1, &[])?;
        println!();
        curve::run(&[1_000, 5_000], 100, pg_settings().is_some())?;
        println!();
        // The object store's cold start on small directory stores, built
        // fresh (the build is checked too), each child's answer checked.
        let cache = tempfile::tempdir()?;
        cold_start::run(&cold_start::Options::quick(cache.path().to_owned()))?;
    }
    Ok(())
}

/// `target/cold-start`: beside the profile directory the binary is in
/// (`target/release/annals-bench`), or under the working directory.
fn default_cold_cache() -> Res<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(match exe.parent().and_then(|profile| profile.parent()) {
        Some(target) if target.file_name().is_some_and(|n| n == "target") => {
            target.join("cold-start")
        }
        _ => PathBuf::from("target/cold-start"),
    })
}
