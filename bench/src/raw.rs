//! The raw baselines: the same rows written and read with the drivers
//! alone (rusqlite, postgres, object_store), the same JSON and codec, no
//! framework.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::allocs::Stopwatch;

use aes_gcm::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::workload::{check_count, check_dog, check_ids, fail, name, trick, Res, Sizes, Sut, W4};

const REGISTERED: &str = "Dog.Registered";
const TRICK_ADDED: &str = "Dog.TrickAdded";
const SNAPSHOT: &str = "Dog";

/// How `state` is encoded: compact JSON, or JSON then zlib (level 6) then
/// AES-256-GCM with a fresh random nonce (nonce ‖ ciphertext ‖ tag).
pub(crate) enum Codec {
    /// Plain JSON.
    Json,
    /// zlib then AES-256-GCM.
    ZlibAes {
        /// The cipher (a random key per run).
        cipher: Box<Aes256Gcm>,
        /// A compressor, reset per record.
        z: Box<Compress>,
        /// A decompressor, reset per record.
        unz: Box<Decompress>,
    },
}

impl Codec {
    /// zlib-aes with a fresh random 256-bit key.
    pub(crate) fn zlib_aes() -> Self {
        Self::zlib_aes_with(Aes256Gcm::new(&Aes256Gcm::generate_key(OsRng)))
    }

    fn zlib_aes_with(cipher: Aes256Gcm) -> Self {
        Codec::ZlibAes {
            cipher: Box::new(cipher),
            z: Box::new(Compress::new(Compression::default(), true)),
            unz: Box::new(Decompress::new(true)),
        }
    }

    /// The same codec (the same key) for another thread.
    fn fork(&self) -> Self {
        match self {
            Codec::Json => Codec::Json,
            Codec::ZlibAes { cipher, .. } => Self::zlib_aes_with((**cipher).clone()),
        }
    }

    fn seal(&mut self, json: Vec<u8>) -> Res<Vec<u8>> {
        let Codec::ZlibAes { cipher, z, .. } = self else {
            return Ok(json);
        };
        z.reset();
        let mut out = Vec::with_capacity(json.len() + 64);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        out.extend_from_slice(&nonce);
        loop {
            let consumed = usize::try_from(z.total_in())?;
            let input = json.get(consumed..).unwrap_or_default();
            // compress_vec appends after out's current length.
            match z.compress_vec(input, &mut out, FlushCompress::Finish)? {
                Status::StreamEnd => break,
                _ => out.reserve(out.capacity().max(64)),
            }
        }
        let mut body = out.split_off(nonce.len());
        cipher
            .encrypt_in_place(&nonce, b"", &mut body)
            .map_err(|_| "AES-GCM encryption failed")?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn open<'a>(&mut self, state: &'a [u8]) -> Res<Cow<'a, [u8]>> {
        let Codec::ZlibAes { cipher, unz, .. } = self else {
            return Ok(Cow::Borrowed(state));
        };
        if state.len() < 12 + 16 {
            return fail("sealed state too short".into());
        }
        let (nonce, body) = state.split_at(12);
        let mut plain = body.to_vec();
        cipher
            .decrypt_in_place(Nonce::from_slice(nonce), b"", &mut plain)
            .map_err(|_| "AES-GCM authentication failed")?;
        unz.reset(true);
        let mut out = Vec::with_capacity(plain.len() * 4 + 64);
        loop {
            let consumed = usize::try_from(unz.total_in())?;
            let input = plain.get(consumed..).unwrap_or_default();
            let before = unz.total_out();
            match unz.decompress_vec(input, &mut out, FlushDecompress::None)? {
                Status::StreamEnd => return Ok(Cow::Owned(out)),
                _ if out.len() == out.capacity() => out.reserve(out.capacity()),
                _ if unz.total_out() == before => return fail("zlib stream ends early".into()),
                _ => {}
            }
        }
    }
}

#[derive(Serialize)]
struct RegisteredOut<'a> {
    timestamp: DateTime<Utc>,
    name: &'a str,
}

#[derive(Serialize)]
struct TrickAddedOut<'a> {
    timestamp: DateTime<Utc>,
    trick: &'a str,
}

#[derive(Deserialize)]
struct RegisteredIn {
    #[allow(dead_code)] // parsed, as a reader must, then unused
    timestamp: DateTime<Utc>,
    name: String,
}

#[derive(Deserialize)]
struct TrickAddedIn {
    #[allow(dead_code)]
    timestamp: DateTime<Utc>,
    trick: String,
}

