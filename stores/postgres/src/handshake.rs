//! A connection's handshake within the connect timeout.
//!
//! The `postgres` crate's `connect_timeout` bounds the TCP connect alone: a
//! server that accepts the connection and then says nothing (a hung
//! server, a proxy with nothing behind it, another service on the port)
//! holds the TLS negotiation or the startup forever. So every TCP
//! connection is handed to [`Bounded`], through the crate's TLS hook
//! (asked for "direct" negotiation, the hook gets the socket before a byte
//! is sent): it does the SSLRequest and TLS itself, as `POSTGRES_SSLMODE`
//! says, over a [`Deadline`] stream that fails a read or write still
//! waiting when the connect timeout ends. The caller disarms it once the
//! client is connected; after that the stream only passes bytes through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::Socket;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::tls::SslMode;

/// The SSLRequest message: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One connection attempt's transport: TLS as `mode` says, every byte of
/// the handshake before `deadline`.
pub(super) struct Bounded {
    pub(super) mode: SslMode,
    pub(super) tls: Option<native_tls::TlsConnector>,
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
    /// Cleared by the caller when the client is connected.
    pub(super) armed: Arc<AtomicBool>,
}

impl MakeTlsConnect<Socket> for Bounded {
    type Stream = Wire;
    type TlsConnect = BoundedConnect;
    type Error = BoxError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<BoundedConnect, BoxError> {
        Ok(BoundedConnect {
            mode: self.mode,
            tls: self.tls.clone(),
            domain: domain.to_owned(),
            deadline: self.deadline,
            timeout: self.timeout,
            armed: self.armed.clone(),
        })
    }
}

/// [`Bounded`] for one host.
pub(super) struct BoundedConnect {
    mode: SslMode,
    tls: Option<native_tls::TlsConnector>,
    domain: String,
    deadline: Instant,
    timeout: Duration,
    armed: Arc<AtomicBool>,
}

impl TlsConnect<Socket> for BoundedConnect {
    type Stream = Wire;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Wire, BoxError>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let mut stream = Deadline {
                inner: socket,
                timer: Some(Box::pin(tokio::time::sleep_until(
                    tokio::time::Instant::from_std(self.deadline),
                ))),
                armed: self.armed,
                timeout: self.timeout,
            };
            let Some(tls) = self.tls.filter(|_| self.mode != SslMode::Disable) else {
                return Ok(Wire::Plain(stream));
            };
            // libpq's negotiation: ask, and the server answers S or N.
            stream.write_all(&SSL_REQUEST).await?;
            let mut answer = [0];
            stream.read_exact(&mut answer).await?;
            if answer[0] != b'S' {
                if self.mode == SslMode::Prefer {
                    return Ok(Wire::Plain(stream));
                }
                return Err("the server does not support TLS (POSTGRES_SSLMODE)".into());
            }
            let connector = postgres_native_tls::TlsConnector::new(tls, &self.domain);
            let stream = TlsConnect::connect(connector, stream).await?;
            Ok(Wire::Tls(Box::new(stream)))
        })
    }
}

/// A stream whose reads and writes fail once `timer` has fired, while
/// `armed`.
pub(super) struct Deadline<S> {
    inner: S,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: Arc<AtomicBool>,
    timeout: Duration,
}

impl<S> Deadline<S> {
    /// Called when the inner stream is not ready: an error once the
    /// deadline has passed (the timer wakes the task then).
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(timer) = self.timer.as_mut() else {
            return Ok(());
        };
        if !self.armed.load(Ordering::Relaxed) {
            self.timer = None;
            return Ok(());
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the server did not finish the connection's handshake within {:?} \
                     (POSTGRES_CONNECT_TIMEOUT)",
                    self.timeout
                ),
            ));
        }
        Ok(())
    }

    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.check(cx) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A connection's stream: plain or TLS, over the socket with its deadline.
pub(super) enum Wire {
    Plain(Deadline<Socket>),
    Tls(Box<postgres_native_tls::TlsStream<Deadline<Socket>>>),
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Wire::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Wire::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(s) => Pin::new(s).poll_flush(cx),
            Wire::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Wire::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl TlsStream for Wire {
    fn channel_binding(&self) -> ChannelBinding {
        match self {
            Wire::Plain(_) => ChannelBinding::none(),
            Wire::Tls(s) => s.channel_binding(),
        }
    }
}
