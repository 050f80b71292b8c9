//! The UmaDB store of annals: a [`DcbRecorder`] on an
//! [UmaDB](https://umadb.io) server, a DCB event store by the Python
//! eventsourcing library's author, through its gRPC client
//! (`umadb-client`).
//!
//! UmaDB implements the DCB model itself: positions are its own (gapless),
//! a conditional append is checked by the server, subscriptions are
//! pushed. The recorder maps annals' types onto the client's, a failed
//! condition onto [`Error::Conflict`], and blocks on the client's futures
//! in one runtime shared by every recorder of the process.
//!
//! The server ships with Python's `umadb` package (`pip install umadb`,
//! then `umadb --listen 127.0.0.1:50051 --db-path ./uma.db`).
//!
//! ```no_run
//! use annals_core::persistence::dcb::{DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder};
//! use annals_umadb::{UmaDbConfig, UmaDbRecorder};
//!
//! let store = UmaDbRecorder::open(&UmaDbConfig::new("http://127.0.0.1:50051"))?;
//! let course = DcbQuery::item(DcbQueryItem::new().tags(["course-1"]));
//! let read = store.read(&course, None, None)?;
//! let condition = DcbAppendCondition::new(course).after(read.head);
//! let registered = DcbEvent::new("CourseRegistered", b"{}".to_vec()).tags(["course-1"]);
//! store.append(&[registered], Some(&condition))?;
//! # Ok::<(), annals_core::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use umadb_client::{AsyncUmaDbClient, UmaDbClient};
use umadb_dcb::{DcbError, DcbEventStoreAsync};

use annals_core::bridge::{block_on, SharedRuntime};
use annals_core::env::Env;
use annals_core::error::{Error, Result};
use annals_core::persistence::dcb::{
    condition_failed, no_events, DcbAppendCondition, DcbEvent, DcbQuery, DcbReadResponse,
    DcbRecorder, DcbSequencedEvent,
};
use annals_core::persistence::wake::{Signal, Watch};
use annals_core::settings;

/// Where the UmaDB server is, and how to reach it.
///
/// ```
/// use annals_core::env::Env;
/// use annals_umadb::UmaDbConfig;
///
/// let env = Env::from_map("Courses", [("UMADB_URI", "127.0.0.1:50051")]);
/// let config = UmaDbConfig::from_env(&env)?;
/// assert_eq!(config.uri, "http://127.0.0.1:50051");
/// assert_eq!(config.api_key, None);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct UmaDbConfig {
    /// The server's URI: `http://host:port`, or `https://host:port` for
    /// TLS (a bare `host:port` is taken as `http://`).
    pub uri: String,
    /// The API key the server asks for, if it asks for one.
    pub api_key: Option<String>,
    /// A PEM file of the CA that signs the server's certificate (TLS).
    pub ca_path: Option<String>,
}

impl std::fmt::Debug for UmaDbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmaDbConfig")
            .field("uri", &self.uri)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("ca_path", &self.ca_path)
            .finish()
    }
}

impl UmaDbConfig {
    /// The server at `uri` (see [`uri`](Self::uri)), without an API key.
    ///
    /// ```
    /// assert_eq!(annals_umadb::UmaDbConfig::new("10.0.0.7:50051").uri, "http://10.0.0.7:50051");
    /// ```
    pub fn new(uri: &str) -> Self {
        let uri = uri.trim();
        let uri = if uri.contains("://") {
            uri.to_owned()
        } else {
            format!("http://{uri}")
        };
        Self {
            uri,
            api_key: None,
            ca_path: None,
        }
    }

    /// `UMADB_URI`, `UMADB_API_KEY` and `UMADB_CA_PATH`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `UMADB_URI` when it is missing or empty.
    ///
    /// ```
    /// use annals_core::env::Env;
    /// use annals_umadb::UmaDbConfig;
    ///
    /// let err = UmaDbConfig::from_env(&Env::from_map("Courses", [("X", "y")])).unwrap_err();
    /// assert!(err.to_string().contains("UMADB_URI"));
    /// ```
    pub fn from_env(env: &Env) -> Result<Self> {
        let var = settings::UMADB_URI.name;
        let Some((found, uri)) = env.get(var) else {
            return Err(Error::config(
                var,
                "the UmaDB store needs the server's address: http://host:port",
            ));
        };
        if uri.trim().is_empty() {
            return Err(Error::config(found, "the address is empty"));
        }
        let mut config = Self::new(&uri);
        config.api_key = env
            .get(settings::UMADB_API_KEY.name)
            .map(|(_, key)| key.to_owned())
            .filter(|key| !key.is_empty());
        config.ca_path = env
            .get(settings::UMADB_CA_PATH.name)
            .map(|(_, path)| path.to_owned())
            .filter(|path| !path.is_empty());
        Ok(config)
    }
}

/// The runtime that runs every UmaDB call of this process: a client's
/// connection is driven by the runtime it was made in, so one for all
/// (as the object store's).
static RUNTIME: SharedRuntime =
    SharedRuntime::new("annals-umadb", "starting the UmaDB client's runtime");

fn runtime() -> Result<tokio::runtime::Handle> {
    RUNTIME.handle()
}

