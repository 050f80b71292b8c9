use annals::prelude::*;

#[aggregate]
pub struct Dog {
    pub name: String,
}

#[aggregate]
impl Dog {
    #[event("Registered")]
    pub fn register(name: &str) -> Self {
        Dog { name: name.to_owned() }
    }
}

fn main() {}
