//! Bank accounts as a JSON HTTP API (axum, through annals' async facade):
//! open, deposit, withdraw (refused beyond the balance), transfer (two
//! accounts in one save), close; balances listed through a projection into
//! a SQLite read model.
//!
//! | request | answer |
//! |---|---|
//! | `POST /accounts {"owner": "Ada"}` | 201 `{"id", "owner", "balance", "closed"}` |
//! | `GET /accounts/{id}` | the account |
//! | `POST /accounts/{id}/deposit {"amount": 10}` | the account |
//! | `POST /accounts/{id}/withdraw {"amount": 10}` | the account; 422 beyond the balance |
//! | `POST /accounts/{id}/close` | the account; 422 unless the balance is 0 |
//! | `POST /transfers {"from", "to", "amount"}` | `{"from": account, "to": account}` |
//! | `GET /balances` | `[{"id", "owner", "balance", "closed"}]`, from the projection |
//! | `GET /health` | 200 `{"status": "ok"}` while the process serves |
//! | `GET /ready` | 200 when the store answers, else 503 |
//! | `GET /openapi.json` | the OpenAPI description of these routes ([`openapi`]) |
//! | `GET /metrics` | annals' metrics in Prometheus' text format ([`Bank::with_metrics`]); 404 when the bank exports none |
//!
//! The `POST`s take an `Idempotency-Key` header (1 to 255 visible ASCII
//! characters; 400 otherwise): a request sent again with the same key to
//! the same path (a client's retry after a timeout) gets the first one's
//! answer, and nothing is applied twice, even when the first ran in
//! another process (`Application::execute_once`: the key is stored with
//! the request's events, in one transaction). A refused request (422)
//! stores no key. The first answer is kept whatever the retry's body says.
//!
//! It is served as a service must be ([`crate::service`]): every answer
//! carries an `x-request-id` header (the request's own, or a new UUID),
//! which the request's span carries too; request heads have 10 s and
//! requests 10 s; at most 512 requests run at once; [`serve`] stops
//! gracefully, answering every request in flight. Every error is JSON
//! `{"error", "message"}`: 400 for malformed JSON, ids, request heads or
//! idempotency keys, 404 for unknown accounts and paths, 405 for wrong
//! methods, 408 for requests too slow, 409 when a conflict outlasts the
//! retries, 413 for bodies over 16 KiB, 415 without a JSON content type,
//! 422 when the bank refuses, 431 for request heads over 16 KiB, 503 when
//! the store is down.

use std::sync::Arc;

use annals::asynchronous::AsyncApplication;
use annals::prelude::*;
use annals::rusqlite::{self, Transaction};
use annals::system::{Projection, Upstream};
use annals::web::ApiError;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

use crate::service::{self, Limits};

/// A bank account.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    /// Who owns it.
    pub owner: String,
    /// In cents.
    pub balance: i64,
    /// Whether it is closed (nothing more goes in or out).
    pub closed: bool,
}

/// Why the bank refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// Amounts are positive.
    #[error("the amount must be positive, not {0}")]
    NotPositive(i64),
    /// A withdrawal beyond the balance.
    #[error("insufficient funds: the balance is {balance}, {amount} was asked")]
    InsufficientFunds {
        /// The balance.
        balance: i64,
        /// What was asked.
        amount: i64,
    },
    /// The account is closed.
    #[error("the account is closed")]
    Closed,
    /// Only an empty account closes.
    #[error("the balance is {0}; only an empty account can be closed")]
    NotEmpty(i64),
    /// A transfer to the same account.
    #[error("a transfer needs two accounts")]
    SameAccount,
    /// A deposit the balance cannot hold (an `i64`): refused, never
    /// wrapped.
    #[error("the balance {balance} cannot take {amount} more")]
    TooLarge {
        /// The balance.
        balance: i64,
        /// What was asked.
        amount: i64,
    },
}

#[aggregate]
impl Account {
    /// Opens an account.
    #[event("Opened")]
    pub fn open(owner: String) -> Self {
        Account {
            owner,
            balance: 0,
            closed: false,
        }
    }

    #[event("Deposited")]
    fn deposited(&mut self, amount: i64) {
        // `deposit` refuses what would overflow; saturating so that a
        // replay never panics, whatever was stored.
        self.balance = self.balance.saturating_add(amount);
    }

    #[event("Withdrawn")]
    fn withdrawn(&mut self, amount: i64) {
        self.balance -= amount;
    }

    #[event("Closed")]
    fn closed(&mut self) {
        self.closed = true;
    }

