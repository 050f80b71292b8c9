// A `create_id` outside the #[aggregate] impl block would not be seen by the
// creation methods: it is an error, not silently ignored.
use annals::prelude::*;

#[aggregate]
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

impl Dog {
    pub fn create_id(name: &str) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
    }
}

fn main() {}
