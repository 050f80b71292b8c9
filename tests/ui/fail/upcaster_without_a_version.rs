use annals::prelude::*;

#[aggregate]
pub struct Dog {
    pub name: String,
}

#[aggregate]
impl Dog {
    #[event("Registered", version = 2)]
    pub fn register(name: String) -> Self {
        Dog { name }
    }

    #[upcast("Registered", from = 1)]
    fn registered_v1(state: &mut annals::json::Value) {
        let _ = state;
    }

    #[upcast("Registered", from = 2)]
    fn registered_v2(state: &mut annals::json::Value) {
        let _ = state;
    }

    #[upcast("Barked", from = 1)]
    fn barked_v1(state: &mut annals::json::Value) {
        let _ = state;
    }
}

fn main() {}