    fn check(&self, amount: i64) -> Result<(), Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        if amount <= 0 {
            return Err(Refused::NotPositive(amount));
        }
        Ok(())
    }

    /// Puts `amount` in.
    ///
    /// # Errors
    ///
    /// A closed account; an amount that is not positive; a balance that
    /// would pass `i64::MAX`.
    pub fn deposit(&mut self, amount: i64) -> Result<(), Refused> {
        self.check(amount)?;
        if self.balance.checked_add(amount).is_none() {
            return Err(Refused::TooLarge {
                balance: self.balance,
                amount,
            });
        }
        self.deposited(amount);
        Ok(())
    }

    /// Takes `amount` out.
    ///
    /// # Errors
    ///
    /// As [`deposit`](Self::deposit), and more than the balance.
    pub fn withdraw(&mut self, amount: i64) -> Result<(), Refused> {
        self.check(amount)?;
        if amount > self.balance {
            return Err(Refused::InsufficientFunds {
                balance: self.balance,
                amount,
            });
        }
        self.withdrawn(amount);
        Ok(())
    }

    /// Closes the account.
    ///
    /// # Errors
    ///
    /// It is closed already, or not empty.
    pub fn close(&mut self) -> Result<(), Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        if self.balance != 0 {
            return Err(Refused::NotEmpty(self.balance));
        }
        self.closed();
        Ok(())
    }
}

/// An account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    /// Its id.
    pub id: Uuid,
    /// Who owns it.
    pub owner: String,
    /// In cents.
    pub balance: i64,
    /// Whether it is closed.
    pub closed: bool,
}

impl From<&Account> for AccountView {
    fn from(account: &Account) -> Self {
        Self {
            id: account.id(),
            owner: account.owner.clone(),
            balance: account.balance,
            closed: account.closed,
        }
    }
}

/// The service's state: the bank, its balances projection, and where its
/// metrics are rendered from (if it exports them).
#[derive(Clone)]
pub struct Bank {
    app: AsyncApplication,
    balances: Arc<Projection<rusqlite::Connection>>,
    metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bank").finish_non_exhaustive()
    }
}

impl Bank {
    /// The bank on `app`, its balances projected into an in-memory SQLite
    /// database.
    ///
    /// # Errors
    ///
    /// The read model cannot be made.
    pub fn new(app: Arc<Application>) -> annals::Result<Self> {
        let db = rusqlite::Connection::open_in_memory().map_err(annals::Error::user)?;
        db.execute_batch(
            "CREATE TABLE balances (id TEXT PRIMARY KEY, owner TEXT, balance INTEGER, closed INTEGER)",
        )
        .map_err(annals::Error::user)?;
        let balances = Projection::new("balances", app.clone(), db, project)?;
        Ok(Self {
            app: AsyncApplication::new(app),
            balances: Arc::new(balances),
            metrics: None,
        })
    }

    /// The bank answering `GET /metrics` with what `handle`'s recorder
    /// holds (see [`prometheus`]). The recorder must have been installed
    /// before the application was built: annals registers an
    /// application's metrics when it is built.
    #[must_use]
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// The bank on the application `builder` makes, built (and its store
    /// opened) on the blocking pool, as async code must.
    ///
    /// # Errors
    ///
    /// The application cannot be built; the read model cannot be made.
    pub async fn build(builder: annals::ApplicationBuilder) -> annals::Result<Self> {
        let app = AsyncApplication::build(builder).await?;
        let app = app.sync().clone();
        tokio::task::spawn_blocking(move || Self::new(app))
            .await
            .map_err(annals::Error::user)?
    }

    /// The application.
    pub fn app(&self) -> &AsyncApplication {
        &self.app
    }
}

fn project(upstream: &Upstream<'_>, tx: &mut Transaction<'_>) -> annals::Result<()> {
    let Some(event) = upstream.decode::<Account>()? else {
        return Ok(());
    };
    let id = event.originator_id.to_string();
    let result = match event.event {
        AccountEvent::Opened { owner } => tx.execute(
            "INSERT INTO balances VALUES (?1, ?2, 0, 0)",
            rusqlite::params![id, owner],
        ),
        AccountEvent::Deposited { amount } => tx.execute(
            "UPDATE balances SET balance = balance + ?2 WHERE id = ?1",
            rusqlite::params![id, amount],
        ),
        AccountEvent::Withdrawn { amount } => tx.execute(
            "UPDATE balances SET balance = balance - ?2 WHERE id = ?1",
            rusqlite::params![id, amount],
        ),
        AccountEvent::Closed {} => tx.execute("UPDATE balances SET closed = 1 WHERE id = ?1", [id]),
    };
    result.map(|_| ()).map_err(annals::Error::user)
}