#[derive(Serialize, Deserialize)]
struct DogState {
    name: String,
    tricks: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotState {
    timestamp: DateTime<Utc>,
    state: DogState,
}

/// One row to insert.
pub(crate) struct Row {
    id: Uuid,
    version: u64,
    topic: &'static str,
    state: Vec<u8>,
}

/// One row read from a stream: version, topic, state.
pub(crate) type Stored = (u64, String, Vec<u8>);

/// One notification: id, originator id, version, topic, state.
pub(crate) type Notif = (u64, String, u64, String, Vec<u8>);

/// The raw workload's aggregate: state and version, nothing else.
struct RawDog {
    id: Uuid,
    version: u64,
    name: String,
    tricks: Vec<String>,
}

impl RawDog {
    fn register(codec: &mut Codec, name: String) -> Res<(Self, Row)> {
        let json = serde_json::to_vec(&RegisteredOut {
            timestamp: Utc::now(),
            name: &name,
        })?;
        let dog = RawDog {
            id: Uuid::new_v4(),
            version: 1,
            name,
            tricks: Vec::new(),
        };
        let row = Row {
            id: dog.id,
            version: 1,
            topic: REGISTERED,
            state: codec.seal(json)?,
        };
        Ok((dog, row))
    }

    fn add_trick(&mut self, codec: &mut Codec, trick: String) -> Res<Row> {
        let json = serde_json::to_vec(&TrickAddedOut {
            timestamp: Utc::now(),
            trick: &trick,
        })?;
        self.tricks.push(trick);
        self.version += 1;
        Ok(Row {
            id: self.id,
            version: self.version,
            topic: TRICK_ADDED,
            state: codec.seal(json)?,
        })
    }

    /// Replays `rows` onto `from` (a snapshot) or from nothing.
    fn replay(codec: &mut Codec, id: Uuid, mut dog: Option<Self>, rows: &[Stored]) -> Res<Self> {
        for (version, topic, state) in rows {
            let expected = dog.as_ref().map_or(1, |d| d.version + 1);
            if *version != expected {
                return fail(format!("version {version} follows {}", expected - 1));
            }
            let json = codec.open(state)?;
            match (topic.as_str(), dog.as_mut()) {
                (REGISTERED, None) => {
                    let e: RegisteredIn = serde_json::from_slice(&json)?;
                    dog = Some(RawDog {
                        id,
                        version: 1,
                        name: e.name,
                        tricks: Vec::new(),
                    });
                }
                (TRICK_ADDED, Some(d)) => {
                    let e: TrickAddedIn = serde_json::from_slice(&json)?;
                    d.tricks.push(e.trick);
                    d.version = *version;
                }
                (topic, _) => {
                    return fail(format!("unexpected event {topic} at version {version}"))
                }
            }
        }
        dog.ok_or_else(|| format!("aggregate {id} not found").into())
    }
}

/// What the raw workload needs of a database.
pub(crate) trait RawStore: Send + Sized {
    /// Inserts `rows` into the events table in one transaction.
    fn insert(&mut self, rows: &[Row]) -> Res<()>;
    /// The events of `id` after version `gt`, in version order.
    fn select_events(&mut self, id: &Uuid, gt: u64) -> Res<Vec<Stored>>;
    /// Up to `limit` notifications from `start` on.
    fn select_notifications(&mut self, start: u64, limit: usize) -> Res<Vec<Notif>>;
    /// Inserts one snapshot row.
    fn insert_snapshot(&mut self, row: &Row) -> Res<()>;
    /// The newest snapshot of `id`.
    fn newest_snapshot(&mut self, id: &Uuid) -> Res<Option<Stored>>;
    /// How many events are stored.
    fn count(&mut self) -> Res<u64>;
    /// Another connection to the same store.
    fn another(&self) -> Res<Self>;
}

/// A raw baseline on store `S`.
pub(crate) struct RawSut<S> {
    store: S,
    codec: Codec,
    ids: Vec<Uuid>,
}

impl<S: RawStore> RawSut<S> {
    /// The workload on `store` with `codec`.
    pub(crate) fn new(store: S, codec: Codec) -> Self {
        Self {
            store,
            codec,
            ids: Vec::new(),
        }
    }

