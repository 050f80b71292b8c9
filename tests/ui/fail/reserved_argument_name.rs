use annals::prelude::*;

#[aggregate]
pub struct Dog {
    pub name: String,
}

#[aggregate]
impl Dog {
    #[event("Registered")]
    pub fn register(name: String, timestamp: u64) -> Self {
        let _ = timestamp;
        Dog { name }
    }
}

fn main() {}
