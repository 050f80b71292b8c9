//! Serving an axum router as a service must be served on an open network:
//! every connection's request head within a time limit, a bound on
//! connections and on requests in flight, a time limit on each request,
//! JSON for every error the server sends (hyper's own answers to requests
//! it cannot parse have no body), request ids in every span, and a
//! graceful shutdown.
//!
//! [`layers`] wraps a router in the tower-http and tower layers; [`serve`]
//! runs the accept loop (hyper, as `axum::serve` does, but with the
//! header timeout and the checks of the first request head that
//! `axum::serve` does not offer).
//!
//! ```no_run
//! use annals_examples::service::{layers, serve, Limits};
//! use axum::{routing::get, Router};
//!
//! # async fn run() -> std::io::Result<()> {
//! let limits = Limits::default();
//! let router = layers(Router::new().route("/", get(|| async { "hello" })), &limits);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! serve(listener, router, async { let _ = tokio::signal::ctrl_c().await; }, &limits).await
//! # }
//! ```

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use annals::web::ApiError;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceExt;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The limits a service keeps.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The time a client has to send a request's head (line and headers);
    /// then its connection is answered 408 and closed.
    pub header_timeout: Duration,
    /// The time a request has, from its head to its answer (reading the
    /// body, waiting for a turn, the handler); then it is answered 408.
    pub request_timeout: Duration,
    /// The longest request head; a longer one is answered 431.
    pub max_head: usize,
    /// The largest request body; a larger one is answered 413.
    pub max_body: usize,
    /// Requests handled at once; more wait for a turn (within
    /// `request_timeout`).
    pub max_in_flight: usize,
    /// Connections open at once; more wait in the listener's backlog.
    pub max_connections: usize,
    /// The time a graceful shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    /// Heads in 10 s and 16 KiB, requests in 10 s, bodies of 16 KiB, 512
    /// requests in flight, 4,096 connections, 30 s to shut down.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_head: 16 * 1024,
            max_body: 16 * 1024,
            max_in_flight: 512,
            max_connections: 4096,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// `router` in the layers a service needs, outermost first: a request id
/// (the request's `x-request-id`, or a new UUID), a `request` span
/// carrying it (method, path, request id; the handlers' and annals' spans
/// nest in it), the id echoed on the answer, the request's time limit,
/// the bound on requests in flight and the body limit.
pub fn layers(router: Router, limits: &Limits) -> Router {
    let timeout = limits.request_timeout;
    let max_body = limits.max_body;
    // `Router::layer` wraps the router's routes: the last layer added is
    // the outermost.
    router
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            within(timeout, max_body, request, next)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = request.uri().path(),
                    request_id = id,
                )
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Runs `next` for at most `limit`; a 408 after it. A body declared
/// larger than `max_body` is refused (413) before any of it is read:
/// otherwise the client would wait for the timeout.
async fn within(limit: Duration, max_body: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut response = if declared.is_some_and(|n| n > max_body as u64) {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {max_body} bytes"),
        )
        .into_response()
    } else {
        match tokio::time::timeout(limit, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(?limit, "request timed out");
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "no answer within {} ms; a command may or may not have been applied \
                         (send it again with the same Idempotency-Key to find out)",
                        limit.as_millis()
                    ),
                )
                .into_response()
            }
        }
    };
    // The body may be unread (or half read): the connection cannot carry
    // another request, and a client must not send one on it (it would
    // race the close and lose the request).
    if matches!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Serves `router` on `listener` until `shutdown` completes; then it
/// accepts no connection, closes idle ones, answers every request in
/// flight (for up to [`Limits::shutdown_timeout`]) and returns.
///
/// Each connection's first request head is read here and checked with
/// `httparse` (the parser hyper uses) before hyper serves the connection,
/// so that a head that is too slow, too long or malformed gets a JSON
/// answer; hyper keeps the header timeout and the head limit for the
/// connection's later requests (its answers to those have no body).
///
/// # Errors
///
/// None yet: errors of single connections are logged, and an accept that
/// fails (file descriptors exhausted) is retried after a pause. The
/// `Result` leaves room for a listener that can fail for good.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: &Limits,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: go on after a pause, as axum does.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small answers: without TCP_NODELAY each can wait for a delayed ACK.
        let _ = tcp.set_nodelay(true);
        let service = router.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(io) = first_head(tcp, &limits).await else {
                return;
            };
            let service = TowerToHyperService::new(
                service
                    .map_request(|r: Request<hyper::body::Incoming>| r.map(axum::body::Body::new)),
            );
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_head.max(8192));
            let connection = http.serve_connection(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?limits.shutdown_timeout,
            "requests still in flight at the shutdown's time limit"
        );
    }
    Ok(())
}

/// Reads the connection's first request head (within the header timeout
/// and the head limit) and checks it; the connection with what was read
/// put back, or `None` once a JSON error was sent (or the peer left).
async fn first_head(mut tcp: TcpStream, limits: &Limits) -> Option<Prefixed> {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(limits.header_timeout, async {
        loop {
            if buf.len() > limits.max_head {
                return Err(HeadError::TooLarge);
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.map_err(|_| HeadError::Gone)?;
            if n == 0 {
                return Err(HeadError::Gone);
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(len)) if len > limits.max_head => {
                    return Err(HeadError::TooLarge)
                }
                Ok(httparse::Status::Complete(_)) => {
                    let target = request.path.unwrap_or("");
                    return match axum::http::Uri::try_from(target) {
                        Ok(_) => Ok(()),
                        Err(e) => Err(HeadError::Malformed(format!(
                            "the request target is not a URI: {e}"
                        ))),
                    };
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
                Err(e) => {
                    return Err(HeadError::Malformed(format!(
                        "the request head is malformed: {e}"
                    )))
                }
            }
        }
    })
    .await;
    let refusal = match read {
        Ok(Ok(())) => {
            return Some(Prefixed {
                head: buf,
                at: 0,
                tcp,
            })
        }
        Ok(Err(HeadError::Gone)) => return None,
        Ok(Err(HeadError::TooLarge)) => ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request head is larger than {} bytes", limits.max_head),
        ),
        Ok(Err(HeadError::Malformed(message))) => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request head did not arrive within {} ms",
                limits.header_timeout.as_millis()
            ),
        ),
    };
    tracing::debug!(status = %refusal.status, message = %refusal.message, "request head refused");
    let body = serde_json::json!({"error": refusal.kind, "message": refusal.message}).to_string();
    let answer = format!(
        "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        refusal.status,
        body.len()
    );
    // A peer that does not read its answer gets no more of our time.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
    None
}

enum HeadError {
    Gone,
    TooLarge,
    Malformed(String),
}

/// A connection whose first bytes were read already: they are read again
/// first.
struct Prefixed {
    head: Vec<u8>,
    at: usize,
    tcp: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.head.len() {
            let rest = &this.head[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            if this.at == this.head.len() {
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
