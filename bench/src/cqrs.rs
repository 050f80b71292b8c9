//! cqrs-es 0.5 with its in-memory store (`MemStore`), for W1 and W2.
//!
//! Unlike annals, `MemStore::commit` does not check the aggregate's
//! version against the stored one (a concurrent writer's events would be
//! overwritten, not refused), its events carry no timestamp, and it prints
//! a line on every load and commit (to /dev/null in this benchmark).
//! `CqrsFramework::execute` loads the aggregate from the store before each
//! command: there is no way to keep it in memory between commands.

use std::time::Duration;

use crate::allocs::Stopwatch;

use cqrs_es::mem_store::MemStore;
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent, EventStore};
use serde::{Deserialize, Serialize};

use crate::workload::{check_dog, fail, name, trick, Res, Sizes, Sut, W4};

/// The workload's aggregate for cqrs-es.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct CqrsDog {
    name: String,
    tricks: Vec<String>,
    version: u64,
}

/// Its commands.
#[derive(Debug)]
pub(crate) enum DogCommand {
    /// Registers the dog.
    Register(String),
    /// Adds a trick.
    AddTrick(String),
}

/// Its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum DogEvent {
    /// The dog was registered.
    Registered {
        /// `name(i)`.
        name: String,
    },
    /// It learned a trick.
    TrickAdded {
        /// `trick(j)`.
        trick: String,
    },
}

impl DomainEvent for DogEvent {
    fn event_type(&self) -> String {
        match self {
            DogEvent::Registered { .. } => "Dog.Registered".into(),
            DogEvent::TrickAdded { .. } => "Dog.TrickAdded".into(),
        }
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

/// Why a command is refused (never, here).
#[derive(Debug)]
pub(crate) struct DogError;

impl std::fmt::Display for DogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dog error")
    }
}

impl std::error::Error for DogError {}

impl Aggregate for CqrsDog {
    const TYPE: &'static str = "Dog";
    type Command = DogCommand;
    type Event = DogEvent;
    type Error = DogError;
    type Services = ();

    async fn handle(
        &mut self,
        command: DogCommand,
        _: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), DogError> {
        let event = match command {
            DogCommand::Register(name) => DogEvent::Registered { name },
            DogCommand::AddTrick(trick) => DogEvent::TrickAdded { trick },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: DogEvent) {
        match event {
            DogEvent::Registered { name } => self.name = name,
            DogEvent::TrickAdded { trick } => self.tricks.push(trick),
        }
        self.version += 1;
    }
}

/// cqrs-es on `MemStore`.
pub(crate) struct CqrsSut {
    store: MemStore<CqrsDog>,
    cqrs: CqrsFramework<CqrsDog, MemStore<CqrsDog>>,
    ids: Vec<String>,
}

impl CqrsSut {
    /// A fresh store.
    pub(crate) fn new() -> Self {
        let store = MemStore::<CqrsDog>::default();
        let cqrs = CqrsFramework::new(store.clone(), vec![], ());
        Self {
            store,
            cqrs,
            ids: Vec::new(),
        }
    }
}

fn unsupported<T>(what: &str) -> Res<T> {
    fail(format!("cqrs-es runs W1 and W2 only, not {what}"))
}

impl Sut for CqrsSut {
    fn w1(&mut self, sizes: &Sizes) -> Res<Duration> {
        let start = Stopwatch::start();
        let mut ids = Vec::with_capacity(sizes.aggregates);
        pollster::block_on(async {
            for i in 0..sizes.aggregates {
                let id = uuid::Uuid::new_v4().to_string();
                self.cqrs
                    .execute(&id, DogCommand::Register(name(i)))
                    .await?;
                for j in 1..sizes.events {
                    self.cqrs
                        .execute(&id, DogCommand::AddTrick(trick(j)))
                        .await?;
                }
                ids.push(id);
            }
            Ok::<_, cqrs_es::AggregateError<DogError>>(())
        })?;
        let elapsed = start.stop();
        let stored = pollster::block_on(async {
            let mut n = 0;
            for id in &ids {
                n += self.store.load_events(id).await?.len();
            }
            Ok::<_, cqrs_es::AggregateError<DogError>>(n)
        })?;
        crate::workload::check_count("W1", stored as u64, sizes.w1_events())?;
        self.ids = ids;
        Ok(elapsed)
    }

    fn w2(&mut self, sizes: &Sizes) -> Res<Duration> {
        let start = Stopwatch::start();
        let dogs = pollster::block_on(async {
            let mut dogs = Vec::with_capacity(self.ids.len());
            for id in &self.ids {
                dogs.push(self.store.load_aggregate(id).await?.aggregate);
            }
            Ok::<_, cqrs_es::AggregateError<DogError>>(dogs)
        })?;
        let elapsed = start.stop();
        if dogs.len() != sizes.aggregates {
            return fail(format!("W2: read {} aggregates", dogs.len()));
        }
        for (i, d) in dogs.iter().enumerate() {
            check_dog("W2", i, &d.name, &d.tricks, d.version, sizes.events)?;
        }
        Ok(elapsed)
    }

    fn w3(&mut self, _: &Sizes) -> Res<Duration> {
        unsupported("W3")
    }
    fn w4(&mut self, _: &Sizes) -> Res<W4> {
        unsupported("W4")
    }
    fn w5(&mut self, _: &Sizes) -> Res<Duration> {
        unsupported("W5")
    }
    fn w1_concurrent(&mut self, _: &Sizes) -> Res<Duration> {
        unsupported("W1x8")
    }
}
