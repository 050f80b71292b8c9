//! The command line's grammar (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// What `--help` says of exit codes.
const EXIT_CODES: &str = "Exit codes:
  0  done
  1  an error (the message names it)
  2  bad usage (an unknown flag, no --app, --set without =, delete without --yes)
  3  verify: a broken hash chain, or a stream that no longer matches its recorded head
  4  verify: the store is not hash-chained (no event records a hash), nothing verified";

/// Look into, verify, move and follow an annals store.
///
/// The store is an application's, chosen and configured as the library
/// does it: PERSISTENCE_MODULE, SQLITE_DBNAME, POSTGRES_*, CIPHER_KEY and
/// the rest, from the environment (names prefixed with the application's
/// win), overridden by the flags below.
#[derive(Debug, Parser)]
#[command(name = "annals", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// The application: its tables are named after it, and settings
    /// prefixed with its name win.
    #[arg(long, short, env = "ANNALS_APP", global = true)]
    pub app: Option<String>,
    /// A setting, as the environment variable NAME would give it; wins
    /// over the environment. Repeat for more.
    #[arg(long = "set", short, value_name = "NAME=VALUE", global = true)]
    pub set: Vec<String>,
    /// The store: sqlite, postgres, mysql, object, umadb (DCB only), memory
    /// (PERSISTENCE_MODULE).
    #[arg(long, value_name = "MODULE", global = true)]
    pub store: Option<String>,
    /// A SQLite file (PERSISTENCE_MODULE=sqlite, SQLITE_DBNAME=FILE).
    #[arg(long, value_name = "FILE", global = true)]
    pub sqlite: Option<String>,
    /// A PostgreSQL database (PERSISTENCE_MODULE=postgres,
    /// POSTGRES_DBNAME=NAME; host, port and user from POSTGRES_*).
    #[arg(long, value_name = "NAME", global = true)]
    pub postgres: Option<String>,
    /// A MariaDB/MySQL database (PERSISTENCE_MODULE=mysql,
    /// MYSQL_DBNAME=NAME; host, port and user from MYSQL_*).
    #[arg(long, value_name = "NAME", global = true)]
    pub mysql: Option<String>,
    /// An object store: a directory, memory://, s3://bucket/prefix or
    /// az://container/prefix
    /// (PERSISTENCE_MODULE=object, OBJECT_STORE_LOCATION=LOCATION).
    #[arg(long, value_name = "LOCATION", global = true)]
    pub object: Option<String>,
    /// An UmaDB server, for `dcb` (PERSISTENCE_MODULE=umadb,
    /// UMADB_URI=URI: http://host:port).
    #[arg(long, value_name = "URI", global = true)]
    pub umadb: Option<String>,
    /// Print JSON for scripts: one object per line.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars (they are never drawn when stderr is not a
    /// terminal).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or upgrade the application's tables.
    Migrate,
    /// List the streams: id, last version, events, time of the last event.
    Streams,
    /// Fold the object store's old saves into packs (PERSISTENCE_MODULE=
    /// object only): each run of 1,000 saves with 1,000 newer after it
    /// becomes one object, so a log reader reads one object per 1,000
    /// saves. Events and snapshots; safe while the application runs, here
    /// or elsewhere. (Snapshots at the packing need the application's
    /// aggregate types: `ObjectConfig::compact_with` in code.)
    Compact,
    /// A stream's events, decoded to JSON (decompressed and decrypted with
    /// the application's settings).
    Events {
        /// The stream's id, as stored.
        id: String,
        /// The first version to show.
        #[arg(long)]
        from: Option<u64>,
        /// The last version to show.
        #[arg(long)]
        to: Option<u64>,
    },
    /// The notification log, from a position; with --follow, then its new
    /// events until interrupted.
    Log {
        /// The first notification id to show.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Show at most this many, then stop (with --follow too).
        #[arg(long)]
        limit: Option<usize>,
        /// Wait for new events (LISTEN/NOTIFY on PostgreSQL, the store's
        /// wake-up elsewhere) until interrupted: Ctrl-C, SIGTERM or SIGHUP
        /// stops it cleanly, with exit code 0.
        #[arg(long, short)]
        follow: bool,
        /// Only these topics (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
    },
    /// Check hash chains: one stream, or every stream in the log. A broken
    /// chain exits with 3 and names its first broken link; a store written
    /// without hash chaining exits with 4.
    ///
    /// A chain cannot show events cut from a stream's end (what is left is
    /// a whole chain). Keep each stream's head elsewhere (--heads-out) and
    /// check the store against it later (--heads): a stream shorter than
    /// its recorded head, gone, or whose hash there differs, is broken.
    Verify {
        /// The stream's id; every stream when left out.
        id: Option<String>,
        /// Check each stream listed in FILE (as --heads-out writes it)
        /// against its recorded head: still as long, with the same hash at
        /// that version.
        #[arg(long, value_name = "FILE")]
        heads: Option<PathBuf>,
        /// Write each stream's head (id, last version, last hash; one JSON
        /// object a line) to FILE, when the store is intact; FILE is
        /// replaced whole (a new file renamed over it), never half written.
        #[arg(long, value_name = "FILE")]
        heads_out: Option<PathBuf>,
    },
    /// Write the store's events, snapshots and tracking records as JSON
    /// lines.
    Export {
        /// The file to write; standard output when left out.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Write states decoded (decrypted, decompressed) as JSON, so that
        /// a store with other settings can import them; by default they
        /// are written as stored, to be copied byte for byte.
        #[arg(long)]
        plain: bool,
        /// Also export this upstream application's tracking position
        /// (repeat for more).
        #[arg(long, value_name = "UPSTREAM")]
        tracking: Vec<String>,
        /// Leave snapshots out (for a store without a snapshot table,
        /// with CREATE_TABLE=no).
        #[arg(long)]
        no_snapshots: bool,
        /// Start at this notification id (inclusive): the events from it
        /// on, the snapshots of their streams, and the tracking records.
        /// An import of it resumes as an import of a whole export does.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        from: u64,
    },
    /// Read an export into the store. Idempotent: a second import, or one
    /// after an interruption, stores only what is missing. Each store has
    /// an identity (written into its exports), and where an import got to
    /// is kept per exporting store, so exports of several stores (shards,
    /// backups) merge. A rerun skips the events imported before from that
    /// store unread, checking only the last of them; past it, an event
    /// already here is compared: the same one is skipped, another at its
    /// stream and version is an error naming them.
    ///
    /// Each batch is stored in one transaction with the position reached,
    /// at the database's bulk speed (PostgreSQL: COPY; SQLite: one
    /// transaction and one prepared statement): a batch that fails stores
    /// nothing, one stored is never stored again.
    Import {
        /// The file to read; standard input when left out.
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Events stored per transaction.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        batch: u64,
        /// Compare every event with the store's instead of resuming after
        /// the last one imported from the export's store (for an export of
        /// a copy of a store that has gone its own way).
        #[arg(long)]
        compare: bool,
        /// Read and check the whole export as an import would (its lines,
        /// their order, the events already here, where it would resume)
        /// and say what it would store; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Store each batch through the application's save path instead of
        /// the bulk one (to compare the two).
        #[arg(long, hide = true)]
        save_path: bool,
    },
    /// The followers this store keeps tracking records for: each upstream
    /// application's position here and, when its log can be read, how far
    /// behind its leader it is (the leader's last notification id minus
    /// the position). A leader is opened as an application of that name
    /// with these settings (its tables beside these, as on PostgreSQL and
    /// MariaDB/MySQL), and --leader-set changes them for one leader.
    Followers {
        /// A setting of one leader's store: UPSTREAM:NAME=VALUE, such as
        /// Orders:SQLITE_DBNAME=orders.db (repeat for more).
        #[arg(long = "leader-set", value_name = "UPSTREAM:NAME=VALUE")]
        leader_set: Vec<String>,
    },
    /// End a stream for good, keeping a copy in an archive.
    ///
    /// Its events are copied as
    /// stored (compressed, encrypted) to the archive, then removed from
    /// this store in one transaction that leaves a tombstone in their
    /// place (the log keeps its order; followers pass over it). A get of
    /// it then says where it went. Idempotent: a rerun after an
    /// interruption copies only what is missing.
    Archive {
        /// The stream's id, as stored (a UUID in either form).
        id: String,
        /// The archive: a SQLite FILE (or sqlite:FILE), postgres:DBNAME or
        /// mysql:DBNAME (server and user from POSTGRES_*, MYSQL_*); its
        /// tables are named after the application, created if missing.
        #[arg(long, value_name = "LOCATION")]
        to: String,
    },
    /// End a stream for good, keeping no copy (needs --yes).
    ///
    /// Its events are removed in
    /// one transaction that leaves a tombstone in their place (the log
    /// keeps its order; followers pass over it). For erasing data.
    Delete {
        /// The stream's id, as stored (a UUID in either form).
        id: String,
        /// Yes, remove its events for good (without it: exit 2, nothing
        /// done).
        #[arg(long)]
        yes: bool,
    },
    /// Make a cipher key (for CIPHER_KEY or PERSONAL_DATA_KEY).
    Keygen,
    /// Forget a subject's personal data (the right to erasure): erase its
    /// data key, so every `#[personal]` field sealed with it reads as
    /// forgotten, in the store and in every backup and export of it. The
    /// events stay, in order, with their hash chains.
    Forget {
        /// The subject: an aggregate's id, or the id its model marks
        /// `#[subject]` (a customer id), as it displays.
        subject: String,
    },
    /// The data keys of personal data.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Counts, sizes and the settings in effect (never a secret's value).
    Info,
    /// The application's DCB store (dynamic consistency boundaries:
    /// tagged events in one sequence), from the same settings.
    #[command(subcommand)]
    Dcb(DcbCommand),
}

