//! # annals-core: what every annals store shares
//!
//! The parts of [annals](https://docs.rs/annals) that know nothing of
//! aggregates: the one [`Error`], the [`settings`] and the [`Env`](env::Env)
//! that reads them, the [`rows`] a store keeps, the recorder traits and
//! queries ([`persistence`]), the memory store, the store transaction a
//! store lends to its users' writes, the group-commit engine of the SQL
//! stores, and (with
//! the `testing` feature) the recorder contract suite.
//!
//! Applications depend on `annals`, which re-exports all of this. A store
//! crate (annals' own SQLite, PostgreSQL and object stores, or a third
//! party's) depends on this crate alone, so it never sees the application.
//!
//! ```
//! use annals_core::persistence::memory::MemoryRecorder;
//! use annals_core::persistence::{AggregateRecorder, EventQuery, StoredEvent};
//!
//! let recorder = MemoryRecorder::new();
//! let row = StoredEvent {
//!     originator_id: "dog-1".into(),
//!     originator_version: 1,
//!     topic: "Dog.Registered".into(),
//!     state: b"{}".to_vec(),
//! };
//! recorder.insert_events(&[row.clone()])?;
//! assert_eq!(recorder.select_events("dog-1", &EventQuery::all())?, [row]);
//! # Ok::<(), annals_core::Error>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod bridge;
pub mod ending;
pub mod env;
pub mod error;
pub mod persistence;
pub mod rows;
pub mod settings;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use error::{Error, Result};
