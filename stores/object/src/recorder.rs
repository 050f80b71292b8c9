//! The object store's recorder: a log of save objects, and the index of
//! it that this process has read.
//!
//! A save's tracking record and idempotency key are in its object, so the
//! create-if-absent write that decides the save decides them too: a
//! writer that loses the race for a name reads the winner's save and
//! checks its own key and tracking record against it before it tries the
//! next name.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use annals_core::error::{Error, Result};
use annals_core::persistence::memory::LogIndex;
use annals_core::persistence::wake::{Signal, Watch};
use annals_core::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, KeyedOutcome, Notification,
    NotificationQuery, ProcessRecorder, StoredEvent, Tracking,
};

/// The recorder of the object store (see [the module](super)): events,
/// the log and tracking records in one object per save.
pub struct ObjectRecorder {
    store: Arc<dyn ObjectStore>,
    /// Where the save objects are: `{root}/{n:020}`.
    root: Path,
    /// The process's object store runtime (see [`super::runtime`]).
    runtime: tokio::runtime::Handle,
    index: Mutex<Index>,
}

impl std::fmt::Debug for ObjectRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRecorder")
            .field("store", &self.store.to_string())
            .field("root", &self.root.as_ref())
            .finish_non_exhaustive()
    }
}

/// The saves read so far.
#[derive(Default)]
struct Index {
    state: LogIndex,
    /// How many save objects are read (the next is `saves + 1`).
    saves: u64,
}

impl Index {
    /// The notification id the next save's first event takes.
    fn next_id(&self) -> u64 {
        self.state.log.len() as u64 + 1
    }

    /// Adds the next save: its events' notification ids.
    fn add(
        &mut self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: Option<&KeyedOutcome>,
    ) -> Vec<u64> {
        let ids = self.state.insert(events);
        if let Some(tracking) = tracking {
            self.state.track(tracking);
        }
        if let Some(outcome) = outcome {
            self.state.record_key(outcome);
        }
        self.saves += 1;
        ids
    }

    /// Adds a save another writer stored.
    fn add_decoded(&mut self, save: &Decoded) {
        self.add(&save.events, save.tracking.as_ref(), save.outcome.as_ref());
    }
}

/// One save, as stored: its events and its tracking record.
#[derive(Serialize, Deserialize)]
struct Save {
    /// The notification id of the first event (the ids are consecutive).
    first: u64,
    events: Vec<Row>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracking: Option<TrackingRow>,
    /// The idempotency key of the request that made the save, and its
    /// outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyRow>,
    /// Random, one for each save (all its writes): what tells a writer's
    /// own object (a write that was stored but answered with an error,
    /// then retried) from another writer's save of the very same events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Row {
    id: String,
    version: u64,
    topic: String,
    /// The stored state, base64.
    state: String,
}

#[derive(Serialize, Deserialize)]
struct TrackingRow {
    application: String,
    notification: u64,
}

#[derive(Serialize, Deserialize)]
struct KeyRow {
    key: String,
    /// The outcome, base64.
    outcome: String,
}

/// How often a watcher looks for the next save object (a HEAD request).
pub(crate) const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

pub(crate) use annals_core::bridge::block_on;

/// How many lost races in a row a save tolerates before it gives up: each
/// lost race means another writer stored a save, so this bounds only a
/// pathological churn.
pub(crate) const MAX_RACES: usize = 10_000;

impl ObjectRecorder {
    /// A recorder of the saves under `root` in `store`; reads what is there.
    ///
    /// # Errors
    ///
    /// The runtime cannot start; the store cannot be read; an object under
    /// `root` is not a save (named in the error).
    pub fn open(store: Arc<dyn ObjectStore>, root: Path) -> Result<Self> {
        let recorder = Self {
            store,
            root,
            runtime: super::runtime()?,
            index: Mutex::new(Index::default()),
        };
        if recorder.caught_up()?.saves == 0 {
            recorder.check_exists()?;
        }
        Ok(recorder)
    }

