//! The object-store baseline: object_store alone, on a directory or S3.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Notif, RawStore, Row, Stored};
use crate::workload::{fail, Res};

/// The object store with `object_store` alone: the layout annals uses (one
/// object per save, `{root}/events/{n:020}`, created only if absent, JSON
/// with base64 states; snapshots a second log under `snapshots/`), an
/// in-memory index of the objects read, and a catch-up read (the next
/// object, until one is missing) before every query, as a client must do
/// to see other writers' saves. No mapper, no recorder.
pub(crate) struct ObjStore {
    store: Arc<dyn ObjectStore>,
    root: ObjPath,
    runtime: tokio::runtime::Runtime,
    events: Log,
    snapshots: Log,
}

/// One log of save objects and what has been read of it.
struct Log {
    dir: ObjPath,
    /// Save objects read or written (the next is `saves + 1`).
    saves: u64,
    /// Every event, in notification order: id, version, topic, state.
    rows: Vec<(String, u64, String, Vec<u8>)>,
    /// Each stream's versions and their index in `rows`.
    streams: HashMap<Uuid, BTreeMap<u64, usize>>,
}

/// A save object as annals writes it.
#[derive(Serialize, Deserialize)]
struct SaveObject {
    first: u64,
    events: Vec<SaveRow>,
}

#[derive(Serialize, Deserialize)]
struct SaveRow {
    id: String,
    version: u64,
    topic: String,
    state: String,
}

impl Log {
    fn new(dir: ObjPath) -> Self {
        Self {
            dir,
            saves: 0,
            rows: Vec::new(),
            streams: HashMap::new(),
        }
    }

    fn path(&self, n: u64) -> ObjPath {
        self.dir.clone().join(format!("{n:020}").as_str())
    }

    /// Refuses a version already stored, or twice in `rows`.
    fn check(&self, rows: &[Row]) -> Res<()> {
        let mut batch = HashSet::with_capacity(rows.len());
        for r in rows {
            let taken = self
                .streams
                .get(&r.id)
                .is_some_and(|s| s.contains_key(&r.version));
            if taken || !batch.insert((r.id, r.version)) {
                return fail(format!("conflict: {}@{} exists", r.id, r.version));
            }
        }
        Ok(())
    }

    fn push(&mut self, id: Uuid, id_text: String, version: u64, topic: String, state: Vec<u8>) {
        self.streams
            .entry(id)
            .or_default()
            .insert(version, self.rows.len());
        self.rows.push((id_text, version, topic, state));
    }
}

impl ObjStore {
    /// A fresh directory `dir` (it must exist).
    pub(crate) fn directory(dir: &Path) -> Res<Self> {
        // Synced as annals syncs a directory store (synchronous=FULL).
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        Self::open(Arc::new(store), ObjPath::default())
    }

    /// `s3://bucket/prefix`, credentials and endpoint from `AWS_*`.
    pub(crate) fn s3(location: &str) -> Res<Self> {
        let (store, prefix) = s3_store(location)?;
        Self::open(store, prefix)
    }