    fn get(&mut self, id: Uuid, snapshots: bool) -> Res<RawDog> {
        let mut from = None;
        if snapshots {
            if let Some((version, _, state)) = self.store.newest_snapshot(&id)? {
                let json = self.codec.open(&state)?;
                let s: SnapshotState = serde_json::from_slice(&json)?;
                from = Some(RawDog {
                    id,
                    version,
                    name: s.state.name,
                    tricks: s.state.tricks,
                });
            }
        }
        let gt = from.as_ref().map_or(0, |d| d.version);
        let rows = self.store.select_events(&id, gt)?;
        RawDog::replay(&mut self.codec, id, from, &rows)
    }
}

fn write_dogs<S: RawStore>(
    store: &mut S,
    codec: &mut Codec,
    sizes: &Sizes,
    first: usize,
    step: usize,
) -> Res<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(sizes.aggregates / step + 1);
    for i in (first..sizes.aggregates).step_by(step) {
        let (mut dog, row) = RawDog::register(codec, name(i))?;
        store.insert(std::slice::from_ref(&row))?;
        for j in 1..sizes.events {
            let row = dog.add_trick(codec, trick(j))?;
            store.insert(std::slice::from_ref(&row))?;
        }
        ids.push(dog.id);
    }
    Ok(ids)
}

impl<S: RawStore> Sut for RawSut<S> {
    fn w1(&mut self, sizes: &Sizes) -> Res<Duration> {
        let start = Stopwatch::start();
        let ids = write_dogs(&mut self.store, &mut self.codec, sizes, 0, 1)?;
        let elapsed = start.stop();
        self.ids = ids;
        check_count("W1", self.store.count()?, sizes.w1_events())?;
        Ok(elapsed)
    }

    fn w2(&mut self, sizes: &Sizes) -> Res<Duration> {
        let ids = std::mem::take(&mut self.ids);
        let start = Stopwatch::start();
        let dogs = ids
            .iter()
            .map(|id| self.get(*id, false))
            .collect::<Res<Vec<_>>>()?;
        let elapsed = start.stop();
        if dogs.len() != sizes.aggregates {
            return fail(format!("W2: read {} aggregates", dogs.len()));
        }
        for (i, d) in dogs.iter().enumerate() {
            check_dog("W2", i, &d.name, &d.tricks, d.version, sizes.events)?;
        }
        self.ids = ids;
        Ok(elapsed)
    }

    fn w3(&mut self, sizes: &Sizes) -> Res<Duration> {
        let total = sizes.w1_events();
        let start = Stopwatch::start();
        let mut all: Vec<Notif> = Vec::with_capacity(total);
        let mut next = 1;
        while all.len() < total {
            let page = self.store.select_notifications(next, sizes.page)?;
            let Some(last) = page.last() else { break };
            next = last.0 + 1;
            all.extend(page);
        }
        let elapsed = start.stop();
        check_ids("W3", all.iter().map(|n| n.0), total)?;
        Ok(elapsed)
    }

    fn w4(&mut self, sizes: &Sizes) -> Res<W4> {
        let start = Stopwatch::start();
        let (mut dog, row) = RawDog::register(&mut self.codec, name(0))?;
        let mut pending = vec![row];
        for j in 1..sizes.long {
            pending.push(dog.add_trick(&mut self.codec, trick(j))?);
            if pending.len() == sizes.long_batch {
                self.store.insert(&pending)?;
                pending.clear();
            }
        }
        if !pending.is_empty() {
            self.store.insert(&pending)?;
        }
        let write = start.stop();
        check_count("W4 write", self.store.count()?, sizes.long)?;
        let id = dog.id;

        let start = Stopwatch::start();
        let d = self.get(id, true)?;
        let get_nosnap = start.stop();
        check_dog(
            "W4 no snapshot",
            0,
            &d.name,
            &d.tricks,
            d.version,
            sizes.long,
        )?;

        // Take the snapshot (outside timing), as annals' take_snapshot does.
        let version = d.version;
        let json = serde_json::to_vec(&SnapshotState {
            timestamp: Utc::now(),
            state: DogState {
                name: d.name,
                tricks: d.tricks,
            },
        })?;
        let state = self.codec.seal(json)?;
        self.store.insert_snapshot(&Row {
            id,
            version,
            topic: SNAPSHOT,
            state,
        })?;

        let start = Stopwatch::start();
        let d = self.get(id, true)?;
        let get_snap = start.stop();
        check_dog("W4 snapshot", 0, &d.name, &d.tricks, d.version, sizes.long)?;
        Ok(W4 {
            write,
            get_nosnap,
            get_snap,
        })
    }

