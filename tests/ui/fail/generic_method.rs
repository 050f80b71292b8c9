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
    pub fn rename<N: Into<String>>(&mut self, name: N) {
        self.name = name.into();
    }
}

fn main() {}
