#![allow(dead_code)]
use annals::prelude::*;

#[derive(Debug, Clone, Event)]
enum DogEvent {
    Registered { name: String },
    Renamed(String),
    #[annals(version = 2)]
    TrickAdded { trick: String },
    #[annals(name = "TrickAdded", sometimes)]
    Again { trick: String },
}

#[derive(Debug, Clone, Event)]
enum Change {
    #[annals(create)]
    Made {},
}

fn main() {}