    fn w5(&mut self, sizes: &Sizes) -> Res<Duration> {
        let start = Stopwatch::start();
        for b in 0..sizes.batches {
            let rows = (0..sizes.batch)
                .map(|k| Ok(RawDog::register(&mut self.codec, name(b * sizes.batch + k))?.1))
                .collect::<Res<Vec<_>>>()?;
            self.store.insert(&rows)?;
        }
        let elapsed = start.stop();
        check_count("W5", self.store.count()?, sizes.batches * sizes.batch)?;
        Ok(elapsed)
    }

    fn w1_concurrent(&mut self, sizes: &Sizes) -> Res<Duration> {
        let mut workers = (0..sizes.threads)
            .map(|_| Ok((self.store.another()?, self.codec.fork())))
            .collect::<Res<Vec<_>>>()?;
        let start = Stopwatch::start();
        let results: Vec<Res<Vec<Uuid>>> = std::thread::scope(|s| {
            let handles: Vec<_> = workers
                .iter_mut()
                .enumerate()
                .map(|(t, (store, codec))| {
                    s.spawn(move || write_dogs(store, codec, sizes, t, sizes.threads))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| fail("a writer thread panicked".into()))
                })
                .collect()
        });
        let elapsed = start.stop();
        for r in results {
            r?;
        }
        check_count("W1x8", self.store.count()?, sizes.w1_events())?;
        Ok(elapsed)
    }
}

/// Plain rusqlite: WAL, synchronous=FULL, one IMMEDIATE transaction per
/// save, cached prepared statements, eventsourcing's DDL.
pub(crate) struct SqliteStore {
    conn: rusqlite::Connection,
    path: std::path::PathBuf,
}

impl SqliteStore {
    /// Opens (and creates the tables of) the database file `path`.
    pub(crate) fn open(path: &Path) -> Res<Self> {
        let conn = rusqlite::Connection::open(path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return fail(format!("journal mode {mode}, not WAL"));
        }
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version));
             CREATE TABLE IF NOT EXISTS stored_snapshots (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID;",
        )?;
        conn.busy_timeout(Duration::from_secs(30))?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    fn insert_into(&mut self, sql: &str, rows: &[Row]) -> Res<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(sql)?;
            let mut buf = [0u8; 32];
            for row in rows {
                let id = row.id.simple().encode_lower(&mut buf);
                stmt.execute(rusqlite::params![
                    &*id,
                    row.version as i64,
                    row.topic,
                    row.state
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn stored_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
}

impl RawStore for SqliteStore {
    fn insert(&mut self, rows: &[Row]) -> Res<()> {
        self.insert_into("INSERT INTO stored_events VALUES (?1, ?2, ?3, ?4)", rows)
    }

    fn select_events(&mut self, id: &Uuid, gt: u64) -> Res<Vec<Stored>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT originator_version, topic, state FROM stored_events WHERE originator_id = ?1 AND originator_version > ?2 ORDER BY originator_version",
        )?;
        let mut buf = [0u8; 32];
        let id = id.simple().encode_lower(&mut buf);
        let rows = stmt.query_map(rusqlite::params![&*id, gt as i64], stored_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn select_notifications(&mut self, start: u64, limit: usize) -> Res<Vec<Notif>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events WHERE rowid >= ?1 ORDER BY rowid LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![start as i64, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get(3)?,
                r.get(4)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_snapshot(&mut self, row: &Row) -> Res<()> {
        self.insert_into(
            "INSERT INTO stored_snapshots VALUES (?1, ?2, ?3, ?4)",
            std::slice::from_ref(row),
        )
    }

    fn newest_snapshot(&mut self, id: &Uuid) -> Res<Option<Stored>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT originator_version, topic, state FROM stored_snapshots WHERE originator_id = ?1 ORDER BY originator_version DESC LIMIT 1",
        )?;
        let mut buf = [0u8; 32];
        let id = id.simple().encode_lower(&mut buf);
        let mut rows = stmt.query_map([&*id], stored_row)?;
        Ok(rows.next().transpose()?)
    }

    fn count(&mut self) -> Res<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM stored_events", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn another(&self) -> Res<Self> {
        Self::open(&self.path)
    }
}

/// Plain `postgres`: the same DDL as annals; each write transaction takes
/// `LOCK TABLE ... IN EXCLUSIVE MODE` and sends `NOTIFY`, as annals does.
pub(crate) struct PgStore {
    client: postgres::Client,
    config: postgres::Config,
    table: String,
    insert: postgres::Statement,
    select: postgres::Statement,
    notifications: postgres::Statement,
    insert_snapshot: postgres::Statement,
    newest_snapshot: postgres::Statement,
}

