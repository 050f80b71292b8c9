//! Domain models and applications shared by the examples (run them with
//! `cargo run --example dog_school` and `cargo run --example world`).

pub mod bank;
pub mod dog_school;
pub mod searchable_content;
pub mod shop;
pub mod world;
