#![allow(unused_imports, dead_code)]
use annals::prelude::*;
use annals::{AnyEvent, DomainEvent};

#[aggregate]
#[derive(Debug)]
struct Order {
    item: String,
}

#[aggregate]
impl Order {
    #[event("Placed")]
    fn place(item: String) -> Self {
        Order { item }
    }
}

#[derive(AnyEvent)]
enum ShopEvent {
    Order(DomainEvent<Order>),
    #[other]
    Unknown,
    #[other]
    Unheard(String),
    #[other(topic)]
    Odd,
}

fn main() {}
