use annals::prelude::*;

#[aggregate]
pub struct Dog {
    pub name: String,
}

#[aggregate(colour = "brown")]
impl Dog {
    #[event("Registered", loud)]
    pub fn register(name: String) -> Self {
        Dog { name }
    }
}

fn main() {}