    fn open(store: Arc<dyn ObjectStore>, root: ObjPath) -> Res<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut s = Self {
            events: Log::new(root.clone().join("events")),
            snapshots: Log::new(root.clone().join("snapshots")),
            store,
            root,
            runtime,
        };
        s.catch_up(false)?;
        s.catch_up(true)?;
        Ok(s)
    }

    /// Reads the save objects not read yet, until the first missing.
    fn catch_up(&mut self, snapshots: bool) -> Res<()> {
        let log = if snapshots {
            &mut self.snapshots
        } else {
            &mut self.events
        };
        loop {
            let path = log.path(log.saves + 1);
            let store = &self.store;
            let got = self.runtime.block_on(async {
                match store.get(&path).await {
                    Ok(got) => got.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })?;
            let Some(bytes) = got else { return Ok(()) };
            let save: SaveObject = serde_json::from_slice(&bytes)?;
            if save.first != log.rows.len() as u64 + 1 {
                return fail(format!("{path}: first id {}", save.first));
            }
            for r in save.events {
                let id = Uuid::parse_str(&r.id)?;
                let state = B64.decode(&r.state)?;
                log.push(id, r.id, r.version, r.topic, state);
            }
            log.saves += 1;
        }
    }

    /// Writes `rows` as the next save object of a log; on a lost race,
    /// reads the winner and tries again.
    fn save(&mut self, rows: &[Row], snapshots: bool) -> Res<()> {
        loop {
            let log = if snapshots {
                &self.snapshots
            } else {
                &self.events
            };
            log.check(rows)?;
            let body = serde_json::to_vec(&SaveObject {
                first: log.rows.len() as u64 + 1,
                events: rows
                    .iter()
                    .map(|r| SaveRow {
                        id: r.id.simple().to_string(),
                        version: r.version,
                        topic: r.topic.to_owned(),
                        state: B64.encode(&r.state),
                    })
                    .collect(),
            })?;
            let path = log.path(log.saves + 1);
            let store = &self.store;
            let put = self.runtime.block_on(async {
                let options = PutOptions::from(PutMode::Create);
                store.put_opts(&path, PutPayload::from(body), options).await
            });
            match put {
                Ok(_) => break,
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => self.catch_up(snapshots)?,
                Err(e) => return Err(e.into()),
            }
        }
        let log = if snapshots {
            &mut self.snapshots
        } else {
            &mut self.events
        };
        for r in rows {
            log.push(
                r.id,
                r.id.simple().to_string(),
                r.version,
                r.topic.to_owned(),
                r.state.clone(),
            );
        }
        log.saves += 1;
        Ok(())
    }

    fn stream(&mut self, id: &Uuid, gt: u64, snapshots: bool) -> Res<Vec<Stored>> {
        self.catch_up(snapshots)?;
        let log = if snapshots {
            &self.snapshots
        } else {
            &self.events
        };
        Ok(log.streams.get(id).map_or_else(Vec::new, |s| {
            s.range(gt + 1..)
                .map(|(_, &k)| {
                    let (_, version, topic, state) = &log.rows[k];
                    (*version, topic.clone(), state.clone())
                })
                .collect()
        }))
    }
}

/// The store and prefix that `s3://bucket/prefix` names, with
/// create-if-absent writes (as annals configures it).
pub(crate) fn s3_store(location: &str) -> Res<(Arc<dyn ObjectStore>, ObjPath)> {
    use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
    let rest = location
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{location:?} is not s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .build()?;
    Ok((Arc::new(store), ObjPath::from(prefix)))
}

impl RawStore for ObjStore {
    fn insert(&mut self, rows: &[Row]) -> Res<()> {
        self.save(rows, false)
    }

    fn select_events(&mut self, id: &Uuid, gt: u64) -> Res<Vec<Stored>> {
        self.stream(id, gt, false)
    }

    fn select_notifications(&mut self, start: u64, limit: usize) -> Res<Vec<Notif>> {
        self.catch_up(false)?;
        let first = usize::try_from(start.max(1) - 1)?;
        Ok(self
            .events
            .rows
            .iter()
            .enumerate()
            .skip(first)
            .take(limit)
            .map(|(k, (id, version, topic, state))| {
                (
                    k as u64 + 1,
                    id.clone(),
                    *version,
                    topic.clone(),
                    state.clone(),
                )
            })
            .collect())
    }

    fn insert_snapshot(&mut self, row: &Row) -> Res<()> {
        self.save(std::slice::from_ref(row), true)
    }

    fn newest_snapshot(&mut self, id: &Uuid) -> Res<Option<Stored>> {
        Ok(self.stream(id, 0, true)?.pop())
    }

    fn count(&mut self) -> Res<u64> {
        self.catch_up(false)?;
        Ok(self.events.rows.len() as u64)
    }

    fn another(&self) -> Res<Self> {
        Self::open(self.store.clone(), self.root.clone())
    }
}
