//! annals, used through its public API as an application would use it.

use std::time::Duration;

use crate::allocs::Stopwatch;

use annals::mapper::{Codec, Compressor};
use annals::persistence::mysql::MysqlConfig;
use annals::persistence::object::ObjectConfig;
use annals::persistence::postgres::PostgresConfig;
use annals::persistence::NotificationQuery;
use annals::prelude::*;
use serde::{Deserialize, Serialize};

use crate::workload::{check_count, check_dog, check_ids, fail, name, trick, Res, Sizes, Sut, W4};

/// The workload's aggregate.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Dog {
    /// `name(i)`.
    pub name: String,
    /// Its tricks, in the order it learned them.
    pub tricks: Vec<String>,
}

#[aggregate]
impl Dog {
    /// Registers a dog (the creation event; a random v4 id).
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog {
            name,
            tricks: Vec::new(),
        }
    }

    /// Adds a trick.
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }
}

/// The same dog in the Python library's form (`CODEC=python`: topics
/// `dogs:Dog.Registered`, Python's JSON), as eventsourcing_django's
/// tables hold it: the Django layout's figures against annals' own tables
/// in the same codec.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PythonDog {
    /// `name(i)`.
    pub name: String,
    /// Its tricks, in the order it learned them.
    pub tricks: Vec<String>,
}

#[aggregate(python = "dogs", name = "Dog")]
impl PythonDog {
    /// Registers a dog.
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        PythonDog {
            name,
            tricks: Vec::new(),
        }
    }

    /// Adds a trick.
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }
}

/// The same dog with its one field per event personal (`#[personal]`):
/// sealed with the dog's own data key, made at its first save.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PersonalDog {
    /// `name(i)`.
    #[personal]
    pub name: String,
    /// Its tricks, in the order it learned them.
    #[personal]
    pub tricks: Vec<String>,
}

#[aggregate(name = "Dog")]
impl PersonalDog {
    /// Registers a dog.
    #[event("Registered")]
    pub fn register(#[personal] name: String) -> Self {
        PersonalDog {
            name,
            tricks: Vec::new(),
        }
    }

    /// Adds a trick.
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, #[personal] trick: String) {
        self.tricks.push(trick);
    }
}

/// The same dog in the explicit style: an event enum written by hand
/// (`#[derive(Event)]`) and `Apply`, stored as `Dog`'s events are (the
/// same topics and states), so that the two styles' figures compare.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExplicitDog {
    /// `name(i)`.
    pub name: String,
    /// Its tricks, in the order it learned them.
    pub tricks: Vec<String>,
}

/// `ExplicitDog`'s events.
#[derive(Debug, Clone, Event)]
#[annals(aggregate = "Dog")]
pub(crate) enum ExplicitDogEvent {
    /// A dog was registered.
    #[annals(create)]
    Registered {
        /// Its name.
        name: String,
    },
    /// A trick was added.
    TrickAdded {
        /// The trick.
        trick: String,
    },
}

#[aggregate(events = ExplicitDogEvent, name = "Dog")]
impl annals::Apply for ExplicitDog {
    fn create(event: ExplicitDogEvent) -> Result<Self, ExplicitDogEvent> {
        match event {
            ExplicitDogEvent::Registered { name } => Ok(ExplicitDog {
                name,
                tricks: Vec::new(),
            }),
            other => Err(other),
        }
    }

    fn apply(&mut self, event: ExplicitDogEvent) {
        if let ExplicitDogEvent::TrickAdded { trick } = event {
            self.tricks.push(trick);
        }
    }
}

/// What the workload does with a dog, in either style.
pub(crate) trait BenchDog: Aggregate<Id = Uuid> + Sized {
    /// The codec its application stores it in.
    const CODEC: Codec = Codec::Annals;
    /// Whether its fields are personal (its application has a master key).
    const PERSONAL: bool = false;
    /// Registers a dog.
    fn register(name: String) -> Self;
    /// Adds a trick.
    fn add_trick(&mut self, trick: String);
    /// Its name.
    fn name(&self) -> &str;
    /// Its tricks.
    fn tricks(&self) -> &[String];
}

