#![allow(dead_code)]
use annals::prelude::*;

// The checks `#[event]` methods get, on a written enum: one error each.
#[derive(Debug, Clone, Event)]
enum CatEvent {
    #[annals(create)]
    Adopted { timestamp: String },
    Named { name: &'static str },
    #[annals(topic = "cats:Cat.Fed")]
    Fed {},
    #[annals(name = "Not a name")]
    Groomed {},
}

fn main() {}
