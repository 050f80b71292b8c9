use annals::prelude::*;

#[aggregate]
pub struct Dog {
    pub name: String,
}

#[aggregate]
impl Dog {
    #[event("Renamed")]
    pub fn rename(&mut self, name: String) {
        self.name = name;
    }
}

fn main() {}
