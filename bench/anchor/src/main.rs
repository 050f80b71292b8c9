//! UmaDB (an event store server by the Python library's author) against
//! annals on PostgreSQL and SQLite, same events, same machine, one run:
//! a conditional append of one event per request (W1's shape), and a read
//! of each stream rebuilt into its aggregate (W2's shape).
//!
//! `UMADB` names the server binary (`cargo install umadb`; it needs
//! `protobuf-compiler`), default `umadb` on the PATH. PostgreSQL is read
//! from `POSTGRES_*` as the library reads it; unset, it is skipped.
//!
//! ```sh
//! cd bench/anchor && UMADB=~/.cargo/bin/umadb POSTGRES_DBNAME=test cargo run --release -- 200 10 3
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use annals::prelude::*;
use serde::{Deserialize, Serialize};
use umadb_client::UmaDbClient;
use umadb_dcb::{DcbAppendCondition, DcbEvent, DcbEventStoreSync, DcbQuery, DcbQueryItem};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The workload's aggregate.
#[aggregate]
#[derive(Debug, Clone)]
pub struct Dog {
    /// Its name.
    pub name: String,
    /// Its tricks.
    pub tricks: Vec<String>,
}

#[aggregate]
impl Dog {
    /// A new dog.
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog {
            name,
            tricks: Vec::new(),
        }
    }

    /// A trick.
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }
}

fn name(i: usize) -> String {
    format!("dog-{i:06}")
}

fn trick(j: usize) -> String {
    format!("trick-{j:04}-roll-over")
}

/// The JSON both sides store (annals' own form of these events).
#[derive(Serialize, Deserialize)]
struct Payload {
    timestamp: annals::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trick: Option<String>,
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_umadb(dir: &std::path::Path) -> Res<(Server, umadb_client::SyncUmaDbClient)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let exe = std::env::var("UMADB").unwrap_or_else(|_| "umadb".into());
    let server = Server(
        Command::new(&exe)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db-path")
            .arg(dir.join("uma.db"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {exe}: {e} (set UMADB)"))?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match UmaDbClient::new(format!("http://127.0.0.1:{port}")).connect() {
            Ok(client) => return Ok((server, client)),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("UmaDB did not come up: {e}").into()),
        }
    }
}

fn umadb_rounds(
    client: &umadb_client::SyncUmaDbClient,
    dogs: usize,
    events: usize,
) -> Res<(Duration, Duration)> {
    let boundary = |tag: &str| DcbQuery::new().item(DcbQueryItem::new().tags([tag.to_owned()]));
    let started = Instant::now();
    let mut tags = Vec::with_capacity(dogs);
    for i in 0..dogs {
        let tag = format!("dog:{}", Uuid::new_v4());
        let mut last = None;
        for j in 0..events {
            let payload = Payload {
                timestamp: annals::clock::now(),
                name: (j == 0).then(|| name(i)),
                trick: (j > 0).then(|| trick(j)),
            };
            let event = DcbEvent::default()
                .event_type(if j == 0 { "Dog.Registered" } else { "Dog.TrickAdded" })
                .tags([tag.clone()])
                .data(serde_json::to_vec(&payload)?);
            // The append fails if the stream moved past what was read.
            let condition = DcbAppendCondition::new(boundary(&tag)).after(last);
            last = Some(client.append(vec![event], Some(condition), None)?);
        }
        tags.push(tag);
    }
    let append = started.elapsed();
    let started = Instant::now();
    for (i, tag) in tags.iter().enumerate() {
        let mut read = client.read(Some(boundary(tag)), None, false, None)?;
        let mut dog: Option<(String, Vec<String>)> = None;
        for event in read.by_ref() {
            let payload: Payload = serde_json::from_slice(&event?.event.data)?;
            match (&mut dog, payload.name, payload.trick) {
                (None, Some(name), None) => dog = Some((name, Vec::new())),
                (Some((_, tricks)), None, Some(trick)) => tricks.push(trick),
                _ => return Err("a stream out of order".into()),
            }
        }
        let (got, tricks) = dog.ok_or("an empty stream")?;
        if got != name(i) || tricks.len() != events - 1 {
            return Err(format!("UmaDB read {got} with {} tricks", tricks.len()).into());
        }
    }
    Ok((append, started.elapsed()))
}

fn annals_rounds(app: &Application, dogs: usize, events: usize) -> Res<(Duration, Duration)> {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(dogs);
    for i in 0..dogs {
        let mut dog = Dog::register(name(i));
        app.save(&mut dog)?;
        for j in 1..events {
            dog.add_trick(trick(j));
            app.save(&mut dog)?;
        }
        ids.push(dog.id());
    }
    let append = started.elapsed();
    let started = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let dog = app.get::<Dog>(*id)?;
        if dog.name != name(i) || dog.tricks.len() != events - 1 {
            return Err(format!("annals read {} with {} tricks", dog.name, dog.tricks.len()).into());
        }
    }
    Ok((append, started.elapsed()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Res<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let dogs = args.first().copied().unwrap_or(200);
    let events = args.get(1).copied().unwrap_or(10).max(2);
    let rounds = args.get(2).copied().unwrap_or(3).max(1);
    let dir = tempfile::tempdir()?;
    let (_server, client) = start_umadb(dir.path())?;
    let postgres = std::env::var_os("POSTGRES_DBNAME").is_some();
    let mut systems: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![("UmaDB 0.7 (gRPC)", vec![], vec![])];
    systems.push(("annals sqlite", vec![], vec![]));
    if postgres {
        systems.push(("annals postgres", vec![], vec![]));
    }
    let per_second = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    for round in 0..rounds {
        let (a, r) = umadb_rounds(&client, dogs, events)?;
        systems[0].1.push(per_second(dogs * events, a));
        systems[0].2.push(per_second(dogs, r));
        let file = dir.path().join(format!("anchor-{round}.db"));
        let sqlite = Application::builder("Anchor")
            .sqlite(file.to_string_lossy())
            .build()?;
        let (a, r) = annals_rounds(&sqlite, dogs, events)?;
        systems[1].1.push(per_second(dogs * events, a));
        systems[1].2.push(per_second(dogs, r));
        if postgres {
            let name = format!("anchor{round}_{}", std::process::id());
            let config = annals::persistence::postgres::PostgresConfig::from_env(
                &annals::env::Env::from_process(&name),
            )?;
            let app = Application::builder(&name).postgres(config);
            let (a, r) = annals_rounds(&app.build()?, dogs, events)?;
            systems[2].1.push(per_second(dogs * events, a));
            systems[2].2.push(per_second(dogs, r));
        }
    }
    println!("{dogs} streams of {events} events, one event per conditional append; medians of {rounds} rounds");
    println!("| system | append ev/s | read streams/s | append ÷ UmaDB | read ÷ UmaDB |");
    println!("|---|---|---|---|---|");
    let (ua, ur) = (median(systems[0].1.clone()), median(systems[0].2.clone()));
    for (label, appends, reads) in systems {
        let (a, r) = (median(appends), median(reads));
        println!("| {label} | {a:.0} | {r:.0} | {:.2} | {:.2} |", a / ua, r / ur);
    }
    Ok(())
}