    /// That the store can list `root`, for an empty log: S3 answers a GET in
    /// a missing bucket with the same 404 as a missing object (Azure in a
    /// missing container likewise), which would make the bucket read as an
    /// empty store. One request, only when nothing is stored (a stored
    /// save shows the bucket is there).
    fn check_exists(&self) -> Result<()> {
        let listed = self.block_on(async {
            let mut list = self.store.list(Some(&self.root));
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(list.as_mut(), cx)).await
        });
        let context = || format!("opening {} in {}", self.root, self.store);
        match listed {
            None | Some(Ok(_)) => Ok(()),
            // S3's documented error code, in the body its 404 carries.
            Some(Err(e)) if says(&e, "NoSuchBucket") => Err(Error::persistence(
                context(),
                format!("the bucket does not exist: {e}"),
            )),
            // Azure's, in the body of its 404 (and Azurite's).
            Some(Err(e)) if says(&e, "ContainerNotFound") => Err(Error::persistence(
                context(),
                format!("the container does not exist: {e}"),
            )),
            Some(Err(e)) => Err(Error::persistence(context(), e)),
        }
    }

    fn block_on<F: Future + Send>(&self, future: F) -> F::Output
    where
        F::Output: Send,
    {
        block_on(&self.runtime, future)
    }

    fn path(&self, save: u64) -> Path {
        self.root.clone().join(format!("{save:020}").as_str())
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // Every change to the index is applied whole after its checks.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index, with every save stored so far read into it.
    fn caught_up(&self) -> Result<MutexGuard<'_, Index>> {
        let mut index = self.lock();
        self.read_new(&mut index)?;
        Ok(index)
    }

    /// The object at `path`, or `None` if there is none.
    fn read(&self, path: &Path) -> Result<Option<bytes::Bytes>> {
        self.block_on(async {
            match self.store.get(path).await {
                Ok(got) => got.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| Error::persistence(format!("reading {path}"), e))
    }

    /// Reads the saves after those in `index`, until the first missing.
    fn read_new(&self, index: &mut Index) -> Result<()> {
        loop {
            let path = self.path(index.saves + 1);
            let Some(bytes) = self.read(&path)? else {
                return Ok(());
            };
            let save = decode(&path, &bytes, index.next_id())?;
            index.add_decoded(&save);
        }
    }

    fn save(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: Option<&KeyedOutcome>,
    ) -> Result<Vec<u64>> {
        // No read first: a save this index has not read occupies the very
        // name the write below takes, so the write fails, and the loop
        // reads it and checks again. One request per uncontended save.
        let mut index = self.lock();
        // One token for every write of this save: a retried write that finds
        // its own earlier one stored must know it by it.
        let token = uuid::Uuid::new_v4().simple().to_string();
        for _ in 0..MAX_RACES {
            if let Some(outcome) = outcome {
                index.state.check_key(outcome)?;
            }
            if let Some(tracking) = tracking {
                index.state.check_tracking(tracking)?;
            }
            index.state.check(events)?;
            let first = index.next_id();
            let body = encode(first, events, tracking, outcome, &token)?;
            let path = self.path(index.saves + 1);
            let put = self.block_on(async {
                let options = PutOptions::from(PutMode::Create);
                self.store
                    .put_opts(&path, PutPayload::from(body), options)
                    .await
            });
            let stored = match put {
                Ok(_) => true,
                // The name is taken: by another writer's save, or by this
                // save's own write, stored but answered with an error (an
                // S3 500) and retried by the client. The token tells which:
                // this save's means it is stored, and storing it again
                // would apply it twice.
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => match self.read(&path)? {
                    Some(there) => {
                        let there = decode(&path, &there, first)?;
                        let ours = there.token.as_deref() == Some(token.as_str());
                        if !ours {
                            // Another writer stored save n first: read it
                            // and the saves after it, check again.
                            index.add_decoded(&there);
                            self.read_new(&mut index)?;
                        }
                        ours
                    }
                    // Taken but not readable yet: S3 answers 409 while
                    // another write to the name is still under way (this
                    // save's own first try, perhaps). Look again shortly,
                    // with the same token.
                    None => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        false
                    }
                },
                Err(e @ object_store::Error::NotImplemented { .. })
                | Err(e @ object_store::Error::NotSupported { .. }) => {
                    return Err(Error::persistence(
                        format!("writing {path}"),
                        format!("this object store cannot create an object only if it is absent, which keeps racing writers apart: {e}"),
                    ));
                }
                // Whether it was stored is unknown: the next read finds out.
                Err(e) => return Err(Error::persistence(format!("writing {path}"), e)),
            };
            // Stored by this save, answered at once or not.
            if stored {
                return Ok(index.add(events, tracking, outcome));
            }
        }
        Err(Error::persistence(
            "saving to the object store",
            format!("lost the race for the next save object {MAX_RACES} times in a row"),
        ))
    }
}

fn encode(
    first: u64,
    events: &[StoredEvent],
    tracking: Option<&Tracking>,
    outcome: Option<&KeyedOutcome>,
    token: &str,
) -> Result<Vec<u8>> {
    let save = Save {
        first,
        events: events
            .iter()
            .map(|e| Row {
                id: e.originator_id.clone(),
                version: e.originator_version,
                topic: e.topic.clone(),
                state: base64::engine::general_purpose::STANDARD.encode(&e.state),
            })
            .collect(),
        tracking: tracking.map(|t| TrackingRow {
            application: t.application_name.clone(),
            notification: t.notification_id,
        }),
        key: outcome.map(|o| KeyRow {
            key: o.key.clone(),
            outcome: base64::engine::general_purpose::STANDARD.encode(&o.outcome),
        }),
        token: Some(token.to_owned()),
    };
    serde_json::to_vec(&save).map_err(|e| Error::persistence("encoding a save", e))
}

