//! The object store's DCB recorder: a log of append objects, each decided
//! by its create-if-absent write, as saves are.

use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use annals_core::error::{Error, Result};
use annals_core::persistence::dcb::{
    condition_failed, no_events, DcbAppendCondition, DcbEvent, DcbQuery, DcbReadResponse,
    DcbRecorder, DcbSequencedEvent, Gapless,
};
use annals_core::persistence::wake::{Signal, Watch};

use crate::recorder::{block_on, MAX_RACES, WATCH_EVERY};

/// A DCB event store in an object store: one object per append.
///
/// Object `{root}/{p:020}` holds the events of the append whose first
/// event has position `p`; its events take `p`, `p + 1`, ... so
/// positions have no gaps, and the append after the one ending at `q` is
/// object `q + 1`. An append at position `p + 1` (`p` the last position
/// its recorder has read) is decided by creating that object only if it
/// is absent (`PutMode::Create`, `If-None-Match: *` on S3 and Azure): the
/// condition is checked against every event the recorder has read after
/// the condition's `after` before the write; a writer that loses the name to
/// another reads what the winner stored (and any appends after it),
/// checks its condition again, and tries the next name. No append is
/// stored unless its condition held against every event before it.
///
/// Each recorder keeps the events it has read in memory and reads the
/// objects added since before every read (one GET for the next name when
/// nothing is new). [`ObjectConfig::open_dcb`](crate::ObjectConfig::open_dcb)
/// keeps an application's DCB events under `{prefix}/{application}/dcb`.
///
/// ```
/// use annals_core::persistence::dcb::{DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder};
/// use annals_object_store::ObjectConfig;
///
/// let dir = std::env::temp_dir().join(format!("annals-dcb-doc-{}", std::process::id()));
/// let store = ObjectConfig::location(dir.to_str().unwrap()).open_dcb("Courses")?;
/// let course = DcbQuery::item(DcbQueryItem::new().tags(["course-1"]));
/// let read = store.read(&course, None, None)?;
/// let condition = DcbAppendCondition::new(course.clone()).after(read.head);
/// let registered = DcbEvent::new("CourseRegistered", b"{}".to_vec()).tags(["course-1"]);
/// assert_eq!(store.append(&[registered.clone()], Some(&condition))?, 1);
/// // Another recorder on the same directory (as another process would be)
/// // sees the append, and its condition fails on it.
/// let other = ObjectConfig::location(dir.to_str().unwrap()).open_dcb("Courses")?;
/// assert!(other.append(&[registered], Some(&condition)).unwrap_err().is_conflict());
/// assert_eq!(other.read(&course, None, None)?.events.len(), 1);
/// # std::fs::remove_dir_all(dir).ok();
/// # Ok::<(), annals_core::Error>(())
/// ```
pub struct ObjectDcbRecorder {
    store: Arc<dyn ObjectStore>,
    /// Where the append objects are: `{root}/{p:020}`.
    root: Path,
    runtime: tokio::runtime::Handle,
    /// The events read so far, in position order (position n at n - 1).
    events: Mutex<Vec<DcbSequencedEvent>>,
}

impl std::fmt::Debug for ObjectDcbRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectDcbRecorder")
            .field("store", &self.store.to_string())
            .field("root", &self.root.as_ref())
            .finish_non_exhaustive()
    }
}

/// One append, as stored.
#[derive(Serialize, Deserialize)]
struct Append {
    /// The position of the first event (the others follow it).
    first: u64,
    events: Vec<Row>,
    /// Random, one per append (all its writes): tells this append's own
    /// object, written but answered with an error and retried, from
    /// another writer's.
    token: String,
}

#[derive(Serialize, Deserialize)]
struct Row {
    #[serde(rename = "type")]
    type_: String,
    /// The data, base64.
    data: String,
    tags: Vec<String>,
}