/// The largest request body: 16 KiB.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The API's description, with the routes of [`router`] (both are made
/// from the handlers' annotations, so neither can list a route the other
/// lacks); served at `GET /openapi.json`, and checked in as
/// `examples/bank.openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "bank",
    description = "Bank accounts as a JSON HTTP API, on annals.",
    version = "0.1.0"
))]
struct ApiDoc;

/// The routes and their description.
fn routes() -> (Router<Bank>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(utoipa_axum::routes!(open))
        .routes(utoipa_axum::routes!(account))
        .routes(utoipa_axum::routes!(deposit))
        .routes(utoipa_axum::routes!(withdraw))
        .routes(utoipa_axum::routes!(close))
        .routes(utoipa_axum::routes!(transfer))
        .routes(utoipa_axum::routes!(balances))
        .routes(utoipa_axum::routes!(health))
        .routes(utoipa_axum::routes!(ready))
        .split_for_parts()
}

/// The OpenAPI description of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The API's routes, in the layers of a service ([`service::layers`]
/// with `limits`): request ids in every answer and span, the request
/// time limit, the bound on requests in flight, the body limit.
pub fn router_with(bank: Bank, limits: &Limits) -> Router {
    let (routes, api) = routes();
    let api: axum::body::Bytes = serde_json::to_vec(&api)
        .expect("an OpenAPI description serializes")
        .into();
    let routes = routes
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    api,
                )
            }),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not take that method",
            )
        })
        .with_state(bank);
    service::layers(routes, limits)
}

/// The API's routes with the default [`Limits`] (a body of at most
/// [`BODY_LIMIT`]).
pub fn router(bank: Bank) -> Router {
    router_with(bank, &Limits::default())
}

/// Serves the bank on `listener` ([`service::serve`], with the default
/// [`Limits`]) until `shutdown` completes; then it takes no new
/// connection, answers every request in flight, and returns.
///
/// # Errors
///
/// The listener's errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    bank: Bank,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Limits::default();
    service::serve(listener, router_with(bank, &limits), shutdown, &limits).await
}

/// Completes when the process is asked to stop: SIGTERM (a service
/// manager's, a container's) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Alive while the process serves.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "the process serves", body = Status)))]
async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// `{"status": ...}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// An error: `{"error": kind, "message": what happened}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A short, stable name of the kind of error (`not_found`, `conflict`, ...).
    pub error: String,
    /// What happened, for people.
    pub message: String,
}

/// Ready when the store answers.
#[utoipa::path(get, path = "/ready", responses(
    (status = 200, description = "the store answers", body = Status),
    (status = 503, description = "the store is unavailable", body = ErrorBody),
))]
async fn ready(State(bank): State<Bank>) -> Answer<Status> {
    bank.app
        .call(|app| app.recorder().max_notification_id())
        .await?;
    Ok(Json(Status { status: "ready" }))
}

/// Installs a Prometheus recorder for the process (annals' `_seconds`
/// histograms with buckets from 100 µs to 10 s) and keeps it tidy (its
/// upkeep every 5 seconds, on the current tokio runtime): call it before
/// building the bank, and give the handle to [`Bank::with_metrics`].
///
/// # Errors
///
/// A recorder is installed already.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn prometheus() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    const BUCKETS: [f64; 11] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 1.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// The metrics in Prometheus' text format, when the bank exports them.
async fn metrics(
    State(bank): State<Bank>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let Some(handle) = &bank.metrics else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this bank exports no metrics",
        ));
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    ))
}

/// A JSON body whose rejections are JSON errors too.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| Body(value))
            .map_err(|e: JsonRejection| {
                // Each status with a kind of its own, for clients that
                // branch on `error`.
                let (status, kind) = match e.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                    }
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                    }
                    _ => (StatusCode::BAD_REQUEST, "bad_request"),
                };
                ApiError::new(status, kind, e.body_text())
            })
    }
}

/// An account id in the path, whose rejection is a JSON error.
#[derive(Debug)]
pub struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<Uuid>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Id(id))
            .map_err(|e: PathRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
            })
    }
}

/// The longest `Idempotency-Key` taken.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request's `Idempotency-Key` header, if it has one, scoped to the
/// request's path (`"/accounts/{id}/deposit {key}"`): the same key sent
/// to another path names another request. A header that is empty, longer
/// than [`MAX_IDEMPOTENCY_KEY`] or not visible ASCII is a JSON 400.
#[derive(Debug)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!(
                        "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} visible \
                         ASCII characters"
                    ),
                )
            })?;
        Ok(Self(Some(format!("{} {key}", parts.uri.path()))))
    }
}

