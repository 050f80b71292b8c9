//! The bank as a JSON HTTP service (`annals_examples::bank`), on SQLite
//! (`bank.db`) unless `PERSISTENCE_MODULE` says otherwise (PostgreSQL:
//! `PERSISTENCE_MODULE=postgres POSTGRES_DBNAME=...`).
//!
//! ```sh
//! cargo run --example bank                              # a short demo against itself
//! cargo run --example bank -- serve 127.0.0.1:3000      # serve until SIGTERM or Ctrl-C
//! curl -X POST localhost:3000/accounts -H 'content-type: application/json' -d '{"owner":"Ada"}'
//! curl localhost:3000/metrics                           # annals' metrics, for Prometheus
//! ```

use annals::prelude::*;
use annals_examples::bank::{prometheus, serve, shutdown_signal, AccountView, Bank};
use serde_json::json;

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

async fn bank() -> Result<Bank> {
    let mut builder = Application::builder("Bank").from_env()?;
    if std::env::var_os("PERSISTENCE_MODULE").is_none() {
        builder = builder.sqlite("bank.db");
    }
    // A service keeps the accounts it serves in memory: a get then reads
    // only the events after the cached version, not the whole stream.
    if std::env::var_os("AGGREGATE_CACHE_MAXSIZE").is_none() {
        builder = builder.cache(10_000);
    }
    Ok(Bank::build(builder).await?)
}

#[tokio::main]
async fn main() -> Result<()> {
    annals_examples::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Before the application is built: it registers its metrics then.
    let metrics = prometheus()?;
    let bank = bank().await?.with_metrics(metrics);
    match args.first().map(String::as_str) {
        Some("serve") => {
            let addr = args.get(1).map_or("127.0.0.1:3000", String::as_str);
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("the bank listens on http://{}", listener.local_addr()?);
            // Until SIGTERM or Ctrl-C; then every request in flight is
            // answered before the process exits 0.
            serve(listener, bank, shutdown_signal()).await?;
            println!("the bank stopped");
            Ok(())
        }
        None => demo(bank).await,
        Some(other) => {
            Err(format!("unknown command {other:?}; expected `serve [ADDR]` or nothing").into())
        }
    }
}

/// Serves on a free port of 127.0.0.1 and talks to itself.
async fn demo(bank: Bank) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(serve(listener, bank, std::future::pending()));
    let client = reqwest::Client::new();
    let open = |owner: &str| {
        client
            .post(format!("{base}/accounts"))
            .json(&json!({ "owner": owner }))
            .send()
    };
    let ada: AccountView = open("Ada").await?.error_for_status()?.json().await?;
    let bob: AccountView = open("Bob").await?.error_for_status()?.json().await?;
    client
        .post(format!("{base}/accounts/{}/deposit", ada.id))
        .json(&json!({ "amount": 100 }))
        .send()
        .await?
        .error_for_status()?;
    client
        .post(format!("{base}/transfers"))
        .json(&json!({ "from": ada.id, "to": bob.id, "amount": 30 }))
        .send()
        .await?
        .error_for_status()?;
    let refused = client
        .post(format!("{base}/accounts/{}/withdraw", bob.id))
        .json(&json!({ "amount": 1000 }))
        .send()
        .await?;
    println!(
        "Bob withdraws 1000: {} {}",
        refused.status(),
        refused.text().await?
    );
    let ada_now: AccountView = client
        .get(format!("{base}/accounts/{}", ada.id))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ada_now.balance, 70);
    let balances: Vec<AccountView> = client
        .get(format!("{base}/balances"))
        .send()
        .await?
        .json()
        .await?;
    let ours: Vec<_> = balances
        .iter()
        .filter(|b| b.id == ada.id || b.id == bob.id)
        .map(|b| (b.owner.as_str(), b.balance))
        .collect();
    println!("balances of Ada and Bob, from the projection: {ours:?}");
    assert_eq!(ours, [("Ada", 70), ("Bob", 30)]);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let saves = metrics
        .lines()
        .find(|line| line.starts_with("annals_saves_total{"))
        .ok_or("no annals_saves_total in /metrics")?;
    println!("from /metrics: {saves}");
    server.abort();
    Ok(())
}