/// A DCB event store on an UmaDB server.
///
/// Reads ask the server for the events that match a query after a
/// position (the server's `start` is inclusive: annals asks from
/// `after + 1`); `head` follows Python's rule, from the server's head
/// without a limit. Appends pass the condition to the server, which
/// checks it and appends atomically; its integrity error is a
/// [`Conflict`](Error::Conflict). [`watch`](DcbRecorder::watch) holds a
/// server subscription open, so a [`DcbSubscription`] wakes as soon as
/// the server pushes an append.
///
/// [`DcbSubscription`]: annals_core::persistence::dcb::DcbSubscription
///
/// ```no_run
/// use annals_core::persistence::dcb::{DcbEvent, DcbQuery, DcbRecorder};
/// use annals_umadb::{UmaDbConfig, UmaDbRecorder};
///
/// let store = UmaDbRecorder::open(&UmaDbConfig::new("127.0.0.1:50051"))?;
/// let last = store.append(&[DcbEvent::new("A", vec![]), DcbEvent::new("B", vec![])], None)?;
/// assert_eq!(store.read(&DcbQuery::all(), None, None)?.head, Some(last));
/// # Ok::<(), annals_core::Error>(())
/// ```
pub struct UmaDbRecorder {
    client: AsyncUmaDbClient,
    config: UmaDbConfig,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for UmaDbRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmaDbRecorder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An UmaDB client error as annals': a failed condition is a conflict.
fn to_error(context: &str, error: DcbError, condition: Option<&DcbAppendCondition>) -> Error {
    match (error, condition) {
        (DcbError::IntegrityError(_), Some(condition)) => condition_failed(condition),
        (error, _) => Error::persistence(context.to_owned(), error),
    }
}

fn to_query(query: &DcbQuery) -> umadb_dcb::DcbQuery {
    umadb_dcb::DcbQuery::with_items(query.items.iter().map(|item| umadb_dcb::DcbQueryItem {
        types: item.types.clone(),
        tags: item.tags.clone(),
    }))
}

/// UmaDB's positions start at 1, as annals'.
fn from_event(event: umadb_dcb::DcbSequencedEvent) -> DcbSequencedEvent {
    DcbSequencedEvent {
        position: event.position,
        event: DcbEvent {
            type_: event.event.event_type,
            data: event.event.data,
            tags: event.event.tags,
        },
    }
}

/// How long the watcher's subscription waits for a push before it looks
/// whether it is still wanted.
const WATCH_WAIT: Duration = Duration::from_millis(500);

impl UmaDbRecorder {
    /// Connects to the server `config` names.
    ///
    /// # Errors
    ///
    /// [`Error::Persistence`] when the server cannot be reached.
    pub fn open(config: &UmaDbConfig) -> Result<Self> {
        let runtime = runtime()?;
        let mut client = UmaDbClient::new(config.uri.clone());
        if let Some(key) = &config.api_key {
            client = client.api_key(key.clone());
        }
        if let Some(path) = &config.ca_path {
            client = client.ca_path(path.clone());
        }
        let client = block_on(&runtime, client.connect_async())
            .map_err(|e| Error::persistence(format!("connecting to UmaDB at {}", config.uri), e))?;
        Ok(Self {
            client,
            config: config.clone(),
            runtime,
        })
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &UmaDbConfig {
        &self.config
    }
}

impl DcbRecorder for UmaDbRecorder {
    fn read(
        &self,
        query: &DcbQuery,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<DcbReadResponse> {
        if limit == Some(0) {
            return Ok(DcbReadResponse::default());
        }
        let start = after.map(|a| a.saturating_add(1));
        // UmaDB takes at most u32::MAX at once; larger is as good as none.
        let server_limit = limit.and_then(|l| u32::try_from(l).ok());
        let query = (!query.items.is_empty()).then(|| to_query(query));
        let (events, head) = block_on(&self.runtime, async {
            let mut response = self.client.read(query, start, false, server_limit).await?;
            response.collect_with_head().await
        })
        .map_err(|e| to_error("reading UmaDB", e, None))?;
        let events = events.into_iter().map(from_event).collect();
        Ok(DcbReadResponse::with_head(events, limit, head))
    }

    fn append(&self, events: &[DcbEvent], condition: Option<&DcbAppendCondition>) -> Result<u64> {
        if events.is_empty() {
            return Err(no_events());
        }
        let events = events
            .iter()
            .map(|e| {
                umadb_dcb::DcbEvent::new()
                    .event_type(e.type_.clone())
                    .data(e.data.clone())
                    .tags(e.tags.clone())
            })
            .collect();
        let theirs = condition.map(|c| {
            umadb_dcb::DcbAppendCondition::new(to_query(&c.fail_if_events_match)).after(c.after)
        });
        block_on(&self.runtime, self.client.append(events, theirs, None))
            .map_err(|e| to_error("appending to UmaDB", e, condition))
    }

    /// A thread that holds a subscription to the server open (from the
    /// head at the call) and raises `signal` at each batch it pushes.
    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        let runtime = self.runtime.clone();
        let head = block_on(&runtime, self.client.head())
            .map_err(|e| to_error("reading UmaDB's head", e, None))?;
        let mut subscription = block_on(&runtime, self.client.subscribe(None, head))
            .map_err(|e| to_error("subscribing to UmaDB", e, None))?;
        let uri = self.config.uri.clone();
        Watch::spawn(&format!("umadb {uri}"), signal, move |timeout| {
            let wait = timeout.min(WATCH_WAIT);
            match runtime.block_on(subscription.next_batch_timeout(wait)) {
                Ok(batch) => Ok(!batch.is_empty()),
                Err(DcbError::Timeout()) => Ok(false),
                Err(e) => Err(to_error("watching UmaDB", e, None)),
            }
        })
    }
}
