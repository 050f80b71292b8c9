// The generated code's own methods are not reachable by accident: the
// prelude brings none of them into scope, and `Event` cannot be
// implemented without the hidden `EventInternals`.
use annals::prelude::*;

#[aggregate]
#[derive(Debug)]
pub struct Dog {
    pub name: String,
}

#[aggregate]
impl Dog {
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog { name }
    }
}

#[derive(Debug, Clone)]
pub enum MyEvent {}

impl Event for MyEvent {
    const TOPICS: &'static [&'static str] = &[];
    const VERSIONS: &'static [u32] = &[];
    fn variant_index(&self) -> usize {
        match *self {}
    }
    fn name(&self) -> &'static str {
        match *self {}
    }
    fn is_creation(&self) -> bool {
        match *self {}
    }
    fn is_discarding(&self) -> bool {
        match *self {}
    }
    fn __variant_of(_: &str) -> Option<usize> {
        None
    }
}

fn main() {
    let dog = Dog::register("Rex".into());
    let _ = dog.__meta();
    let mut state = annals::json::Value::Null;
    let _ = DogEvent::__upcast(0, 1, &mut state);
}
