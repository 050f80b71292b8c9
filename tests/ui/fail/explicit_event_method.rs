#![allow(dead_code)]
use annals::prelude::*;
use annals::Apply;

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

#[aggregate(events = DogEvent, event = "Change")]
impl Apply for Dog {
    fn create(event: DogEvent) -> Result<Self, DogEvent> {
        match event {
            DogEvent::Registered { name } => Ok(Dog { name }),
        }
    }
    #[upcast("Registered", from = 1)]
    fn apply(&mut self, _: DogEvent) {}
}

fn main() {}