/// `{"owner": ...}`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Open {
    /// Who owns the account.
    pub owner: String,
}

/// `{"amount": ...}`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Amount {
    /// In cents.
    pub amount: i64,
}

/// `{"from", "to", "amount"}`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Transfer {
    /// The account the money leaves.
    pub from: Uuid,
    /// The account it goes to.
    pub to: Uuid,
    /// In cents.
    pub amount: i64,
}

type Answer<T> = Result<Json<T>, ApiError>;

#[utoipa::path(post, path = "/accounts", params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1 to 255 visible ASCII characters: the same key again to this path gets the first answer, and nothing is applied twice")), request_body = Open, responses(
    (status = 201, description = "the account, opened", body = AccountView),
    (status = 400, description = "malformed JSON", body = ErrorBody),
))]
async fn open(
    State(bank): State<Bank>,
    IdempotencyKey(key): IdempotencyKey,
    Body(open): Body<Open>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let view = match key {
        None => AccountView::from(&bank.app.save(Account::open(open.owner)).await?),
        Some(key) => {
            bank.app
                .call(move |app| open_once(app, &key, open.owner))
                .await?
        }
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// Opens an account for `owner` once per idempotency key: the view of the
/// account the key's first request opened, or a new account's, saved with
/// the key. A conflict (another try of the request stored the key
/// meanwhile) is tried again after a pause, and that try finds the key.
fn open_once(app: &Application, key: &str, owner: String) -> annals::Result<AccountView> {
    let policy = app.retry_policy();
    let mut tried = 0;
    loop {
        tried += 1;
        if let Some(first) = app.outcome::<AccountView>(key)? {
            return Ok(first);
        }
        let mut account = Account::open(owner.clone());
        let view = AccountView::from(&account);
        match app.save_once(key, &mut account, &view) {
            Ok(_) => return Ok(view),
            Err(e) if e.is_conflict() && tried < policy.tries => {
                std::thread::sleep(policy.pause(tried));
            }
            Err(e) => return Err(e),
        }
    }
}

#[utoipa::path(get, path = "/accounts/{id}", params(("id" = Uuid, Path, description = "the account's id")), responses(
    (status = 200, description = "the account", body = AccountView),
    (status = 404, description = "no such account", body = ErrorBody),
))]
async fn account(State(bank): State<Bank>, Id(id): Id) -> Answer<AccountView> {
    Ok(Json(AccountView::from(&bank.app.get::<Account>(id).await?)))
}

/// Runs `command` on account `id` (retrying conflicts), once per
/// idempotency key if there is one; the account after.
async fn command(
    bank: &Bank,
    id: Uuid,
    key: Option<String>,
    command: impl FnMut(&mut Account) -> Result<(), Refused> + Send + 'static,
) -> Answer<AccountView> {
    let mut command = command;
    let run = move |account: &mut Account| command(account).map(|()| AccountView::from(&*account));
    let view = match key {
        Some(key) => bank.app.execute_once(key, id, run).await?,
        None => bank.app.execute(id, run).await?,
    };
    Ok(Json(view))
}

#[utoipa::path(post, path = "/accounts/{id}/deposit", params(("id" = Uuid, Path, description = "the account's id"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1 to 255 visible ASCII characters: the same key again to this path gets the first answer, and nothing is applied twice")), request_body = Amount, responses(
    (status = 200, description = "the account after", body = AccountView),
    (status = 404, description = "no such account", body = ErrorBody),
    (status = 409, description = "a conflict outlasted the retries", body = ErrorBody),
    (status = 422, description = "refused: not positive, closed, or too large", body = ErrorBody),
))]
async fn deposit(
    State(bank): State<Bank>,
    Id(id): Id,
    IdempotencyKey(key): IdempotencyKey,
    Body(body): Body<Amount>,
) -> Answer<AccountView> {
    command(&bank, id, key, move |a| a.deposit(body.amount)).await
}

#[utoipa::path(post, path = "/accounts/{id}/withdraw", params(("id" = Uuid, Path, description = "the account's id"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1 to 255 visible ASCII characters: the same key again to this path gets the first answer, and nothing is applied twice")), request_body = Amount, responses(
    (status = 200, description = "the account after", body = AccountView),
    (status = 404, description = "no such account", body = ErrorBody),
    (status = 409, description = "a conflict outlasted the retries", body = ErrorBody),
    (status = 422, description = "refused: beyond the balance, not positive, or closed", body = ErrorBody),
))]
async fn withdraw(
    State(bank): State<Bank>,
    Id(id): Id,
    IdempotencyKey(key): IdempotencyKey,
    Body(body): Body<Amount>,
) -> Answer<AccountView> {
    command(&bank, id, key, move |a| a.withdraw(body.amount)).await
}

