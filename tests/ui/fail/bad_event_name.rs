use annals::prelude::*;

#[aggregate]
pub struct Dog {
    pub name: String,
}

#[aggregate]
impl Dog {
    #[event("Dog Registered")]
    pub fn register(name: String) -> Self {
        Dog { name }
    }
}

fn main() {}
