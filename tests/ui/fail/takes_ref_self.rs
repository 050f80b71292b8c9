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

    #[event("Barked")]
    pub fn bark(&self, times: u32) {
        let _ = times;
    }
}

fn main() {}
