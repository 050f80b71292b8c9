// #[aggregate] on the impl block but not on the struct.
use annals::prelude::*;

pub struct Page {
    pub title: String,
}

#[aggregate]
impl Page {
    #[event("Created")]
    pub fn create(title: String) -> Self {
        Page { title }
    }

    #[event("Retitled")]
    pub fn retitle(&mut self, title: String) {
        self.title = title;
    }
}

fn main() {}