impl BenchDog for Dog {
    fn register(name: String) -> Self {
        Dog::register(name)
    }
    fn add_trick(&mut self, trick: String) {
        Dog::add_trick(self, trick);
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tricks(&self) -> &[String] {
        &self.tricks
    }
}

impl BenchDog for PythonDog {
    const CODEC: Codec = Codec::Python;
    fn register(name: String) -> Self {
        PythonDog::register(name)
    }
    fn add_trick(&mut self, trick: String) {
        PythonDog::add_trick(self, trick);
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tricks(&self) -> &[String] {
        &self.tricks
    }
}

impl BenchDog for PersonalDog {
    const PERSONAL: bool = true;
    fn register(name: String) -> Self {
        PersonalDog::register(name)
    }
    fn add_trick(&mut self, trick: String) {
        PersonalDog::add_trick(self, trick);
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tricks(&self) -> &[String] {
        &self.tricks
    }
}

impl BenchDog for ExplicitDog {
    fn register(name: String) -> Self {
        Self::from_event(ExplicitDogEvent::Registered { name }).expect("a creation event")
    }
    fn add_trick(&mut self, trick: String) {
        self.record(ExplicitDogEvent::TrickAdded { trick })
            .expect("not a creation event");
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tricks(&self) -> &[String] {
        &self.tricks
    }
}

/// Where an annals application keeps its events.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    /// In memory.
    Memory,
    /// A SQLite file.
    Sqlite(String),
    /// PostgreSQL, tables named after the application.
    Postgres(PostgresConfig),
    /// MariaDB/MySQL, tables named after the application.
    Mysql(MysqlConfig),
    /// The object store (a directory or `s3://`).
    Object(ObjectConfig),
}

/// An annals application for one workload group, its aggregate a `D`.
pub(crate) struct AnnalsSut<D = Dog> {
    app: Application,
    ids: Vec<Uuid>,
    style: std::marker::PhantomData<D>,
}

impl<D: BenchDog> AnnalsSut<D> {
    /// An application named `name` on `store`; zlib and AES-256-GCM when
    /// `zlib_aes`; snapshots when `snapshotting`.
    pub(crate) fn open(name: &str, store: Store, zlib_aes: bool, snapshotting: bool) -> Res<Self> {
        let mut builder = Application::builder(name);
        builder = match store {
            Store::Memory => builder.memory(),
            Store::Sqlite(path) => builder.sqlite(path),
            Store::Postgres(mut config) => {
                config.pool_size = config.pool_size.max(Sizes::STANDARD.threads as u32);
                builder.postgres(config)
            }
            Store::Mysql(mut config) => {
                config.pool_size = config.pool_size.max(Sizes::STANDARD.threads as u32);
                builder.mysql(config)
            }
            Store::Object(config) => builder.store(config),
        };
        if zlib_aes {
            builder = builder
                .compressor(Some(Compressor::Zlib))
                .cipher_key(annals::cipher::create_key());
        }
        if D::PERSONAL {
            builder = builder.personal_data_key(annals::cipher::create_key());
        }
        let app = builder.codec(D::CODEC).snapshotting(snapshotting).build()?;
        Ok(Self {
            app,
            ids: Vec::new(),
            style: std::marker::PhantomData,
        })
    }

    fn stored(&self) -> Res<u64> {
        Ok(self.app.recorder().max_notification_id()?)
    }
}

/// W1 for aggregates `first, first + step, ...` below `sizes.aggregates`.
fn write_dogs<D: BenchDog>(
    app: &Application,
    sizes: &Sizes,
    first: usize,
    step: usize,
) -> Res<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(sizes.aggregates / step + 1);
    for i in (first..sizes.aggregates).step_by(step) {
        let mut dog = D::register(name(i));
        app.save(&mut dog)?;
        for j in 1..sizes.events {
            dog.add_trick(trick(j));
            app.save(&mut dog)?;
        }
        ids.push(dog.id());
    }
    Ok(ids)
}

impl<D: BenchDog> Sut for AnnalsSut<D> {
    fn w1(&mut self, sizes: &Sizes) -> Res<Duration> {
        let start = Stopwatch::start();
        let ids = write_dogs::<D>(&self.app, sizes, 0, 1)?;
        let elapsed = start.stop();
        self.ids = ids;
        check_count("W1", self.stored()?, sizes.w1_events())?;
        Ok(elapsed)
    }

