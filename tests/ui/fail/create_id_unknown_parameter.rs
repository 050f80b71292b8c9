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

    pub fn create_id(nickname: &str) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_URL, nickname.as_bytes())
    }
}

fn main() {}
