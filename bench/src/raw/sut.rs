//! The raw workload itself: the events as JSON, the aggregate replayed
//! by hand, and W1-W5 on any [`RawStore`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Codec, Notif, RawStore, Row, Stored};
use crate::allocs::Stopwatch;
use crate::workload::{check_count, check_dog, check_ids, fail, name, trick, Res, Sizes, Sut, W4};

const REGISTERED: &str = "Dog.Registered";
const TRICK_ADDED: &str = "Dog.TrickAdded";
const SNAPSHOT: &str = "Dog";

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
