//! Every setting annals reads from the environment: its name, what it
//! means and its default, in one table ([`ALL`]). Every reader takes the
//! name from here; the README's table lists the same names (a test checks).
//!
//! The names are the Python eventsourcing library's. Each may be given with
//! the application's upper-cased name as a prefix, which wins (see
//! [`Env`](crate::env::Env)).
//!
//! ```
//! use annals_core::settings;
//!
//! assert_eq!(settings::SQLITE_DBNAME.name, "SQLITE_DBNAME");
//! assert!(settings::ALL.iter().any(|s| s.name == "CIPHER_KEY"));
//! ```

/// One environment variable annals reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The variable's name (without the application prefix).
    pub name: &'static str,
    /// What it sets.
    pub meaning: &'static str,
    /// Its value when unset, if it has one.
    pub default: Option<&'static str>,
}

macro_rules! settings {
    ($($(#[$doc:meta])* $name:ident: $meaning:literal, $default:expr;)+) => {
        $(
            $(#[$doc])*
            pub const $name: Setting = Setting {
                name: stringify!($name),
                meaning: $meaning,
                default: $default,
            };
        )+
        /// Every setting, in the order of the README's table.
        pub const ALL: &[Setting] = &[$($name),+];
    };
}

settings! {
    /// Which store: `memory`, `sqlite`, `postgres`, the Python library's
    /// module names (`eventsourcing.popo`, `eventsourcing.sqlite`,
    /// `eventsourcing.postgres`), or a registered module.
    PERSISTENCE_MODULE: "the store: memory, sqlite, postgres, mysql (or eventsourcing.popo, eventsourcing.sqlite, eventsourcing.postgres), or a module named in the builder's persistence::Modules", Some("memory");
    /// The SQLite database.
    SQLITE_DBNAME: "a SQLite file path, :memory:, or a file: URI", None;
    /// Seconds a SQLite write waits for another writer's lock.
    SQLITE_LOCK_TIMEOUT: "seconds a write waits for another writer", Some("5");
    /// Table name prefix for applications sharing one SQLite file.
    SQLITE_TABLE_PREFIX: "{prefix}_events etc. instead of stored_events, to share a file", None;
    /// The PostgreSQL database name.
    POSTGRES_DBNAME: "the PostgreSQL database", None;
    /// The PostgreSQL server's host, address or socket directory.
    POSTGRES_HOST: "the server's host", Some("127.0.0.1");
    /// The PostgreSQL server's port.
    POSTGRES_PORT: "the server's port", Some("5432");
    /// The PostgreSQL user.
    POSTGRES_USER: "the user", Some("postgres");
    /// The PostgreSQL user's password (never shown).
    POSTGRES_PASSWORD: "the user's password", None;
    /// Seconds to wait for a PostgreSQL connection. On a Unix socket
    /// (a host that is a path) it bounds only the socket's connect, not
    /// the startup after it.
    POSTGRES_CONNECT_TIMEOUT: "seconds to wait for a connection (its TCP connect, TLS and startup; on a Unix socket only its connect) and for a free one of the pool", Some("5");
    /// Seconds a PostgreSQL statement waits for a lock (0: no limit).
    POSTGRES_LOCK_TIMEOUT: "seconds a statement waits for a lock", Some("0");
    /// Seconds a PostgreSQL statement may run (0: no limit).
    POSTGRES_STATEMENT_TIMEOUT: "seconds a statement may run", Some("0");
    /// How many PostgreSQL connections the pool keeps at most.
    POSTGRES_POOL_SIZE: "connections in the pool", Some("5");
    /// The PostgreSQL schema of the tables.
    POSTGRES_SCHEMA: "the tables' schema, created if missing", None;
    /// `uuid` or `text` originator ids in PostgreSQL (the Python library's
    /// name).
    ORIGINATOR_ID_TYPE: "uuid or text originator_id columns (PostgreSQL; SQLite stores text either way)", Some("uuid");
    /// The older name of [`ORIGINATOR_ID_TYPE`], still read; when both are
    /// set they must agree.
    POSTGRES_ORIGINATOR_ID_TYPE: "the older name of ORIGINATOR_ID_TYPE, still read (both set: they must agree)", None;
    /// Whether and how PostgreSQL connections use TLS.
    POSTGRES_SSLMODE: "TLS to the server: disable, prefer, require, verify-ca, verify-full", Some("disable");
    /// The root certificate that signs the PostgreSQL server's.
    POSTGRES_SSLROOTCERT: "a PEM file: the root certificate of the server's (verify-ca, verify-full)", None;
    /// The MariaDB/MySQL database (`PERSISTENCE_MODULE=mysql`).
    MYSQL_DBNAME: "the MariaDB/MySQL database", None;
    /// The MariaDB/MySQL server's host.
    MYSQL_HOST: "the MariaDB/MySQL server's host", Some("127.0.0.1");
    /// The MariaDB/MySQL server's port.
    MYSQL_PORT: "the MariaDB/MySQL server's port", Some("3306");
    /// The MariaDB/MySQL user.
    MYSQL_USER: "the MariaDB/MySQL user", Some("root");
    /// The MariaDB/MySQL user's password.
    MYSQL_PASSWORD: "the MariaDB/MySQL user's password", None;
    /// Seconds to wait for a MariaDB/MySQL connection.
    MYSQL_CONNECT_TIMEOUT: "seconds to wait for a MariaDB/MySQL connection (TCP connect and handshake) and for a free one of the pool", Some("5");
    /// Seconds a MariaDB/MySQL statement waits for a row lock.
    MYSQL_LOCK_TIMEOUT: "seconds a MariaDB/MySQL statement waits for a row lock (innodb_lock_wait_timeout; 0: the server's)", Some("0");
    /// Connections in the MariaDB/MySQL pool.
    MYSQL_POOL_SIZE: "connections in the MariaDB/MySQL pool", Some("5");
    /// TLS to the MariaDB/MySQL server.
    MYSQL_SSLMODE: "TLS to the MariaDB/MySQL server: disable, prefer, require, verify-ca, verify-full", Some("disable");
    /// The root certificate of the MariaDB/MySQL server's.
    MYSQL_SSLROOTCERT: "a PEM file: the root certificate of the MariaDB/MySQL server's (verify-ca, verify-full)", None;
    /// Where the object store keeps its objects.
    OBJECT_STORE_LOCATION: "the object store's directory, memory://, s3://bucket/prefix (with AWS_* settings) or az://container/prefix (with AZURE_* settings)", None;
    /// The UmaDB server (`PERSISTENCE_MODULE=umadb`, a DCB store).
    UMADB_URI: "the UmaDB server: http://host:port (https:// for TLS; a bare host:port is http://)", None;
    /// The API key the UmaDB server asks for.
    UMADB_API_KEY: "the UmaDB server's API key, if it asks for one", None;
    /// The CA certificate that signs the UmaDB server's (TLS).
    UMADB_CA_PATH: "a PEM file: the CA certificate of the UmaDB server's (https://)", None;
    /// Whether to create missing tables on start (and with SQLite, a
    /// missing database file: with `no` a missing file is an error).
    CREATE_TABLE: "create missing tables on start (no: a missing SQLite file is an error, not created)", Some("yes");
    /// The layout of a tracking table annals creates: one row per upstream
    /// application (yes, the Python library's default) or one per
    /// notification (no). An existing table keeps its own layout.
    SINGLE_ROW_TRACKING: "a tracking table annals creates keeps one row per upstream application (yes) or one per notification (no); an existing table's layout is used", Some("yes");
    /// Whether the SQL stores read and write `eventsourcing_django`'s
    /// tables (`stored_events`, `snapshots`, `notification_tracking`, made
    /// by Django's migrations, shared by a Django project's applications)
    /// rather than the application's own.
    DJANGO_TABLES: "read and write eventsourcing_django's tables (stored_events, snapshots, notification_tracking), which Django's migrations own, rather than the application's own (PostgreSQL, SQLite, MySQL)", Some("no");
    /// `zlib` compresses stored state.
    COMPRESSOR_TOPIC: "zlib: compress stored state", None;
    /// Base64 AES key: encrypts stored state.
    CIPHER_KEY: "base64 AES key (16, 24 or 32 bytes): encrypt stored state", None;
    /// The master key that wraps each subject's data key.
    PERSONAL_DATA_KEY: "base64 AES key: the master key that wraps each subject's data key for #[personal] fields (CIPHER_KEY when unset)", None;
    /// Former master keys, accepted while the data keys are re-wrapped.
    PERSONAL_DATA_PREVIOUS_KEYS: "comma-separated former PERSONAL_DATA_KEYs (or CIPHER_KEYs), accepted for reading while `annals keys rotate` re-wraps the data keys", None;
    /// Whether ciphertexts are bound to their events.
    CIPHER_ASSOCIATED_DATA: "bind each ciphertext to its event (yes); no for the Python library's layout and stores annals wrote unbound", Some("yes");
    /// The cipher; when set it must name AES.
    CIPHER_TOPIC: "the cipher: aes, eventsourcing.cipher:AESCipher or eventsourcing.cryptography:AESCipher (one AES-GCM layout)", Some("aes");
    /// Whether snapshots are kept.
    IS_SNAPSHOTTING_ENABLED: "keep snapshots", Some("no");
    /// Size of the aggregate cache.
    AGGREGATE_CACHE_MAXSIZE: "keep up to N aggregates in an LRU cache", Some("0");
    /// The format events and snapshots are written in.
    CODEC: "annals, or python: write the Python eventsourcing library's format (both are read)", Some("annals");
    /// Whether each stream's events are chained by hash.
    IS_HASH_CHAINING_ENABLED: "chain each stream's events by hash", Some("no");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's settings table names exactly the settings of [`ALL`].
    #[test]
    fn readme_table_lists_every_setting() {
        let readme = include_str!("../../README.md");
        let mut in_readme: Vec<&str> = readme
            .lines()
            .filter(|l| l.starts_with("| `"))
            .flat_map(|l| l.split('|').nth(1).unwrap_or_default().split('`'))
            .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
            .collect();
        in_readme.sort_unstable();
        let mut here: Vec<&str> = ALL.iter().map(|s| s.name).collect();
        here.sort_unstable();
        assert_eq!(in_readme, here);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
