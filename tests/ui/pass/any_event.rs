//! `#[derive(AnyEvent)]` with an `#[other]` variant holding the topic, and
//! a type alias of `DomainEvent<A>` as a variant's type.
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

type OrderEvents = DomainEvent<Order>;

#[derive(Debug, AnyEvent)]
enum ShopEvent {
    Order(OrderEvents),
    #[other]
    Other(String),
}

fn main() {
    let app = Application::builder("Shop").build().unwrap();
    app.save(&mut Order::place("tea".into())).unwrap();
    let mut foreign = app.notifications(1, 1).unwrap().remove(0).event;
    let order: ShopEvent = app.mapper().decode_any(&foreign).unwrap();
    assert!(matches!(order, ShopEvent::Order(e) if matches!(&e.event, OrderEvent::Placed { item } if item == "tea")));
    foreign.topic = "Refunded".into();
    let other: ShopEvent = app.mapper().decode_any(&foreign).unwrap();
    assert!(matches!(other, ShopEvent::Other(topic) if topic == "Refunded"));
}
