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
    pub fn rename(&mut self, name: String) {
        self.name = name;
    }

    #[event("Renamed")]
    pub fn rename_again(&mut self, name: String) {
        self.name = name;
    }
}

fn main() {}
