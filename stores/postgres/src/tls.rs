//! TLS to the server: `POSTGRES_SSLMODE` (libpq's modes) and
//! `POSTGRES_SSLROOTCERT`, through native-tls (OpenSSL on Linux).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::config::{SslMode as WireMode, SslNegotiation};
use postgres_native_tls::MakeTlsConnector;

use super::handshake::Bounded;

use annals_core::error::{Error, Result};
use annals_core::settings;

/// Whether and how connections use TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Never (the default: a server on this machine or a private network).
    #[default]
    Disable,
    /// TLS if the server offers it, the certificate not checked.
    Prefer,
    /// TLS or no connection; the certificate not checked (unless a root
    /// certificate is given, as libpq does).
    Require,
    /// TLS, the certificate signed by the root certificate
    /// (`POSTGRES_SSLROOTCERT`, or the system's roots); any host name.
    VerifyCa,
    /// TLS, the certificate signed by the root certificate and naming the
    /// host connected to: what a managed server across a network needs.
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" | "verify_ca" => SslMode::VerifyCa,
            "verify-full" | "verify_full" => SslMode::VerifyFull,
            _ => {
                return Err(
                    "expected disable, prefer, require, verify-ca or verify-full".to_owned(),
                )
            }
        })
    }
}

/// The TLS mode the connection asks the server for.
pub(super) fn wire_mode(mode: SslMode) -> WireMode {
    match mode {
        SslMode::Disable => WireMode::Disable,
        SslMode::Prefer => WireMode::Prefer,
        _ => WireMode::Require,
    }
}

/// How connections are made: their settings and, unless TLS is off, the
/// connector that checks the server as the mode says.
#[derive(Clone)]
pub(super) struct Transport {
    config: postgres::Config,
    mode: SslMode,
    tls: Option<native_tls::TlsConnector>,
    timeout: Duration,
    /// A Unix-domain socket (a host that is a path): this machine's
    /// server, connected by the `postgres` crate alone (no TLS there, and
    /// no bound beyond its connect timeout).
    unix: bool,
}

impl Transport {
    pub(super) fn new(config: &super::PostgresConfig) -> Result<Self> {
        let unix = config.host.starts_with('/');
        let mut wire = config.connection_config();
        if !unix {
            // The TLS hook then gets the socket before any byte is sent,
            // and does the negotiation itself (`handshake.rs`).
            wire.ssl_mode(WireMode::Require)
                .ssl_negotiation(SslNegotiation::Direct);
        }
        Ok(Self {
            config: wire,
            mode: config.ssl_mode,
            tls: connector(config.ssl_mode, config.ssl_root_cert.as_ref())?,
            timeout: config.connect_timeout,
            unix,
        })
    }

    /// A connection of its own (not from the pool): connected, TLS and
    /// startup included, within the connect timeout.
    pub(super) fn connect(&self) -> std::result::Result<postgres::Client, postgres::Error> {
        if self.unix {
            return match &self.tls {
                None => self.config.connect(postgres::NoTls),
                Some(tls) => self.config.connect(MakeTlsConnector::new(tls.clone())),
            };
        }
        let armed = Arc::new(AtomicBool::new(true));
        let client = self.config.connect(Bounded {
            mode: self.mode,
            tls: self.tls.clone(),
            deadline: Instant::now() + self.timeout,
            timeout: self.timeout,
            armed: armed.clone(),
        });
        armed.store(false, Ordering::Relaxed);
        client
    }
}

/// The connector that checks the server as `mode` says; none when TLS is
/// off.
fn connector(
    mode: SslMode,
    root_cert: Option<&PathBuf>,
) -> Result<Option<native_tls::TlsConnector>> {
    if mode == SslMode::Disable {
        return Ok(None);
    }
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = root_cert {
        let pem = std::fs::read(path).map_err(|e| {
            Error::config(
                settings::POSTGRES_SSLROOTCERT.name,
                format!("cannot read the root certificate {}: {e}", path.display()),
            )
        })?;
        let certificate = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            Error::config(
                settings::POSTGRES_SSLROOTCERT.name,
                format!("{} is not a PEM certificate: {e}", path.display()),
            )
        })?;
        // As libpq's sslrootcert: this root instead of the system's.
        builder
            .disable_built_in_roots(true)
            .add_root_certificate(certificate);
    }
    let verify_chain = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull)
        || (mode == SslMode::Require && root_cert.is_some());
    builder
        .danger_accept_invalid_certs(!verify_chain)
        .danger_accept_invalid_hostnames(mode != SslMode::VerifyFull);
    let tls = builder.build().map_err(|e| {
        Error::config(
            settings::POSTGRES_SSLMODE.name,
            format!("cannot set up TLS ({mode}): {e}"),
        )
    })?;
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_libpq_spells_them() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(mode.to_string().parse::<SslMode>(), Ok(mode));
        }
        assert!("allow-anything".parse::<SslMode>().is_err());
    }

    #[test]
    fn an_unreadable_root_certificate_names_its_setting() {
        let missing = PathBuf::from("/nonexistent/root.pem");
        let err = connector(SslMode::VerifyFull, Some(&missing))
            .expect_err("no such file")
            .to_string();
        assert!(
            err.contains("POSTGRES_SSLROOTCERT") && err.contains("/nonexistent/root.pem"),
            "{err}"
        );
    }
}
