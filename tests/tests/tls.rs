//! TLS to PostgreSQL (`POSTGRES_SSLMODE`, `POSTGRES_SSLROOTCERT`) against
//! the local server, whose certificate is the machine's self-signed
//! "snakeoil" one (made by Debian's setup of the cluster, for `localhost`);
//! a second, untrusted root is made here with `openssl req`.

use std::path::PathBuf;

use annals::env::Env;
use annals::persistence::postgres::{PostgresConfig, PostgresRecorder, SslMode};
use annals::persistence::{AggregateRecorder, EventQuery};
use annals::testing::contract::event;
use annals::Error;
use annals_tests::stores::{drop_postgres_tables, postgres_client, postgres_server};

/// The local server's certificate, its own root.
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// The test server, or a skip; the server must have TLS on.
fn server(test: &str) -> Option<PostgresConfig> {
    let Some(config) = postgres_server() else {
        annals_tests::skipped(test);
        return None;
    };
    let ssl: String = postgres_client(&config)
        .query_one("SHOW ssl", &[])
        .expect("show ssl")
        .get(0);
    assert_eq!(
        ssl, "on",
        "the test server must have ssl = on (see postgresql.conf)"
    );
    Some(config)
}

/// Opens `app`'s store with `config`, writes a row and reads it back;
/// returns whether the server saw a TLS connection of annals' meanwhile.
fn round_trip(config: &PostgresConfig, app: &str) -> annals::Result<bool> {
    drop_postgres_tables(config, app);
    let recorder = PostgresRecorder::open(config, app)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    recorder.insert_events(&[event(&id, 1, "T")])?;
    assert_eq!(recorder.select_events(&id, &EventQuery::all())?.len(), 1);
    let encrypted: i64 = postgres_client(config)
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND application_name = 'annals'",
            &[],
        )
        .expect("pg_stat_ssl")
        .get(0);
    Ok(encrypted > 0)
}

#[test]
fn require_encrypts_and_disable_does_not() {
    let Some(mut config) = server("require_encrypts_and_disable_does_not") else {
        return;
    };
    config.ssl_mode = SslMode::Require;
    assert!(
        round_trip(&config, "tls_require").expect("require"),
        "TLS in use"
    );
    config.ssl_mode = SslMode::Disable;
    let recorder = PostgresRecorder::open(&config, "tls_disable").expect("disable");
    drop(recorder);
}

#[test]
fn verify_ca_and_verify_full_check_the_servers_certificate() {
    let Some(mut config) = server("verify_ca_and_verify_full_check_the_servers_certificate") else {
        return;
    };
    config.ssl_root_cert = Some(PathBuf::from(SNAKEOIL));
    config.ssl_mode = SslMode::VerifyCa;
    assert!(round_trip(&config, "tls_verify_ca").expect("verify-ca"));

    // The certificate names localhost, not 127.0.0.1.
    config.ssl_mode = SslMode::VerifyFull;
    config.host = "localhost".into();
    // The refusals below need not wait long to be sure.
    config.connect_timeout = std::time::Duration::from_secs(1);
    assert!(round_trip(&config, "tls_verify_full").expect("verify-full, localhost"));
    config.host = "127.0.0.1".into();
    let err = PostgresRecorder::open(&config, "tls_verify_full_ip").expect_err("wrong host name");
    assert!(matches!(err, Error::Persistence { .. }), "{err}");

    // Under another root, the server's certificate is not trusted.
    let dir = annals_tests::stores::temp_dir();
    let (key, other) = (dir.join("other.key"), dir.join("other.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    config.ssl_mode = SslMode::VerifyCa;
    config.ssl_root_cert = Some(other);
    let err = PostgresRecorder::open(&config, "tls_untrusted").expect_err("another root");
    assert!(err.report().to_string().contains("TLS"), "{}", err.report());
}

#[test]
fn tls_settings_are_read_from_the_environment_and_bad_ones_named() {
    let env = Env::from_map(
        "App",
        [
            ("POSTGRES_DBNAME", "test"),
            ("POSTGRES_SSLMODE", "verify-full"),
            ("POSTGRES_SSLROOTCERT", SNAKEOIL),
        ],
    );
    let config = PostgresConfig::from_env(&env).expect("config");
    assert_eq!(config.ssl_mode, SslMode::VerifyFull);
    assert_eq!(config.ssl_root_cert, Some(PathBuf::from(SNAKEOIL)));
    let env = Env::from_map(
        "App",
        [("POSTGRES_DBNAME", "test"), ("POSTGRES_SSLMODE", "maybe")],
    );
    let err = PostgresConfig::from_env(&env)
        .expect_err("bad mode")
        .to_string();
    assert!(
        err.contains("POSTGRES_SSLMODE") && err.contains("verify-full"),
        "{err}"
    );
    let mut config = PostgresConfig::new("test");
    config.ssl_mode = SslMode::Require;
    config.ssl_root_cert = Some(PathBuf::from("/nonexistent/root.pem"));
    let err = PostgresRecorder::open(&config, "tls_no_root")
        .expect_err("no such file")
        .to_string();
    assert!(err.contains("POSTGRES_SSLROOTCERT"), "{err}");
}
