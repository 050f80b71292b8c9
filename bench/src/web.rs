//! One command per request through the async facade and axum, against the
//! same command through the blocking core, in one run: requests (or
//! commands) per second, one at a time, on SQLite.
//!
//! Three ways of running `increment` on one counter: the sync core
//! (`app.execute`), the async facade (`AsyncApplication::execute`, on the
//! blocking pool), and an HTTP request to an axum route that calls the
//! facade (a reqwest client on loopback, one request at a time).

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::asynchronous::AsyncApplication;
use annals::prelude::*;
use annals::web::ApiError;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};

use crate::Res;

#[aggregate]
#[derive(Debug, Clone)]
pub(crate) struct Counter {
    pub count: u64,
}

#[aggregate]
impl Counter {
    #[event("Started")]
    pub fn start() -> Self {
        Counter { count: 0 }
    }

    #[event("Incremented")]
    pub fn increment(&mut self) {
        self.count += 1;
    }
}

async fn increment(
    State(app): State<AsyncApplication>,
    Path(id): Path<Uuid>,
) -> Result<Json<u64>, ApiError> {
    let count = app
        .execute(id, |c: &mut Counter| -> Result<u64, String> {
            c.increment();
            Ok(c.count)
        })
        .await?;
    Ok(Json(count))
}

fn per_second(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// Rounds of each path (after one to warm up).
const ROUNDS: usize = 5;

/// Runs `n` commands each way and prints the table.
pub(crate) fn run(n: usize) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("web.db");
    let path = path
        .to_str()
        .ok_or("temporary path is not UTF-8")?
        .to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let app = Arc::new(Application::builder("Web").sqlite(path).build()?);
    let command = |c: &mut Counter| -> Result<u64, String> {
        c.increment();
        Ok(c.count)
    };
    let facade = AsyncApplication::new(app.clone());
    let (base, server) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}/counters", listener.local_addr()?);
        let router = Router::new()
            .route("/counters/{id}/increment", post(increment))
            .route("/counters/noop", post(|| async { Json(0u64) }))
            .with_state(facade.clone());
        // Small responses: without TCP_NODELAY each waits for a delayed ACK.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((base, server))
    })?;
    let client = reqwest::Client::new();
    // Each path runs on a counter of its own, new each round: a command
    // replays its counter's stream, so paths sharing one counter would
    // each find it longer than the path before did.
    let fresh = || -> Res<Uuid> {
        let mut counter = Counter::start();
        app.save(&mut counter)?;
        Ok(counter.id())
    };
    // The three paths take turns, round after round, so that a busy
    // machine slows each of them alike; the median round counts.
    let per_round = (n / ROUNDS).max(1);
    let mut rates: [Vec<f64>; 4] = Default::default();
    let mut counters = Vec::new();
    for round in 0..=ROUNDS {
        let (sync_id, facade_id, http_id) = (fresh()?, fresh()?, fresh()?);
        counters.extend([sync_id, facade_id, http_id]);
        let started = Instant::now();
        for _ in 0..per_round {
            app.execute(sync_id, command)?;
        }
        let sync = started.elapsed();
        let through_facade = runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..per_round {
                facade.execute(facade_id, command).await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(started.elapsed())
        })?;
        let url = format!("{base}/{http_id}/increment");
        let through_http = runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..per_round {
                client.post(&url).send().await?.error_for_status()?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(started.elapsed())
        })?;
        let noop = format!("{base}/noop");
        let http_alone = runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..per_round {
                client.post(&noop).send().await?.error_for_status()?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(started.elapsed())
        })?;
        // Round 0 warms up.
        if round > 0 {
            let took = [sync, through_facade, through_http, http_alone];
            for (rate, took) in rates.iter_mut().zip(took) {
                rate.push(per_second(per_round, took));
            }
        }
    }
    server.abort();
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let n = per_round * ROUNDS;
    for id in &counters {
        let count = app.get::<Counter>(*id)?.count;
        if count != per_round as u64 {
            return Err(
                format!("counter {id} is {count}, not {per_round}: a command was lost").into(),
            );
        }
    }
    let [mut s, mut f, mut h, mut e] = rates;
    let (s, f, h, e) = (
        median(&mut s),
        median(&mut f),
        median(&mut h),
        median(&mut e),
    );
    println!("one command at a time on SQLite, {n} each way (every counter verified)");
    println!("| path | commands/s | ÷ sync core |");
    println!("|---|---|---|");
    println!("| sync core (app.execute) | {s:.0} | 1.00 |");
    println!(
        "| async facade (AsyncApplication::execute) | {f:.0} | {:.2} |",
        f / s
    );
    println!(
        "| axum + facade over HTTP (reqwest, loopback) | {h:.0} | {:.2} |",
        h / s
    );
    // What the sync core would do over the same HTTP: its time per
    // command plus the transport's (an empty route's round trip).
    let sync_over_http = 1.0 / (1.0 / s + 1.0 / e);
    println!("| empty axum route over HTTP (the transport alone) | {e:.0} | – |");
    println!(
        "| axum + facade ÷ (sync core + the transport) | – | {:.2} |",
        h / sync_over_http
    );
    Ok(())
}
