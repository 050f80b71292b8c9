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
use axum::{Json, Router};

use crate::Res;

#[aggregate]
#[derive(Debug, Clone)]
pub struct Counter {
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

/// Runs `n` commands each way and prints the table.
pub fn run(n: usize) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("web.db");
    let path = path.to_str().ok_or("temporary path is not UTF-8")?.to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let app = Arc::new(Application::builder("Web").sqlite(path).build()?);
    let mut counter = Counter::start();
    app.save(&mut counter)?;
    let id = counter.id();

    let command = |c: &mut Counter| -> Result<u64, String> {
        c.increment();
        Ok(c.count)
    };
    // Warm up each path a little.
    for _ in 0..n.min(50) {
        app.execute(id, command)?;
    }
    let started = Instant::now();
    for _ in 0..n {
        app.execute(id, command)?;
    }
    let sync = started.elapsed();

    let facade = AsyncApplication::new(app.clone());
    let through_facade = runtime.block_on(async {
        for _ in 0..n.min(50) {
            facade.execute(id, command).await?;
        }
        let started = Instant::now();
        for _ in 0..n {
            facade.execute(id, command).await?;
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(started.elapsed())
    })?;

    let through_http = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/counters/{id}/increment", listener.local_addr()?);
        let router = Router::new()
            .route("/counters/{id}/increment", post(increment))
            .with_state(facade.clone());
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::new();
        for _ in 0..n.min(50) {
            client.post(&url).send().await?.error_for_status()?;
        }
        let started = Instant::now();
        for _ in 0..n {
            client.post(&url).send().await?.error_for_status()?;
        }
        let took = started.elapsed();
        server.abort();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(took)
    })?;

    let expected = 3 * (n as u64 + n.min(50) as u64);
    let count = app.get::<Counter>(id)?.count;
    if count != expected {
        return Err(format!("the counter is {count}, not {expected}: a command was lost").into());
    }
    let (s, f, h) = (
        per_second(n, sync),
        per_second(n, through_facade),
        per_second(n, through_http),
    );
    println!("one command at a time on SQLite, {n} each way (counter verified: {count})");
    println!("| path | commands/s | ÷ sync core |");
    println!("|---|---|---|");
    println!("| sync core (app.execute) | {s:.0} | 1.00 |");
    println!("| async facade (AsyncApplication::execute) | {f:.0} | {:.2} |", f / s);
    println!("| axum + facade over HTTP (reqwest, loopback) | {h:.0} | {:.2} |", h / s);
    Ok(())
}
