//! The bank service (`annals_examples::bank`) over HTTP: started on
//! 127.0.0.1:0, talked to with reqwest, on SQLite and PostgreSQL. Every
//! endpoint, every kind of bad request (always a JSON 4xx), and a bounded
//! load of 1,000 concurrent requests after which every acknowledged
//! request is stored once and the balances add up.

use std::time::Duration;

use annals::prelude::*;
use annals::Persistence;
use annals_examples::bank::{Account, AccountView, Bank, BODY_LIMIT};
use annals_examples::service::{self, Limits};
use annals_tests::stores::{drop_postgres_tables, postgres_server, temp_sqlite};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A running service: its base URL and the application behind it.
struct Service {
    base: String,
    app: annals::asynchronous::AsyncApplication,
    client: reqwest::Client,
}

async fn start(persistence: Persistence) -> Service {
    let bank = Bank::build(Application::builder("Bank").persistence(persistence))
        .await
        .expect("the bank");
    serve_bank(bank).await
}

async fn serve_bank(bank: Bank) -> Service {
    let app = bank.app().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(annals_examples::bank::serve(
        listener,
        bank,
        std::future::pending(),
    ));
    Service {
        base,
        app,
        client: reqwest::Client::new(),
    }
}

impl Service {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status();
        let text = response.text().await.expect("the body");
        let body = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{path}: {status} with a body that is not JSON ({e}): {text:?}")
        });
        (status, body)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// A POST with an `Idempotency-Key` header.
    async fn post_keyed(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("the service answers");
        let status = response.status();
        let body = response.json().await.expect("a JSON body");
        (status, body)
    }

    /// How many events of each topic the bank's store holds.
    async fn stored(&self) -> std::collections::BTreeMap<String, usize> {
        self.app
            .call(|app| {
                let mut topics = std::collections::BTreeMap::new();
                for n in app.notifications(1, 100_000).expect("the log") {
                    *topics.entry(n.event.topic).or_insert(0) += 1;
                }
                topics
            })
            .await
    }

    async fn open(&self, owner: &str) -> AccountView {
        let (status, body) = self.post("/accounts", json!({ "owner": owner })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_value(body).expect("an account view")
    }
}

/// A JSON error body of this status and kind.
fn assert_error(got: &(StatusCode, Value), status: StatusCode, kind: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], kind, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

