// A Python module that is not a dotted path, and an annals topic with the
// `:` that marks the Python library's topics.
use annals::prelude::*;

#[aggregate]
pub struct Dog {
    pub name: String,
}

#[aggregate(python = "dog school")]
impl Dog {
    #[event("Registered", topic = "dogschool:Dog.Registered")]
    pub fn register(name: String) -> Self {
        Dog { name }
    }
}

fn main() {}