/// What to do with the data keys of personal data.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Wrap every data key by the current master key (PERSONAL_DATA_KEY,
    /// or CIPHER_KEY), opening those wrapped by a former one (listed in
    /// PERSONAL_DATA_PREVIOUS_KEYS). No event is rewritten. Afterwards the
    /// former key can be dropped, and destroyed: backups then hold data
    /// keys nobody can unwrap.
    Rotate,
}

/// What to do with a DCB store.
#[derive(Debug, Subcommand)]
pub(crate) enum DcbCommand {
    /// The events that match (every one without --type or --tag), in
    /// position order: position, type, tags and data (UTF-8 as it is,
    /// other bytes base64); with --json, one object per line (data
    /// base64, and parsed as `json` when it is JSON).
    Read {
        #[command(flatten)]
        query: DcbQueryArgs,
        /// Only events after this position.
        #[arg(long)]
        after: Option<u64>,
        /// Show at most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// The store's last position ("empty" when it has no events).
    Head,
    /// The events that match, then each new one as it is appended, until
    /// interrupted (Ctrl-C, SIGTERM, SIGHUP: exit code 0) or --limit.
    Follow {
        #[command(flatten)]
        query: DcbQueryArgs,
        /// Only events after this position (from the first by default).
        #[arg(long)]
        after: Option<u64>,
        /// Show this many, then stop.
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// One query item: events of any of these types, with all these tags.
#[derive(Debug, Args)]
pub(crate) struct DcbQueryArgs {
    /// Only events of this type (repeat, or separate with commas: any of
    /// them).
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Only events with this tag (repeat, or separate with commas: all of
    /// them).
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
}