/// Whether `error` or one of its causes says `code`.
fn says(error: &(dyn std::error::Error + 'static), code: &str) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.to_string().contains(code))
}

/// The events, tracking record and token of the save object at `path`, whose
/// first event must have notification id `first`.
fn decode(path: &Path, bytes: &[u8], first: u64) -> Result<Decoded> {
    let bad = |message: String| {
        Error::persistence(
            format!("reading {path}"),
            format!("it is not a save annals wrote (corrupt, truncated or foreign): {message}"),
        )
    };
    let save: Save = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if save.first != first {
        return Err(bad(format!(
            "its first notification id is {}, where the saves before it end at {}",
            save.first,
            first - 1
        )));
    }
    let events = save
        .events
        .into_iter()
        .map(|row| {
            let state = base64::engine::general_purpose::STANDARD
                .decode(&row.state)
                .map_err(|e| bad(format!("the state of {}@{}: {e}", row.id, row.version)))?;
            Ok(StoredEvent {
                originator_id: row.id,
                originator_version: row.version,
                topic: row.topic,
                state,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let tracking = save.tracking.map(|t| Tracking {
        application_name: t.application,
        notification_id: t.notification,
    });
    let outcome = save
        .key
        .map(|k| {
            let outcome = base64::engine::general_purpose::STANDARD
                .decode(&k.outcome)
                .map_err(|e| bad(format!("the outcome of idempotency key {:?}: {e}", k.key)))?;
            Ok(KeyedOutcome {
                key: k.key,
                outcome,
            })
        })
        .transpose()?;
    Ok(Decoded {
        events,
        tracking,
        outcome,
        token: save.token,
    })
}

/// A save object, read.
struct Decoded {
    events: Vec<StoredEvent>,
    tracking: Option<Tracking>,
    outcome: Option<KeyedOutcome>,
    /// The token of the save that wrote it (none before tokens).
    token: Option<String>,
}

impl AggregateRecorder for ObjectRecorder {
    fn insert_events(&self, events: &[StoredEvent]) -> Result<Vec<u64>> {
        self.save(events, None, None)
    }

    fn select_events(&self, originator_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        Ok(self.caught_up()?.state.select_events(originator_id, query))
    }

    /// Lends the rows of its index, holding it for the visit.
    fn visit_events(
        &self,
        originator_id: &str,
        query: &EventQuery,
        visit: &mut dyn FnMut(&StoredEvent) -> Result<()>,
    ) -> Result<usize> {
        self.caught_up()?
            .state
            .visit_events(originator_id, query, visit)
    }
}

impl ApplicationRecorder for ObjectRecorder {
    fn select_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>> {
        Ok(self.caught_up()?.state.select_notifications(query))
    }

    fn max_notification_id(&self) -> Result<u64> {
        Ok(self.caught_up()?.state.log.len() as u64)
    }

    /// A thread that looks for the next save object every 100 ms (one
    /// HEAD request; an object store has no commit signal).
    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        let mut next = self.caught_up()?.saves + 1;
        let store = self.store.clone();
        let root = self.root.clone();
        let runtime = self.runtime.clone();
        Watch::spawn(&format!("objects {root}"), signal, move |timeout| {
            let until = std::time::Instant::now() + timeout;
            loop {
                let path = root.clone().join(format!("{next:020}").as_str());
                match runtime.block_on(store.head(&path)) {
                    Ok(_) => {
                        next += 1;
                        return Ok(true);
                    }
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(Error::persistence(format!("watching for {path}"), e)),
                }
                let now = std::time::Instant::now();
                if now >= until {
                    return Ok(false);
                }
                std::thread::sleep(WATCH_EVERY.min(until - now));
            }
        })
    }
}

impl ProcessRecorder for ObjectRecorder {
    fn insert_events_tracked(
        &self,
        events: &[StoredEvent],
        tracking: &Tracking,
    ) -> Result<Vec<u64>> {
        self.save(events, Some(tracking), None)
    }

    fn insert_events_with(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        writes: &mut dyn FnMut(&mut annals_core::persistence::StoreTx<'_>) -> Result<()>,
    ) -> Result<Vec<u64>> {
        let _ = (events, tracking, writes);
        Err(annals_core::persistence::no_transaction("the object store"))
    }

    fn insert_events_keyed(
        &self,
        events: &[StoredEvent],
        tracking: Option<&Tracking>,
        outcome: &KeyedOutcome,
    ) -> Result<Vec<u64>> {
        self.save(events, tracking, Some(outcome))
    }

    fn select_outcome(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.caught_up()?.state.outcome(key).map(<[u8]>::to_vec))
    }

    fn max_tracking_id(&self, application_name: &str) -> Result<u64> {
        Ok(self.caught_up()?.state.max_tracking_id(application_name))
    }

    fn has_tracking_id(&self, application_name: &str, notification_id: u64) -> Result<bool> {
        Ok(self
            .caught_up()?
            .state
            .has_tracking_id(application_name, notification_id))
    }
}
