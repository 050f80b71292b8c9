//! Python's aggregate examples in annals' styles (`eventsourcing/examples/
//! aggregateN`): the same dog school, each written as a Python user of
//! that style would write it in Rust. Their tests, ported with the same
//! assertions, run on every store (`tests/tests/styles.rs`).

pub mod aggregate4;
pub mod aggregate5;
pub mod aggregate6;
pub mod aggregate6a;
pub mod aggregate7;
pub mod aggregate7a;
pub mod aggregate8;