impl PgStore {
    /// Drops and creates tables `{prefix}_events` and `{prefix}_snapshots`.
    pub(crate) fn create(config: postgres::Config, prefix: &str) -> Res<Self> {
        let mut client = config.connect(postgres::NoTls)?;
        client.batch_execute(&format!(
            "DROP TABLE IF EXISTS {prefix}_events, {prefix}_snapshots;
             CREATE TABLE {prefix}_events (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version));
             CREATE UNIQUE INDEX {prefix}_events_notification_id_idx ON {prefix}_events (notification_id ASC);
             CREATE TABLE {prefix}_snapshots (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, PRIMARY KEY (originator_id, originator_version));"
        ))?;
        Self::connect(client, config, prefix)
    }

    fn connect(mut client: postgres::Client, config: postgres::Config, prefix: &str) -> Res<Self> {
        let e = format!("{prefix}_events");
        let s = format!("{prefix}_snapshots");
        Ok(Self {
            insert: client.prepare(&format!(
                "INSERT INTO {e} (originator_id, originator_version, topic, state) \
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[]) \
                 RETURNING notification_id"
            ))?,
            select: client.prepare(&format!(
                "SELECT originator_version, topic, state FROM {e} \
                 WHERE originator_id = $1 AND originator_version > $2 ORDER BY originator_version"
            ))?,
            notifications: client.prepare(&format!(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {e} \
                 WHERE notification_id >= $1 ORDER BY notification_id LIMIT $2"
            ))?,
            insert_snapshot: client.prepare(&format!(
                "INSERT INTO {s} (originator_id, originator_version, topic, state) VALUES ($1, $2, $3, $4)"
            ))?,
            newest_snapshot: client.prepare(&format!(
                "SELECT originator_version, topic, state FROM {s} \
                 WHERE originator_id = $1 ORDER BY originator_version DESC LIMIT 1"
            ))?,
            client,
            config,
            table: e,
        })
    }
}

fn pg_stored(row: &postgres::Row) -> Stored {
    (row.get::<_, i64>(0) as u64, row.get(1), row.get(2))
}

impl RawStore for PgStore {
    fn insert(&mut self, rows: &[Row]) -> Res<()> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let versions: Vec<i64> = rows.iter().map(|r| r.version as i64).collect();
        let topics: Vec<&str> = rows.iter().map(|r| r.topic).collect();
        let states: Vec<&[u8]> = rows.iter().map(|r| r.state.as_slice()).collect();
        self.client.batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE",
            self.table
        ))?;
        let inserted = self
            .client
            .query(&self.insert, &[&ids, &versions, &topics, &states]);
        if let Err(e) = inserted {
            self.client.batch_execute("ROLLBACK")?;
            return Err(e.into());
        }
        self.client
            .batch_execute(&format!("NOTIFY {}; COMMIT", self.table))?;
        Ok(())
    }

    fn select_events(&mut self, id: &Uuid, gt: u64) -> Res<Vec<Stored>> {
        let rows = self.client.query(&self.select, &[id, &(gt as i64)])?;
        Ok(rows.iter().map(pg_stored).collect())
    }

    fn select_notifications(&mut self, start: u64, limit: usize) -> Res<Vec<Notif>> {
        let rows = self
            .client
            .query(&self.notifications, &[&(start as i64), &(limit as i64)])?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0) as u64,
                    r.get::<_, Uuid>(1).simple().to_string(),
                    r.get::<_, i64>(2) as u64,
                    r.get(3),
                    r.get(4),
                )
            })
            .collect())
    }

    fn insert_snapshot(&mut self, row: &Row) -> Res<()> {
        self.client.execute(
            &self.insert_snapshot,
            &[&row.id, &(row.version as i64), &row.topic, &row.state],
        )?;
        Ok(())
    }

    fn newest_snapshot(&mut self, id: &Uuid) -> Res<Option<Stored>> {
        let rows = self.client.query(&self.newest_snapshot, &[id])?;
        Ok(rows.first().map(pg_stored))
    }

    fn count(&mut self) -> Res<u64> {
        let n: i64 = self
            .client
            .query_one(&format!("SELECT COUNT(*) FROM {}", self.table), &[])?
            .get(0);
        Ok(n as u64)
    }

    fn another(&self) -> Res<Self> {
        let client = self.config.connect(postgres::NoTls)?;
        let prefix = self.table.trim_end_matches("_events").to_owned();
        Self::connect(client, self.config.clone(), &prefix)
    }
}

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