#[utoipa::path(post, path = "/accounts/{id}/close", params(("id" = Uuid, Path, description = "the account's id"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1 to 255 visible ASCII characters: the same key again to this path gets the first answer, and nothing is applied twice")), responses(
    (status = 200, description = "the account, closed", body = AccountView),
    (status = 404, description = "no such account", body = ErrorBody),
    (status = 422, description = "refused: not empty, or closed already", body = ErrorBody),
))]
async fn close(
    State(bank): State<Bank>,
    Id(id): Id,
    IdempotencyKey(key): IdempotencyKey,
) -> Answer<AccountView> {
    command(&bank, id, key, Account::close).await
}

/// Both accounts' views after a transfer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transferred {
    /// The account the money left.
    pub from: AccountView,
    /// The account it went to.
    pub to: AccountView,
}

#[utoipa::path(post, path = "/transfers", params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1 to 255 visible ASCII characters: the same key again to this path gets the first answer, and nothing is applied twice")), request_body = Transfer, responses(
    (status = 200, description = "both accounts after", body = Transferred),
    (status = 404, description = "no such account", body = ErrorBody),
    (status = 409, description = "a conflict outlasted the retries", body = ErrorBody),
    (status = 422, description = "refused", body = ErrorBody),
))]
async fn transfer(
    State(bank): State<Bank>,
    IdempotencyKey(key): IdempotencyKey,
    Body(t): Body<Transfer>,
) -> Answer<Transferred> {
    if t.from == t.to {
        return Err(annals::application::CommandError::Rejected(Refused::SameAccount).into());
    }
    // Both accounts in one save, while no other command of this process
    // runs on either (so none conflicts with it): the turn is awaited
    // without holding a thread. A conflict with another process is tried
    // again after a jittered pause, as `execute` does. With an idempotency
    // key, as `execute_once` does: each try looks the key up first, and
    // the save stores it.
    let _held = bank.app.lock_commands::<Account>(&[t.from, t.to]).await;
    let done = bank
        .app
        .call(
            move |app| -> Result<Transferred, annals::application::CommandError<Refused>> {
                let policy = app.retry_policy();
                let mut tried = 0;
                loop {
                    tried += 1;
                    if let Some(key) = &key {
                        if let Some(first) = app.outcome::<Transferred>(key)? {
                            return Ok(first);
                        }
                    }
                    let mut from: Account = app.get(t.from)?;
                    let mut to: Account = app.get(t.to)?;
                    from.withdraw(t.amount)
                        .map_err(annals::application::CommandError::Rejected)?;
                    to.deposit(t.amount)
                        .map_err(annals::application::CommandError::Rejected)?;
                    let done = Transferred {
                        from: AccountView::from(&from),
                        to: AccountView::from(&to),
                    };
                    let saved = match &key {
                        Some(key) => app.save_once(key, (&mut from, &mut to), &done),
                        None => app.save((&mut from, &mut to)),
                    };
                    match saved {
                        Ok(_) => return Ok(done),
                        Err(e) if e.is_conflict() && tried < policy.tries => {
                            std::thread::sleep(policy.pause(tried));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            },
        )
        .await?;
    Ok(Json(done))
}

#[utoipa::path(get, path = "/balances", responses(
    (status = 200, description = "every account, from the projection", body = Vec<AccountView>),
))]
async fn balances(State(bank): State<Bank>) -> Answer<Vec<AccountView>> {
    let projection = bank.balances.clone();
    let rows = bank
        .app
        .call(move |_| -> annals::Result<Vec<AccountView>> {
            projection.pull()?;
            projection.with_db(|db| {
                let mut statement = db
                    .prepare("SELECT id, owner, balance, closed FROM balances ORDER BY owner, id")
                    .map_err(annals::Error::user)?;
                let rows = statement
                    .query_map([], |row| {
                        let id: String = row.get(0)?;
                        Ok(AccountView {
                            id: Uuid::parse_str(&id).map_err(|e| {
                                rusqlite::Error::FromSqlConversionFailure(
                                    0,
                                    rusqlite::types::Type::Text,
                                    Box::new(e),
                                )
                            })?,
                            owner: row.get(1)?,
                            balance: row.get(2)?,
                            closed: row.get::<_, i64>(3)? != 0,
                        })
                    })
                    .map_err(annals::Error::user)?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(annals::Error::user)
            })
        })
        .await?;
    Ok(Json(rows))
}
