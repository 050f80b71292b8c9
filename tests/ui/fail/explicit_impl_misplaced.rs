#![allow(dead_code)]
use annals::prelude::*;

#[derive(Debug, Clone, Event)]
enum DogEvent {
    #[annals(create)]
    Registered { name: String },
}

#[aggregate]
#[derive(Debug)]
struct Dog {
    name: String,
}

#[aggregate(events = DogEvent)]
impl Dog {
    #[event("Renamed")]
    fn rename(&mut self, name: String) {
        self.name = name;
    }
}

fn main() {}