impl ObjectDcbRecorder {
    /// A recorder of the appends under `root` in `store`; reads what is
    /// there.
    ///
    /// # Errors
    ///
    /// The runtime cannot start; the store cannot be read; an object under
    /// `root` is not an append (named in the error).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use annals_core::persistence::dcb::{DcbEvent, DcbRecorder};
    /// use annals_object_store::ObjectDcbRecorder;
    ///
    /// let store = Arc::new(object_store::memory::InMemory::new());
    /// let dcb = ObjectDcbRecorder::open(store, "courses/dcb".into())?;
    /// assert_eq!(dcb.append(&[DcbEvent::new("A", vec![]), DcbEvent::new("B", vec![])], None)?, 2);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn open(store: Arc<dyn ObjectStore>, root: Path) -> Result<Self> {
        let recorder = Self {
            store,
            root,
            runtime: super::runtime()?,
            events: Mutex::new(Vec::new()),
        };
        drop(recorder.caught_up()?);
        Ok(recorder)
    }

    fn path(&self, first: u64) -> Path {
        self.root.clone().join(format!("{first:020}").as_str())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<DcbSequencedEvent>> {
        // Every change is applied whole after its checks.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The events, with every append stored so far read in.
    fn caught_up(&self) -> Result<MutexGuard<'_, Vec<DcbSequencedEvent>>> {
        let mut events = self.lock();
        self.read_new(&mut events)?;
        Ok(events)
    }

    /// The object at `path`, or `None` if there is none.
    fn get(&self, path: &Path) -> Result<Option<bytes::Bytes>> {
        block_on(&self.runtime, async {
            match self.store.get(path).await {
                Ok(got) => got.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| Error::persistence(format!("reading {path}"), e))
    }

    /// Reads the appends after `events`, until the first missing.
    fn read_new(&self, events: &mut Vec<DcbSequencedEvent>) -> Result<()> {
        loop {
            let first = events.len() as u64 + 1;
            let path = self.path(first);
            let Some(bytes) = self.get(&path)? else {
                return Ok(());
            };
            let (read, _) = decode(&path, &bytes, first)?;
            events.extend(read);
        }
    }
}

fn encode(first: u64, events: &[DcbEvent], token: &str) -> Result<Vec<u8>> {
    let append = Append {
        first,
        events: events
            .iter()
            .map(|e| Row {
                type_: e.type_.clone(),
                data: base64::engine::general_purpose::STANDARD.encode(&e.data),
                tags: e.tags.clone(),
            })
            .collect(),
        token: token.to_owned(),
    };
    serde_json::to_vec(&append).map_err(|e| Error::persistence("encoding a DCB append", e))
}

/// The events and token of the append object at `path`, whose first event
/// must have position `first`.
fn decode(path: &Path, bytes: &[u8], first: u64) -> Result<(Vec<DcbSequencedEvent>, String)> {
    let bad = |message: String| {
        Error::persistence(
            format!("reading {path}"),
            format!(
                "it is not a DCB append annals wrote (corrupt, truncated or foreign): {message}"
            ),
        )
    };
    let append: Append = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if append.first != first {
        return Err(bad(format!(
            "its first position is {}, where the appends before it end at {}",
            append.first,
            first - 1
        )));
    }
    if append.events.is_empty() {
        return Err(bad("it holds no events".to_owned()));
    }
    let events = append
        .events
        .into_iter()
        .zip(first..)
        .map(|(row, position)| {
            let data = base64::engine::general_purpose::STANDARD
                .decode(&row.data)
                .map_err(|e| bad(format!("the data of position {position}: {e}")))?;
            Ok(DcbSequencedEvent {
                event: DcbEvent {
                    type_: row.type_,
                    data,
                    tags: row.tags,
                },
                position,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((events, append.token))
}

impl DcbRecorder for ObjectDcbRecorder {
    fn read(
        &self,
        query: &DcbQuery,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<DcbReadResponse> {
        let events = self.caught_up()?;
        Ok(Gapless(&events).read(query, after, limit))
    }

    fn append(&self, events: &[DcbEvent], condition: Option<&DcbAppendCondition>) -> Result<u64> {
        if events.is_empty() {
            return Err(no_events());
        }
        // No read first: an append this recorder has not read occupies the
        // very name the write takes, so the write fails, and the loop reads
        // it and checks again. One request per uncontended append.
        let mut stored = self.lock();
        let token = uuid::Uuid::new_v4().simple().to_string();
        for _ in 0..MAX_RACES {
            if let Some(condition) = condition {
                if Gapless(&stored).fails(condition) {
                    return Err(condition_failed(condition));
                }
            }
            let first = stored.len() as u64 + 1;
            let body = encode(first, events, &token)?;
            let path = self.path(first);
            let put = block_on(&self.runtime, async {
                let options = PutOptions::from(PutMode::Create);
                self.store
                    .put_opts(&path, PutPayload::from(body), options)
                    .await
            });
            match put {
                Ok(_) => {}
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => match self.get(&path)? {
                    Some(there) => {
                        let (theirs, their_token) = decode(&path, &there, first)?;
                        // This append's own write, stored but answered
                        // with an error and retried: it is stored.
                        if their_token != token {
                            stored.extend(theirs);
                            self.read_new(&mut stored)?;
                            continue;
                        }
                    }
                    // Taken but not readable yet (S3's 409 while another
                    // write to the name is under way): look again shortly.
                    None => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        continue;
                    }
                },
                Err(e @ object_store::Error::NotImplemented { .. })
                | Err(e @ object_store::Error::NotSupported { .. }) => {
                    return Err(Error::persistence(
                        format!("writing {path}"),
                        format!("this object store cannot create an object only if it is absent, which decides DCB appends: {e}"),
                    ));
                }
                // Whether it was stored is unknown: the next read finds out.
                Err(e) => return Err(Error::persistence(format!("writing {path}"), e)),
            }
            stored.extend(
                events
                    .iter()
                    .zip(first..)
                    .map(|(event, position)| DcbSequencedEvent {
                        event: event.clone(),
                        position,
                    }),
            );
            return Ok(stored.len() as u64);
        }
        Err(Error::persistence(
            "appending to the object store",
            format!("lost the race for the next append object {MAX_RACES} times in a row"),
        ))
    }

    /// A thread that looks for the next append object every 100 ms (one
    /// GET; an object store has no commit signal).
    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        let mut next = self.caught_up()?.len() as u64 + 1;
        let store = self.store.clone();
        let root = self.root.clone();
        let runtime = self.runtime.clone();
        Watch::spawn(&format!("dcb objects {root}"), signal, move |timeout| {
            let until = std::time::Instant::now() + timeout;
            loop {
                let path = root.clone().join(format!("{next:020}").as_str());
                let got = runtime.block_on(async {
                    match store.get(&path).await {
                        Ok(got) => got.bytes().await.map(Some),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                });
                match got {
                    Ok(Some(bytes)) => {
                        let (events, _) = decode(&path, &bytes, next)?;
                        next += events.len() as u64;
                        return Ok(true);
                    }
                    Ok(None) => {}
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
