use annals::prelude::*;

#[aggregate]
pub struct Dog {
    pub name: String,
}

#[aggregate(version = 3)]
impl Dog {
    #[event("Registered", version = 3)]
    pub fn register(name: String) -> Self {
        Dog { name }
    }

    #[upcast("Registered", from = 1)]
    fn registered_v1(state: &mut annals::json::Value) {
        state["name"] = "unnamed".into();
    }

    #[upcast(snapshot, from = 1)]
    fn state_v1(state: &mut annals::json::Value) {
        let _ = state;
    }
}

fn main() {}