    fn w2(&mut self, sizes: &Sizes) -> Res<Duration> {
        let repository = self.app.repository();
        let start = Stopwatch::start();
        let dogs = self
            .ids
            .iter()
            .map(|id| repository.get::<D>(*id))
            .collect::<annals::Result<Vec<D>>>()?;
        let elapsed = start.stop();
        if dogs.len() != sizes.aggregates {
            return fail(format!(
                "W2: read {} aggregates, expected {}",
                dogs.len(),
                sizes.aggregates
            ));
        }
        for (i, dog) in dogs.iter().enumerate() {
            check_dog(
                "W2",
                i,
                dog.name(),
                dog.tricks(),
                dog.version(),
                sizes.events,
            )?;
        }
        Ok(elapsed)
    }

    fn w3(&mut self, sizes: &Sizes) -> Res<Duration> {
        let total = sizes.w1_events();
        let recorder = self.app.recorder();
        let start = Stopwatch::start();
        let mut all = Vec::with_capacity(total);
        let mut next = 1;
        let mut selects = 0;
        while all.len() < total {
            let page = recorder.select_notifications(&NotificationQuery::new(next, sizes.page))?;
            selects += 1;
            let Some(last) = page.last() else { break };
            next = last.id + 1;
            all.extend(page);
        }
        let elapsed = start.stop();
        check_ids("W3", all.iter().map(|n| n.id), total)?;
        if selects != total.div_ceil(sizes.page) {
            return fail(format!("W3: {selects} selects"));
        }
        Ok(elapsed)
    }

    fn w4(&mut self, sizes: &Sizes) -> Res<W4> {
        let start = Stopwatch::start();
        let mut dog = D::register(name(0));
        let mut pending = 1;
        for j in 1..sizes.long {
            dog.add_trick(trick(j));
            pending += 1;
            if pending == sizes.long_batch {
                self.app.save(&mut dog)?;
                pending = 0;
            }
        }
        self.app.save(&mut dog)?;
        let write = start.stop();
        let id = dog.id();
        check_count("W4 write", self.stored()?, sizes.long)?;

        let start = Stopwatch::start();
        let dog: D = self.app.repository().get(id)?;
        let get_nosnap = start.stop();
        check_dog(
            "W4 no snapshot",
            0,
            dog.name(),
            dog.tricks(),
            dog.version(),
            sizes.long,
        )?;

        self.app.take_snapshot::<D>(id)?;
        let start = Stopwatch::start();
        let dog: D = self.app.repository().get(id)?;
        let get_snap = start.stop();
        check_dog(
            "W4 snapshot",
            0,
            dog.name(),
            dog.tricks(),
            dog.version(),
            sizes.long,
        )?;
        Ok(W4 {
            write,
            get_nosnap,
            get_snap,
        })
    }

    fn w5(&mut self, sizes: &Sizes) -> Res<Duration> {
        let start = Stopwatch::start();
        for b in 0..sizes.batches {
            let mut dogs: Vec<D> = (0..sizes.batch)
                .map(|k| D::register(name(b * sizes.batch + k)))
                .collect();
            self.app.save(&mut dogs[..])?;
        }
        let elapsed = start.stop();
        check_count("W5", self.stored()?, sizes.batches * sizes.batch)?;
        Ok(elapsed)
    }

    fn w1_concurrent(&mut self, sizes: &Sizes) -> Res<Duration> {
        let app = &self.app;
        let start = Stopwatch::start();
        let results: Vec<Res<Vec<Uuid>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..sizes.threads)
                .map(|t| s.spawn(move || write_dogs::<D>(app, sizes, t, sizes.threads)))
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
        check_count("W1x8", self.stored()?, sizes.w1_events())?;
        Ok(elapsed)
    }
}