async fn every_endpoint(service: &Service) {
    let ada = service.open("Ada").await;
    let bob = service.open("Bob").await;
    assert_eq!((ada.balance, ada.closed), (0, false));

    let (status, after) = service
        .post(
            &format!("/accounts/{}/deposit", ada.id),
            json!({"amount": 100}),
        )
        .await;
    assert_eq!(
        (status, after["balance"].as_i64()),
        (StatusCode::OK, Some(100))
    );
    let (status, after) = service
        .post(
            &format!("/accounts/{}/withdraw", ada.id),
            json!({"amount": 10}),
        )
        .await;
    assert_eq!(
        (status, after["balance"].as_i64()),
        (StatusCode::OK, Some(90))
    );
    let (status, moved) = service
        .post(
            "/transfers",
            json!({"from": ada.id, "to": bob.id, "amount": 40}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(
        (
            moved["from"]["balance"].as_i64(),
            moved["to"]["balance"].as_i64()
        ),
        (Some(50), Some(40))
    );
    let (status, got) = service.get(&format!("/accounts/{}", bob.id)).await;
    assert_eq!(
        (status, got["owner"].as_str(), got["balance"].as_i64()),
        (StatusCode::OK, Some("Bob"), Some(40))
    );
    // A deposit the balance cannot hold is refused (422), never wrapped
    // into a negative balance nor a panic without an answer.
    let too_much = service
        .post(
            &format!("/accounts/{}/deposit", bob.id),
            json!({"amount": i64::MAX}),
        )
        .await;
    assert_error(&too_much, StatusCode::UNPROCESSABLE_ENTITY, "rejected");
    let (_, got) = service.get(&format!("/accounts/{}", bob.id)).await;
    assert_eq!(
        got["balance"].as_i64(),
        Some(40),
        "the balance is as it was"
    );
    let (status, _) = service.get("/balances").await;
    assert_eq!(status, StatusCode::OK, "the projection still answers");

    // Refusals: 422, nothing stored.
    let version = service
        .app
        .get::<Account>(bob.id)
        .await
        .expect("Bob's account")
        .version();
    assert_error(
        &service
            .post(
                &format!("/accounts/{}/withdraw", bob.id),
                json!({"amount": 41}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    );
    assert_error(
        &service
            .post(&format!("/accounts/{}/close", bob.id), json!({}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    );
    assert_error(
        &service
            .post(
                "/transfers",
                json!({"from": bob.id, "to": bob.id, "amount": 1}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    );
    assert_error(
        &service
            .post(
                &format!("/accounts/{}/deposit", bob.id),
                json!({"amount": -5}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    );
    assert_eq!(
        service
            .app
            .get::<Account>(bob.id)
            .await
            .expect("Bob's account")
            .version(),
        version
    );

    // Close an emptied account; then it takes nothing.
    service
        .post(
            &format!("/accounts/{}/withdraw", bob.id),
            json!({"amount": 40}),
        )
        .await;
    let (status, closed) = service
        .post(&format!("/accounts/{}/close", bob.id), json!({}))
        .await;
    assert_eq!(
        (status, closed["closed"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    assert_error(
        &service
            .post(
                &format!("/accounts/{}/deposit", bob.id),
                json!({"amount": 1}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    );

    // The projection lists both.
    let (status, balances) = service.get("/balances").await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<AccountView> =
        serde_json::from_value(balances).expect("a list of account views");
    let find = |id| listed.iter().find(|a| a.id == id).cloned().expect("listed");
    assert_eq!((find(ada.id).balance, find(ada.id).closed), (50, false));
    assert_eq!((find(bob.id).balance, find(bob.id).closed), (0, true));

    // Bad requests: a JSON 4xx each, never a panic or a bare 500.
    let unknown = Uuid::new_v4();
    assert_error(
        &service.get(&format!("/accounts/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &service
            .post(
                &format!("/accounts/{unknown}/deposit"),
                json!({"amount": 1}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &service.get("/accounts/not-a-uuid").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &service.get("/nowhere").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &service
            .send(reqwest::Method::DELETE, "/accounts", None)
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &service.post("/accounts", json!({"name": "no owner"})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &service.post("/accounts", json!({"owner": 7})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let raw = |body: Vec<u8>, content_type: &'static str| {
        let client = service.client.clone();
        let url = format!("{}/accounts", service.base);
        async move {
            let response = client
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("the service answers");
            let status = response.status();
            let body: Value = response.json().await.expect("a JSON error body");
            (status, body)
        }
    };
    assert_error(
        &raw(b"{\"owner\": ".to_vec(), "application/json").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &raw(b"owner=Ada".to_vec(), "text/plain").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let huge = format!("{{\"owner\": \"{}\"}}", "a".repeat(BODY_LIMIT * 2)).into_bytes();
    assert_error(
        &raw(huge, "application/json").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
}

/// 1,000 concurrent deposits, half of them on one account: each answer is
/// 200 or 409 (a conflict that outlasted the retries), and each account's
/// balance and Deposited events are exactly the acknowledged ones.
async fn a_thousand_at_once(service: &Service) {
    let mut accounts = Vec::new();
    for i in 0..10 {
        accounts.push(service.open(&format!("load-{i}")).await.id);
    }
    let hot = accounts[0];
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let account = if i % 2 == 0 {
            hot
        } else {
            accounts[(i % 9 + 1) as usize]
        };
        let amount = i as i64 + 1;
        let client = service.client.clone();
        let url = format!("{}/accounts/{account}/deposit", service.base);
        requests.spawn(async move {
            let response = client
                .post(url)
                .json(&json!({ "amount": amount }))
                .send()
                .await;
            (account, amount, response.map(|r| r.status()))
        });
    }
    let mut acknowledged: std::collections::HashMap<Uuid, (i64, u64)> = Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while let Some(done) = tokio::time::timeout_at(deadline, requests.join_next())
        .await
        .expect("the load finished within its deadline")
    {
        let (account, amount, status) = done.expect("a deposit's task");
        match status.expect("the service answered") {
            StatusCode::OK => {
                let entry = acknowledged.entry(account).or_default();
                entry.0 += amount;
                entry.1 += 1;
            }
            StatusCode::CONFLICT => {}
            other => panic!("a deposit answered {other}"),
        }
    }
    assert!(
        acknowledged[&hot].1 > 0,
        "some deposits on the hot account were acknowledged"
    );
    for account in accounts {
        let (sum, count) = acknowledged.get(&account).copied().unwrap_or_default();
        let (balance, deposits) = service
            .app
            .call(move |app| {
                let stored = app.get::<Account>(account).expect("the account");
                // Deposits are the versions that raised the balance.
                let deposits = (1..=stored.version())
                    .filter(|v| {
                        let before = app.get_at::<Account>(account, v - 1);
                        let after = app
                            .get_at::<Account>(account, *v)
                            .expect("the account at a version it has");
                        before.is_ok_and(|b| after.balance > b.balance)
                    })
                    .count() as u64;
                (stored.balance, deposits)
            })
            .await;
        assert_eq!(balance, sum, "the balance is the acknowledged deposits");
        assert_eq!(deposits, count, "each acknowledged deposit is stored once");
    }
}

/// Every POST sent twice with one `Idempotency-Key` is answered the same
/// and applied once; another key (or the same key on another path) is
/// another request; a refused request stores no key; a bad key is a 400.
async fn idempotency_keys(service: &Service) {
    let before = service.stored().await;
    let count = |stored: &std::collections::BTreeMap<String, usize>, topic: &str| {
        stored.get(topic).copied().unwrap_or(0) - before.get(topic).copied().unwrap_or(0)
    };
    let twice = |path: String, key: &'static str, body: Value| async move {
        let first = service.post_keyed(&path, key, body.clone()).await;
        let again = service.post_keyed(&path, key, body).await;
        assert_eq!(again, first, "{path} with key {key}: the same answer");
        first
    };
    let (status, ada) = twice("/accounts".into(), "open-ada", json!({"owner": "Ada"})).await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    let (_, bob) = twice("/accounts".into(), "open-bob", json!({"owner": "Bob"})).await;
    let id = |view: &Value| view["id"].as_str().expect("an id").to_owned();
    let (ada, bob) = (id(&ada), id(&bob));

    let deposit = format!("/accounts/{ada}/deposit");
    let (status, after) = twice(deposit.clone(), "dep-1", json!({"amount": 100})).await;
    assert_eq!(
        (status, after["balance"].as_i64()),
        (StatusCode::OK, Some(100))
    );
    // Another key: another deposit. The same key on another path: another
    // request too.
    let (_, after) = twice(deposit.clone(), "dep-2", json!({"amount": 5})).await;
    assert_eq!(after["balance"].as_i64(), Some(105));
    let withdraw = format!("/accounts/{ada}/withdraw");
    let (status, after) = twice(withdraw.clone(), "dep-1", json!({"amount": 5})).await;
    assert_eq!(
        (status, after["balance"].as_i64()),
        (StatusCode::OK, Some(100))
    );

    // Refused: 422, no key stored, so the retry after a deposit goes through.
    let refused = service
        .post_keyed(&withdraw, "big", json!({"amount": 150}))
        .await;
    assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "rejected");
    twice(deposit.clone(), "dep-3", json!({"amount": 50})).await;
    let (status, after) = twice(withdraw.clone(), "big", json!({"amount": 150})).await;
    assert_eq!(
        (status, after["balance"].as_i64()),
        (StatusCode::OK, Some(0))
    );
    twice(deposit.clone(), "dep-4", json!({"amount": 60})).await;

    let (status, moved) = twice(
        "/transfers".into(),
        "move-1",
        json!({"from": ada, "to": bob, "amount": 60}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(
        (
            moved["from"]["balance"].as_i64(),
            moved["to"]["balance"].as_i64()
        ),
        (Some(0), Some(60))
    );
    let close = format!("/accounts/{ada}/close");
    let (status, closed) = twice(close, "close-ada", json!({})).await;
    assert_eq!(
        (status, closed["closed"].as_bool()),
        (StatusCode::OK, Some(true))
    );

    let (_, account) = service.get(&format!("/accounts/{bob}")).await;
    assert_eq!(account["balance"].as_i64(), Some(60), "moved once");
    let stored = service.stored().await;
    assert_eq!(count(&stored, "Account.Opened"), 2, "{stored:?}");
    assert_eq!(
        count(&stored, "Account.Deposited"),
        5,
        "4 deposits, 1 transfer"
    );
    assert_eq!(
        count(&stored, "Account.Withdrawn"),
        3,
        "2 withdrawals, 1 transfer"
    );
    assert_eq!(count(&stored, "Account.Closed"), 1);

    // Keys that are not 1 to 255 visible ASCII characters.
    for bad in [Vec::new(), vec![b'k'; 256], "café".as_bytes().to_vec()] {
        let response = service
            .client
            .post(format!("{}{deposit}", service.base))
            .header("Idempotency-Key", bad)
            .json(&json!({"amount": 1}))
            .send()
            .await
            .expect("an answer");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON body");
        assert_error(&(status, body), StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(service.stored().await, stored, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bank_over_http_on_sqlite() {
    let service = start(Persistence::Sqlite(
        annals::persistence::sqlite::SqliteConfig::new(temp_sqlite("bank")),
    ))
    .await;
    every_endpoint(&service).await;
    a_thousand_at_once(&service).await;
    idempotency_keys(&service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bank_over_http_on_postgres() {
    let Some(server) = postgres_server() else {
        annals_tests::skipped("the_bank_over_http_on_postgres");
        return;
    };
    let config = server.clone();
    tokio::task::spawn_blocking(move || drop_postgres_tables(&config, "Bank"))
        .await
        .unwrap();
    let service = start(Persistence::Postgres(server)).await;
    every_endpoint(&service).await;
    a_thousand_at_once(&service).await;
    idempotency_keys(&service).await;
}

/// Stopping the server answers the request in flight, takes no new
/// connection, and returns: a graceful shutdown (before, the process could
/// only be killed, and a request in flight got no answer). The request is
/// made by hand: its head and part of its body before the stop, the rest
/// after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_shutdown_answers_the_request_in_flight() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    answers_in_flight_then_stops(
        "shutdown",
        async {
            stopped.await.ok();
        },
        move || stop.send(()).expect("the server waits for the signal"),
    )
    .await;
}

/// SIGTERM, as a service manager sends it, with a request in flight: the
/// request is answered, then `serve` returns (the process would exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_the_request_in_flight() {
    answers_in_flight_then_stops("sigterm", annals_examples::bank::shutdown_signal(), || {
        // To this process: tokio's handler, installed when `serve`
        // first polled `shutdown_signal`, takes it instead of the
        // default (which would end the test binary).
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM: {sent}");
    })
    .await;
}

/// Serves the bank until `shutdown`; sends a deposit whose body is split
/// around `stop()`, and checks that it is answered and that `serve` then
/// returns and takes no new connection.
async fn answers_in_flight_then_stops(
    name: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    stop: impl FnOnce(),
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let bank = Bank::build(Application::builder("Bank").sqlite(temp_sqlite(name)))
        .await
        .expect("the bank");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let base = format!("http://{addr}");
    let server = tokio::spawn(annals_examples::bank::serve(listener, bank, shutdown));
    let client = reqwest::Client::new();
    let account: AccountView = client
        .post(format!("{base}/accounts"))
        .json(&json!({"owner": "Ada"}))
        .send()
        .await
        .expect("open")
        .json()
        .await
        .expect("an account");

    let body = json!({"amount": 7}).to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /accounts/{}/deposit HTTP/1.1\r\nhost: bank\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        account.id,
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("the head");
    tcp.write_all(&body.as_bytes()[..3])
        .await
        .expect("part of the body");
    // Time for the server to read the head (not an assertion on time).
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop();
    // Stopped, it still waits for the request in flight: returning now
    // would let the process exit with it unanswered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !server.is_finished(),
        "the server returned with a request in flight"
    );
    tcp.write_all(&body.as_bytes()[3..])
        .await
        .expect("the rest");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("the answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"balance\":7"), "{answer}");

    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server returns once its request is answered")
        .expect("its task")
        .expect("no error");
    assert!(
        client.get(format!("{base}/health")).send().await.is_err(),
        "no new connection after the shutdown"
    );
}

/// Every answer carries the request's id (its own, or a new UUID), and
/// `/health` and `/ready` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_request_ids_and_health_and_readiness_answer() {
    let service = start(Persistence::Sqlite(
        annals::persistence::sqlite::SqliteConfig::new(temp_sqlite("request_ids")),
    ))
    .await;
    let answer = service
        .client
        .get(format!("{}/health", service.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("health");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("abc-123")
    );
    let answer = service
        .client
        .get(format!("{}/ready", service.base))
        .send()
        .await
        .expect("ready");
    assert_eq!(answer.status(), StatusCode::OK);
    let id = answer
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("a request id of its own");
    assert!(Uuid::parse_str(&id).is_ok(), "{id}");
}

/// Serves `router` in the service's layers with `limits` on 127.0.0.1:0;
/// its address.
async fn serve_with(router: axum::Router, limits: Limits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let router = service::layers(router, &limits);
        service::serve(listener, router, std::future::pending(), &limits).await
    });
    addr
}

/// Sends `bytes` on a new connection and reads until the server closes it
/// (within 5 s): the status and the JSON body.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes the connection")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let body = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{status} with a body that is not JSON ({e}): {text:?}"));
    (status, body)
}

fn health() -> axum::Router {
    axum::Router::new().route(
        "/health",
        axum::routing::get(|| async { axum::Json(json!({"status": "ok"})) }),
    )
}

/// Clients that send their request head too slowly are answered 408 and
/// dropped, each of them, rather than holding a connection open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_answered_408_and_dropped() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let addr = serve_with(health(), limits).await;
    let slow = (0..20).map(|_| raw(addr, b"GET /health HTTP/1.1\r\nHo"));
    for (status, body) in futures::future::join_all(slow).await {
        assert_eq!(
            (status, body["error"].as_str()),
            (408, Some("request_timeout"))
        );
    }
    // And the server still serves.
    let (status, _) = raw(
        addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
}

/// What hyper would answer with an empty body gets JSON: a request line
/// that is not HTTP, a head too long, and a body declared too large
/// (answered at once, not after the request's time limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_the_server_refuses_get_json_answers() {
    let limits = Limits {
        request_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let max_head = limits.max_head;
    let max_body = limits.max_body;
    let addr = serve_with(health(), limits).await;
    for line in [
        &b"G\xffT /health HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let (status, body) = raw(addr, line).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_request")),
            "{body}"
        );
    }
    let mut big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.resize(big.len() + max_head + 1, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let (status, body) = raw(addr, &big).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (431, Some("headers_too_large")),
        "{body}"
    );
    let declared = format!(
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        max_body * 10_000
    );
    // Answered and closed (`raw` reads to the end) although the client
    // asked for nothing of the kind: its body is unread.
    let (status, body) = raw(addr, declared.as_bytes()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
}

/// A request beyond its time limit is answered 408, with its request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_its_time_limit_is_answered_408() {
    let limits = Limits {
        request_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let slow = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let addr = serve_with(slow, limits).await;
    let answer = reqwest::Client::new()
        .get(format!("http://{addr}/slow"))
        .header("x-request-id", "slow-1")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer before the client's own timeout");
    assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        answer
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("slow-1")
    );
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["error"], "request_timeout");
}

/// Beyond `max_in_flight`, requests wait for a turn: never more run at
/// once, and every one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_limit_wait_for_a_turn() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let counted = axum::Router::new().route(
        "/work",
        axum::routing::get(move || {
            let (running, most) = (r.clone(), m.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                "done"
            }
        }),
    );
    let limits = Limits {
        max_in_flight: 2,
        ..Limits::default()
    };
    let addr = serve_with(counted, limits).await;
    let client = reqwest::Client::new();
    let requests = (0..16).map(|_| client.get(format!("http://{addr}/work")).send());
    for answer in futures::future::join_all(requests).await {
        assert_eq!(answer.expect("answered").status(), StatusCode::OK);
    }
    let most = most.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} requests ran at once");
}

/// The checked-in OpenAPI description is the one the routes make (run
/// with `UPDATE_OPENAPI=1` to write it again), `/openapi.json` serves it,
/// and every path and method it lists is a route (not the fallback's 404
/// or 405).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_is_checked_in_and_lists_the_routes() {
    let made = serde_json::to_value(annals_examples::bank::openapi()).expect("JSON");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/bank.openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        let text = serde_json::to_string_pretty(&made).expect("JSON") + "\n";
        std::fs::write(file, text).expect("write the description");
    }
    let checked_in: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("the checked-in description"))
            .expect("JSON");
    assert_eq!(
        made, checked_in,
        "examples/bank.openapi.json is stale: run the test with UPDATE_OPENAPI=1"
    );
    let service = start(Persistence::Sqlite(
        annals::persistence::sqlite::SqliteConfig::new(temp_sqlite("openapi")),
    ))
    .await;
    let (status, served) = service.get("/openapi.json").await;
    assert_eq!((status, &served), (StatusCode::OK, &made));
    let paths = made["paths"].as_object().expect("paths");
    assert!(paths.len() >= 9, "{paths:?}");
    let id = Uuid::new_v4().to_string();
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let url = format!("{}{}", service.base, path.replace("{id}", &id));
            let answer = service
                .client
                .request(method.clone(), &url)
                .send()
                .await
                .expect("answered");
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            let fallback = matches!(body["error"].as_str(), Some("method_not_allowed"))
                || body["message"] == "no such path";
            assert!(
                !fallback,
                "{method} {path} is described but not routed: {status} {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_for_prometheus_when_the_bank_exports_them() {
    // A recorder for this bank alone, not the process's: the tests of this
    // binary run side by side. The application registers its metrics in
    // the recorder current when it is built.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let app = metrics::with_local_recorder(&recorder, || Application::builder("Bank").build())
        .expect("the application");
    let bank = Bank::new(std::sync::Arc::new(app))
        .expect("the bank")
        .with_metrics(handle);
    let service = serve_bank(bank).await;
    let ada = service.open("Ada").await;
    let (status, body) = service
        .post(
            &format!("/accounts/{}/deposit", ada.id),
            json!({ "amount": 10 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = service
        .client
        .get(format!("{}/metrics", service.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain")));
    let text = answer.text().await.expect("the body");
    for line in [
        "annals_saves_total{application=\"Bank\"} 2",
        "annals_events_saved_total{application=\"Bank\"} 2",
        "# TYPE annals_saves_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(text.contains("annals_get_seconds"), "{text}");

    // A bank given no handle exports nothing.
    let plain = start(Persistence::Memory).await;
    assert_error(
        &plain.get("/metrics").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}
