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

    #[event("Renamed")]
    pub fn rename(&mut self, name: String) -> bool {
        self.name = name;
        true
    }
}

fn main() {}
