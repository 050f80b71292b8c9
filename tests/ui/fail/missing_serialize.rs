// An event argument type that lacks only `Serialize`.
use annals::prelude::*;

#[aggregate]
pub struct Dog {
    pub name: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Collar {
    pub colour: String,
}

#[aggregate]
impl Dog {
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog { name }
    }

    #[event("CollarFitted")]
    pub fn fit_collar(&mut self, collar: Collar) {
        let _ = collar;
    }
}

fn main() {}
